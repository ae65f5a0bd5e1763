"""Model versions in the running worker: restore, checkpoint, follow changes, run operations.

The single writer is the worker that holds the one partition of the commands topic in the serve
group: it checkpoints its learner and carries out operations (rollback, pin, unpin, promote) sent
as commands by the HTTP API or the CLI, answering each on ``model-events`` with its request id.
Every worker restores the newest learner state that loads when it starts, and applies pins and
newer versions as the registry changelog brings them. When the writer's partition moves, the old
writer checkpoints before it lets go and the new one restores from that. When the configured
factory did not build the restored version, :mod:`stream_app.registry.factory_change` acts on it at
start, and the writer announces it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from stream_app import reasons
from stream_app.core.learn import Learner
from stream_app.core.messages import encode_dead_letter, encode_model_event
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.errors import CorruptVersion, ImportRefused, OperationRefused
from stream_app.registry.checkpoint import (
    Checkpoint,
    Checkpointer,
    Plan,
    fork_encoder,
    load_model,
    restore_learner,
)
from stream_app.registry.factory_change import EVENT as FACTORY_CHANGED
from stream_app.registry.factory_change import REASON as FACTORY_CHANGE
from stream_app.registry.factory_change import FactoryChange, apply_factory_change
from stream_app.registry.records import LOAD_FAILURES, pack, pin_key
from stream_app.registry.replay import replay_log
from stream_app.registry.store import RegistryStore
from stream_app.registry.transfer import Assembler, admit
from stream_app.settings import Settings
from stream_app.worker.rollout import CANARY, canary_command, canary_status

__all__ = ["VersionKeeper"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bytes], Awaitable[None]]
Snapshot = tuple[Plan, Awaitable[list[bytes]]]
"""A checkpoint's plan and its encoding under way (a forked child's, or done already)."""


async def _ready(packed: list[bytes]) -> list[bytes]:
    """Wrap states packed already as the awaitable a snapshot carries."""
    return packed


class VersionKeeper:
    """Connects the learner in the pipeline with the registry store."""

    def __init__(
        self,
        settings: Settings,
        store: RegistryStore,
        pipeline: Pipeline,
        metrics: Metrics,
        is_writer: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.metrics = metrics
        self.is_writer = is_writer
        self.checkpointer = Checkpointer(settings)
        metrics.model_bytes.set_function(self._model_bytes)
        self._writing = asyncio.Lock()
        """One checkpoint at a time: numbering and retirement assume the previous one is done."""
        self._background: asyncio.Task[None] | None = None
        self.assembler = Assembler(settings.registry.max_import_bytes)
        self.changed = asyncio.Event()
        self._factory_change: FactoryChange | None = None
        """A factory change found at start, announced by the writer (see :meth:`restore`)."""
        self.loaded_at: float | None = None
        """Epoch seconds when this worker last took a version another worker made."""
        store.on_change(self._on_change)
        for reason in LOAD_FAILURES:  # every reason shows, at 0, before the first failure
            metrics.version_load_failures.labels(reason=reason)
        store.registry.on_foreign = lambda _: metrics.version_river_mismatches.inc()
        self._ops: dict[str, Callable[[int | None], Awaitable[dict[str, Any]]]] = {
            "rollback": self._rollback,
            "pin": self._pin,
            "unpin": self._unpin,
            "promote": self._promote,
        }

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
        self._count_failures(skipped)
        self.settings, self._factory_change = apply_factory_change(
            self.settings, learner, record, self.store.registry.latest(self.settings.model.name)
        )
        self.pipeline.learner = learner
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

    async def maybe_checkpoint(self, publish: Publish) -> None:
        """Start a checkpoint in the background if one is due and this worker is the writer."""
        if self._background is not None and not self._background.done():
            return  # one at a time; the next is due again once this one has finished
        if self._factory_change is not None and self.is_writer():
            await self._announce_factory_change(self._factory_change, publish)
        if self.is_writer() and self.checkpointer.due(self.learner, time.monotonic()):
            snapshot = self._snapshot()  # now, between batches: the learner agrees with its log
            self._background = asyncio.create_task(self.checkpoint("periodic", publish, snapshot))

    async def _announce_factory_change(self, change: FactoryChange, publish: Publish) -> None:
        """As the writer: store a replacing model as a version, then announce the change."""
        self._factory_change = None
        if change.action == "replace":
            await self.checkpoint(FACTORY_CHANGE, publish)
        name = self.settings.model.name
        version = self.learner.serving.model.version
        event = encode_model_event(FACTORY_CHANGED, name, version, **change.fields())
        await publish(self.settings.topics.model_events, name.encode(), event)

    async def settle(self) -> None:
        """Wait for a background checkpoint to finish (before shutting down)."""
        if self._background is not None:
            await asyncio.shield(self._background)

    def _snapshot(self) -> Snapshot:
        """Take a checkpoint's snapshot at once: plan it, and fork its encoder or pack it.

        Called where the learner has learned exactly what the learning log has acknowledged
        (between batches, under the serve lock), so its ``learned_through`` is exact.
        """
        plan = self.checkpointer.plan(self.learner, self.store.registry)
        level = self.settings.registry.compression_level
        if self.checkpointer.in_child():
            return plan, fork_encoder(plan.states, level)
        return plan, _ready([pack(state, level) for state in plan.states])

    async def _store(self, reason: str, snapshot: Snapshot | None = None) -> Checkpoint:
        """Encode a snapshot (taken now unless given) and write it as new versions."""
        if snapshot is None:
            await self.settle()  # one at a time: numbering and retirement need the last one done
            snapshot = self._snapshot()
        plan, encoding = snapshot
        packed = await encoding
        registry = self.store.registry
        async with self._writing:
            done = self.checkpointer.finish(plan, packed, registry, reason)
            await self.store.write(done.writes)
        return done

    async def checkpoint(
        self, reason: str, publish: Publish, snapshot: Snapshot | None = None
    ) -> None:
        """Store the learner as new versions; count and announce it. Failures keep serving."""
        name = self.settings.model.name
        try:
            done = await self._store(reason, snapshot)
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
            await publish(self.settings.topics.model_events, name.encode(), event)
        self.pipeline.report_versions()

    async def become_writer(self, publish: Publish) -> None:
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
            await publish(self.settings.topics.dead_letters, record.key or b"", value)
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

    async def hand_over(self, publish: Publish) -> None:
        """Stop being the writer: store what was learned so that the next writer starts there."""
        if self.checkpointer.dirty(self.learner):
            await self.checkpoint("handover", publish)

    async def command(self, raw: bytes | None, publish: Publish) -> None:
        """Carry out one operation and answer it on ``model-events`` (never raises)."""
        name = self.settings.model.name
        try:
            body, op, version, request = self._parse(raw)
        except OperationRefused as exc:
            log.warning("ignoring a malformed model command: %s", exc)
            return
        try:
            outcome: dict[str, Any] | None
            if op == CANARY:
                outcome = await canary_command(self, body, publish)
            else:
                outcome = await (self._import(body) if op == "import" else self._ops[op](version))
            if outcome is None:
                return  # an import chunk: the answer comes with the last one
            fields: dict[str, Any] = {"ok": True, **outcome}
        except (CorruptVersion, OperationRefused) as exc:
            fields = {"ok": False, "error": str(exc)}
            log.warning("model %s %s %s refused: %s", name, op, version, exc)
        except Exception as exc:  # a bug: answered and logged as one, serving goes on
            fields = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
            log.exception("model %s %s %s failed (a bug, please report it)", name, op, version)
        current = self.learner.answering.version
        event = encode_model_event(
            op, name, fields.pop("model_version", current), request_id=request, **fields
        )
        await publish(self.settings.topics.model_events, name.encode(), event)

    def _parse(self, raw: bytes | None) -> tuple[dict[str, Any], str, int | None, str]:
        """Read a command: its body, operation, version and request id; refuse a malformed one."""
        try:
            body = orjson.loads(raw or b"")
        except orjson.JSONDecodeError as exc:
            raise OperationRefused(f"not JSON: {exc}") from None
        op = body.get("op") if isinstance(body, dict) else None
        if not isinstance(op, str) or (op not in self._ops and op not in ("import", CANARY)):
            raise OperationRefused(f"unknown operation {op!r}")
        version = body.get("version")
        if version is not None and type(version) is not int:
            raise OperationRefused("version must be an integer")
        return body, op, version, str(body.get("request_id", ""))

    async def _import(self, command: dict[str, Any]) -> dict[str, Any] | None:
        """Take a chunk of an artifact; with the last one, store it as a shadow version."""
        data = self.assembler.add(command)
        if data is None:
            return None
        try:
            record, writes = admit(self.settings, self.learner, self.store.registry, data)
        except ImportRefused as exc:
            self._count_failures([exc.reason])
            raise
        await self.store.write(writes)
        self.pipeline.report_versions()
        log.info("model %s v%d imported; it answers in shadow", record.model, record.version)
        return {"model_version": record.version, "status": record.status}

    async def _rollback(self, version: int | None) -> dict[str, Any]:
        """Learning continues from ``version``; a new version records the rollback."""
        return await self._adopt(self._need(version), "rollback")

    async def _promote(self, version: int | None) -> dict[str, Any]:
        """Make a shadow version (the live challenger, or a stored one) the serving model."""
        target = self._need(version)
        learner = self.learner
        if learner.challenger is not None and learner.challenger.model.version == target:
            learner.promote("manual")
            return await self._store_now("promotion", target)
        return await self._adopt(target, "promotion")

    async def _pin(self, version: int | None) -> dict[str, Any]:
        """Serve ``version`` on every worker while the learner keeps learning."""
        target = self._need(version)
        load_model(self.store.registry, self.settings.model.name, target)  # it must load
        await self.store.write(
            [(pin_key(self.settings.model.name), orjson.dumps({"version": target}))]
        )
        return {"model_version": target, "pinned": target}

    async def _unpin(self, version: int | None) -> dict[str, Any]:
        """Serve the newest version again."""
        await self.store.write([(pin_key(self.settings.model.name), None)])
        return {"model_version": self.learner.serving.model.version, "pinned": None}

    async def _adopt(self, version: int, reason: str) -> dict[str, Any]:
        """Replace the serving contender (or the whole learner) with a stored version."""
        state = self.store.registry.load(self.settings.model.name, version)
        if "learner" in state:
            learner = Learner.restore(self.settings, state["learner"], self.learner.next_version)
            learner.pinned = self.learner.pinned
            learner.learned_through = self.learner.learned_through  # the log goes on from here
            self.pipeline.learner = learner
        else:
            self.learner.replace_serving(state["contender"])
        self.learner.serving.model.version = version
        return await self._store_now(reason, version)

    async def _store_now(self, reason: str, source: int) -> dict[str, Any]:
        """Checkpoint at once so the change is a version of its own; report it."""
        name = self.settings.model.name
        done = await self._store(reason)
        self.metrics.checkpoints.inc()
        self.pipeline.report_versions()
        made = done.records[0].version
        log.info("model %s: %s from v%d is now v%d", name, reason, source, made)
        return {"model_version": made, "from_version": source}

    def _need(self, version: int | None) -> int:
        """Check that an operation names a stored version."""
        if version is None:
            raise OperationRefused("this operation needs a version")
        if self.store.registry.record(self.settings.model.name, version) is None:
            raise OperationRefused(f"version {version} is not stored")
        return version

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
                if not self.is_writer():
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
                self._count_failures([exc.reason])
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
        self._count_failures(skipped)
        if record is None:
            return
        learner.pinned = self.learner.pinned
        self.pipeline.learner = learner
        self.checkpointer.start_from(learner, record.size)
        self.loaded_at = time.time()
        log.info("now serving model %s v%d, checkpointed by the writer", name, record.version)
        self.pipeline.report_versions()

    def _count_failures(self, reasons: list[str]) -> None:
        """Count versions (or imports) refused or skipped, by reason."""
        for reason in reasons:
            self.metrics.version_load_failures.labels(reason=reason).inc()

    def describe(self) -> dict[str, Any]:
        """Who serves what, for /health and /models."""
        learner = self.learner
        return {
            "writer": self.is_writer(),
            "serving": learner.answering.version,
            "learning": learner.serving.model.version,
            "pinned": learner.pinned.version if learner.pinned is not None else None,
            "shadow": learner.challenger.model.version if learner.challenger else None,
            "canary": canary_status(learner),
            "loaded_at": self.loaded_at,
        }
