"""Model versions in the running worker: restore, checkpoint, follow changes, run operations.

The single writer is the worker that holds the one partition of the commands topic in the serve
group (its :class:`~stream_app.core.role.Role`, which the serve loop owns): it checkpoints its
learner and carries out operations sent as commands by the HTTP API or the CLI
(:mod:`stream_app.worker.commands`). Every worker restores the newest learner state that loads
when it starts, and applies pins and newer versions as the registry changelog brings them. When
the writer's partition moves, the old writer checkpoints before it lets go and the new one
restores from that. When the configured factory did not build the restored version,
:mod:`stream_app.registry.factory_change` acts on it at start, and the writer announces it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from stream_app import reasons
from stream_app.core.learn import Learner
from stream_app.core.messages import encode_dead_letter, encode_model_event
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.role import Role
from stream_app.errors import CorruptVersion
from stream_app.kafka.publish import Publish
from stream_app.registry.checkpoint import (
    Checkpoint,
    Checkpointer,
    Snapshot,
    load_model,
    restore_learner,
)
from stream_app.registry.factory_change import EVENT as FACTORY_CHANGED
from stream_app.registry.factory_change import REASON as FACTORY_CHANGE
from stream_app.registry.factory_change import FactoryChange, apply_factory_change
from stream_app.registry.records import LOAD_FAILURES
from stream_app.registry.replay import replay_log
from stream_app.registry.store import VersionStore
from stream_app.settings import Settings
from stream_app.worker.commands import Commands
from stream_app.worker.rollout import canary_status

__all__ = ["VersionKeeper"]

log = logging.getLogger(__name__)


class VersionKeeper:
    """Connects the learner in the pipeline with the registry store.

    ``role`` says whether this worker is the writer (the serve loop changes it); ``publish``
    sends model events and replay dead letters, each acknowledged; ``checkpointer`` (by default
    one that encodes in a child or inline by size) makes every checkpoint.
    """

    def __init__(
        self,
        settings: Settings,
        store: VersionStore,
        pipeline: Pipeline,
        metrics: Metrics,
        role: Role,
        publish: Publish,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.metrics = metrics
        self.role = role
        self.publish = publish
        self.checkpointer = checkpointer if checkpointer is not None else Checkpointer(settings)
        metrics.model_bytes.set_function(self._model_bytes)
        self._writing = asyncio.Lock()
        """One checkpoint at a time: numbering and retirement assume the previous one is done."""
        self._background: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()
        self._factory_change: FactoryChange | None = None
        """A factory change found at start, announced by the writer (see :meth:`restore`)."""
        self.loaded_at: float | None = None
        """Epoch seconds when this worker last took a version another worker made."""
        store.on_change(self._on_change)
        for reason in LOAD_FAILURES:  # every reason shows, at 0, before the first failure
            metrics.version_load_failures.labels(reason=reason)
        store.registry.on_foreign = lambda _: metrics.version_river_mismatches.inc()
        self.commands = Commands(self)
        """The operations this worker carries out as the writer."""

    def _model_bytes(self) -> float:
        """Return the serving state's size in the last checkpoint or restored version (0: none)."""
        return float(self.checkpointer.last_bytes or 0)

    @property
    def learner(self) -> Learner:
        """The learner the pipeline serves and learns with."""
        return self.pipeline.learner

    async def restore(self) -> None:
        """Wait for the registry view, then put the newest loadable learner in the pipeline."""
        await self.store.ready.wait()
        learner, record, skipped = restore_learner(self.settings, self.store.registry)
        self.count_failures(skipped)
        self.settings, self._factory_change = apply_factory_change(
            self.settings, learner, record, self.store.registry.latest(self.settings.model.name)
        )
        self.pipeline.use(learner)
        self.checkpointer.start_from(learner, record.size if record else None)
        self._apply_pin()
        name = self.settings.model.name
        if record is None:
            log.info("no stored version of model %s: starting a fresh one", name)
        else:
            log.info(
                "restored model %s v%d (%d examples learned, %s, built by %s)",
                name,
                record.version,
                record.examples_learned,
                record.reason,
                record.factory or "an unrecorded factory",
            )
        self.pipeline.report_versions()

    async def maybe_checkpoint(self) -> None:
        """Start a checkpoint in the background if one is due and this worker is the writer."""
        if self._background is not None and not self._background.done():
            return  # one at a time; the next is due again once this one has finished
        if self._factory_change is not None and self.role.is_writer:
            await self._announce_factory_change(self._factory_change)
        if self.role.is_writer and self.checkpointer.due(self.learner, time.monotonic()):
            snapshot = self._snapshot()  # now, between batches: the learner agrees with its log
            self._background = asyncio.create_task(self.checkpoint("periodic", snapshot))

    async def _announce_factory_change(self, change: FactoryChange) -> None:
        """As the writer: store a replacing model as a version, then announce the change."""
        self._factory_change = None
        if change.action == "replace":
            await self.checkpoint(FACTORY_CHANGE)
        name = self.settings.model.name
        version = self.learner.serving.model.version
        event = encode_model_event(FACTORY_CHANGED, name, version, **change.fields())
        await self.publish(self.settings.topics.model_events, name.encode(), event)

    async def settle(self) -> None:
        """Wait for a background checkpoint to finish (before shutting down)."""
        if self._background is not None:
            await asyncio.shield(self._background)

    def _snapshot(self) -> Snapshot:
        """Take a checkpoint's snapshot at once (see :meth:`Checkpointer.snapshot`).

        Called where the learner has learned exactly what the learning log has acknowledged
        (between batches, under the serve lock), so its ``learned_through`` is exact.
        """
        return self.checkpointer.snapshot(self.learner, self.store.registry)

    async def write_version(self, reason: str, snapshot: Snapshot | None = None) -> Checkpoint:
        """Encode a snapshot (taken now unless given) and write it as new versions; may raise."""
        if snapshot is None:
            await self.settle()  # one at a time: numbering and retirement need the last one done
            snapshot = self._snapshot()
        async with self._writing:
            done = await self.checkpointer.checkpoint(snapshot, self.store.registry, reason)
            await self.store.write(done.writes)
        return done

    async def checkpoint(self, reason: str, snapshot: Snapshot | None = None) -> None:
        """Store the learner as new versions; count and announce it. Failures keep serving."""
        name = self.settings.model.name
        try:
            done = await self.write_version(reason, snapshot)
        except Exception as exc:  # a checkpoint must never take serving down
            self.metrics.checkpoint_failures.inc()
            log.error("checkpoint of model %s failed: %s", name, exc, exc_info=exc)
            return
        seconds = done.seconds
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_bytes.set(done.bytes)
        for record in done.records:
            log.info(
                "checkpointed model %s v%d (%s, %s, %d bytes in %d chunks, %.3fs)",
                name,
                record.version,
                record.status,
                reason,
                record.size,
                record.chunks,
                seconds,
            )
            event = encode_model_event(
                "checkpoint",
                name,
                record.version,
                status=record.status,
                reason=reason,
                bytes=record.size,
                seconds=round(seconds, 4),
                examples_learned=record.examples_learned,
            )
            await self.publish(self.settings.topics.model_events, name.encode(), event)
        self.pipeline.report_versions()

    async def become_writer(self) -> None:
        """Take over as the writer: the newest stored state, then the learning log after it.

        The replay learns what the previous writer learned after its last checkpoint (a crash
        loses nothing); what it replays counts as not yet checkpointed.
        """
        await self.store.caught_up()
        self._reload_newer()
        self.checkpointer.start_from(self.learner)

        async def dead_letter(record: Any) -> None:
            value = encode_dead_letter(
                reasons.INVALID_JSON,
                "not a learning-log entry (skipped by the replay)",
                record.topic,
                record.partition,
                record.offset,
                record.value,
            )
            await self.publish(self.settings.topics.dead_letters, record.key or b"", value)
            self.metrics.dead_letters.labels(reason=reasons.INVALID_JSON).inc()

        def lag(examples: int, seconds: float) -> None:
            self.pipeline.set_learner_lag(examples=examples, seconds=seconds)

        await replay_log(self.settings, self.learner, on_corrupt=dead_letter, on_progress=lag)
        log.info(
            "this worker is the writer of model %s (v%d, learned through log offset %d)",
            self.settings.model.name,
            self.learner.serving.model.version,
            self.learner.learned_through,
        )
        self.pipeline.report_versions()

    async def hand_over(self) -> None:
        """Stop being the writer: store what was learned so that the next writer starts there."""
        if self.checkpointer.dirty(self.learner):
            await self.checkpoint("handover")

    async def command(self, raw: bytes | None) -> None:
        """Carry out one operation and answer it on ``model-events`` (never raises)."""
        await self.commands.handle(raw)

    def _on_change(self, model: str) -> None:
        """Wake :meth:`follow`: the registry changed (called by the store)."""
        if model == self.settings.model.name:
            self.changed.set()

    async def follow(self, lock: asyncio.Lock) -> None:
        """Apply pins and newer versions made by another worker, under the serve lock."""
        while True:
            await self.changed.wait()
            self.changed.clear()
            async with lock:
                self._apply_pin()
                if not self.role.is_writer:
                    self._reload_newer()

    def _apply_pin(self) -> None:
        """Serve the pinned version (a frozen copy), or go back to the learner's own model."""
        name, learner = self.settings.model.name, self.learner
        pinned = self.store.registry.pins.get(name)
        current = learner.pinned.version if learner.pinned is not None else None
        if pinned == current:
            return
        if pinned is None:
            learner.pinned = None
            log.info("model %s unpinned: v%d serves", name, learner.serving.model.version)
        else:
            try:
                learner.pinned = load_model(self.store.registry, name, pinned).model
            except CorruptVersion as exc:
                self.count_failures([exc.reason])
                log.error(
                    "pinned model %s v%d cannot be loaded (%s); not pinning", name, pinned, exc
                )
                return
            log.info("model %s pinned to v%d; the learner keeps learning", name, pinned)
        self.pipeline.report_versions()

    def _reload_newer(self) -> None:
        """Take the newest stored learner state if it is newer than ours (followers, takeover)."""
        registry, name = self.store.registry, self.settings.model.name
        newest = registry.newest(name, "serving")
        if newest is None or newest.version <= self.learner.serving.model.version:
            return
        learner, record, skipped = restore_learner(self.settings, registry)
        self.count_failures(skipped)
        if record is None:
            return
        learner.pinned = self.learner.pinned
        self.pipeline.use(learner)
        self.checkpointer.start_from(learner, record.size)
        self.loaded_at = time.time()
        log.info("now serving model %s v%d, checkpointed by the writer", name, record.version)
        self.pipeline.report_versions()

    def count_failures(self, reasons: list[str]) -> None:
        """Count versions (or imports) refused or skipped, by reason."""
        for reason in reasons:
            self.metrics.version_load_failures.labels(reason=reason).inc()

    def describe(self) -> dict[str, Any]:
        """Who serves what, for /health and /models."""
        learner = self.learner
        return {
            "writer": self.role.is_writer,
            "serving": learner.answering.version,
            "learning": learner.serving.model.version,
            "pinned": learner.pinned.version if learner.pinned is not None else None,
            "shadow": learner.challenger.model.version if learner.challenger else None,
            "canary": canary_status(learner),
            "loaded_at": self.loaded_at,
        }
