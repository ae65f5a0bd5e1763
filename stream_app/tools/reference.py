"""The settings reference (docs/settings.md), written from the code so it cannot fall behind.

Each setting's line says its key, default, environment variable and what it does: the field's
docstring in its section's module (:mod:`stream_app.settings` for the worker's sections,
:mod:`stream_app.tools.settings` for the tools'), else the comment beside it in
``config/default.toml``.
``python -m stream_app.tools.reference > docs/settings.md`` rewrites the page; a unit test keeps it
equal to what this module renders.

>>> page = render()
>>> "| `serve.fetch_max_wait_ms` | `5` | `STREAM_APP_SERVE__FETCH_MAX_WAIT_MS` |" in page
True
>>> "`STREAM_APP_BROKER` or `STREAM_APP_APP__BROKER`" in page
True
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from stream_app.settings import DEFAULT_CONFIG_FILE, ENV_PREFIX, SHORT_ENV
from stream_app.tools.settings import ToolSettings

__all__ = ["render"]

_COMMENT = re.compile(r"^(\w+)\s*=.*?#\s*(.*)$")


def render(config_file: Path = DEFAULT_CONFIG_FILE) -> str:
    """Render the whole reference page as Markdown."""
    defaults = ToolSettings()
    sections = [type(getattr(defaults, f.name)) for f in dataclasses.fields(defaults)]
    docs = _field_docs({sys.modules[cls.__module__] for cls in sections})
    comments = _toml_comments(config_file)
    short = {target: name for name, target in SHORT_ENV.items()}
    lines = [
        "# Settings reference",
        "",
        "Generated from `stream_app/settings/`, `stream_app/tools/settings.py` and",
        "`config/default.toml` by",
        "`python -m stream_app.tools.reference > docs/settings.md` (a unit test keeps it current).",
        "",
        "Layering: the defaults below < the TOML file named by `STREAM_APP_CONFIG` (only the",
        "keys you change) < the environment. Every key has an environment variable",
        "`STREAM_APP_<SECTION>__<KEY>`; a few also have a short name. Environment values are",
        "read as TOML values when they are lists or tables",
        '(`STREAM_APP_MODEL__CLASSES=\'["a", "b"]\'`).',
        "",
    ]
    for section, cls in zip(dataclasses.fields(defaults), sections, strict=True):
        lines += [f"## [{section.name}]", "", _first_line(cls.__doc__), ""]
        lines += ["| setting | default | environment | what it does |", "|---|---|---|---|"]
        for field in dataclasses.fields(cls):
            key = f"{section.name}.{field.name}"
            env = f"`{ENV_PREFIX}{section.name.upper()}__{field.name.upper()}`"
            if (section.name, field.name) in short:
                env = f"`{short[(section.name, field.name)]}` or {env}"
            text = docs.get((cls.__name__, field.name)) or comments.get(key, "")
            default = _show(getattr(getattr(defaults, section.name), field.name))
            lines.append(f"| `{key}` | {default} | {env} | {_cell(text)} |")
        lines.append("")
    return "\n".join(lines)


def _field_docs(modules: set[ModuleType]) -> dict[tuple[str, str], str]:
    """Collect the string literal after each dataclass field in ``modules``, by (class, field)."""
    docs: dict[tuple[str, str], str] = {}
    nodes = (node for module in modules for node in ast.parse(inspect.getsource(module)).body)
    for node in nodes:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for stmt, after in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[(node.name, stmt.target.id)] = " ".join(after.value.value.split())
    return docs


def _toml_comments(path: Path) -> dict[str, str]:
    """Collect the comment beside each key of the default TOML file, by ``section.key``."""
    out: dict[str, str] = {}
    section = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.split("]")[0].strip("[ ")
            continue
        match = _COMMENT.match(stripped)
        if match:
            text = re.sub(r"^STREAM_APP_\w+:?\s*", "", match.group(2).strip())
            if text:
                out[f"{section}.{match.group(1)}"] = text
    return out


def _show(value: Any) -> str:
    """Spell a default as TOML would, in code format."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple | list):
        return f"`{list(value)!r}`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value!r}`"
    return f"`{value}`"


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def _cell(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(render(), end="")
