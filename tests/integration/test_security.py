"""Security basics on a real broker: SASL credentials from settings reach every Kafka client of the
worker (Faust's and ours), no secret shows in the log or over HTTP, the web server binds loopback.

The broker here is the test's own: a second listener speaks SASL_PLAINTEXT (PLAIN) and the worker
is given only that address, so any client that did not get the credentials could not connect.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.tools.broker import LocalKafka, free_port, free_ports
from stream_app.tools.settings import BrokerSettings
from tests.integration.conftest import Names
from tests.integration.support import (
    faust_command,
    predictions_by_id,
    produce,
    start_worker,
    wait_consumed,
)
from tests.integration.test_serve import good_event

USER = "svc"
PASSWORD = "pw-7d1c9a3e55"
TOKEN = "tk-2b8f0e4a61"
EVENTS = 300


@pytest.fixture
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker with a PLAINTEXT listener (for the test's clients) and a SASL one (the worker's)."""
    port, controller_port, sasl_port = free_ports(3)
    broker = LocalKafka(
        BrokerSettings(controller_port=controller_port),
        tmp_path_factory.mktemp("kafka-sasl"),
        port=port,
        sasl_port=sasl_port,
        sasl_users={USER: PASSWORD},
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net spells them) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


async def test_sasl_credentials_reach_every_client_and_no_secret_leaks(
    sasl_kafka: LocalKafka, names: Names, tmp_path: Path
) -> None:
    config = (
        names.toml(4)
        + f'[security]\nprotocol = "SASL_PLAINTEXT"\nsasl_username = "{USER}"\n'
        + "[web]\n"  # the host is left at its default
    )
    worker = start_worker(
        faust_command(),
        app_id=names.app_id,
        bootstrap=f"127.0.0.1:{sasl_kafka.sasl_port}",
        web_port=free_port(),
        data_dir=tmp_path / "worker",
        config=config,
        topics=names.topics,
        env={"STREAM_APP_SECURITY__SASL_PASSWORD": PASSWORD, "STREAM_APP_WEB__TOKEN": TOKEN},
    )
    try:
        health = worker.wait_healthy(timeout=90)
        assert health["partitions"] == [0, 1, 2, 3]
        rng = random.Random(5)
        events = [(f"e-{i}".encode(), good_event(i, rng)) for i in range(EVENTS)]
        await produce(sasl_kafka.bootstrap, names.topics["features"], events)
        group = f"{names.app_id}-serve"
        await wait_consumed(sasl_kafka.bootstrap, group, names.topics["features"])
        served = await predictions_by_id(sasl_kafka.bootstrap, names.topics["predictions"])
        assert set(served) == {f"e-{i}" for i in range(EVENTS)}

        assert listening_addresses(worker.web_port) == {"0100007F"}  # 127.0.0.1 only
        pages = [worker.http(path)[1] for path in ("/health", "/metrics", "/models")]
        for text in [worker.log_text().encode(), *pages]:
            assert PASSWORD.encode() not in text and TOKEN.encode() not in text
        assert worker.http("/models/unpin", method="POST")[0] == 401  # the token is in force
    finally:
        worker.stop()
    assert PASSWORD not in worker.log_text()
