"""The keyed path without a broker: a recording Outputs and an in-memory key store."""

from __future__ import annotations

import pickle
import random
from typing import Any

import orjson
import pytest

from stream_app import reasons
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.role import WriterRole
from stream_app.core.route import home_partition
from stream_app.settings import Settings
from tests.unit.core.test_keyed import plain_lr
from tests.unit.core.test_pipeline import Rec, Recorder, deliver

PARTITIONS = 4


class MemoryStore:
    """The KeyStore port in memory: each saved version pickled, as the topic would hold it."""

    def __init__(self, settings: Settings, owned: set[int] | None = None) -> None:
        self.settings = settings
        self.versions: dict[str, list[tuple[int, bytes, str]]] = {}
        self.owned = set(range(PARTITIONS)) if owned is None else owned

    def load(self, key: str) -> Learner | None:
        held = self.versions.get(key)
        if not held:
            return None
        return Learner.restore(self.settings, pickle.loads(held[-1][1]), 0)

    def save(self, key: str, partition: int, learner: Learner, reason: str, now: float) -> None:
        assert partition == home_partition(key, PARTITIONS)
        blob = pickle.dumps(learner.snapshot())
        self.versions.setdefault(key, []).append((partition, blob, reason))

    def owns(self, partition: int) -> bool:
        return partition in self.owned


