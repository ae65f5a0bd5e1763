"""Drift per key on the real broker: the keys that change concept get challengers of their own.

A keyed SEA stream: every key has its own seeded SEA stream, and for a few keys the label becomes
the complement of SEA's function after ``CHANGE_AT`` of their events. Those keys drift, start a
challenger, and promote it, each announced on ``model-events`` with its ``model_key``; the keys
that did not change announce nothing. Each key's predictions are River's own loop over its events,
switched to a fresh model where its events say a challenger started and where it took over.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from river.datasets import synth

from stream_app.core.events import CHALLENGER_STARTED
from stream_app.models import logistic_regression
from stream_app.registry.keyed import read_header
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import predictions_by_id, produce, read_all, wait_consumed

PARTITIONS = 4
KEYS = [f"user-{k}" for k in range(8)]
CHANGING = {"user-1", "user-4", "user-6"}
CHANGE_AT = 900
PER_KEY = 1800
CONFIG = (
    "[guard]\nenabled = false\n"
    "[drift]\npolicy = 'challenger'\nwarmup = 200\ncompare_window = 100\nchallenger_window = 200\n"
    "[model]\nkey_field = 'user'\nkey_fallback = 'none'\n"
)


def key_stream(n: int, key: str) -> list[tuple[dict[str, float], bool]]:
    """The key's SEA events; a changing key's label flips after ``CHANGE_AT``."""
    data = [
        ({f"x{i}": float(v) for i, v in x.items()}, bool(y))
        for x, y in synth.SEA(variant=0, seed=100 + n).take(PER_KEY)
    ]
    if key in CHANGING:
        data = data[:CHANGE_AT] + [(x, not y) for x, y in data[CHANGE_AT:]]
    return data


def check_oracle(
    streams: dict[str, list[tuple[dict[str, float], bool]]],
    served: dict[str, dict[str, Any]],
    shadows: dict[str, dict[str, Any]],
    events: dict[str, dict[int, list[str]]],
) -> int:
    """Hold each key's answers and shadow answers to River's loop, following its events.

    Returns how many answers were compared.
    """
    compared = 0
    for key, data in streams.items():
        serving: Any = logistic_regression()
        challenger: Any = None
        for i, (x, y) in enumerate(data):
            body = served[f"{key}-{i}"]
            assert body["model_key"] == key and "fallback" not in body, body
            if body["proba"]:
                proba = serving.predict_proba_one(x)
                assert abs(body["proba"]["true"] - proba[True]) <= 1e-9, (key, i)
                compared += 1
            shadow = shadows.pop(f"{key}-{i}", None)
            assert (shadow is None) == (challenger is None), (key, i)
            if shadow is not None and shadow["proba"]:
                proba = challenger.predict_proba_one(x)
                assert shadow["model_key"] == key
                assert abs(shadow["proba"]["true"] - proba[True]) <= 1e-9, (key, i)
            serving.learn_one(x, y)
            if challenger is not None:
                challenger.learn_one(x, y)
            for kind in events[key].get(i + 1, []):  # examples_seen: this label was the i+1st
                if kind == CHALLENGER_STARTED:
                    challenger = logistic_regression()
                elif kind == "promotion":
                    serving, challenger = challenger, None
    return compared


async def test_keys_that_change_concept_drift_and_promote_their_own_challengers(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(partitions=PARTITIONS, extra_config=CONFIG)
    worker.wait_healthy()
    streams = {key: key_stream(n, key) for n, key in enumerate(KEYS)}
    messages = [
        (key.encode(), orjson.dumps({"id": f"{key}-{i}", "user": key, "features": x, "label": y}))
        for i in range(PER_KEY)
        for key, data in streams.items()
        for x, y in [data[i]]
    ]
    features = names.topics["features"]
    await produce(kafka.bootstrap, features, messages)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", features)

    published = [
        orjson.loads(r.value) for r in await read_all(kafka.bootstrap, names.topics["model_events"])
    ]
    by_key: dict[str, list[str]] = defaultdict(list)
    at: dict[str, dict[int, list[str]]] = defaultdict(dict)
    for event in published:
        if "model_key" not in event:
            continue
        by_key[event["model_key"]].append(event["type"])
        at[event["model_key"]].setdefault(event["examples_seen"], []).append(event["type"])
    assert set(by_key) == CHANGING, dict(by_key)  # the keys that did not change: no event
    for key in CHANGING:
        assert by_key[key] == ["drift", CHALLENGER_STARTED, "promotion"], (key, by_key[key])
        (drift_at,) = [n for n, kinds in at[key].items() if "drift" in kinds]
        assert CHANGE_AT < drift_at <= CHANGE_AT + 300, (key, drift_at)

    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert len(served) == len(messages)
    shadows = await predictions_by_id(kafka.bootstrap, names.topics["predictions_shadow"])
    assert {body["model_key"] for body in shadows.values()} == CHANGING
    assert check_oracle(streams, served, shadows, at) == len(messages) - len(KEYS)
    assert shadows == {}  # every shadow answer was one of a key's challenger's
    for key in CHANGING:  # the promoted challenger learned the new concept
        tail = [served[f"{key}-{i}"]["prediction"] == y for i, (_, y) in enumerate(streams[key])]
        assert sum(tail[-300:]) / 300 >= 0.85, key

    stored = {  # the promoted models were stored at once, as the versions the events name
        (header["key"], header["version"])
        for header in (
            read_header(r.value)
            for r in await read_all(kafka.bootstrap, f"{names.app_id}-keyed-models")
            if r.value is not None
        )
        if header["reason"] == "promotion"
    }
    promoted = {(e["model_key"], e["model_version"]) for e in published if e["type"] == "promotion"}
    assert stored == promoted and len(promoted) == len(CHANGING)

    scraped = worker.metrics()
    for kind in ("drift", CHALLENGER_STARTED, "promotion"):
        assert scraped[f'stream_app_key_model_events_total{{type="{kind}"}}'] == len(CHANGING)
    assert scraped["stream_app_drift_detected_total"] == len(CHANGING)
    per_key = [name for name in scraped if "user-" in name]
    assert per_key == []  # low cardinality: no series names a key
