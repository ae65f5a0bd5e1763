"""The versions keeper and the writer's operations against a registry store in memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.predict import Prediction
from stream_app.core.role import WriterRole
from stream_app.registry.checkpoint import Checkpointer, encode_inline
from stream_app.registry.records import pin_key
from stream_app.registry.transfer import artifact_of, import_commands
from stream_app.settings import Settings
from stream_app.worker import commands as commands_module
from stream_app.worker.versions import VersionKeeper
from tests.unit.worker.memory import MemoryStore, Published

NAME = "default"
WAIT_S = 5.0


class Worker:
    """A keeper wired as the service wires it, with its edges in memory."""

    def __init__(self, writer: bool = True, **overrides: Any) -> None:
        self.settings = Settings().replace(guard={"enabled": False}, **overrides)
        self.metrics = Metrics()
        self.role = WriterRole(writer=writer)
        self.pipeline = Pipeline(self.settings, Learner(self.settings), self.metrics, self.role)
        self.store = MemoryStore(self.settings)
        self.published = Published()
        self.keeper = VersionKeeper(
            self.settings,
            self.store,
            self.pipeline,
            self.metrics,
            self.role,
            self.published,
            Checkpointer(self.settings, encode_inline),
        )

    def learn(self, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            x = {"x": float(i % 5)}
            example = LabeledExample(f"e{i}", x, i % 2 == 0, Prediction(None, {}), None, 0.0)
            self.pipeline.learner.learn(example)

    async def command(self, **body: Any) -> dict[str, Any] | None:
        """Send one command; return the answer it published (None if none)."""
        before = len(self.published.messages)
        await self.keeper.command(orjson.dumps({"request_id": "r1", **body}))
        answers = self.published.events()[before:]
        return answers[-1] if answers else None

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition()`` holds (at most WAIT_S)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), WAIT_S)


async def test_restore_from_an_empty_store_serves_a_fresh_model() -> None:
    w = Worker()
    fresh = w.pipeline.learner
    await w.keeper.restore()
    assert w.pipeline.learner is not fresh  # a restore swaps the learner in
    assert w.pipeline.learner.examples_seen == 0
    assert w.store.registry.versions(NAME) == []


async def test_a_checkpoint_stores_a_version_and_announces_it() -> None:
    w = Worker()
    w.learn(20)
    await w.keeper.checkpoint("periodic")
    (record,) = w.store.registry.versions(NAME)
    assert record.status == "serving" and record.examples_learned == 20
    (event,) = w.published.events("checkpoint")
    assert event["model_version"] == record.version and event["reason"] == "periodic"
    assert w.metric("stream_app_checkpoints_total") == 1
    assert not w.keeper.checkpointer.dirty(w.pipeline.learner)


async def test_a_failed_checkpoint_is_counted_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app")  # whatever level others left
    w = Worker()
    w.learn(5)

    async def broken(writes: list[Any]) -> None:
        raise OSError("disk gone")

    w.store.write = broken  # type: ignore[method-assign]
    await w.keeper.checkpoint("periodic")  # does not raise
    assert w.metric("stream_app_checkpoint_failures_total") == 1
    assert w.published.events("checkpoint") == []
    assert "checkpoint of model default failed: disk gone" in caplog.text


async def test_only_the_writer_checkpoints_when_one_is_due() -> None:
    w = Worker(writer=False, registry={"checkpoint_every_examples": 1})
    w.learn(3)
    await w.keeper.maybe_checkpoint()
    await w.keeper.settle()
    assert w.store.registry.versions(NAME) == []
    w.role.assign(writer=True)
    await w.keeper.maybe_checkpoint()
    await w.keeper.settle()
    assert [r.reason for r in w.store.registry.versions(NAME)] == ["periodic"]
    assert w.keeper.describe()["writer"] is True


async def test_hand_over_stores_only_what_was_not_stored() -> None:
    w = Worker()
    w.learn(4)
    await w.keeper.hand_over()
    await w.keeper.hand_over()  # nothing new learned since
    assert [r.reason for r in w.store.registry.versions(NAME)] == ["handover"]


async def test_a_rollback_to_a_stored_version_swaps_the_learner_and_is_a_new_version() -> None:
    w = Worker()
    w.learn(10)
    await w.keeper.checkpoint("periodic")
    first = w.store.registry.versions(NAME)[0].version
    w.learn(10, start=10)
    await w.keeper.checkpoint("periodic")
    before = w.pipeline.learner
    answer = await w.command(op="rollback", version=first)
    assert answer is not None and answer["ok"] is True and answer["request_id"] == "r1"
    assert answer["from_version"] == first
    assert w.pipeline.learner is not before
    assert w.pipeline.learner.examples_seen == 10  # what the first version had learned
    newest = w.store.registry.versions(NAME)[-1]
    assert newest.reason == "rollback" and answer["model_version"] == newest.version


async def test_a_refusal_is_answered_not_ok_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app")  # whatever level others left
    w = Worker()
    w.learn(5)
    await w.keeper.checkpoint("periodic")
    learner, stored = w.pipeline.learner, list(w.store.changelog)
    answer = await w.command(op="rollback", version=99)
    assert answer is not None
    assert answer["ok"] is False and answer["error"] == "version 99 is not stored"
    assert answer["type"] == "rollback" and answer["request_id"] == "r1"
    assert w.pipeline.learner is learner and w.store.changelog == stored
    assert "refused: version 99 is not stored" in caplog.text
    assert not [r for r in caplog.records if r.exc_info]  # a refusal is not a bug
    missing = await w.command(op="pin")
    assert missing is not None and missing["error"] == "this operation needs a version"


async def test_a_bug_inside_an_operation_is_answered_as_an_internal_error_and_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app")  # whatever level others left
    w = Worker()
    w.learn(5)
    await w.keeper.checkpoint("periodic")
    version = w.store.registry.versions(NAME)[0].version

    def broken(*args: Any) -> Any:
        raise KeyError("serving")

    monkeypatch.setattr(commands_module, "load_model", broken)
    answer = await w.command(op="pin", version=version)
    assert answer is not None and answer["ok"] is False
    assert answer["error"] == "internal error: KeyError: 'serving'"
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "failed (a bug, please report it)" in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[0] is KeyError  # with its traceback
    assert pin_key(NAME) not in dict(w.store.changelog)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "not JSON"),
        (orjson.dumps({"op": "explode", "version": 1}), "unknown operation 'explode'"),
        (orjson.dumps(["rollback", 1]), "unknown operation None"),
        (orjson.dumps({"op": "rollback", "version": "1"}), "version must be an integer"),
        (None, "not JSON"),
    ],
)
async def test_a_malformed_command_is_ignored_with_a_warning(
    raw: bytes | None, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app")  # whatever level others left
    w = Worker()
    await w.keeper.command(raw)
    assert w.published.messages == []  # no answer: there is no request to answer
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "ignoring a malformed model command" in warning.getMessage()
    assert why in warning.getMessage()


async def test_a_pin_serves_the_pinned_version_on_every_follower_and_unpin_returns() -> None:
    w = Worker()
    w.learn(5)
    await w.keeper.checkpoint("periodic")
    pinned = w.store.registry.versions(NAME)[0].version
    w.learn(5, start=5)
    following = asyncio.create_task(w.keeper.follow(asyncio.Lock()))
    try:
        answer = await w.command(op="pin", version=pinned)
        assert answer is not None and answer["ok"] and answer["pinned"] == pinned
        await until(lambda: w.pipeline.learner.pinned is not None)
        assert w.keeper.describe()["serving"] == pinned
        answer = await w.command(op="unpin")
        assert answer is not None and answer["ok"] and answer["pinned"] is None
        await until(lambda: w.pipeline.learner.pinned is None)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


async def test_a_follower_takes_the_newer_version_the_writer_stored() -> None:
    writer, follower = Worker(), Worker(writer=False)
    follower.store = writer.store  # one registry, seen by both
    follower.keeper = VersionKeeper(
        follower.settings,
        writer.store,
        follower.pipeline,
        follower.metrics,
        follower.role,
        follower.published,
    )
    following = asyncio.create_task(follower.keeper.follow(asyncio.Lock()))
    try:
        writer.learn(8)
        await writer.keeper.checkpoint("periodic")
        stored = writer.store.registry.versions(NAME)[-1].version
        await until(lambda: follower.pipeline.learner.serving.model.version == stored)
        assert follower.pipeline.learner.examples_seen == 8
        assert follower.keeper.describe()["loaded_at"] is not None
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


async def test_an_import_in_chunks_becomes_a_shadow_version() -> None:
    w = Worker()
    w.learn(20)
    await w.keeper.checkpoint("periodic")
    elsewhere = Worker()  # a model trained elsewhere on the same features
    elsewhere.learn(30)
    data = artifact_of(elsewhere.pipeline.learner.serving.model, None)
    chunks = import_commands(data, NAME, "imp", chunk_bytes=len(data) // 3 + 1)
    answers = []
    for chunk in chunks:
        answers.append(await w.command(**chunk))
    assert answers[:-1] == [None, None]  # the answer comes with the last chunk
    last = answers[-1]
    assert last is not None and last["ok"] and last["status"] == "shadow"
    assert last["request_id"] == "imp"
    challenger = w.pipeline.learner.challenger
    assert challenger is not None and challenger.model.version == last["model_version"]


async def test_a_canary_on_an_unknown_version_is_refused() -> None:
    w = Worker()
    answer = await w.command(op="canary", version=7, share=0.1)
    assert answer is not None and answer["ok"] is False
    assert answer["error"] == "version 7 is not stored: there is nothing to roll out"
