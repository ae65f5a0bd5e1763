"""Model versions in the running worker: restore at start, checkpoint when due, follow changes.

The Faust leader is the single writer: it checkpoints its learner. Every worker restores the newest
learner state that loads when it starts, and applies pins and newer versions as the registry
changelog brings them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stream_app.checkpoint import Checkpointer, load_model, restore_learner
from stream_app.learn import Learner
from stream_app.messages import encode_model_event
from stream_app.metrics import Metrics
from stream_app.pipeline import Pipeline
from stream_app.registry import CorruptVersion
from stream_app.settings import Settings
from stream_app.store import RegistryStore

__all__ = ["VersionKeeper"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bytes], Awaitable[None]]


class VersionKeeper:
    """Connects the learner in the pipeline with the registry store."""

    def __init__(
        self,
        settings: Settings,
        store: RegistryStore,
        pipeline: Pipeline,
        metrics: Metrics,
        is_leader: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.metrics = metrics
        self.is_leader = is_leader
        self.checkpointer = Checkpointer(settings)
        self.changed = asyncio.Event()
        store.on_change(self._on_change)

    @property
    def learner(self) -> Learner:
        """The learner the pipeline serves and learns with."""
        return self.pipeline.learner

    async def restore(self) -> None:
        """Wait for the registry view, then put the newest loadable learner in the pipeline."""
        await self.store.ready.wait()
        learner, record, skipped = restore_learner(self.settings, self.store.registry)
        if skipped:
            self.metrics.version_load_failures.inc(skipped)
        self.pipeline.learner = learner
        self.checkpointer.start_from(learner)
        self._apply_pin()
        name = self.settings.model.name
        if record is None:
            log.info("no stored version of model %s: starting a fresh one", name)
        else:
            log.info(
                "restored model %s v%d (%d examples learned, %s)",
                name,
                record.version,
                record.examples_learned,
                record.reason,
            )
        self.pipeline.report_versions()

    async def maybe_checkpoint(self, publish: Publish) -> None:
        """Checkpoint if one is due and this worker is the writer."""
        if self.is_leader() and self.checkpointer.due(self.learner, time.monotonic()):
            await self.checkpoint("periodic", publish)

    async def checkpoint(self, reason: str, publish: Publish) -> None:
        """Store the learner as new versions; count and announce it. Failures keep serving."""
        name = self.settings.model.name
        try:
            done = self.checkpointer.checkpoint(self.learner, self.store.registry, reason)
            started = time.perf_counter()
            await self.store.write(done.writes)
        except Exception as exc:  # a checkpoint must never take serving down
            self.metrics.checkpoint_failures.inc()
            log.error("checkpoint of model %s failed: %s", name, exc, exc_info=exc)
            return
        seconds = done.seconds + time.perf_counter() - started
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
            await publish(self.settings.topics.model_events, name.encode(), event)
        self.pipeline.report_versions()

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
                if not self.is_leader():
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
                self.metrics.version_load_failures.inc()
                log.error(
                    "pinned model %s v%d cannot be loaded (%s); not pinning", name, pinned, exc
                )
                return
            log.info("model %s pinned to v%d; the learner keeps learning", name, pinned)
        self.pipeline.report_versions()

    def _reload_newer(self) -> None:
        """Take the newest stored learner state, on a follower, when the writer made a newer one."""
        registry, name = self.store.registry, self.settings.model.name
        newest = registry.newest(name, "serving")
        if newest is None or newest.version <= self.learner.serving.model.version:
            return
        learner, record, skipped = restore_learner(self.settings, registry)
        if skipped:
            self.metrics.version_load_failures.inc(skipped)
        if record is None:
            return
        learner.pinned = self.learner.pinned
        self.pipeline.learner = learner
        self.checkpointer.start_from(learner)
        log.info("now serving model %s v%d, checkpointed by the writer", name, record.version)
        self.pipeline.report_versions()

    def describe(self) -> dict[str, Any]:
        """Who serves what, for /health and /models."""
        learner = self.learner
        return {
            "writer": self.is_leader(),
            "serving": (learner.pinned or learner.serving.model).version,
            "learning": learner.serving.model.version,
            "pinned": learner.pinned.version if learner.pinned is not None else None,
            "shadow": learner.challenger.model.version if learner.challenger else None,
        }
