"""The straight path without a broker: a recording Outputs stands in for the emitter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from stream_app import reasons
from stream_app.core.learn import Learner
from stream_app.core.learning_log import decode_log_entries
from stream_app.core.messages import decode_dead_letter
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.role import WriterRole
from stream_app.core.route import home_partition
from stream_app.settings import Settings


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
    """Kafka's timestamp (ms): now, unless a test makes the record older."""


@dataclass
class Recorder:
    sent: list[tuple[str, int | None, bytes | None, bytes]] = field(default_factory=list)

    def to_partition(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, partition, key, value))

    def keyed(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, None, key, value))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for t, _, _, v in self.sent if t == topic]


def pipeline(**overrides: dict[str, Any]) -> tuple[Pipeline, Metrics, Settings]:
    settings = Settings().replace(guard={"enabled": False}, **overrides)
    metrics = Metrics()
    p = Pipeline(settings, Learner(settings), metrics)
    p.output_partitions = 4
    return p, metrics, settings


def home(i: int) -> int:
    return home_partition(f"e{i}", 4)


def event(i: int, label: Any = None, partition: int | None = None) -> Rec:
    """Event ``e{i}``, on its id's home partition unless told otherwise (murmur2, like aiokafka)."""
    body: dict[str, Any] = {"id": f"e{i}", "features": {"x": float(i % 7), "c": "red"}}
    if label is not None:
        body["label"] = label
    where = home(i) if partition is None else partition
    return Rec("features", where, i, f"e{i}".encode(), orjson.dumps(body))


def label(i: int, value: Any, partition: int | None = None, offset: int = 0) -> Rec:
    where = home(i) if partition is None else partition
    body = orjson.dumps({"id": f"e{i}", "label": value})
    return Rec("labels", where, offset, f"e{i}".encode(), body)


def deliver(p: Pipeline, out: Recorder) -> int:
    """Play the join topic: hand what was sent to it to the pipeline, as the serve loop would."""
    topic = p.settings.join_topic
    sent = [(part, k, v) for t, part, k, v in out.sent if t == topic]
    out.sent = [m for m in out.sent if m[0] != topic]
    for offset, (part, k, v) in enumerate(sent):
        assert part is not None
        p.joins([Rec(topic, part, offset, k, v)], out)
    return len(sent)


def test_inline_labels_are_learned_after_their_prediction() -> None:
    p, metrics, _ = pipeline()
    out = Recorder()
    p.features([event(0, True), event(1, False), event(2, True)], 0.0, out)
    predictions = out.on("predictions")
    assert predictions[0]["prediction"] is None  # nothing learned before event 0
    assert predictions[1]["prediction"] is True  # event 0 was learned before event 1
    assert metrics.labels_learned._value.get() == 3
    sent = [(t, part) for t, part, _, _ in out.sent if t == "predictions"]
    assert [part for _, part in sent] == [home(0), home(1), home(2)]  # the event's partition
    logged = [(part, orjson.loads(v)) for t, part, _, v in out.sent if t.endswith("learning-log")]
    assert len(logged) == 1  # one learning-log message for the batch, not one per example
    assert [(part, e["id"], e["label"]) for part, m in logged for e in m["entries"]] == [
        (0, "e0", True), (0, "e1", False), (0, "e2", True),
    ]  # fmt: skip
    assert len(out.sent) == 4  # nothing else


def test_a_batch_logs_its_examples_in_order_in_messages_no_larger_than_the_setting() -> None:
    limit = 1000
    p, _, _ = pipeline(serve={"log_message_max_bytes": limit})
    out = Recorder()
    p.features([event(i, i % 3 == 0) for i in range(40)], 0.0, out)
    messages = [v for t, _, _, v in out.sent if t.endswith("learning-log")]
    assert 1 < len(messages) < 40 and all(len(m) <= limit for m in messages)
    ids = [e.event_id for m in messages for e in decode_log_entries(m)]
    assert ids == [f"e{i}" for i in range(40)]
    p.close_log(out)  # nothing waits once the call has returned
    assert len([t for t, _, _, _ in out.sent if t.endswith("learning-log")]) == len(messages)


