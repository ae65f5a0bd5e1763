"""The checkpoint step: when the learner's state becomes a stored version, and how it comes back.

A checkpoint is due after ``checkpoint_every_examples`` labels or ``checkpoint_every_s`` seconds
with something learned, whichever comes first, and at a clean shutdown. It gives the serving model
(and a challenger, if any) new version numbers and writes, in this order, the blob chunks, the
version records, the retirement of the previous serving record, and tombstones for versions past
the retention: a reader never sees a record whose chunks are not there yet.

:func:`restore_learner` loads the newest version that decodes, skipping corrupt ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Final

from stream_app.learn import Contender, Learner
from stream_app.registry import (
    CorruptVersion,
    Registry,
    VersionRecord,
    chunk_key,
    encode_blob,
    record_key,
    retained,
)
from stream_app.settings import Settings

__all__ = ["Checkpoint", "Checkpointer", "Write", "load_model", "restore_learner"]

log = logging.getLogger(__name__)

FORMAT: Final = 1
Write = tuple[bytes, bytes | None]
"""A table write: key and value (``None`` deletes)."""


@dataclass(frozen=True)
class Checkpoint:
    """What one checkpoint wrote: the versions made, their records and the table writes."""

    records: list[VersionRecord]
    writes: list[Write]
    bytes: int
    seconds: float


class Checkpointer:
    """Decides when a checkpoint is due and turns the learner's state into table writes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._last_at = time.monotonic()
        self._last_seen = 0

    def due(self, learner: Learner, now: float) -> bool:
        """Tell whether enough was learned, or enough time passed with something learned."""
        s = self.settings.registry
        since = learner.examples_seen - self._last_seen
        return since > 0 and (
            since >= s.checkpoint_every_examples or now - self._last_at >= s.checkpoint_every_s
        )

    def start_from(self, learner: Learner) -> None:
        """Count from a restored learner: what it knew is stored already."""
        self._last_at, self._last_seen = time.monotonic(), learner.examples_seen

    def dirty(self, learner: Learner) -> bool:
        """Tell whether something was learned since the last checkpoint."""
        return learner.examples_seen > self._last_seen

    def checkpoint(self, learner: Learner, registry: Registry, reason: str) -> Checkpoint:
        """Snapshot the learner as new versions; return the writes that store them."""
        started = time.perf_counter()
        s, name = self.settings, self.settings.model.name
        previous = registry.newest(name, "serving")
        records: list[VersionRecord] = []
        writes: list[Write] = []
        challenger = learner.challenger
        # New numbers first: the snapshot must carry the versions it is stored as.
        parents = {"serving": learner.serving.model.version}
        learner.serving.model.version = learner.allocate_version(registry.latest(name))
        if challenger is not None:
            parents["shadow"] = challenger.model.version
            challenger.model.version = learner.allocate_version(registry.latest(name))
        blobs: list[tuple[str, Contender, Any]] = [
            ("serving", learner.serving, {"format": FORMAT, "learner": learner.snapshot()})
        ]
        if challenger is not None:
            blobs.append(("shadow", challenger, {"format": FORMAT, "contender": challenger}))
        total = 0
        for status, contender, state in blobs:
            blob = encode_blob(state, s.registry.chunk_bytes, s.registry.compression_level)
            model = contender.model
            writes += [(chunk_key(name, model.version, i), c) for i, c in enumerate(blob.chunks)]
            parent = parents[status]
            record = VersionRecord(
                model=name,
                version=model.version,
                parent=parent if registry.record(name, parent) is not None else None,
                created_at=time.time(),
                examples_learned=model.examples_learned,
                quality={
                    "metric": contender.quality.metric,
                    "value": contender.quality.value,
                    "window": len(contender.quality),
                },
                reason=reason,
                status=status,
                size=blob.size,
                sha256=blob.sha256,
                chunks=len(blob.chunks),
                factory=s.model.factory,
                task=model.task,
            )
            writes.append((record_key(name, model.version), record.to_json()))
            records.append(record)
            total += blob.size
        if previous is not None and previous.status == "serving":
            retired = replace(previous, status="retired")
            writes.append((record_key(name, previous.version), retired.to_json()))
        writes += self._expired(registry, records)
        self._last_at, self._last_seen = time.monotonic(), learner.examples_seen
        return Checkpoint(records, writes, total, time.perf_counter() - started)

    def _expired(self, registry: Registry, new: list[VersionRecord]) -> list[Write]:
        """Tombstones for the versions that fall out of the retention."""
        name = self.settings.model.name
        stored = registry.versions(name)
        protected = [r.version for r in new] + [registry.pins.get(name)]
        keep = retained([*stored, *new], self.settings.registry.keep_last, protected)
        writes: list[Write] = []
        for record in stored:
            if record.version not in keep:
                writes += [(chunk_key(name, record.version, i), None) for i in range(record.chunks)]
                writes.append((record_key(name, record.version), None))
        return writes


def restore_learner(
    settings: Settings, registry: Registry
) -> tuple[Learner, VersionRecord | None, int]:
    """Rebuild the learner from the newest stored learner state that loads.

    Returns the learner, the record it came from (None for a fresh one), and how many corrupt
    versions were skipped on the way.
    """
    name = settings.model.name
    skipped = 0
    next_version = registry.latest(name) + 1
    for record in reversed(registry.versions(name)):
        if record.status == "shadow":
            continue  # a challenger's blob holds no learner state
        try:
            state = registry.load(name, record.version)
            learner = Learner.restore(settings, state["learner"], next_version)
        except (CorruptVersion, KeyError, TypeError, AttributeError) as exc:
            skipped += 1
            log.error(
                "model %s v%d cannot be restored (%s); trying an older version",
                name,
                record.version,
                exc,
            )
            continue
        learner.serving.model.version = record.version
        return learner, record, skipped
    learner = Learner(settings)
    learner.next_version = max(learner.next_version, next_version)
    return learner, None, skipped


def load_model(registry: Registry, name: str, version: int) -> Contender:
    """Load the contender (model, guard, quality) stored as ``version``, serving or shadow."""
    state = registry.load(name, version)
    if "learner" in state:
        contender: Contender = state["learner"]["serving"]
    else:
        contender = state["contender"]
    contender.model.version = version
    return contender
