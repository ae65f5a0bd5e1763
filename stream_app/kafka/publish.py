"""Send one message now and wait for Kafka's acknowledgement: the worker's publisher.

Outside the batched path of :mod:`stream_app.kafka.emit`, the worker sends a few single messages
that must be durable before it goes on: model events (checkpoints, operations' answers, retrains),
dead letters of a learning-log replay, and what the HTTP API sends. They all go through one
:class:`Publisher`, made before the Kafka producer exists and handed to whoever publishes at
construction; the serve loop attaches its producer when it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_app.errors import StreamAppError

__all__ = ["Publish", "Publisher", "all_taken"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bytes], Awaitable[None]]
"""What publishing is to its users: ``await publish(topic, key, value)`` (a test keeps a list)."""


class Publisher:
    """Sends single messages through the producer attached to it, each acknowledged."""

    def __init__(self) -> None:
        self._producer: AIOKafkaProducer | None = None

    def attach(self, producer: AIOKafkaProducer) -> None:
        """Send through ``producer`` from now on (the serve loop's, once it has started)."""
        self._producer = producer

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        """Send one message and wait for Kafka's acknowledgement (a :data:`Publish`)."""
        await self.send(topic, key, value)

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        """Send one message, to ``partition`` or by its key; return its partition and offset."""
        if self._producer is None:
            raise StreamAppError("the worker's producer has not started yet")
        meta = await self._producer.send_and_wait(topic, value, key=key, partition=partition)
        return int(meta.partition), int(meta.offset)


async def all_taken(sends: Iterable[Awaitable[Any]], what: str) -> bool:
    """Await ``sends`` together; True if Kafka took them all.

    A send Kafka refused (or a publisher without a producer) is logged with ``what`` and gives
    False; any other failure is a bug and is raised.
    """
    results = await asyncio.gather(*sends, return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is None:
        return True
    if not isinstance(failure, StreamAppError | KafkaError):
        raise failure
    log.warning("Kafka did not take %s: %r", what, failure)
    return False