def test_delayed_labels_join_once_and_strangers_wait_then_are_dead_lettered() -> None:
    p, metrics, _ = pipeline(learn={"early_label_ttl_s": 30.0})
    out = Recorder()
    p.features([event(i) for i in range(3)], 0.0, out)
    assert len(p.pending) == 3
    p.labels([label(0, True, offset=0), label(1, False, offset=1), label(0, True, offset=2),
              label(9, True, offset=3)], out)  # fmt: skip
    assert metrics.labels_learned._value.get() == 2
    letters = [decode_dead_letter(v) for t, _, _, v in out.sent if t == "dead-letters"]
    assert [d["reason"] for d in letters] == [reasons.DUPLICATE_LABEL]
    assert letters[0]["source"] == {"topic": "labels", "partition": home(0), "offset": 2}
    assert len(p.pending) == 1 and len(p.early) == 1  # e2 waits for its label, e9 for its event
    p.expire(time.time() + 31.0, out)
    letters = [decode_dead_letter(v) for t, _, _, v in out.sent if t == "dead-letters"]
    assert [d["reason"] for d in letters] == [reasons.DUPLICATE_LABEL, reasons.LABEL_WITHOUT_EVENT]
    assert letters[1]["source"] == {"topic": "labels", "partition": home(9), "offset": 3}
    assert f"searched partition {home(9)}, the home of its id" in letters[1]["detail"]
    assert orjson.loads(letters[1]["original"]) == {"id": "e9", "label": True}
    assert len(p.early) == 0 and metrics.early_labels._value.get() == 0


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_events_and_labels_off_their_home_meet_there_through_the_join_topic(shift: int) -> None:
    p, metrics, settings = pipeline()
    out = Recorder()
    ids = range(40)
    p.features([event(i, partition=(home(i) + shift) % 4) for i in ids], 0.0, out)
    assert len(p.pending) == 0 and len(out.on("predictions")) == 40
    p.labels(
        [label(i, i % 2 == 0, partition=(home(i) + 2 * shift) % 4, offset=i) for i in ids], out
    )
    joins = [(part, k) for t, part, k, _ in out.sent if t == settings.join_topic]
    assert len(joins) == 40 + sum(1 for _ in ids if (2 * shift) % 4)  # labels at home stay there
    assert all(part == home(int(k.decode()[1:])) for part, k in joins)
    deliver(p, out)
    assert metrics.labels_learned._value.get() == 40 and metrics.labels_rerouted._value.get() == 40
    assert out.on("dead-letters") == [] and len(p.pending) == len(p.early) == 0


def test_a_label_that_comes_before_its_event_waits_for_it() -> None:
    p, metrics, _ = pipeline()
    out = Recorder()
    p.labels([label(i, True, offset=i) for i in range(5)], out)
    assert len(p.early) == 5 and metrics.labels_learned._value.get() == 0
    p.expire(time.time(), out)
    assert metrics.early_labels._value.get() == 5
    p.features([event(i) for i in range(5)], 0.0, out)
    assert metrics.labels_learned._value.get() == 5 and len(p.early) == 0
    assert metrics.labels_rerouted._value.get() == 0  # everything was home already


def test_held_labels_past_the_bound_are_dead_lettered_oldest_first() -> None:
    p, _, _ = pipeline(learn={"early_label_max": 2})
    out = Recorder()
    p.labels([label(i, True, offset=i) for i in range(3)], out)
    letters = [decode_dead_letter(v) for t, _, _, v in out.sent if t == "dead-letters"]
    assert [(d["reason"], d["source"]["offset"]) for d in letters] == [
        (reasons.LABEL_WITHOUT_EVENT, 0)
    ]
    assert "learn.early_label_max" in letters[0]["detail"] and len(p.early) == 2


def test_a_corrupt_join_message_is_dead_lettered_and_the_rest_go_on() -> None:
    p, _, settings = pipeline()
    out = Recorder()
    p.joins([Rec(settings.join_topic, 0, 0, b"k", b'{"kind": "served"}'),
             Rec(settings.join_topic, 0, 1, b"k", b"{oops")], out)  # fmt: skip
    assert [d["reason"] for d in out.on("dead-letters")] == [reasons.INVALID_JSON] * 2


def test_bad_labels_are_dead_lettered_but_the_prediction_stands() -> None:
    p, metrics, _ = pipeline(model={"classes": ["yes", "no"]})
    out = Recorder()
    p.features([event(0, "maybe"), event(1, 1.5)], 0.0, out)
    assert len(out.on("predictions")) == 2
    reasons_seen = [d["reason"] for d in out.on("dead-letters")]
    assert reasons_seen == [reasons.UNKNOWN_LABEL, reasons.INVALID_LABEL]
    assert metrics.labels_rejected.labels(reason=reasons.UNKNOWN_LABEL)._value.get() == 1


