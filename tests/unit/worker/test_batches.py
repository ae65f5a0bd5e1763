"""Serving batches without a broker: the next batch is served while the last one is in flight."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import orjson
from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder

from stream_app.core.learning_log import decode_log_entries
from stream_app.kafka.emit import Emitter
from tests.unit.kafka.fake_consumer import Rec
from tests.unit.worker.test_serve import Loop


class Acked(NamedTuple):
    offset: int


class FakeProducer:
    """Batches as aiokafka builds them; each send noted, acknowledged (or refused) at once."""

    def __init__(self, steps: list[str], refuse: int = 0) -> None:
        self.steps = steps
        self.refuse = refuse
        """Refuse the outputs of this many flushes (the first ones)."""
        self.offsets: dict[tuple[str, int], int] = {}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1 << 20, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.steps.append(f"send {topic}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.refuse:
            future.set_exception(OSError("refused"))
        else:
            first = self.offsets.get((topic, partition), 0)
            self.offsets[topic, partition] = first + batch.record_count()
            future.set_result(Acked(first))
        return future

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        return await self.send_batch(BatchBuilder(1 << 20, 0), topic, partition=0)


class Fetches:
    """A consumer's next batches, handed out by ``getmany``; seeks noted."""

    def __init__(self, *batches: dict[TopicPartition, list[Rec]]) -> None:
        self.batches = list(batches)
        self.seeks: dict[TopicPartition, int] = {}
        self.polls = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Rec]]:
        self.polls += 1
        return self.batches.pop(0) if self.batches else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset


def wired(fetches: Fetches, refuse: int = 0) -> tuple[Loop, list[str], FakeProducer]:
    w = Loop(serve={"retry_backoff_s": 0.0})
    w.role.assign(writer=True)
    steps: list[str] = []
    producer = FakeProducer(steps, refuse)
    w.loop._emitter = Emitter(producer, tracked=w.settings.learning_log_topic)  # type: ignore[arg-type]
    w.loop._consumer = fetches  # type: ignore[assignment]
    w.pipeline.output_partitions = 1
    serve = w.pipeline.features

    def features(records: Any, received: float, out: Any) -> None:
        steps.append(f"serve {records[0].offset}")
        serve(records, received, out)

    w.pipeline.features = features  # type: ignore[method-assign]
    return w, steps, producer


def batch(tp: TopicPartition, start: int, n: int = 3) -> dict[TopicPartition, list[Rec]]:
    return {
        tp: [
            Rec(
                tp.topic,
                tp.partition,
                i,
                b"k",
                orjson.dumps({"id": f"e{i}", "features": {"x": i}, "label": i % 2 == 0}),
            )
            for i in range(start, start + n)
        ]
    }


async def test_the_next_batch_is_served_before_the_last_one_is_waited_for() -> None:
    w, steps, _ = wired(Fetches())
    tp = TopicPartition(w.settings.topics.features, 0)
    w.loop._consumer.batches.append(batch(tp, 3))  # type: ignore[union-attr]
    await w.loop._serve_batches(batch(tp, 0))
    predictions, log = (
        f"send {w.settings.topics.predictions}",
        f"send {w.settings.learning_log_topic}",
    )
    assert steps == ["serve 0", predictions, log, "serve 3", predictions, log]
    assert w.loop._acked == {tp: 6}
    assert w.pipeline.learner.learned_through == 1  # two learning-log messages, both acknowledged
    assert w.loop._emitter is not None and w.loop._emitter.settled


async def test_refused_outputs_read_both_batches_again_and_keep_every_log_line_in_order() -> None:
    fetches = Fetches()
    w, steps, producer = wired(fetches, refuse=1)
    tp, other = (TopicPartition(w.settings.topics.features, p) for p in (0, 1))
    fetches.batches.append({**batch(tp, 3), **batch(other, 10)})
    await w.loop._serve_batches(batch(tp, 0))
    assert fetches.seeks == {tp: 0, other: 10} and w.loop._acked == {}
    assert steps[-1] == "serve 10"  # the second batch was served, and its outputs never sent
    emitter = w.loop._emitter
    assert emitter is not None and not emitter.settled
    producer.refuse = 0
    await emitter.flush()
    sent = [value for _, _, _, messages in emitter._sent for _, value in messages]
    lines = [e.event_id for value in sent for e in decode_log_entries(value)]
    assert lines == [f"e{i}" for i in (0, 1, 2, 3, 4, 5, 10, 11, 12)]


async def test_a_batch_with_commands_is_durable_before_anything_else_is_fetched() -> None:
    fetches = Fetches()
    w, _, _ = wired(fetches)
    tp = TopicPartition(w.settings.topics.features, 0)
    commands = TopicPartition(w.settings.commands_topic, 0)
    ran: list[bytes | None] = []

    async def command(value: bytes | None) -> None:
        ran.append(value)

    w.loop.keeper.command = command  # type: ignore[method-assign]
    fetches.batches.append(batch(tp, 3))
    await w.loop._serve_batches(
        {**batch(tp, 0), commands: [Rec(commands.topic, 0, 0, None, b"{}")]}
    )
    assert ran == [b"{}"] and fetches.polls == 0 and w.loop._acked[tp] == 3
