"""Horizontal scaling: partitions are the unit of parallelism; scaling out and in loses nothing.

A producer writes all the time while a second worker joins the group and later leaves it. Every
event must get a prediction (at-least-once: an event in flight when its partition moves may be
served twice, and the test reports how many were). The workers run in batch inference mode, so
this is also the batch path's end-to-end test on the real broker.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    produce,
    read_all,
    wait_consumed,
    wait_for,
)
from tests.integration.test_learning import feature_messages, sea


def partitions(worker: WorkerProcess) -> list[int]:
    """The features partitions a worker serves now; none while it is not up (one quick request)."""
    try:
        status, body = worker.http("/health")
    except OSError:
        return []
    return list(orjson.loads(body)["partitions"]) if status == 200 else []


BATCH_MODE = '[inference]\nmode = "batch"\nmax_batch = 200\nmany_min_rows = 50\n'


async def test_scaling_out_and_in_under_load_serves_every_event(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    messages = feature_messages(sea(60_000, seed=61), inline=True)  # more than the test needs
    a = worker_factory(partitions=4, extra_config=BATCH_MODE)
    a.wait_healthy()
    sent = 0
    done = asyncio.Event()

    async def keep_producing() -> None:
        """Write events in small bursts, a steady stream the rebalances land in, until told."""
        nonlocal sent
        while not done.is_set() and sent < len(messages):
            burst = messages[sent : sent + 50]
            await produce(kafka.bootstrap, names.topics["features"], burst)
            sent += len(burst)
            await asyncio.sleep(0.05)  # the offered rate, not a wait for a condition

    producer = asyncio.create_task(keep_producing())

    async def started() -> object:
        return sent >= 500

    await wait_for(started, what="the first events to be sent")
    b = worker_factory(partitions=4, extra_config=BATCH_MODE)

    async def split() -> object:
        ha, hb = partitions(a), partitions(b)
        return sorted(ha + hb) == [0, 1, 2, 3] and bool(ha) and bool(hb)

    await wait_for(split, timeout=90, what="the partitions to be split between two workers")

    async def both_served() -> object:
        served = [w.metrics().get("stream_app_predictions_total", 0) for w in (a, b)]
        return all(n > 0 for n in served)

    await wait_for(both_served, what="both workers to serve a share")
    assert b.stop() == 0  # scale in: a clean leave hands the partitions back

    async def a_has_all() -> object:
        return sorted(partitions(a)) == [0, 1, 2, 3]

    await wait_for(a_has_all, what="the remaining worker to take every partition")
    after_scale_in = sent + 500

    async def more_after_scale_in() -> object:
        return sent >= after_scale_in

    await wait_for(more_after_scale_in, what="events after the scale-in")
    done.set()
    await producer
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    records = await read_all(kafka.bootstrap, names.topics["predictions"])
    served = Counter(orjson.loads(r.value)["id"] for r in records)
    expected = {f"e-{i}" for i in range(sent)}
    missing = expected - served.keys()
    assert not missing, f"{len(missing)} events were never served, e.g. {sorted(missing)[:5]}"
    duplicates = sum(n - 1 for n in served.values())
    print(f"\n{len(expected)} events, {duplicates} served twice across two rebalances")
    assert a.proc.poll() is None