def test_drift_starts_a_challenger_whose_answers_go_to_the_shadow_topic() -> None:
    from river.datasets import synth

    p, metrics, _ = pipeline()
    out = Recorder()
    stream = synth.ConceptDriftStream(
        stream=synth.SEA(variant=0, seed=1), drift_stream=synth.SEA(variant=3, seed=2),
        position=3000, width=50, seed=1,
    )  # fmt: skip
    records = [
        Rec(
            "features",
            0,
            i,
            None,
            orjson.dumps(
                {"id": f"e{i}", "features": {f"x{k}": v for k, v in x.items()}, "label": y}
            ),
        )
        for i, (x, y) in enumerate(stream.take(6000))
    ]
    p.features(records, 0.0, out)
    kinds = [m["type"] for m in out.on("model-events")]
    assert kinds[:2] == ["drift", "promotion"]
    shadow = out.on("predictions-shadow")
    assert shadow and {m["model_version"] for m in shadow} == {1}
    assert metrics.drift_detected._value.get() == 1
    versions = [m["model_version"] for m in out.on("predictions")]
    assert versions[0] == 0 and versions[-1] == 1


def test_learning_off_keeps_nothing() -> None:
    p, metrics, _ = pipeline(learn={"enabled": False})
    out = Recorder()
    p.features([event(0, True), event(1)], 0.0, out)
    assert len(p.pending) == 0 and metrics.labels_learned._value.get() == 0


def test_a_follower_forwards_and_the_writer_learns_the_forwarded_examples() -> None:
    follower, f_metrics, settings = pipeline()
    follower.role = WriterRole(writer=False)
    out = Recorder()
    follower.features([event(0, True), event(1)], 0.0, out)
    follower.labels([label(1, False)], out)
    forwarded = [(t, k, v) for t, _, k, v in out.sent if t == settings.examples_topic]
    assert [k for _, k, _ in forwarded] == [b"e0", b"e1"]
    assert (
        f_metrics.labels_forwarded._value.get() == 2 and f_metrics.labels_learned._value.get() == 0
    )
    follower.labels([label(1, False, offset=1)], out)  # a second label: refused where it was taken
    assert out.on("dead-letters")[-1]["reason"] == reasons.DUPLICATE_LABEL

    writer, w_metrics, _ = pipeline()
    records = [Rec(settings.examples_topic, 0, i, k, v) for i, (_, k, v) in enumerate(forwarded)]
    writer.examples([*records, Rec(settings.examples_topic, 0, 9, None, b"{oops")], Recorder())
    assert w_metrics.labels_learned._value.get() == 2
    assert writer.learner.has_learned("e0") and writer.learner.serving.model.examples_learned == 2
    assert w_metrics.dead_letters.labels(reason=reasons.INVALID_JSON)._value.get() == 1


class Raises:
    """An estimator-shaped object that raises on every call, as a broken import would."""

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        raise AttributeError("'int' object has no attribute 'predict_proba_one'")

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        raise AttributeError("'int' object has no attribute 'learn_one'")


def broken_challenger(p: Pipeline, answers: bool) -> None:
    """Give the learner a challenger that raises when answering (or, if ``answers``, learning)."""
    from stream_app.core.predict import fresh_model

    model = fresh_model(p.settings.model, version=7)
    if answers:
        model.estimator.learn_one = Raises().learn_one  # type: ignore[method-assign]
    else:
        model.estimator = Raises()
        model.examples_learned = 1  # so predict_one asks the estimator
    p.learner.challenge(model)


def test_a_challenger_that_raises_answering_is_dropped_and_serving_answers_all() -> None:
    p, metrics, _ = pipeline()
    broken_challenger(p, answers=False)
    out = Recorder()
    p.features([event(i, label=i % 2 == 0) for i in range(20)], 0.0, out)
    assert len(out.on("predictions")) == 20 and not out.on("dead-letters")
    dropped = [m for m in out.on("model-events") if m["type"] == "challenger_dropped"]
    assert len(dropped) == 1 and dropped[0]["reason"] == "predict_error"
    assert dropped[0]["model_version"] == 7 and "AttributeError" in dropped[0]["detail"]
    assert p.learner.challenger is None
    assert metrics.challengers_dropped.labels(reason="predict_error")._value.get() == 1


