"""Golden fixtures: what an earlier release stored still loads and answers exactly as recorded.

tests/data/golden/ is written by scripts/make_golden.py. A failure here means users' stored
versions would stop loading (or answer differently) after this change: add a rename to
:data:`stream_app.registry.safeload.RENAMES` rather than regenerate, unless the break is meant.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.artifact import load
from stream_app.core.learn import Learner
from stream_app.registry import safeload
from stream_app.registry.records import decode_blob
from stream_app.settings import Settings

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "golden"
NAMES = ["logistic_regression", "hoeffding_tree"]


def restored(name: str, state: dict[str, Any]) -> tuple[Learner, dict[str, Any]]:
    meta = orjson.loads((GOLDEN / f"{name}.json").read_bytes())
    return Learner.restore(Settings().replace(**meta["settings"]), state["learner"], 1), meta


def answered(learner: Learner, row: dict[str, Any]) -> dict[str, Any]:
    served, shadow = learner.answer(row)
    assert shadow is not None, "the golden learner holds a challenger"
    return {
        "served": [served.prediction, served.proba],
        "shadow": [shadow.prediction, shadow.proba],
    }


@pytest.mark.parametrize("name", NAMES)
def test_a_golden_blob_loads_and_answers_exactly_as_recorded(name: str) -> None:
    packed = (GOLDEN / f"{name}.blob").read_bytes()
    learner, meta = restored(name, decode_blob([packed], hashlib.sha256(packed).hexdigest()))
    assert learner.serving.guard.settings.enabled and learner.monitor is not None
    assert [answered(learner, row) for row in meta["rows"]] == meta["answers"]


@pytest.mark.parametrize("name", NAMES)
def test_a_golden_artifact_loads_and_answers_exactly_as_recorded(name: str) -> None:
    artifact = load(GOLDEN / f"{name}.river")
    meta = orjson.loads((GOLDEN / f"{name}.json").read_bytes())
    for row, expected in zip(meta["rows"], meta["answers"], strict=True):
        assert list(artifact.predict_one(row)) == expected["served"]


@pytest.mark.parametrize("name", NAMES)
def test_a_golden_blob_whose_classes_moved_loads_through_the_rename_map(name: str) -> None:
    pickled = zlib.decompress((GOLDEN / f"{name}.blob").read_bytes())
    moved = pickled.replace(b"stream_app.guard", b"stream_app.gvard")  # same length: still valid
    assert moved != pickled
    renames = {
        **safeload.RENAMES,
        "stream_app.gvard:NoiseGuard": "stream_app.core.guard:NoiseGuard",
    }
    state = safeload.SafeUnpickler(io.BytesIO(moved), renames=renames).load()
    learner, meta = restored(name, state)
    assert [answered(learner, row) for row in meta["rows"]] == meta["answers"]
