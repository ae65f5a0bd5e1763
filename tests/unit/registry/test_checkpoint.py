"""Checkpoints off the event loop: a forked child encodes the snapshot taken at the fork."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.predict import Prediction
from stream_app.errors import CheckpointError
from stream_app.registry.checkpoint import (
    Checkpointer,
    encode_in_child,
    encode_inline,
    fork_encoder,
)
from stream_app.registry.records import Registry, decode_blob, split_blob
from stream_app.settings import Settings


def trained_learner(n: int) -> Learner:
    learner = Learner(Settings().replace(guard={"enabled": False}))
    for i in range(n):
        learner.learn(
            LabeledExample(
                f"e{i}", {"x": float(i % 5)}, i % 2 == 0, Prediction(None, {}), None, 0.0
            )
        )
    return learner


async def test_the_child_encodes_what_the_learner_was_at_the_fork() -> None:
    learner = trained_learner(100)
    plan = Checkpointer(learner.settings).plan(learner, Registry())
    encoding = asyncio.ensure_future(encode_in_child(plan.states, level=3))
    await asyncio.sleep(0)  # the fork has happened: the parent learns on meanwhile
    for i in range(100, 400):
        learner.learn(LabeledExample(f"e{i}", {"x": 1.0}, True, Prediction(None, {}), None, 0.0))
    (packed,) = await encoding
    state = decode_blob(split_blob(packed, 1 << 20).chunks, split_blob(packed, 1 << 20).sha256)
    assert state["learner"]["examples_seen"] == 100
    assert learner.examples_seen == 400


class RecordsWhoPickles:
    """Writes the pid of the process that pickles it to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __getstate__(self) -> dict[str, Any]:
        self.path.write_text(str(os.getpid()))
        return {"path": self.path}


async def test_pickling_happens_in_another_process_not_on_the_event_loop(tmp_path: Path) -> None:
    witness = tmp_path / "pid"
    state = {"probe": RecordsWhoPickles(witness), "payload": list(range(1000))}
    (packed,) = await encode_in_child([state], level=1)
    assert int(witness.read_text()) != os.getpid()
    assert pickle.loads(zlib.decompress(packed))["payload"] == list(range(1000))


async def test_a_failing_child_raises_a_checkpoint_error() -> None:
    unpicklable = {"lock": asyncio.Lock(), "at": time.time()}
    unpicklable["self"] = lambda: None
    with pytest.raises(CheckpointError, match="exited with 1"):
        await encode_in_child([unpicklable], level=3)


async def test_inline_and_child_encoders_write_the_same_records_and_blobs() -> None:
    settings = Settings().replace(guard={"enabled": False})
    done = []
    for encoder in (encode_inline, fork_encoder):
        checkpointer, registry = Checkpointer(settings, encoder), Registry()
        snapshot = checkpointer.snapshot(trained_learner(50), registry)
        done.append(await checkpointer.checkpoint(snapshot, registry, "periodic"))
    inline, child = done
    strip = ("created_at",)
    assert [{k: v for k, v in r.summary().items() if k not in strip} for r in inline.records] == [
        {k: v for k, v in r.summary().items() if k not in strip} for r in child.records
    ]
    assert [r.sha256 for r in inline.records] == [r.sha256 for r in child.records]


def test_by_default_small_checkpoints_encode_inline_and_large_ones_in_a_child() -> None:
    settings = Settings().replace(registry={"child_min_bytes": 1000})
    checkpointer = Checkpointer(settings)
    assert checkpointer.in_child()  # nothing stored yet: the size is unknown
    checkpointer.last_bytes = 999
    assert not checkpointer.in_child()
    checkpointer.last_bytes = 1000
    assert checkpointer.in_child()
    off = Checkpointer(settings.replace(registry={"encode_in_child": False}))
    assert not off.in_child()
