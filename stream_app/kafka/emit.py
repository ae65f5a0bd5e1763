"""The emit step: hand outputs to Kafka in per-partition batches and report when they are durable.

Outputs of one input batch are collected synchronously while the batch is served (no await per
event), then sent with one ``send_batch`` per output partition: this removes most of the per-message
client overhead that a ``send()`` per event pays. :meth:`Emitter.flush` returns the delivery
futures; the serve loop commits input offsets only after they resolve, so an output is never lost
behind a committed input (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from stream_app.errors import EmitError

__all__ = ["Emitter"]


class Emitter:
    """Collect outputs for one input batch; :meth:`flush` sends them, returns delivery futures."""

    def __init__(self, producer: AIOKafkaProducer, tracked: str | None = None) -> None:
        self._producer = producer
        self._open: dict[tuple[str, int], Any] = {}
        self._full: list[tuple[str, int, Any]] = []
        self._keyed: list[tuple[str, bytes | None, bytes]] = []
        self.tracked = tracked
        """A topic whose offsets the caller needs and whose messages may never be dropped (the
        learning log): see :meth:`acked_through` and :meth:`discard`."""
        self._unsent: dict[int, list[tuple[bytes | None, bytes]]] = {}
        self._sent: list[tuple[asyncio.Future[Any], int, int, list[tuple[bytes | None, bytes]]]]
        self._sent = []
        """Tracked batches sent since the last check: future, partition, count, messages."""

    @property
    def settled(self) -> bool:
        """True when no tracked message waits to be sent again (after a failed flush)."""
        return not any(self._unsent.values())

    @property
    def pending(self) -> int:
        """How many batches and keyed messages wait for :meth:`flush`."""
        return len(self._open) + len(self._full) + len(self._keyed)

    def to_partition(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        """Queue ``value`` for an explicit partition (keeps the input partition's order)."""
        if topic == self.tracked:
            self._unsent.setdefault(partition, []).append((key, value))
        batch = self._open.get((topic, partition))
        # The common case (one call per prediction): append to the partition's open batch.
        # A first message, or one the full batch refused (it closed itself), takes _append.
        if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
            self._append(topic, partition, key, value)

    def tombstone(self, topic: str, partition: int, key: bytes) -> None:
        """Queue a deletion of ``key`` (a message without a value) on a compacted topic."""
        self._append(topic, partition, key, None)

    def _append(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        """Add one message to its partition's open batch, parking the batch when it is full."""
        slot = (topic, partition)
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            # The batch is full: park it for flush and start another one.
            batch.close()
            self._full.append((topic, partition, batch))
            batch = self._open[slot] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                size = len(value or b"")
                raise EmitError(f"a {size}-byte message does not fit in an empty batch")

    def keyed(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue ``value`` for the partition Kafka's default partitioner picks from ``key``."""
        self._keyed.append((topic, key, value))

    async def flush(self) -> Sequence[asyncio.Future[Any]]:
        """Send everything queued; return futures that resolve once Kafka has acknowledged it."""
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), batch in self._open.items():
            batch.close()
            self._full.append((topic, partition, batch))
        self._open.clear()
        for topic, partition, batch in self._full:
            future = await self._producer.send_batch(batch, topic, partition=partition)
            futures.append(future)
            if topic == self.tracked:
                queued = self._unsent[partition]
                count = batch.record_count()
                self._sent.append((future, partition, count, queued[:count]))
                del queued[:count]
        self._full.clear()
        for topic, key, value in self._keyed:
            futures.append(await self._producer.send(topic, value, key=key))
        self._keyed.clear()
        return futures

    def acked_through(self) -> int | None:
        """Return the offset of the last tracked message acknowledged since the last call, or None.

        Call it after the futures of :meth:`flush` resolved: a batch's acknowledgement carries
        its first offset, and its records follow one another.
        """
        last = None
        for future, _, count, _ in self._sent:
            if _acknowledged(future):
                last = max(last if last is not None else -1, future.result().offset + count - 1)
        self._sent.clear()
        return last

    def discard(self) -> None:
        """Drop what a failed flush left (the input will be read again), except tracked messages.

        A tracked message whose batch Kafka did not acknowledge is queued again, in order: the
        learner has learned what the learning log says, and the log may not lose a line of it.
        """
        again = [
            (partition, message)
            for future, partition, _, messages in self._sent
            if not _acknowledged(future)
            for message in messages
        ]
        unsent = [(p, m) for p, queued in self._unsent.items() for m in queued]
        self._open.clear()
        self._full.clear()
        self._keyed.clear()
        self._sent.clear()
        self._unsent.clear()
        assert self.tracked is not None or not (again or unsent)
        for partition, (key, value) in [*again, *unsent]:
            self.to_partition(str(self.tracked), partition, key, value)


def _acknowledged(future: asyncio.Future[Any]) -> bool:
    """Whether Kafka acknowledged the batch behind ``future``."""
    return future.done() and not future.cancelled() and future.exception() is None
