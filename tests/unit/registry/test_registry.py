"""The registry core: blobs for every factory, corruption detected, retention, the view."""

from __future__ import annotations

import functools
import random

import orjson
import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.predict import ServingModel, fresh_model, predict_one
from stream_app.registry.records import (
    CorruptVersion,
    Registry,
    VersionRecord,
    chunk_key,
    decode_blob,
    encode_blob,
    pin_key,
    record_key,
    retained,
)
from stream_app.settings import ModelSettings

CHUNK = 512 * 1024
FACTORIES = [
    "logistic_regression",
    "linear_regression",
    "hoeffding_tree",
    "gaussian_nb",
    "adaptive_random_forest",
]


SHORTER = {"adaptive_random_forest": 2_000}
"""Examples for factories whose models are already several chunks big well before 10,000."""


@functools.cache
def trained(factory: str, n: int = 10_000) -> ServingModel:
    model = fresh_model(ModelSettings(factory=f"stream_app.models:{factory}"))
    rng = random.Random(4)
    for _ in range(n):
        x = {f"f{i}": rng.gauss(0, 1) for i in range(8)} | {"c": rng.choice("abc")}
        signal = x["f0"] + x["f1"] - x["f2"]
        y = signal > 0 if model.task == "classification" else 2.0 * signal
        model.estimator.learn_one(x, model.labels.to_model(y))
        model.examples_learned += 1
    return model


@pytest.mark.parametrize("factory", FACTORIES)
def test_blob_round_trip_of_a_trained_model(factory: str) -> None:
    model = trained(factory, SHORTER.get(factory, 10_000))
    blob = encode_blob(model, CHUNK)
    assert all(len(chunk) <= CHUNK for chunk in blob.chunks)
    restored: ServingModel = decode_blob(blob.chunks, blob.sha256)
    rng = random.Random(8)
    for _ in range(50):
        x = {f"f{i}": rng.gauss(0, 1) for i in range(8)} | {"c": rng.choice("abc")}
        assert predict_one(restored, x) == predict_one(model, x)
    if factory == "adaptive_random_forest":
        assert blob.size > 1024 * 1024 and len(blob.chunks) > 1  # a big model really is chunked


def test_a_corrupt_or_missing_chunk_is_detected() -> None:
    blob = encode_blob(trained("hoeffding_tree"), 4096)
    assert len(blob.chunks) > 2
    flipped = bytearray(blob.chunks[1])
    flipped[10] ^= 0xFF
    with pytest.raises(CorruptVersion, match="checksum"):
        decode_blob([blob.chunks[0], bytes(flipped), *blob.chunks[2:]], blob.sha256)
    with pytest.raises(CorruptVersion, match="checksum"):
        decode_blob(blob.chunks[:-1], blob.sha256)


def test_a_blob_that_does_not_unpickle_is_corrupt() -> None:
    import hashlib
    import zlib

    packed = zlib.compress(b"not a pickle")
    with pytest.raises(CorruptVersion, match="does not load"):
        decode_blob([packed], hashlib.sha256(packed).hexdigest())


def record(version: int, status: str = "retired", chunks: int = 1, sha: str = "") -> VersionRecord:
    quality = {"metric": "accuracy", "value": 0.9, "window": 100}
    factory = "stream_app.models:hoeffding_tree"
    return VersionRecord(
        "m", version, version - 1 or None, 1.0, version * 10, quality, "periodic", status, 10, sha,
        chunks, factory, "classification",
    )  # fmt: skip


def test_retention_keeps_the_newest_and_the_protected() -> None:
    records = [record(v) for v in range(1, 11)]
    assert retained(records, keep_last=3, protected=[1, 4, None]) == {1, 4, 8, 9, 10}
    assert retained(records, keep_last=0, protected=[99]) == set()  # unknown versions: nothing


def test_view_applies_records_chunks_pins_and_deletes() -> None:
    blob = encode_blob({"state": 1}, 8)
    view = Registry()
    for i, chunk in enumerate(blob.chunks):
        view.apply(chunk_key("m", 1, i), chunk)
    view.apply(record_key("m", 1), record(1, "serving", len(blob.chunks), blob.sha256).to_json())
    view.apply(record_key("m", 2), record(2, "serving").to_json())
    view.apply(record_key("m", 3), record(3, "shadow").to_json())
    assert view.latest("m") == 3 and [r.version for r in view.versions("m")] == [1, 2, 3]
    assert view.serving("m").version == 2  # type: ignore[union-attr]
    view.apply(pin_key("m"), orjson.dumps({"version": 1}))
    assert view.serving("m").version == 1  # type: ignore[union-attr]
    assert view.load("m", 1) == {"state": 1}
    with pytest.raises(CorruptVersion, match="0 of 1 chunks"):
        view.load("m", 2)
    view.apply(pin_key("m"), None)
    view.apply(record_key("m", 2), None)
    assert view.serving("m").version == 1 and view.latest("m") == 3  # type: ignore[union-attr]
    assert view.apply(b"m/unknown", b"x") is None


def test_record_json_round_trip_ignores_unknown_fields() -> None:
    r = record(5)
    raw = orjson.dumps({**orjson.loads(r.to_json()), "from_the_future": True})
    assert VersionRecord.from_json(raw) == r
    assert "sha256" not in r.summary()


async def test_restore_skips_a_corrupt_newest_version_and_uses_the_previous_good_one() -> None:
    from stream_app.core.learn import Learner
    from stream_app.core.predict import Prediction
    from stream_app.registry.checkpoint import Checkpointer, encode_inline, restore_learner
    from stream_app.settings import Settings

    settings = Settings().replace(guard={"enabled": False})
    learner, view = Learner(settings), Registry()
    checkpointer = Checkpointer(settings, encode_inline)
    for round_ in range(2):
        for i in range(50):
            learner.learn(
                LabeledExample(
                    f"{round_}-{i}", {"x": float(i)}, i % 2 == 0, Prediction(None, {}), None, 0.0
                )
            )
        snapshot = checkpointer.snapshot(learner, view)
        for key, value in (await checkpointer.checkpoint(snapshot, view, "periodic")).writes:
            view.apply(key, value)
    good, bad = (r.version for r in view.versions("default"))
    view.apply(chunk_key("default", bad, 0), b"poison")  # the newest blob is corrupt
    restored, record, skipped = restore_learner(settings, view)
    assert skipped == ["corrupt"] and record is not None and record.version == good
    assert restored.serving.model.version == good and restored.examples_seen == 50
    assert restored.next_version > bad  # never reuse a number
