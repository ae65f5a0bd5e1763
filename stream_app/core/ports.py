"""The path's ports: the records it is given and the outputs it queues on, as protocols.

The path (:mod:`stream_app.core.pipeline`) reads only these parts of a Kafka record and writes
only through these two calls, so it runs without a broker: the serve loop hands it aiokafka's
records and an :class:`~stream_app.kafka.emit.Emitter`, and tests hand it plain objects.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Forwarded", "Outputs", "Record"]


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
