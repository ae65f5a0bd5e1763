"""Artifacts: the worker's answers, checksums, chunked import, admission as a challenger."""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any

import pytest

from stream_app.artifact import ESTIMATOR, HEADER, ArtifactError, loads
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner, Prediction
from stream_app.core.predict import ServingModel, fresh_model, predict_one
from stream_app.errors import OperationRefused
from stream_app.registry.checkpoint import load_model
from stream_app.registry.records import Registry
from stream_app.registry.transfer import (
    Assembler,
    admit,
    artifact_of,
    import_commands,
    serving_model,
)
from stream_app.settings import ModelSettings, Settings
from tests.unit.core.test_batch import rows, trained


def spam_model() -> ServingModel:
    """A binary-only estimator taught string classes: answers must map back to them."""
    model = fresh_model(ModelSettings())
    for x in rows(500, seed=5):
        label = "spam" if x["f0"] > 0 else "ham"
        model.estimator.learn_one(x, model.labels.to_model(label))
        model.examples_learned += 1
    return model


@pytest.mark.parametrize(
    "make",
    [
        spam_model,
        lambda: trained("logistic_regression"),
        lambda: trained("hoeffding_tree"),
        lambda: trained("linear_regression"),
        lambda: fresh_model(ModelSettings()),
    ],
)
def test_an_artifact_answers_exactly_as_the_worker(make: Any) -> None:
    model = make()
    artifact = loads(artifact_of(model, None, factory="stream_app.models:x"))
    for x in rows(50, seed=6):
        expected = predict_one(model, x)
        assert artifact.predict_one(x) == (expected.prediction, expected.proba)
    assert artifact.header["factory"] == "stream_app.models:x"
    assert artifact.task == model.task and artifact.classes == model.labels.classes


def test_the_pure_river_way_reads_the_same_estimator() -> None:
    model = spam_model()
    data = artifact_of(model, {"factory": "f", "version": 3})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        estimator = pickle.loads(archive.read(ESTIMATOR))
        assert b'"record"' in archive.read(HEADER)
    x = rows(1, seed=7)[0]
    assert estimator.predict_proba_one(x) == model.estimator.predict_proba_one(x)


def test_a_tampered_or_foreign_file_is_refused() -> None:
    data = artifact_of(spam_model(), None)
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buffer, "w") as dst:
        dst.writestr(HEADER, src.read(HEADER))
        dst.writestr(ESTIMATOR, pickle.dumps("something else"))
    with pytest.raises(ArtifactError, match="checksum"):
        loads(buffer.getvalue())
    with pytest.raises(ArtifactError, match="not a stream_app model artifact"):
        loads(b"not a zip")


def test_learned_feature_names_are_tracked_and_exported() -> None:
    learner = Learner(Settings().replace(guard={"enabled": False}))
    learner.learn(
        LabeledExample("a", {"x": 1.0, "color": "red"}, True, Prediction(None, {}), None, 0.0)
    )
    learner.learn(LabeledExample("b", {"y": 2.0}, False, Prediction(None, {}), None, 0.0))
    model = learner.serving.model
    assert model.feature_names == {"x", "color", "y"}
    assert loads(artifact_of(model, None)).header["feature_names"] == ["color", "x", "y"]
    old = model.__dict__.copy()
    del old["feature_names"]  # a version stored before the field existed
    revived = ServingModel.__new__(ServingModel)
    revived.__setstate__(old)
    assert revived.feature_names == set()


def test_chunks_are_assembled_in_any_order_and_checked() -> None:
    data = bytes(range(256)) * 40
    commands = import_commands(data, "default", "r1", chunk_bytes=1000)
    assembler = Assembler()
    assert [assembler.add(c) for c in reversed(commands)][-1] == data
    assembler.add(import_commands(b"abandoned", "default", "r2", chunk_bytes=4)[0])
    bad = import_commands(data, "default", "r3", chunk_bytes=100_000)[0] | {"sha256": "0" * 64}
    with pytest.raises(OperationRefused, match="checksum"):
        assembler.add(bad)
    with pytest.raises(OperationRefused, match="malformed"):
        assembler.add({"request_id": "r4"})


def test_admission_makes_the_import_a_numbered_shadow_challenger() -> None:
    settings = Settings().replace(guard={"enabled": False})
    learner = Learner(settings, trained("logistic_regression"))
    registry = Registry()
    offline = trained("hoeffding_tree")
    offline.labels.classes = [False, True]
    record, writes = admit(settings, learner, registry, artifact_of(offline, None, "f:h"))
    assert (record.reason, record.status, record.factory) == ("import", "shadow", "f:h")
    assert learner.challenger is not None and learner.challenger.model.version == record.version
    for key, value in writes:
        registry.apply(key, value)
    stored = load_model(registry, "default", record.version).model
    x = rows(1, seed=8)[0]
    assert predict_one(stored, x) == predict_one(offline, x)
    _, shadow = learner.answer(x)
    assert shadow == predict_one(offline, x)


def test_a_model_that_does_not_fit_is_refused_and_nothing_changes() -> None:
    settings = Settings()
    learner = Learner(settings, trained("logistic_regression"))
    regressor = artifact_of(trained("linear_regression"), None)
    with pytest.raises(OperationRefused, match="regression"):
        admit(settings, learner, Registry(), regressor)
    with pytest.raises(OperationRefused, match="classes"):
        admit(settings, learner, Registry(), artifact_of(spam_model(), None))
    with pytest.raises(OperationRefused, match="not a stream_app"):
        admit(settings, learner, Registry(), b"junk")
    assert learner.challenger is None
    restored = serving_model(loads(artifact_of(spam_model(), None)), "other", 9)
    assert (restored.name, restored.version, restored.labels.classes) == (
        "other",
        9,
        ["ham", "spam"],
    )


def test_an_oversized_import_is_refused_before_it_is_sent_and_while_it_is_assembled() -> None:
    import asyncio

    from stream_app.errors import StreamAppError
    from stream_app.registry.transfer import Assembler, import_commands
    from stream_app.settings import Settings
    from stream_app.worker.operations import import_artifact

    settings = Settings().replace(registry={"max_import_bytes": 10})
    with pytest.raises(StreamAppError, match=r"registry\.max_import_bytes allows 10"):
        asyncio.run(import_artifact(settings, b"x" * 11))  # refused here: no broker is asked
    assembler = Assembler(max_bytes=10)
    chunks = import_commands(b"y" * 12, "default", "big", chunk_bytes=5)
    assert assembler.add(chunks[0]) is None and assembler.add(chunks[1]) is None
    with pytest.raises(OperationRefused, match=r"larger than registry\.max_import_bytes"):
        assembler.add(chunks[2])
    fits = import_commands(b"z" * 10, "default", "ok", chunk_bytes=5)
    assert [assembler.add(c) for c in fits] == [None, b"z" * 10]  # the next import is taken
