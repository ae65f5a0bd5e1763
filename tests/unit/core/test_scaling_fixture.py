"""A version stored by an earlier release's shipped model steps loads and answers as it did.

tests/data/scaling/v1.* were written by scripts/make_scaling_fixture.py with the code before
:class:`~stream_app.scaling.ScaleNumbers` kept its own per-name statistics: a logistic regression
(``ScaleNumbers | BoundedOneHot | LogisticRegression``) with a small bound, strings, booleans
and names beyond the bound. Loaded through the registry's decoder (checksum, safe unpickler), it
must answer the probes exactly as then, scale them exactly as then, and go on learning exactly as
the code that stored it did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.errors import CorruptVersion
from stream_app.registry.records import decode_blob
from stream_app.settings import Settings

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "scaling"


def stored(name: str) -> tuple[Learner, dict[str, Any]]:
    """The stored learner, restored as a worker restores it, and the fixture's expectations."""
    meta = orjson.loads((FIXTURE / f"{name}.json").read_bytes())
    state = decode_blob([(FIXTURE / f"{name}.blob").read_bytes()], meta["sha256"])
    return Learner.restore(Settings().replace(**meta["settings"]), state["learner"], 1), meta


def answer(learner: Learner, x: dict[str, Any]) -> list[Any]:
    served, _ = learner.answer(x)
    return [served.prediction, served.proba]


def test_a_version_stored_before_answers_and_scales_exactly_as_then() -> None:
    learner, meta = stored("v1")
    scale = learner.serving.model.estimator["ScaleNumbers"]
    for probe in meta["probes"]:
        assert answer(learner, probe["x"]) == probe["answer"]
        assert [[k, v] for k, v in scale.transform_one(probe["x"]).items()] == probe["scaled"]


def test_a_version_stored_before_goes_on_learning_exactly_as_then() -> None:
    learner, meta = stored("v1")
    for i, row in enumerate(meta["go_on"]):
        assert answer(learner, row["x"]) == row["answer"], f"row {i}"
        served, shadow = learner.answer(row["x"])
        learner.learn(LabeledExample(f"t-{i}", row["x"], row["y"], served, shadow, float(i)))


def test_the_fixture_is_checked_before_it_is_unpickled() -> None:
    packed = (FIXTURE / "v1.blob").read_bytes()
    with pytest.raises(CorruptVersion, match="checksum"):
        decode_blob(
            [packed[:-1] + b"!"], orjson.loads((FIXTURE / "v1.json").read_bytes())["sha256"]
        )
