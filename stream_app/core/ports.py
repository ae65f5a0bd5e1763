"""The path's ports: the records it is given and the outputs it queues on, as protocols.

The path (:mod:`stream_app.core.pipeline`) reads only these parts of a Kafka record and writes
only through these two calls, so it runs without a broker: the serve loop hands it aiokafka's
records and an :class:`~stream_app.kafka.emit.Emitter`, and tests hand it plain objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from stream_app.core.learn import Learner

__all__ = ["Forwarded", "KeyStore", "Outputs", "Record"]


class Record(Protocol):
    """The parts of a Kafka record the path reads (aiokafka's ConsumerRecord has them)."""

    @property
    def topic(self) -> str:
        """The topic it was read from."""

    @property
    def partition(self) -> int:
        """Its partition."""

    @property
    def offset(self) -> int:
        """Its offset."""

    @property
    def key(self) -> bytes | None:
        """Its key, as produced."""

    @property
    def value(self) -> bytes | None:
        """Its value, as produced."""


class Forwarded(Record, Protocol):
    """A record with its Kafka timestamp: forwarded examples, and what a restore re-reads."""

    @property
    def timestamp(self) -> int:
        """Its Kafka timestamp, milliseconds since the epoch (when the follower sent it)."""


class Outputs(Protocol):
    """Where the path queues what it writes (the :class:`~stream_app.kafka.emit.Emitter`)."""

    def to_partition(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        """Queue a message for an explicit partition."""

    def keyed(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue a message for the partition its key hashes to."""


class KeyStore(Protocol):
    """Where keyed models' versions live (the worker's compacted topic, partitioned like features).

    ``save`` takes effect at once for ``load`` (a key evicted and loaded again in one batch gets
    what it had) and is made durable with the batch's outputs, before its inputs are committed.
    """

    def load(self, key: str) -> Learner | None:
        """Return ``key``'s newest stored learner that loads, or None for a key never stored."""

    def save(self, key: str, partition: int, learner: Learner, reason: str, now: float) -> None:
        """Store ``learner`` as ``key``'s next version on its home ``partition``."""

    def owns(self, partition: int) -> bool:
        """Tell whether this worker owns ``partition``'s keys (it serves that partition)."""
