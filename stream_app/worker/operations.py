"""Model operations from outside the writer: read the registry, send a command, await its answer.

Used by the HTTP API (on any worker) and by ``stream-app models ...``, which needs only Kafka.
A command goes to the commands topic with a request id; the writer carries it out and answers on
``model-events`` with the same request id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.errors import StreamAppError
from stream_app.kafka.read import POLL_MS, read_to_end
from stream_app.kafka.security import client_kwargs
from stream_app.registry.records import Registry, VersionRecord, changelog_topic
from stream_app.settings import Settings

__all__ = [
    "CANARY",
    "OPERATIONS",
    "exchange",
    "import_artifact",
    "log_offsets",
    "read_registry",
    "run_command",
    "version_table",
]

OPERATIONS: Final = ("rollback", "pin", "unpin", "promote")
CANARY: Final = "canary"
"""The rollout operation: ``version`` and ``share``, or ``abort`` (``models canary``)."""


async def read_registry(settings: Settings, timeout: float = 30.0) -> Registry:
    """Read the registry changelog to its current end into a fresh view."""
    registry = Registry(settings.registry)
    topic = changelog_topic(settings.app.id)
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return registry
        async for _, records in read_to_end(
            consumer, [TopicPartition(topic, 0)], timeout_s=timeout
        ):
            for record in records:
                registry.apply(record.key, record.value)
        return registry
    finally:
        await consumer.stop()


async def run_command(
    settings: Settings, op: str, version: int | None, timeout: float = 30.0, **fields: Any
) -> dict[str, Any]:
    """Send one operation to the writer and return its answer (a ``model-events`` message).

    ``fields`` are the operation's own arguments (``share``, ``abort`` for :data:`CANARY`).
    """
    if op not in (*OPERATIONS, CANARY):
        raise StreamAppError(f"unknown operation {op!r}; one of {', '.join(OPERATIONS)}, {CANARY}")
    request_id = uuid.uuid4().hex
    command = {
        **fields,
        "op": op,
        "version": version,
        "model": settings.model.name,
        "request_id": request_id,
    }
    return await exchange(settings, [orjson.dumps(command)], request_id, timeout)


async def import_artifact(settings: Settings, data: bytes, timeout: float = 60.0) -> dict[str, Any]:
    """Send an artifact to the writer in chunks; return its answer (the new shadow version)."""
    from stream_app.registry.transfer import (
        import_commands,  # loads River: only this command needs it
    )

    most = settings.registry.max_import_bytes
    if len(data) > most:
        raise StreamAppError(
            f"the artifact is {len(data)} bytes; registry.max_import_bytes allows {most}"
        )
    request_id = uuid.uuid4().hex
    chunk = settings.registry.chunk_bytes
    commands = import_commands(data, settings.model.name, request_id, chunk)
    return await exchange(settings, [orjson.dumps(c) for c in commands], request_id, timeout)


async def exchange(
    settings: Settings,
    commands: list[bytes],
    request_id: str,
    timeout: float,
    to: tuple[str, bytes] | None = None,
) -> dict[str, Any]:
    """Send commands in order; return the ``model-events`` answer that carries ``request_id``.

    To the writer (the commands topic, keyed by model name), or to ``to``: (topic, record key),
    which the producer's murmur2 partitioner puts on the record key's home partition.
    """
    topic, key = to or (settings.commands_topic, settings.model.name.encode())
    connection = client_kwargs(settings)
    consumer = AIOKafkaConsumer(**connection, enable_auto_commit=False)
    producer = AIOKafkaProducer(**connection)
    await consumer.start()
    await producer.start()
    try:
        # Listen from the current end before asking, so the answer cannot slip past.
        # (The consumer's metadata may not know the topic yet; the producer's waits for it.)
        partitions = await producer.partitions_for(settings.topics.model_events)
        tps = [TopicPartition(settings.topics.model_events, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        for command in commands:
            await producer.send_and_wait(topic, command, key=key)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=POLL_MS)).values():
                for record in records:
                    event: dict[str, Any] = orjson.loads(record.value)
                    if event.get("request_id") == request_id:
                        return event
        op = orjson.loads(commands[-1]).get("op")
        raise StreamAppError(f"no answer to {op} within {timeout:.0f}s: is a worker running?")
    finally:
        await producer.stop()
        await consumer.stop()


def version_table(registry: Registry, model: str) -> list[dict[str, Any]]:
    """Return the versions of ``model`` as rows for people and ``--json``, newest first.

    >>> version_table(Registry(), "default")
    []
    """
    serving = registry.serving(model)
    pinned = registry.pins.get(model)
    rows = []
    for record in reversed(registry.versions(model)):
        row = record.summary()
        row["serves"] = serving is not None and record.version == serving.version
        row["pinned"] = record.version == pinned
        rows.append(row)
    return rows


def log_offsets(registry: Registry, record: VersionRecord) -> list[int] | None:
    """Return the learning-log offsets a version learned after its parent: ``[first, last]``.

    Offsets of messages, each a batch's examples (one example in a log written before batches);
    a version is stored between batches, so it learned each of these messages whole.

    ``None`` for a version stored before the learning log existed; ``first > last`` when it
    learned nothing new (an operation, a promotion).

    >>> log_offsets(Registry(), VersionRecord("m", 1, None, 0, 0, {}, "periodic", "serving", 0,
    ...     "", 1, "f", "classification", learned_through=41))
    [0, 41]
    """
    if record.learned_through is None:
        return None
    parent = None if record.parent is None else registry.record(record.model, record.parent)
    since = parent.learned_through if parent is not None else None
    return [(since if since is not None else -1) + 1, record.learned_through]


def run(coro: Any) -> Any:
    """Run a coroutine from synchronous code (the CLI)."""
    return asyncio.run(coro)
