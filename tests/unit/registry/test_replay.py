"""The learning log's replay without a broker: both message shapes, learned as first learned."""

from __future__ import annotations

from typing import NamedTuple

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.learning_log import encode_log_batch, encode_log_entry
from stream_app.core.predict import NO_ANSWER
from stream_app.registry.replay import replay
from stream_app.settings import Settings
from tests.unit.core.test_batch import rows
from tests.unit.core.test_messages import STORED_OLD_ENTRY


class Rec(NamedTuple):
    offset: int
    value: bytes


def test_a_log_of_old_entries_then_batches_replays_as_the_examples_were_learned() -> None:
    settings = Settings().replace(guard={"enabled": False}, drift={"policy": "none"})
    data = [(x, sum(x.values()) > 0) for x in rows(120, seed=9)]
    examples = [
        LabeledExample(f"e{i}", x, y, NO_ANSWER, None, float(i)) for i, (x, y) in enumerate(data)
    ]
    first = Learner(settings)  # the writer, learning them as they came
    for example in examples:
        first.learn(example)
    log = [Rec(i, encode_log_entry(e)) for i, e in enumerate(examples[:40])]  # older writers
    for start in range(40, 120, 30):  # then one message per batch (split past the limit)
        for value in encode_log_batch(examples[start : start + 30], 1500):
            log.append(Rec(len(log), value))
    assert len(log) > 40 + 3  # some batches were split
    again = Learner(settings)
    done = replay(again, log)
    assert done.learned == 120 and not done.corrupt
    assert again.learned_through == len(log) - 1
    assert again.serving.model.examples_learned == 120 and again.has_learned("e119")
    for x, _ in data[:20]:
        got = again.serving.model.estimator.predict_proba_one(x)
        want = first.serving.model.estimator.predict_proba_one(x)
        assert abs(got[True] - want[True]) <= 1e-9


def test_a_stored_one_example_entry_replays() -> None:
    tree = {"factory": "stream_app.models:hoeffding_tree"}  # (string labels: not binary-only)
    learner = Learner(Settings().replace(guard={"enabled": False}, model=tree))
    done = replay(learner, [Rec(41, STORED_OLD_ENTRY), Rec(42, b"{not an example")])
    assert done.learned == 1 and [r.offset for r in done.corrupt] == [42]
    assert learner.has_learned("ev-17") and learner.learned_through == 42
