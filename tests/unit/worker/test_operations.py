"""Operations from outside the writer, where no broker is needed: tables, log ranges, refusals."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from stream_app.errors import StreamAppError
from stream_app.registry.records import Registry, VersionRecord, pin_key, record_key
from stream_app.settings import Settings
from stream_app.worker.operations import log_offsets, run_command, version_table

BASE = VersionRecord(
    "m", 1, None, 0.0, 0, {}, "periodic", "serving", 0, "", 1, "f", "classification"
)


def registry_of(*records: VersionRecord, pinned: int | None = None) -> Registry:
    registry = Registry()
    for record in records:
        registry.apply(record_key(record.model, record.version), record.to_json())
    if pinned is not None:
        registry.apply(pin_key("m"), orjson.dumps({"version": pinned}))
    return registry


def version(number: int, **fields: object) -> VersionRecord:
    return dataclasses.replace(BASE, version=number, **fields)  # type: ignore[arg-type]


def test_the_table_is_newest_first_and_says_which_serves_and_which_is_pinned() -> None:
    stored = (version(1, status="retired"), version(2, parent=1), version(3, status="shadow"))
    rows = version_table(registry_of(*stored), "m")
    assert [(r["version"], r["serves"], r["pinned"]) for r in rows] == [
        (3, False, False),
        (2, True, False),  # the newest serving version
        (1, False, False),
    ]
    assert "sha256" not in rows[0]  # a summary: no checksum, no chunk count
    pinned = version_table(registry_of(*stored, pinned=1), "m")
    assert [(r["version"], r["serves"], r["pinned"]) for r in pinned] == [
        (3, False, False),
        (2, False, False),
        (1, True, True),  # a pinned version serves, whatever its status
    ]
    assert version_table(registry_of(*stored), "other") == []


def test_a_version_learned_the_log_after_its_parent() -> None:
    parent = version(1, learned_through=41)
    child = version(2, parent=1, learned_through=90)
    registry = registry_of(parent, child)
    assert log_offsets(registry, child) == [42, 90]
    assert log_offsets(registry, parent) == [0, 41]
    unchanged = version(3, parent=2, learned_through=90)  # an operation: nothing new learned
    assert log_offsets(registry_of(parent, child, unchanged), unchanged) == [91, 90]
    assert log_offsets(registry, version(4)) is None  # stored before the learning log
    orphan = version(5, parent=99, learned_through=7)  # its parent fell out of the retention
    assert log_offsets(registry, orphan) == [0, 7]


async def test_an_unknown_operation_is_refused_before_kafka_is_asked() -> None:
    with pytest.raises(StreamAppError, match="unknown operation 'explode'"):
        await run_command(Settings(), "explode", 1)
