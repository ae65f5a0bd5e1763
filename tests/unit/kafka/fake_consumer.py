"""A consumer over logs in memory, with the calls :func:`stream_app.kafka.read.read_to_end` makes.

Like aiokafka's, it fetches whole batches (possibly past an end the caller chose), keeps a
position per assigned partition, and waits up to ``timeout_ms`` for records that are not there.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError


class Rec(NamedTuple):
    """A consumer record: what the readers use of aiokafka's."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


class FakeConsumer:
    """Logs by partition; ``batch`` records per fetch; ``failures`` fetches that raise first."""

    def __init__(self, batch: int = 3, failures: int = 0) -> None:
        self.logs: dict[TopicPartition, list[Rec]] = {}
        self.start: dict[TopicPartition, int] = {}
        """Each log's first offset (compaction or retention removed what came before)."""
        self.batch = batch
        self.failures = failures
        self.positions: dict[TopicPartition, int] = {}
        self.stalled: set[TopicPartition] = set()
        """Partitions whose fetches never bring anything (a broker that does not answer)."""
        self._arrived = asyncio.Event()

    def append(self, tp: TopicPartition, key: bytes | None, value: bytes | None) -> Rec:
        log = self.logs.setdefault(tp, [])
        offset = self.start.get(tp, 0) + len(log)
        record = Rec(tp.topic, tp.partition, offset, key, value, timestamp=1000 * offset)
        log.append(record)
        self._arrived.set()
        return record

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {tp: self.positions.get(tp, self._end(tp)) for tp in tps}

    def _end(self, tp: TopicPartition) -> int:
        return self.start.get(tp, 0) + len(self.logs.get(tp, []))

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._end(tp) for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.start.get(tp, 0) for tp in tps}

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = self.start.get(tp, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict[Any, list[Rec]]:
        if self.failures:
            self.failures -= 1
            raise KafkaError("the broker went away")
        found = self._fetch(tps or tuple(self.positions))
        if not found:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}
            found = self._fetch(tps or tuple(self.positions))
        return found

    def _fetch(self, tps: tuple[TopicPartition, ...]) -> dict[TopicPartition, list[Rec]]:
        found = {}
        for tp in tps:
            if tp in self.stalled:
                continue
            first = self.positions[tp] - self.start.get(tp, 0)
            records = self.logs.get(tp, [])[first : first + self.batch]
            if records:
                found[tp] = records
                self.positions[tp] = records[-1].offset + 1
        return found
