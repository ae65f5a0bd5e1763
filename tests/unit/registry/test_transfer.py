"""Versions out of the registry as artifacts, and imports reassembled (tests/unit/test_artifact.py
covers the artifact format and admission)."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.artifact import loads
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.predict import Prediction, predict_one
from stream_app.errors import ArtifactError, OperationRefused, StreamAppError
from stream_app.registry.checkpoint import Checkpointer, encode_inline
from stream_app.registry.records import Registry
from stream_app.registry.transfer import Assembler, export_version, import_commands, serving_model
from stream_app.settings import Settings


def stored_registry(signing_key: str = "") -> tuple[Registry, Learner, int]:
    settings = Settings().replace(guard={"enabled": False}, registry={"signing_key": signing_key})
    learner = Learner(settings)
    for i in range(30):
        x = {"x": float(i % 5)}
        learner.learn(LabeledExample(f"e{i}", x, i % 5 > 2, Prediction(None, {}), None, 0.0))
    registry = Registry(settings.registry)
    checkpointer = Checkpointer(settings, encode_inline)
    snapshot = checkpointer.snapshot(learner, registry)
    done = asyncio.run(checkpointer.checkpoint(snapshot, registry, "periodic"))
    for key, value in done.writes:
        registry.apply(key, value)
    return registry, learner, done.records[0].version


def test_an_exported_version_answers_as_it_did_and_carries_its_record() -> None:
    registry, learner, number = stored_registry()
    artifact = loads(export_version(registry, "default", number))
    assert artifact.header["record"]["version"] == number
    assert artifact.header["record"]["reason"] == "periodic"
    model = serving_model(artifact, "default", number)
    for x in ({"x": 0.0}, {"x": 4.0}):
        assert predict_one(model, x) == predict_one(learner.serving.model, x)


def test_an_export_is_signed_with_the_key_and_checked_against_it() -> None:
    registry, _, number = stored_registry(signing_key="k1")
    data = export_version(registry, "default", number, signing_key="k1")
    assert loads(data, "k1").header["record"]["version"] == number
    with pytest.raises(ArtifactError):
        loads(data, "another key")


def test_a_version_that_is_not_stored_cannot_be_exported() -> None:
    with pytest.raises(StreamAppError, match="default v9 is not stored"):
        export_version(Registry(), "default", 9)


def test_a_new_import_drops_an_unfinished_one() -> None:
    assembler = Assembler()
    abandoned = import_commands(b"old data", "default", "r1", chunk_bytes=3)
    assert assembler.add(abandoned[0]) is None
    fresh = import_commands(b"new", "default", "r2", chunk_bytes=2)
    assert [assembler.add(c) for c in fresh] == [None, b"new"]  # nothing of r1 mixed in
    assert assembler.add(abandoned[1]) is None  # r1 starts over: its first chunk is gone


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"part": 3}, "integer part < parts"),
        ({"part": "0"}, "integer part < parts"),
        ({"data": "not base64!"}, "malformed"),
    ],
)
def test_a_malformed_chunk_is_refused(change: dict[str, object], why: str) -> None:
    chunk = import_commands(b"abc", "default", "r1", chunk_bytes=2)[0] | change
    with pytest.raises(OperationRefused, match=why):
        Assembler().add(chunk)
