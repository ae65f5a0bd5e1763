"""Write the stored-version fixture of the shipped logistic regression's own steps.

    python scripts/make_scaling_fixture.py

tests/data/scaling/ gets ``v1.blob`` (a stored version's blob: the learner's snapshot, pickled
and compressed as the registry stores it) and ``v1.json`` (its checksum, the settings it learned
under, probe rows with the answers it gave them and with what :class:`ScaleNumbers` made of them,
then rows it went on to answer and learn, with those answers). The learner ran with
``model.max_indicators = 8``, string, boolean and churning feature names, so that the blob holds a
full :class:`~stream_app.scaling.ScaleNumbers` and :class:`~stream_app.models.BoundedOneHot`
(names beyond the bound pass unscaled and are hashed into buckets).

``v1`` was written by the code before ``ScaleNumbers`` kept its own per-name statistics (it
wrapped River's ``StandardScaler``). tests/unit/core/test_scaling_fixture.py loads it: regenerate
only when a format change is meant, and then under a new name, keeping the old files.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import orjson

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.registry.checkpoint import FORMAT
from stream_app.registry.records import decode_blob, pack
from stream_app.settings import Settings

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "scaling"
NAME = "v1"
SEED = 11
LEARN = 400
PROBES = 20
GO_ON = 40
OVERRIDES: dict[str, dict[str, Any]] = {
    "model": {"max_indicators": 8},
    "guard": {"enabled": False},
    "drift": {"policy": "none"},
}


def stream(n: int) -> list[tuple[dict[str, Any], bool]]:
    """Seeded rows: numbers, a string, a boolean, and now and then a name never seen before."""
    rng = random.Random(SEED)
    rows = []
    for i in range(n):
        x: dict[str, Any] = {f"x{k}": rng.gauss(k, 1.0 + k) for k in range(6)}
        x["colour"] = rng.choice(["red", "blue", "green"])
        x["ok"] = rng.random() < 0.5
        if i % 7 == 0:
            x[f"extra{i}"] = rng.gauss(0.0, 3.0)
        y = x["x0"] - 0.5 * x["x1"] + (x["colour"] == "red") + rng.gauss(0.0, 0.5) > 0.0
        rows.append((x, y))
    return rows


def answered(learner: Learner, x: dict[str, Any]) -> list[Any]:
    """The serving model's answer to ``x``: prediction and probabilities."""
    served, _ = learner.answer(x)
    return [served.prediction, served.proba]


def main() -> None:
    """Learn, store, probe, go on learning; write the two files."""
    OUT.mkdir(parents=True, exist_ok=True)
    learner = Learner(Settings().replace(**OVERRIDES))
    rows = stream(LEARN + PROBES + GO_ON)
    for i, (x, y) in enumerate(rows[:LEARN]):
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"s-{i}", x, y, served, shadow, float(i)))
    packed = pack({"format": FORMAT, "learner": learner.snapshot()})
    stored = learner_at_store(packed)
    scale = stored.serving.model.estimator["ScaleNumbers"]
    probes = [
        {"x": x, "answer": answered(stored, x), "scaled": scaled(scale, x)}
        for x, _ in rows[LEARN : LEARN + PROBES]
    ]
    go_on = []
    for i, (x, y) in enumerate(rows[LEARN + PROBES :]):
        go_on.append({"x": x, "y": y, "answer": answered(learner, x)})
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"t-{i}", x, y, served, shadow, float(LEARN + i)))
    meta = {
        "sha256": hashlib.sha256(packed).hexdigest(),
        "settings": OVERRIDES,
        "probes": probes,
        "go_on": go_on,
    }
    (OUT / f"{NAME}.blob").write_bytes(packed)
    (OUT / f"{NAME}.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {NAME}: {len(packed)} bytes, {len(probes)} probes, {len(go_on)} rows after")


def learner_at_store(packed: bytes) -> Learner:
    """The learner as stored, loaded back through the registry's decoder."""
    state = decode_blob([packed], hashlib.sha256(packed).hexdigest())
    return Learner.restore(Settings().replace(**OVERRIDES), state["learner"], 1)


def scaled(scale: Any, x: dict[str, Any]) -> list[list[Any]]:
    """What the stored ScaleNumbers step makes of ``x``, as ordered pairs."""
    return [[k, v] for k, v in scale.transform_one(x).items()]


if __name__ == "__main__":
    main()
