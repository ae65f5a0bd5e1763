"""docker-compose.yml, the Dockerfile and the Prometheus/Grafana files, checked without Docker.

The Compose specification's schema checks the shape; the other tests check what a schema cannot:
that files exist, that the worker's environment spells real settings, and that the services agree
on names and ports.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from stream_app.settings import SHORT_ENV, bootstrap_servers, load_settings
from stream_app.tools.settings import BrokerSettings
from tests.deployment import (
    ALERTS_FILE,
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    DASHBOARD_FILE,
    PROMETHEUS_FILE,
    REPO,
    dockerfile,
    dockerfile_env,
    dockerignore_patterns,
    dockerignored,
    environment,
    load_compose,
    read_yaml,
    variables,
)

WORKER = "worker"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
_DEFAULTED = re.compile(r"\$\{(?P<name>[A-Z_]+):-(?P<default>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def worker_env(services: dict[str, Any]) -> dict[str, str]:
    """The worker container's environment: the image's ENV, then compose's ``environment``."""
    build = services[WORKER]["build"]
    image_env = dockerfile_env(dockerfile(REPO / build["context"] / build["dockerfile"]))
    return {**image_env, **environment(services[WORKER])}


def test_compose_file_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    """The validation above can fail: a misspelt key is an error."""
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    broken = {**compose, "services": {**compose["services"], "x": {"imgae": "python:3.11"}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_every_variable_has_a_default_so_up_needs_no_env_file() -> None:
    found = variables(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert found, "expected ${...} references (ports, Grafana password)"
    assert [name for name, has_default in found.items() if not has_default] == []


def test_every_image_is_pinned_and_kafka_is_the_version_the_tests_run(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
    assert services["kafka"]["image"] == f"apache/kafka:{BrokerSettings().kafka_version}"


def test_published_ports_listen_on_loopback_only(services: dict[str, Any]) -> None:
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, dict), f"{name}: use the long port syntax with host_ip"
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            published += 1
    assert published >= 4  # kafka, worker, prometheus, grafana


def test_builds_have_their_context_and_dockerfile(services: dict[str, Any]) -> None:
    builds = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(builds) == {WORKER}
    for build in builds.values():
        assert (REPO / build["context"]).is_dir()
        assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_dockerfile_runs_the_worker_as_a_non_root_user_on_python_311_slim(
    services: dict[str, Any],
) -> None:
    build = services[WORKER]["build"]
    instructions = dockerfile(REPO / build["context"] / build["dockerfile"])
    keywords = [keyword for keyword, _ in instructions]
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    run_as = keywords.index("USER")
    assert "ENTRYPOINT" in keywords[run_as:] and "CMD" in keywords[run_as:]
    entry = json.loads(dict(instructions)["ENTRYPOINT"]) + json.loads(dict(instructions)["CMD"])
    assert entry == ["stream-app", "worker"]


def test_what_the_dockerfile_copies_exists_and_is_not_dockerignored(
    services: dict[str, Any],
) -> None:
    build = services[WORKER]["build"]
    context = REPO / build["context"]
    patterns = dockerignore_patterns()
    sources = [
        source
        for keyword, args in dockerfile(context / build["dockerfile"])
        if keyword == "COPY"
        for source in args.split()[:-1]
        if not source.startswith("--")
    ]
    assert "stream_app" in sources and "pyproject.toml" in sources
    for source in sources:
        path = context / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        for file in files:
            relative = file.relative_to(context).as_posix()
            assert not dockerignored(relative, patterns), f"{relative} is .dockerignored"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/unit/test_compose.py"):
        assert dockerignored(heavy, patterns), f"{heavy} should stay out of the build context"


def test_every_file_mounted_from_the_repo_exists(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_worker_environment_names_real_settings_that_parse(services: dict[str, Any]) -> None:
    env = worker_env(services)
    names = [name for name in env if name.startswith("STREAM_APP_")]
    assert names
    # load_settings ignores a STREAM_APP_ name that is neither short nor SECTION__KEY: refuse it
    # here, so a misspelling cannot pass silently. SECTION__KEY names are checked by load_settings.
    assert [n for n in names if n not in SHORT_ENV and "__" not in n] == []
    settings = load_settings(env=env, files=[])
    assert settings.app.broker == "kafka://kafka:9092"
    assert settings.web.host == "0.0.0.0"  # inside the container only: Prometheus scrapes it
    assert settings.app.data_dir == "/data"


def test_worker_reaches_kafka_through_its_advertised_container_listener(
    services: dict[str, Any],
) -> None:
    settings = load_settings(env=worker_env(services), files=[])
    kafka = environment(services["kafka"])
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    broker = bootstrap_servers(settings.app.broker)
    assert broker.split(":")[0] == "kafka" and "kafka" in services
    (name,) = [name for name, address in advertised.items() if address == broker]
    assert listeners[name] == ":" + broker.split(":")[1]
    # The host listener: published on 127.0.0.1 at the port it advertises.
    (host_name,) = [name for name, address in advertised.items() if address.startswith("127.")]
    (port,) = services["kafka"]["ports"]
    assert listeners[host_name] == f":{port['target']}"
    assert advertised[host_name] == f"127.0.0.1:{port['published']}"
    cluster_id = kafka["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16  # what Kafka's format needs


def test_prometheus_scrapes_every_worker_at_its_web_port(services: dict[str, Any]) -> None:
    settings = load_settings(env=worker_env(services), files=[])
    config = read_yaml(PROMETHEUS_FILE)
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (discovery,) = job["dns_sd_configs"]  # one address per replica: --scale worker=N works
    assert discovery["names"] == [WORKER] and discovery["type"] == "A"
    assert discovery["port"] == settings.web.port
    mounts = [v.split(":")[:2] for v in services["prometheus"]["volumes"]]
    assert [
        "./" + PROMETHEUS_FILE.relative_to(REPO).as_posix(),
        "/etc/prometheus/prometheus.yml",
    ] in (mounts)


def test_prometheus_loads_the_alert_rules_mounted_beside_its_config(
    services: dict[str, Any],
) -> None:
    assert read_yaml(PROMETHEUS_FILE)["rule_files"] == [ALERTS_FILE.name]  # beside the config
    mounts = [v.split(":")[:2] for v in services["prometheus"]["volumes"]]
    source = "./" + ALERTS_FILE.relative_to(REPO).as_posix()
    assert [source, f"/etc/prometheus/{ALERTS_FILE.name}"] in mounts


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    mounts = {v.split(":")[1]: REPO / v.split(":")[0] for v in grafana["volumes"]}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == REPO / "deploy/grafana/provisioning"

    (source,) = read_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus" and url.hostname == "prometheus"
    prometheus_ports = [p["target"] for p in services["prometheus"]["ports"]]
    assert url.port in prometheus_ports

    (provider,) = read_yaml(provisioning / "dashboards" / "stream_app.yml")["providers"]
    dashboards_dir = mounts[provider["options"]["path"]]
    assert dashboards_dir == DASHBOARD_FILE.parent and DASHBOARD_FILE.is_file()
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/" + DASHBOARD_FILE.name

    board = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    uids = {p["datasource"]["uid"] for p in board["panels"]}
    uids |= {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}


def test_docs_deploy_lists_every_variable_with_its_default() -> None:
    """docs/deploy.md's table of variables matches the ``${VAR:-default}`` references."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    in_compose = {m["name"]: m["default"] for m in _DEFAULTED.finditer(text)}
    rows = re.findall(
        r"^\| `([A-Z_]+)` \| ([^|]*) \|", DEPLOY_DOC.read_text(encoding="utf-8"), re.M
    )
    documented = {
        name: "" if default.strip() == "(empty)" else default.strip() for name, default in rows
    }
    assert documented == in_compose
