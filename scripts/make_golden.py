"""Write the golden model fixtures: what this release stores, for later releases to read.

    python scripts/make_golden.py

For logistic regression and a Hoeffding tree, each learning with the guard, a drift detector and
a challenger, tests/data/golden/ gets:

- ``<name>.blob``: a stored version's blob (pickled learner state, zlib), as the registry holds it;
- ``<name>.river``: the serving model exported as an artifact (:mod:`stream_app.artifact`);
- ``<name>.json``: the settings it learned under, probe rows, and the answers (serving and
  challenger) it gave them. tests/unit/registry/test_golden.py loads both files and expects exactly
  these.

Regenerate only when a format change is meant; a test failing on the old files is the warning
that users' stored versions would no longer load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from river.datasets import synth

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.registry.checkpoint import FORMAT
from stream_app.registry.records import pack
from stream_app.registry.transfer import artifact_of
from stream_app.settings import Settings

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"
LEARN = 1500
PROBES = 50
FACTORIES = {
    "logistic_regression": "stream_app.models:logistic_regression",
    "hoeffding_tree": "stream_app.models:hoeffding_tree",
}


def settings_for(factory: str) -> dict[str, dict[str, Any]]:
    """The settings overrides a golden learner uses: guard on, drift watched, a challenger."""
    return {
        "model": {"factory": factory, "challenger_factory": factory},
        "guard": {"enabled": True},
        "drift": {"policy": "challenger"},
    }


def answers(learner: Learner, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the serving model and the challenger answer to each row."""
    out = []
    for row in rows:
        served, shadow = learner.answer(row)
        out.append(
            {
                "served": [served.prediction, served.proba],
                "shadow": None if shadow is None else [shadow.prediction, shadow.proba],
            }
        )
    return out


def main() -> None:
    """Write the three files of each golden model."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, factory in FACTORIES.items():
        overrides = settings_for(factory)
        learner = Learner(Settings().replace(**overrides))
        stream = [
            ({f"x{k}": v for k, v in x.items()} | {"colour": "red" if y else "blue"}, y)
            for x, y in synth.SEA(variant=0, seed=15).take(LEARN + PROBES)
        ]
        for i, (x, y) in enumerate(stream[:LEARN]):
            served, shadow = learner.answer(x)
            learner.learn(LabeledExample(f"g-{i}", x, y, served, shadow, float(i)))
        assert learner.challenger is not None, "the golden learner must hold a challenger"
        rows = [x for x, _ in stream[LEARN:]]
        state = {"format": FORMAT, "learner": learner.snapshot()}
        (OUT / f"{name}.blob").write_bytes(pack(state))
        (OUT / f"{name}.river").write_bytes(artifact_of(learner.serving.model, None, factory))
        meta = {"settings": overrides, "rows": rows, "answers": answers(learner, rows)}
        (OUT / f"{name}.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"wrote {name}: serving v{learner.serving.model.version}, challenger present")


if __name__ == "__main__":
    main()
