"""The real Prometheus scrapes a real worker, and every query of the Grafana dashboard returns data.

Prometheus runs from Debian's ``prometheus`` package on loopback with the shipped
``deploy/prometheus/prometheus.yml`` and ``alerts.yml``, copied side by side into a temporary
directory; only the scrape target changes (Docker's DNS name ``worker`` becomes the test worker's
address). The demo's stream drives the worker: labels inline and late, a concept change that the
drift detector catches, malformed messages and labels for events that never were. Then each
dashboard query is evaluated through Prometheus's HTTP API, ``$__rate_interval`` replaced by a
fixed window, and must return a number: a panel that would show nothing fails the test by name.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream_app.tools.broker import free_port
from stream_app.tools.settings import DemoSettings
from stream_app.tools.synth import DemoStream
from tests.deployment import (
    ALERTS_FILE,
    PROMETHEUS_FILE,
    alert_rules,
    dashboard,
    exprs,
    panels,
    prometheus_tool,
    read_yaml,
)
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    POLL_S,
    produce,
    stream_app_command,
    wait_consumed,
    wait_for,
)

RATE_INTERVAL = "1m"
"""What ``$__rate_interval`` becomes: the traffic of this test lies inside this window."""
SCRAPED_S = 60.0
"""Most time to wait for the scrapes that carry the traffic (scrape_interval is 5 s)."""
EVENTS = 3000
"""Demo events sent: the concept changes at event 1,000, so drift is detected."""
WORKER_CONFIG = (
    '[model]\nchallenger_factory = "stream_app.models:hoeffding_tree"\n'  # a challenger's quality
    "[learn]\nearly_label_ttl_s = 1.0\n"  # a label for an event never served is refused soon
)


@dataclass
class Prometheus:
    """A Prometheus server on 127.0.0.1 and its HTTP API."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def get(self, path: str, **params: str) -> Any:
        """GET ``path`` of the HTTP API; return the ``data`` of a successful answer."""
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = orjson.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) of ``expr`` evaluated now."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def scrape_config(worker_port: int) -> dict[str, Any]:
    """The shipped prometheus.yml with its one job pointed at the test worker, nothing else."""
    config = read_yaml(PROMETHEUS_FILE)
    (job,) = config["scrape_configs"]
    del job["dns_sd_configs"]  # Docker's DNS name of the worker replicas
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    return dict(config)


@pytest.fixture
def prometheus_at(tmp_path: Path) -> Iterator[Any]:
    """Start Prometheus scraping the worker on the given web port; stop it afterwards."""
    binary = prometheus_tool("prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(worker_port: int) -> Prometheus:
        home = tmp_path / "prometheus"
        home.mkdir()
        config = home / PROMETHEUS_FILE.name
        config.write_text(yaml.safe_dump(scrape_config(worker_port)), encoding="utf-8")
        shutil.copy(ALERTS_FILE, home / ALERTS_FILE.name)  # rule_files is relative to the config
        port = free_port()
        log_path = home / "prometheus.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={home / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        server = Prometheus(port, proc, log_path)
        wait_ready(server)
        return server

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(server: Prometheus, timeout: float = 30.0) -> None:
    """Wait until Prometheus answers ``/-/ready``, or fail with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{server.port}/-/ready", timeout=2
            ) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet: poll again
        time.sleep(POLL_S)
    raise AssertionError(f"prometheus not ready in {timeout}s:\n{server.log_text()[-3000:]}")


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard query, with ``$__rate_interval`` made fixed."""
    return [
        (panel["title"], expr.replace("$__rate_interval", RATE_INTERVAL))
        for panel in panels(dashboard())
        for expr in exprs(panel)
    ]


def unanswered(server: Prometheus, queries: list[tuple[str, str]]) -> list[str]:
    """The queries whose answer is empty or not a number, each named by its panel."""
    missing = []
    for title, expr in queries:
        values = [float(sample["value"][1]) for sample in server.query(expr)]
        if not values or not all(math.isfinite(v) for v in values):
            missing.append(f"{title}: {expr} -> {values}")
    return missing


def demo_messages() -> dict[str, list[tuple[bytes | None, bytes]]]:
    """The demo's stream by topic: events (labels inline or late), bad messages, ghost labels."""
    stream = DemoStream(DemoSettings(change_at=1000, change_every=0, label_delay=50))
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {"features": [], "labels": []}
    for message in stream:
        if message.event >= EVENTS:
            break
        by_topic[message.topic].append((message.key, message.value))
    for message in stream.late_labels():
        by_topic[message.topic].append((message.key, message.value))
    return by_topic


def test_the_test_config_differs_from_the_shipped_one_only_in_the_target() -> None:
    shipped = read_yaml(PROMETHEUS_FILE)
    adapted = scrape_config(6066)
    assert adapted["scrape_configs"][0].pop("static_configs") == [{"targets": ["127.0.0.1:6066"]}]
    assert shipped["scrape_configs"][0].pop("dns_sd_configs")
    assert adapted == shipped


async def test_prometheus_answers_every_dashboard_query_from_a_real_worker(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, prometheus_at: Any
) -> None:
    worker = worker_factory(stream_app_command(), extra_config=WORKER_CONFIG)
    worker.wait_healthy()
    server: Prometheus = prometheus_at(worker.web_port)

    async def scraped() -> bool:
        return bool(server.query('up{job="stream_app"} == 1'))

    await wait_for(scraped, timeout=SCRAPED_S, what=f"a first scrape:\n{server.log_text()}")

    messages = demo_messages()
    await produce(kafka.bootstrap, names.topics["features"], messages["features"])
    await produce(kafka.bootstrap, names.topics["labels"], messages["labels"])
    group = f"{names.app_id}-serve"
    await wait_consumed(kafka.bootstrap, group, names.topics["features"])
    await wait_consumed(kafka.bootstrap, group, names.topics["labels"])

    # The traffic reached Prometheus: drifts, dead letters, and labels refused after their TTL.
    for expr in (
        "sum(stream_app_drift_detected_total) > 0",
        'sum(stream_app_dead_letters_total{reason="invalid_json"}) > 0',
        'sum(stream_app_labels_rejected_total{reason="label_without_event"}) > 0',
        "sum(stream_app_labels_learned_total) > 1000",
    ):
        await wait_for(lambda e=expr: _answers(server, e), timeout=SCRAPED_S, what=expr)

    queries = dashboard_queries()
    deadline = time.monotonic() + SCRAPED_S
    while missing := unanswered(server, queries):  # a rate needs two scrapes of a new series
        if time.monotonic() > deadline:
            pytest.fail("panels without data:\n" + "\n".join(missing))
        await asyncio.sleep(POLL_S)

    # Prometheus evaluated every alerting rule against the real series, without an error.
    async def rules_evaluated() -> list[dict[str, Any]]:
        rules = [r for g in server.get("/api/v1/rules")["groups"] for r in g["rules"]]
        done = all(not r["lastEvaluation"].startswith("0001-") for r in rules)
        return rules if done else []

    rules = await wait_for(rules_evaluated, timeout=SCRAPED_S, what="every rule evaluated")
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in alert_rules())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    healthy = server.query('stream_app_healthy{job="stream_app"}')
    assert [float(s["value"][1]) for s in healthy] == [1.0]


async def _answers(server: Prometheus, expr: str) -> bool:
    """Tell whether ``expr`` now returns at least one sample."""
    return bool(server.query(expr))
