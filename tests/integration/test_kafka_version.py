"""The session's broker runs the Kafka version the suite was asked for.

CI runs a few files a second time with ``STREAM_APP_BROKER__KAFKA_VERSION`` naming the other Kafka
line (``make test``); this test makes sure that run really reached a broker of that line.
"""

from __future__ import annotations

import os

import pytest

from stream_app.tools.settings import BrokerSettings
from tests.integration.conftest import Kafka


def test_the_session_broker_runs_the_requested_kafka_version(kafka: Kafka) -> None:
    if kafka.local is None:
        pytest.skip("STREAM_APP_BROKER names a broker this session did not start")
    wanted = os.environ.get("STREAM_APP_BROKER__KAFKA_VERSION") or BrokerSettings().kafka_version
    log = kafka.local.log_file.read_text(errors="replace")
    assert f"Kafka version: {wanted} " in log, f"the broker's log names another version: {wanted}"
