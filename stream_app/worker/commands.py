"""The writer's operations: rollback, pin, unpin, promote, import and canary, each answered.

An operation comes as a command on the commands topic, sent by the HTTP API or the CLI
(:mod:`stream_app.worker.operations`) with a request id; the writer carries it out and answers on
``model-events`` with the same request id. A malformed command is ignored with a warning. A
refusal (:class:`~stream_app.errors.OperationRefused`, or a stored version that does not load) is
answered ``ok: false`` with its message and changes nothing; anything else that escapes an
operation is a bug: it is answered ``ok: false`` as an ``internal error`` and logged with its
traceback, and serving goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from stream_app.core.learn import Learner
from stream_app.core.messages import encode_model_event
from stream_app.errors import CorruptVersion, ImportRefused, OperationRefused
from stream_app.registry.checkpoint import load_model
from stream_app.registry.records import pin_key
from stream_app.registry.transfer import Assembler, admit
from stream_app.worker.rollout import CANARY, canary_command

if TYPE_CHECKING:
    from stream_app.worker.versions import VersionKeeper

__all__ = ["Commands"]

log = logging.getLogger(__name__)


class Commands:
    """Carries out the operations sent to the writer, with the keeper's learner and registry."""

    def __init__(self, keeper: VersionKeeper) -> None:
        self.keeper = keeper
        self.assembler = Assembler(keeper.settings.registry.max_import_bytes)
        """Chunks of an artifact being imported, until its last one comes."""
        self._ops: dict[str, Callable[[int | None], Awaitable[dict[str, Any]]]] = {
            "rollback": self._rollback,
            "pin": self._pin,
            "unpin": self._unpin,
            "promote": self._promote,
        }

    async def handle(self, raw: bytes | None) -> None:
        """Carry out one operation and answer it on ``model-events`` (never raises)."""
        keeper, name = self.keeper, self.keeper.settings.model.name
        try:
            body, op, version, request = self._parse(raw)
        except OperationRefused as exc:
            log.warning("ignoring a malformed model command: %s", exc)
            return
        try:
            outcome: dict[str, Any] | None
            if op == CANARY:
                outcome = await canary_command(keeper, body)
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
        current = keeper.learner.answering.version
        event = encode_model_event(
            op, name, fields.pop("model_version", current), request_id=request, **fields
        )
        await keeper.publish(keeper.settings.topics.model_events, name.encode(), event)

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
        keeper = self.keeper
        try:
            record, writes = admit(keeper.settings, keeper.learner, keeper.store.registry, data)
        except ImportRefused as exc:
            keeper.count_failures([exc.reason])
            raise
        await keeper.store.write(writes)
        keeper.pipeline.report_versions()
        log.info("model %s v%d imported; it answers in shadow", record.model, record.version)
        return {"model_version": record.version, "status": record.status}

    async def _rollback(self, version: int | None) -> dict[str, Any]:
        """Learning continues from ``version``; a new version records the rollback."""
        return await self._adopt(self._need(version), "rollback")

    async def _promote(self, version: int | None) -> dict[str, Any]:
        """Make a shadow version (the live challenger, or a stored one) the serving model."""
        target = self._need(version)
        learner = self.keeper.learner
        if learner.challenger is not None and learner.challenger.model.version == target:
            learner.promote("manual")
            return await self._store_now("promotion", target)
        return await self._adopt(target, "promotion")

    async def _pin(self, version: int | None) -> dict[str, Any]:
        """Serve ``version`` on every worker while the learner keeps learning."""
        target, keeper = self._need(version), self.keeper
        load_model(keeper.store.registry, keeper.settings.model.name, target)  # it must load
        await keeper.store.write(
            [(pin_key(keeper.settings.model.name), orjson.dumps({"version": target}))]
        )
        return {"model_version": target, "pinned": target}

    async def _unpin(self, version: int | None) -> dict[str, Any]:
        """Serve the newest version again."""
        keeper = self.keeper
        await keeper.store.write([(pin_key(keeper.settings.model.name), None)])
        return {"model_version": keeper.learner.serving.model.version, "pinned": None}

    async def _adopt(self, version: int, reason: str) -> dict[str, Any]:
        """Replace the serving contender (or the whole learner) with a stored version."""
        keeper = self.keeper
        state = keeper.store.registry.load(keeper.settings.model.name, version)
        current = keeper.learner
        if "learner" in state:
            learner = Learner.restore(keeper.settings, state["learner"], current.next_version)
            learner.pinned = current.pinned
            learner.learned_through = current.learned_through  # the log goes on from here
            keeper.pipeline.use(learner)
        else:
            current.replace_serving(state["contender"])
        keeper.learner.serving.model.version = version
        return await self._store_now(reason, version)

    async def _store_now(self, reason: str, source: int) -> dict[str, Any]:
        """Checkpoint at once so the change is a version of its own; report it."""
        keeper = self.keeper
        name = keeper.settings.model.name
        done = await keeper.write_version(reason)
        keeper.metrics.checkpoints.inc()
        keeper.pipeline.report_versions()
        made = done.records[0].version
        log.info("model %s: %s from v%d is now v%d", name, reason, source, made)
        return {"model_version": made, "from_version": source}

    def _need(self, version: int | None) -> int:
        """Check that an operation names a stored version."""
        if version is None:
            raise OperationRefused("this operation needs a version")
        if self.keeper.store.registry.record(self.keeper.settings.model.name, version) is None:
            raise OperationRefused(f"version {version} is not stored")
        return version
