"""The deployment files (docker-compose.yml, Dockerfile, Prometheus, Grafana) read as data.

No Docker engine runs the tests, so they check these files instead of running them: the compose
file with its ``${VAR:-default}`` references resolved as ``docker compose`` resolves them, the
Dockerfile's instructions, and the metric names in the dashboard's PromQL. Prometheus itself runs
from Debian's ``prometheus`` package when it is installed (:func:`prometheus_tool`).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_app.core.metrics import Metrics

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SCHEMA = REPO / "tests" / "data" / "compose-spec" / "compose-spec.json"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_FILE = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS_FILE = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST_FILE = REPO / "deploy" / "prometheus" / "alerts_test.yml"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "stream_app.json"

# ${NAME}, ${NAME:-default}, ${NAME-default}; $$ is a literal dollar sign.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?-)?(?P<default>[^}]*)\}")
_METRIC = re.compile(r"(?<![A-Za-z0-9_:])stream_app_[A-Za-z0-9_:]*")
_GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")

# Sample names Prometheus stores for each metric type (the text format's suffixes).
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Resolve ``${VAR}`` references in every string of a YAML document, as Compose does.

    >>> interpolate({"a": ["${X:-1}", "$$HOME", "${Y}"]}, {"Y": "2"})
    {'a': ['1', '$HOME', '2']}
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name", "op", "default")
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _VARIABLE.sub(resolve, value)


def variables(text: str) -> dict[str, bool]:
    """Every ``${VAR}`` in ``text``, and whether it has a default.

    >>> variables("a: ${X:-1}\\nb: ${Y}\\nc: $$Z")
    {'X': True, 'Y': False}
    """
    return {
        m.group("name"): m.group("op") is not None for m in _VARIABLE.finditer(text) if m.group(1)
    }


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as ``docker compose`` sees it with ``env`` (default: none set)."""
    return dict(interpolate(read_yaml(COMPOSE_FILE), env or {}))


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (map or ``KEY=VALUE`` list) as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The ``ENV KEY=VALUE ...`` settings of a Dockerfile, in order."""
    env: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            for word in shlex.split(args):
                key, sep, value = word.partition("=")
                assert sep, f"use the ENV KEY=VALUE form: {args}"
                env[key] = value
    return env


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Tell whether .dockerignore ``patterns`` leave ``path`` (relative, /-separated) out.

    Docker's rules, for the patterns this repository uses: the last matching pattern wins, ``!``
    lets a path back in, a pattern that matches a directory covers what is inside, and ``**/``
    matches at any depth.

    >>> dockerignored("stream_app/cli.py", ["*", "!stream_app", "**/__pycache__"])
    False
    >>> dockerignored("stream_app/__pycache__/cli.pyc", ["*", "!stream_app", "**/__pycache__"])
    True
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    tails = ["/".join(parts[i:n]) for i in range(len(parts)) for n in range(i + 1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatchcase(t, pattern[3:]) for t in tails)
        else:
            matched = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)
        if matched:
            ignored = not negated
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")))


def panels(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data, including those inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panels(panel))
        else:
            found.append(panel)
    return found


def exprs(panel: Mapping[str, Any]) -> list[str]:
    """The PromQL of a panel's queries (hidden ones too: they still must be real)."""
    return [str(target.get("expr") or "") for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The stream_app metric names a PromQL expression reads.

    >>> sorted(metric_names(
    ...     "histogram_quantile(0.5, sum by (le) (rate(stream_app_x_seconds_bucket[1m])))"
    ...     " / sum(stream_app_y_total)"
    ... ))
    ['stream_app_x_seconds_bucket', 'stream_app_y_total']
    """
    return set(_METRIC.findall(expr))


def grouping_labels(expr: str) -> set[str]:
    """The labels an expression aggregates ``by``.

    >>> sorted(grouping_labels("max by (model, status) (x) + sum by(le)(y)"))
    ['le', 'model', 'status']
    """
    return {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",")} - {""}


def exported_names(metrics: Metrics) -> dict[str, str]:
    """Every sample name the worker's metrics can export, mapped to its metric family.

    A labelled family exports no sample until a label set is used, so the names come from each
    family's type, not from a scrape.
    """
    names: dict[str, str] = {}
    for family in metrics.registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def prometheus_tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; else skip the test, saying how to install it.

    ``make test`` installs Debian's ``prometheus`` package (both programs) when it runs as root.
    Under CI (``CI`` set) a missing tool fails the test instead: CI must not skip it silently.
    """
    path = shutil.which(name)
    if path:
        return path
    message = (
        f"{name} is not installed: `sudo apt-get install prometheus` (Debian and Ubuntu; the "
        "package holds prometheus and promtool), or run `make test` as root, which installs it"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message}. CI is set, so this test may not be skipped")
    pytest.skip(message)


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of ``deploy/prometheus/alerts.yml``, in file order."""
    groups = read_yaml(ALERTS_FILE)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]
