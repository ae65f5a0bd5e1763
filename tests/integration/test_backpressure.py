"""Backpressure: a producer faster than the worker. Lag builds and is reported, nothing is dropped.

``bench/backpressure.py`` runs the long version and prints lag, RSS and rates; this one asserts
behaviour: ``stream_app_consumer_lag`` is nonzero while the worker is behind and falls back to 0
once it caught up, every event is answered, no dead letter, no ERROR in the log.
"""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.load import flood
from tests.integration.support import end_offsets, predictions_by_id, wait_for

EVENTS = 60_000


async def test_a_faster_producer_builds_reported_lag_and_loses_nothing(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(serve="lag_interval_s = 0.2")
    worker.wait_healthy()
    observed = await flood(worker, kafka.bootstrap, EVENTS)

    assert 0 < observed.send_seconds < observed.seconds  # the producer finished first: faster
    assert max(observed.lag) > 0  # the lag was reported while the worker was behind

    async def caught_up() -> Any:
        lags = [v for k, v in worker.metrics().items() if k.startswith("stream_app_consumer_lag")]
        return lags and not any(lags)

    await wait_for(caught_up, what="stream_app_consumer_lag to fall back to 0")
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert set(served) == {f"e-{i}" for i in range(EVENTS)}
    assert sum((await end_offsets(kafka.bootstrap, names.topics["dead_letters"])).values()) == 0
    assert worker.proc.poll() is None
    assert observed.errors == []
