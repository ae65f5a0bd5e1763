"""The serve loop's Kafka clients, as settings make them: one producer, one consumer in a group.

Pure functions from settings to the keyword arguments of aiokafka's producer and consumer, so
what the loop asks of Kafka (acks, idempotence, batching, fetch sizes, the assignor, session
timeouts) can be read and tested in one place without a broker.

>>> from stream_app.settings import Settings
>>> producer_config(Settings())["acks"]
-1
>>> consumer_config(Settings(), "stream-app-serve")["enable_auto_commit"]
False
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from stream_app.kafka.security import client_kwargs
from stream_app.settings import Settings

if TYPE_CHECKING:
    from stream_app.worker.serve import ServeLoop

__all__ = ["Rebalance", "consumer_config", "producer_config"]

_ALL: Final = -1
"""aiokafka's ``acks`` for every in-sync replica (``serve.acks = "all"``)."""
_MS: Final = 1000
_HEARTBEATS_PER_SESSION: Final = 3
"""Heartbeats sent per session timeout (Kafka's advice: at most a third of it)."""


def producer_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the serve loop's producer: acks, idempotence and batching."""
    s = settings
    return {
        **client_kwargs(s),
        "client_id": f"{s.app.id}-serve",
        "acks": _ALL if s.serve.acks == "all" else int(s.serve.acks),
        "enable_idempotence": s.serve.idempotence,
        "linger_ms": s.serve.linger_ms,
        "max_batch_size": s.serve.max_batch_bytes,
    }


def consumer_config(settings: Settings, group_id: str, assignor: Any = None) -> dict[str, Any]:
    """Keyword arguments of the serve loop's consumer in ``group_id``.

    Offsets are committed by the loop (never automatically); the range assignor (or ``assignor``,
    which assigns as it does: :class:`~stream_app.worker.owners.OwnersAssignor`) puts partition
    *p* of every subscribed topic on one worker; in batch inference a fetch waits at least as
    long as a micro-batch may (``inference.max_wait_ms``).
    """
    s = settings
    session_ms = int(s.app.session_timeout_s * _MS)
    return {
        **client_kwargs(s),
        "client_id": f"{s.app.id}-serve",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": s.serve.auto_offset_reset,
        "fetch_max_wait_ms": (
            max(s.serve.fetch_max_wait_ms, s.inference.max_wait_ms)
            if s.inference.mode == "batch"
            else s.serve.fetch_max_wait_ms
        ),
        "max_partition_fetch_bytes": s.serve.max_partition_fetch_bytes,
        "partition_assignment_strategy": (assignor or RangePartitionAssignor,),
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": int(s.app.session_timeout_s * _MS / _HEARTBEATS_PER_SESSION),
    }


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forward aiokafka's rebalance callbacks to the serve loop (under its lock, there)."""

    def __init__(self, loop: ServeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Before a rebalance takes ``revoked`` away: let the loop commit and hand over."""
        await self._loop._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """After a rebalance gave ``assigned``: let the loop restore and take them over."""
        await self._loop._on_assigned(assigned)
