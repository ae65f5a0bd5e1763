"""Operations on keyed models from outside the owner: read their versions, send a key command.

Used by ``stream-app models keys|show|rollback|reset|export --key`` and by the HTTP API (on any
worker); only the broker is needed. What is read is ``<app id>-keyed-models``, the compacted topic
of every key's versions: it reflects each key's **last checkpoint**, not what the owner learned
since (a key is checkpointed every ``registry.key_checkpoint_every_examples`` labels or
``registry.key_checkpoint_every_s``, on eviction, on handover, and at once by a rollback or a
reset). A rollback or a reset goes to the key's home partition of ``<app id>-key-commands`` and is
carried out by the worker that owns the key (:mod:`stream_app.worker.key_commands`), whose answer
comes back on ``model-events``.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from aiokafka import AIOKafkaConsumer

from stream_app.core.metrics import Metrics
from stream_app.core.route import home_partition
from stream_app.errors import StreamAppError
from stream_app.kafka.security import client_kwargs
from stream_app.kafka.topics import topic_partitions
from stream_app.registry.keyed import (
    VALUES_KEPT,
    KeyIndex,
    decode_version,
    key_row,
    read_header,
)
from stream_app.registry.transfer import artifact_of
from stream_app.settings import Settings
from stream_app.worker.key_commands import KEY_OPERATIONS, encode_key_command
from stream_app.worker.keyed_store import KeyedStore
from stream_app.worker.operations import exchange

__all__ = [
    "export_key",
    "key_versions",
    "list_keys",
    "read_key_indexes",
    "run_key_command",
]

READ_TIMEOUT_S: Final = 30.0
"""How long a read of the keyed-models topic may take before it keeps what it read."""


async def read_key_indexes(
    settings: Settings,
    partitions: list[int] | None = None,
    timeout: float = READ_TIMEOUT_S,
    values_kept: int | None = VALUES_KEPT,
) -> dict[int, KeyIndex]:
    """Read ``partitions`` (default: all) of the keyed-models topic to their current end.

    ``values_kept``: how many of each key's newest values to hold (None: all, to show or export
    any stored version).
    """
    topic = settings.keyed_models_topic
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        count = len(await topic_partitions(consumer, topic))
        if not count:
            return {}
        store = KeyedStore(settings, Metrics(), count)
        wanted = list(range(count)) if partitions is None else partitions
        return await store.read_indexes(consumer, wanted, timeout, values_kept)
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` has (a key's home is its murmur2 modulo that); raise if none.

    ``features``, and ``<app id>-key-commands``, created with as many by a keyed worker (a command
    sent to a topic that does not exist yet could create it with the broker's default count).
    """
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        count = len(await topic_partitions(consumer, topic))
    finally:
        await consumer.stop()
    if not count:
        raise StreamAppError(f"topic {topic} does not exist: has a keyed worker run?")
    return count


async def list_keys(settings: Settings) -> list[dict[str, Any]]:
    """Return one row per stored key (its newest version's header, summed up), by key."""
    rows = []
    for partition, index in sorted((await read_key_indexes(settings)).items()):
        for key in index:
            row = key_row(index, key, partition)
            if row is not None:
                rows.append(row)
    return sorted(rows, key=lambda row: str(row["key"]))


async def key_versions(settings: Settings, key: str) -> tuple[int, KeyIndex]:
    """Return ``key``'s home partition and that partition's index (read to its end)."""
    home = home_partition(key, await _partitions(settings, settings.topics.features))
    indexes = await read_key_indexes(settings, [home], values_kept=None)
    return home, indexes.get(home, KeyIndex())


def version_header(index: KeyIndex, key: str, version: int | None) -> dict[str, Any]:
    """Return the header of ``key``'s ``version`` (default: its newest); raise if not stored."""
    value = index.value(key, version)
    if value is None:
        which = "any stored version" if version is None else f"a stored version {version}"
        raise StreamAppError(f"key {key!r} has not {which}")
    header = read_header(value)
    return {k: v for k, v in header.items() if k not in ("sha256", "signature")}


async def export_key(settings: Settings, key: str, version: int | None) -> tuple[int, bytes]:
    """Return ``key``'s ``version`` (default: its newest) as artifact bytes, and its number."""
    _, index = await key_versions(settings, key)
    header = version_header(index, key, version)
    value = index.value(key, header["version"])
    assert value is not None  # version_header found it
    _, learner = decode_version(settings, value)
    model = learner.serving.model
    model.version = int(header["version"])
    record = {**header, "factory": model.factory or settings.model.factory}
    return model.version, artifact_of(model, record, signing_key=settings.registry.signing_key)


async def run_key_command(
    settings: Settings, op: str, key: str, version: int | None, timeout: float = READ_TIMEOUT_S
) -> dict[str, Any]:
    """Send ``op`` on ``key`` to its owner and return the answer (a ``model-events`` message)."""
    if op not in KEY_OPERATIONS:
        raise StreamAppError(f"unknown key operation {op!r}; one of {', '.join(KEY_OPERATIONS)}")
    await _partitions(settings, settings.key_commands_topic)
    request_id = uuid.uuid4().hex
    command = encode_key_command(op, key, version, settings.model.name, request_id)
    to = (settings.key_commands_topic, key.encode())
    return await exchange(settings, [command], request_id, timeout, to=to)
