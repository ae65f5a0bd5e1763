"""The integration tier's fixtures: one real Kafka broker per session, one fresh worker per test.

The broker is the project's own :class:`~stream_app.tools.broker.LocalKafka` (KRaft, 127.0.0.1),
unless ``STREAM_APP_BROKER`` names one already running. Each test gets its own app id (so its own
consumer groups) and its own topics, so no test waits on another's group or reads another's
messages.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream_app.errors import BrokerError
from stream_app.settings import ENV_PREFIX
from stream_app.tools.broker import LocalKafka, free_port, free_ports
from stream_app.tools.settings import BrokerSettings, load_tool_settings
from tests.integration.support import WorkerProcess, faust_command, start_worker

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Kafka:
    """The broker under test, as clients address it."""

    bootstrap: str
    local: LocalKafka | None


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kafka]:
    url = os.environ.get("STREAM_APP_BROKER")
    if url:
        yield Kafka(url.removeprefix("kafka://"), None)
        return
    broker = start_broker(tmp_path_factory)
    try:
        yield Kafka(broker.bootstrap, broker)
    finally:
        broker.stop()


def broker_settings(controller_port: int) -> BrokerSettings:
    """The local broker's settings: defaults, then ``STREAM_APP_BROKER__*`` from the environment.

    Only the ``[broker]`` variables are read, so that ``STREAM_APP_BROKER__KAFKA_VERSION=4.x`` runs
    the suite on the other Kafka line while no other variable of the caller reaches the tests.
    """
    prefix = f"{ENV_PREFIX}BROKER__"
    env = {name: value for name, value in os.environ.items() if name.startswith(prefix)}
    return dataclasses.replace(
        load_tool_settings(env, files=[]).broker, controller_port=controller_port
    )


def start_broker(tmp_path_factory: pytest.TempPathFactory) -> LocalKafka:
    """Start the session's broker once: a failed start fails the session, so no flake hides."""
    port, controller_port = free_ports(2)
    broker = LocalKafka(
        broker_settings(controller_port),
        tmp_path_factory.mktemp("kafka"),
        port=port,
        partitions=4,
    )
    try:
        broker.start()
    except BrokerError:
        broker.kill()
        raise
    return broker


@dataclass(frozen=True)
class Names:
    """A test's own app id and topic names."""

    app_id: str
    topics: dict[str, str]

    def toml(self, partitions: int, extra: str = "", serve: str = "") -> str:
        """The worker's TOML: these topics, a quick commit, ``serve`` lines, then ``extra``."""
        lines = ["[topics]", f"partitions = {partitions}"]
        lines += [f'{key} = "{name}"' for key, name in self.topics.items()]
        lines += ["[serve]", "commit_interval_s = 0.2", serve]
        return "\n".join(lines) + "\n" + extra


@pytest.fixture
def names() -> Names:
    return make_names()


def make_names(prefix: str = "t") -> Names:
    """A fresh app id and its own topics (also used by the bench/ scripts)."""
    app_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    keys = [
        "features",
        "labels",
        "predictions",
        "predictions_shadow",
        "dead_letters",
        "model_events",
    ]
    return Names(app_id, {key: f"{app_id}-{key.replace('_', '-')}" for key in keys})


WorkerFactory = Callable[..., WorkerProcess]

FAILED_LOG_CHARS = 6000  # how much of each worker's log a failed test prints


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item, so that fixtures can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def worker_factory(
    kafka: Kafka, names: Names, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[WorkerFactory]:
    """Start workers for this test (same app id: one consumer group); stop them all afterwards."""
    started: list[WorkerProcess] = []

    def start(
        command: list[str] | None = None,
        *,
        partitions: int = 4,
        extra_config: str = "",
        serve: str = "",
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        worker = start_worker(
            command or faust_command(),
            app_id=names.app_id,
            bootstrap=kafka.bootstrap,
            web_port=free_port(),
            data_dir=tmp_path / f"worker-{len(started)}",
            config=names.toml(partitions, extra_config, serve),
            topics=names.topics,
            env=env,
        )
        started.append(worker)
        return worker

    yield start
    call = getattr(request.node, "report_call", None)
    for worker in started:  # all at once: each clean stop takes seconds
        worker.ask_to_stop()
    for number, worker in enumerate(started):
        worker.stop()
        if call is not None and call.failed:  # the workers' own account, beside the failure
            print(f"--- worker {number} log, last {FAILED_LOG_CHARS} characters ---")
            print(worker.log_text()[-FAILED_LOG_CHARS:])