def test_a_challenger_that_raises_learning_is_dropped_and_serving_learns() -> None:
    p, metrics, _ = pipeline()
    broken_challenger(p, answers=True)
    out = Recorder()
    p.features([event(i, label=i % 2 == 0) for i in range(20)], 0.0, out)
    assert len(out.on("predictions")) == 20 and not out.on("dead-letters")
    dropped = [m for m in out.on("model-events") if m["type"] == "challenger_dropped"]
    assert [m["reason"] for m in dropped] == ["learn_error"]
    assert p.learner.serving.model.examples_learned == 20
    assert metrics.challengers_dropped.labels(reason="learn_error")._value.get() == 1


def forwarded_examples(n: int, age_s: float, settings: Settings, start: int = 0) -> list[Rec]:
    """Labeled examples ``e{start}``... as a follower forwards them, sent ``age_s`` seconds ago."""
    follower = Pipeline(settings, Learner(settings), Metrics(), WriterRole(writer=False))
    out = Recorder()
    events = [event(i, i % 2 == 0, partition=0) for i in range(start, start + n)]
    follower.features(events, 0.0, out)
    sent = int((time.time() - age_s) * 1000)
    return [
        Rec(settings.examples_topic, 0, i, k, v, sent)
        for i, (t, _, k, v) in enumerate(out.sent)
        if t == settings.examples_topic
    ]


def test_a_writer_within_its_lag_bound_learns_every_forwarded_example() -> None:
    writer, metrics, settings = pipeline(learn={"max_lag_s": 30.0})
    writer.examples(forwarded_examples(200, age_s=5.0, settings=settings), Recorder())
    assert metrics.labels_learned._value.get() == 200
    assert metrics.labels_shed._value.get() == 0
    assert 5.0 <= metrics.learner_lag_seconds._value.get() < 30.0
    assert not writer.shedder.shedding


def test_a_writer_past_its_lag_bound_learns_a_sample_counts_and_announces_the_rest() -> None:
    writer, metrics, settings = pipeline(learn={"max_lag_s": 2.0})
    out = Recorder()
    late = forwarded_examples(1000, age_s=10.0, settings=settings)
    writer.shedder.cost_s = 0.01  # as measured before: 1,000 examples take 10 s, 2 s learn 200
    writer.examples(late, out)
    learned, shed = metrics.labels_learned._value.get(), metrics.labels_shed._value.get()
    assert learned + shed == 1000 and 120 < learned < 280  # nothing silently dropped
    (notice,) = [m for m in out.on("model-events") if m["type"] == "shedding"]
    assert notice["shed"] == shed and 0.15 < notice["share"] < 0.25 and notice["lag_s"] >= 10.0
    assert writer.shedder.shedding and metrics.learner_lag_seconds._value.get() >= 10.0

    again = Recorder()  # the backlog read again (say, after a restart): nothing learned by accident
    writer.examples(late, again)
    assert metrics.labels_learned._value.get() == learned
    assert metrics.labels_shed._value.get() == shed
    letters = again.on("dead-letters")
    assert len(letters) == 1000 and {d["reason"] for d in letters} == {reasons.DUPLICATE_LABEL}

    caught_up = Recorder()  # fresh examples: within bound again; shedding ends, and says so
    writer.examples(forwarded_examples(10, 0.0, settings, start=1000), caught_up)
    assert metrics.labels_learned._value.get() == learned + 10
    (end,) = [m for m in caught_up.on("model-events") if m["type"] == "shedding"]
    assert end["share"] == 1.0 and not writer.shedder.shedding


def test_a_challenger_promoted_in_the_middle_of_a_micro_batch_costs_no_answer() -> None:
    """Batch mode answers a whole batch first; a label learned in it may promote the challenger."""
    from stream_app.core.predict import fresh_model

    p, metrics, _ = pipeline(inference={"mode": "batch", "max_batch": 50})
    p.learner.challenge(fresh_model(p.settings.model, version=5))
    learn = p.learner.learn

    def promoting(*args: Any, **kwargs: Any) -> Any:
        outcome = learn(*args, **kwargs)
        if p.learner.challenger is not None:
            p.learner.promote("test")  # as a won duel would, after the batch was answered
        return outcome

    p.learner.learn = promoting  # type: ignore[method-assign]
    out = Recorder()
    p.features([event(i, label=i % 2 == 0) for i in range(10)], 0.0, out)
    assert len(out.on("predictions")) == 10 and metrics.labels_learned._value.get() == 10
    assert len(out.on("predictions-shadow")) == 1  # only the event answered before the promotion