def keyed_pipeline(
    fallback: str = "none",
    owned: set[int] | None = None,
    model: dict[str, Any] | None = None,
    drift: dict[str, Any] | None = None,
    guard: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[Pipeline, Metrics, MemoryStore]:
    settings = Settings().replace(
        guard=guard or {"enabled": False},
        drift={"policy": "none", **(drift or {})},
        model={
            "key_field": "user",
            "key_fallback": fallback,
            "key_min_examples": 5,
            "factory": "tests.unit.core.test_keyed:plain_lr",
            **(model or {}),
        },
        **overrides,
    )
    metrics = Metrics()
    p = Pipeline(settings, Learner(settings), metrics)
    p.output_partitions = PARTITIONS
    store = MemoryStore(settings, owned)
    p.use_keys(store)
    return p, metrics, store


def keyed_event(i: int, key: str | None, x: dict[str, Any], label: Any = None) -> Rec:
    """Event ``e{i}`` of ``key``, keyed by the model key (so on the key's home partition)."""
    body: dict[str, Any] = {"id": f"e{i}", "features": x}
    if key is not None:
        body["user"] = key
    if label is not None:
        body["label"] = label
    where = home_partition(key, PARTITIONS) if key else 0
    return Rec("features", where, i, (key or "").encode(), orjson.dumps(body))


def test_an_event_without_a_valid_key_is_dead_lettered_as_invalid_model_key() -> None:
    p, metrics, _ = keyed_pipeline()
    out = Recorder()
    p.features([keyed_event(0, None, {"a": 1.0}), keyed_event(1, "", {"a": 1.0})], 0.0, out)
    letters = out.on(p.settings.topics.dead_letters)
    assert [letter["reason"] for letter in letters] == [reasons.INVALID_MODEL_KEY] * 2
    sample = metrics.registry.get_sample_value(
        "stream_app_dead_letters_total", {"reason": reasons.INVALID_MODEL_KEY}
    )
    assert sample == 2
    assert out.on(p.settings.topics.predictions) == []


def test_each_keys_predictions_are_rivers_own_loop_over_its_events() -> None:
    p, metrics, _ = keyed_pipeline(registry={"key_checkpoint_every_examples": 7})
    rng = random.Random(5)
    oracle: dict[str, Any] = {}
    compared = 0
    for i in range(1500):
        key = f"u{rng.randrange(12)}"
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
        y = (x["a"] + (0.5 if key < "u6" else -0.5) * x["b"]) > 0
        out = Recorder()
        p.features([keyed_event(i, key, x, y)], 0.0, out)
        p.checkpoint_keys(float(i))
        (prediction,) = out.on(p.settings.topics.predictions)
        assert prediction["model_key"] == key and "fallback" not in prediction
        model = oracle.setdefault(key, plain_lr())
        expected = model.predict_proba_one(x)
        model.learn_one(x, y)
        if prediction["proba"]:
            got = {k: prediction["proba"][str(k).lower()] for k in expected}
            assert got == pytest.approx(expected, abs=1e-9), (i, key)
            compared += 1
    assert compared == 1500 - 12
    assert metrics.registry.get_sample_value("stream_app_labels_learned_total") == 1500
    assert metrics.registry.get_sample_value("stream_app_labels_forwarded_total") == 0
    assert p.learner.examples_seen == 0  # with key_fallback = none the global model learns nothing


def test_the_global_model_answers_young_keys_and_learns_as_without_keys() -> None:
    p, metrics, _ = keyed_pipeline(fallback="global")
    out = Recorder()
    events = [keyed_event(i, "u1", {"a": float(i % 3)}, i % 2 == 0) for i in range(8)]
    p.features(events, 0.0, out)
    predictions = out.on(p.settings.topics.predictions)
    assert [bool(m.get("fallback")) for m in predictions] == [True] * 5 + [False] * 3
    assert metrics.registry.get_sample_value("stream_app_key_fallback_answers_total") == 5
    assert p.learner.examples_seen == 8  # the writer's global model learned every example too
    p.role = WriterRole(writer=False)
    p.features([keyed_event(9, "u1", {"a": 1.0}, True)], 0.0, out)
    assert metrics.registry.get_sample_value("stream_app_labels_forwarded_total") == 1


def test_a_delayed_label_teaches_its_keys_learner_at_the_keys_home() -> None:
    p, metrics, _ = keyed_pipeline()
    out = Recorder()
    key = "u3"
    home = home_partition(key, PARTITIONS)
    p.features([keyed_event(0, key, {"a": 1.0}), keyed_event(1, key, {"a": 2.0})], 0.0, out)
    elsewhere = (home + 1) % PARTITIONS
    with_key = orjson.dumps({"id": "e0", "label": True, "user": key})
    without_key = orjson.dumps({"id": "e1", "label": False})
    p.labels([Rec("labels", elsewhere, 0, b"e0", with_key)], out)
    deliver(p, out)  # the label named its key: it went to the key's home, through the join topic
    p.labels([Rec("labels", home, 1, b"u3", without_key)], out)
    state = p.keys.peek(key) if p.keys else None
    assert state is not None and state.learner.serving.model.examples_learned == 2
    assert metrics.registry.get_sample_value("stream_app_labels_forwarded_total") == 0
    p.labels([Rec("labels", home, 2, b"u3", without_key)], out)
    letters = out.on(p.settings.topics.dead_letters)
    assert [letter["reason"] for letter in letters] == [reasons.DUPLICATE_LABEL]


def test_due_evicted_and_revoked_keys_are_stored_and_reload_as_they_were() -> None:
    p, metrics, store = keyed_pipeline(
        model={"key_cache": 2},
        registry={"key_checkpoint_every_examples": 3},
    )
    out = Recorder()
    for i in range(3):
        p.features([keyed_event(i, "a", {"x": float(i)}, i % 2 == 0)], 0.0, out)
    p.checkpoint_keys(1.0)
    assert [reason for _, _, reason in store.versions["a"]] == ["checkpoint"]
    p.features([keyed_event(3, "a", {"x": 3.0}, False)], 0.0, out)  # dirty again
    p.features([keyed_event(10, "b", {"x": 1.0}, True)], 0.0, out)
    p.features([keyed_event(11, "c", {"x": 1.0}, True)], 0.0, out)  # "a" (dirty) is evicted
    assert [reason for _, _, reason in store.versions["a"]] == ["checkpoint", "evicted"]
    assert p.keys is not None and "a" not in p.keys
    p.features([keyed_event(12, "a", {"x": 2.0}, True)], 0.0, out)  # loaded again
    state = p.keys.peek("a")
    assert state is not None and state.learner.serving.model.examples_learned == 5
    stored = p.release_keys(range(PARTITIONS), 2.0)
    assert stored == 2 and len(p.keys) == 0  # the dirty keys went as handovers
    # one due, "a" and then "b" evicted, two handed over
    assert metrics.registry.get_sample_value("stream_app_key_checkpoints_total") == 5


def test_an_event_off_its_keys_home_that_this_worker_does_not_own_is_answered_at_home() -> None:
    key = "u5"
    home = home_partition(key, PARTITIONS)
    p, _, store = keyed_pipeline(owned={(home + 1) % PARTITIONS})
    out = Recorder()
    record = keyed_event(0, key, {"a": 1.0})
    away = Rec("features", (home + 1) % PARTITIONS, 0, b"e0", record.value)
    p.features([away], 0.0, out)
    assert out.on(p.settings.topics.predictions) == []
    store.owned.add(home)  # the join topic's partition "home" is read by the key's owner
    deliver(p, out)
    (prediction,) = out.on(p.settings.topics.predictions)
    assert prediction["model_key"] == key
    assert out.sent[-1][1] == away.partition  # written to the event's own partition
