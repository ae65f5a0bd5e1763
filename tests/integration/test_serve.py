"""The serve path on a real broker: valid events predicted, bad ones dead-lettered, none lost."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import orjson

from stream_app import reasons
from stream_app.core.messages import decode_dead_letter
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import produce, read_all, stream_app_command, wait_consumed

MAX_BYTES = 4096
MAX_FEATURES = 8
LIMITS = f"[limits]\nmax_message_bytes = {MAX_BYTES}\nmax_features = {MAX_FEATURES}\n"

# One message per bad kind; the key tells the test which one it is.
BAD: dict[str, bytes | None] = {
    reasons.INVALID_UTF8: b'{"id": "\xc3\x28", "features": {"x": 1}}',
    reasons.INVALID_JSON: b'{"id": "e", "features": {"x": 1}',
    reasons.NOT_AN_OBJECT: b'[{"id": "e", "features": {"x": 1}}]',
    reasons.MISSING_ID: b'{"features": {"x": 1}}',
    reasons.INVALID_ID: b'{"id": 12, "features": {"x": 1}}',
    reasons.MISSING_FEATURES: b'{"id": "e"}',
    reasons.INVALID_FEATURES: b'{"id": "e", "features": {"x": [1]}}',
    reasons.NON_FINITE_FEATURE: b'{"id": "e", "features": {"x": NaN}}',
    reasons.TOO_MANY_FEATURES: orjson.dumps(
        {"id": "e", "features": {f"f{i}": i for i in range(MAX_FEATURES + 1)}}
    ),
    reasons.OVERSIZED: orjson.dumps({"id": "e", "features": {"x": 1}, "pad": "x" * MAX_BYTES}),
    reasons.INVALID_TS: b'{"id": "e", "features": {"x": 1}, "ts": "now"}',
}


def good_event(i: int, rng: random.Random) -> bytes:
    features = {
        "x": rng.gauss(0, 1),
        "n": rng.randint(0, 9),
        "ok": rng.random() < 0.5,
        "color": rng.choice(["red", "blue"]),
    }
    return orjson.dumps({"id": f"e-{i}", "features": features, "ts": 1763800000.0 + i})


async def test_200_good_and_every_bad_kind(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(extra_config=LIMITS)
    health = worker.wait_healthy()
    assert health["partitions"] == [0, 1, 2, 3]
    topics = names.topics

    rng = random.Random(3)
    messages: list[tuple[bytes | None, bytes | None]] = [
        (f"e-{i}".encode(), good_event(i, rng)) for i in range(200)
    ]
    for reason, payload in BAD.items():
        messages.insert(rng.randrange(len(messages)), (f"bad-{reason}".encode(), payload))
    await produce(kafka.bootstrap, topics["features"], messages)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", topics["features"])

    predictions = await read_all(kafka.bootstrap, topics["predictions"])
    ids = [orjson.loads(r.value)["id"] for r in predictions]
    assert len(ids) == 200 and set(ids) == {f"e-{i}" for i in range(200)}
    for record in predictions:
        body = orjson.loads(record.value)
        assert record.key == body["id"].encode()
        assert body["prediction"] is None and body["proba"] == {}  # nothing learned yet
        assert body["model"] == "default" and body["model_version"] == 0
        assert body["latency_ms"] >= 0 and body["served_at"] > 1.7e9

    # Per-partition order: each predictions partition lists its features partition's ids in order.
    inputs = await read_all(kafka.bootstrap, topics["features"])
    expected: dict[int, list[str]] = defaultdict(list)
    for record in inputs:
        if record.key.startswith(b"e-"):
            expected[record.partition].append(record.key.decode())
    served: dict[int, list[str]] = defaultdict(list)
    for record in predictions:
        served[record.partition].append(record.key.decode())
    assert served == expected

    letters = await read_all(kafka.bootstrap, topics["dead_letters"])
    by_key = {r.key.decode(): decode_dead_letter(r.value) for r in letters}
    assert len(letters) == len(BAD) == len(by_key)
    for reason, payload in BAD.items():
        letter = by_key[f"bad-{reason}"]
        assert letter["reason"] == reason, letter
        assert letter["original"] == payload
        assert letter["source"]["topic"] == topics["features"]
        assert letter["detail"]

    # Still serving after the bad messages.
    await produce(kafka.bootstrap, topics["features"], [(b"e-last", good_event(999, rng))])
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", topics["features"])
    assert len(await read_all(kafka.bootstrap, topics["predictions"])) == 201

    metrics = worker.metrics()
    assert metrics["stream_app_events_total"] == 201 + len(BAD)
    assert metrics["stream_app_predictions_total"] == 201
    assert metrics["stream_app_predict_latency_seconds_count"] == 201
    for reason in BAD:
        assert metrics[f'stream_app_dead_letters_total{{reason="{reason}"}}'] == 1
    assert worker.proc.poll() is None  # never crashed
    assert "Traceback" not in worker.log_text()


async def test_stream_app_worker_command_serves_too(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(stream_app_command(), partitions=2)
    assert worker.wait_healthy()["partitions"] == [0, 1]
    rng = random.Random(5)
    await produce(
        kafka.bootstrap, names.topics["features"], [(None, good_event(i, rng)) for i in range(20)]
    )
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    predictions = await read_all(kafka.bootstrap, names.topics["predictions"])
    assert sorted(orjson.loads(r.value)["id"] for r in predictions) == sorted(
        f"e-{i}" for i in range(20)
    )
    assert Counter(r.partition for r in predictions).keys() <= {0, 1}
    assert worker.stop() == 0
