"""HTTP predict and learn on a real worker: the same answers as the stream, labels learned once."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from stream_app.client import AsyncClient, Client, Event, Label, RequestRejected
from stream_app.settings import TopicSettings
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    predictions_by_id,
    produce,
    read_all,
    read_registry,
    wait_consumed,
    wait_for,
)
from tests.integration.test_learning import feature_messages, sea

TRAIN = 600
CONFIG = f"[guard]\nenabled = false\n[registry]\ncheckpoint_every_examples = {TRAIN}\n"


def post(worker: WorkerProcess, path: str, data: bytes) -> tuple[int, Any]:
    """POST raw bytes; return the status and the decoded JSON answer."""
    request = urllib.request.Request(worker.url + path, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def topics(names: Names) -> TopicSettings:
    return TopicSettings(features=names.topics["features"], labels=names.topics["labels"])


def same_answer(a: dict[str, Any], b: dict[str, Any], tolerance: float = 0.0) -> bool:
    return (
        a["prediction"] == b["prediction"]
        and a["model_version"] == b["model_version"]
        and a["proba"].keys() == b["proba"].keys()
        and all(abs(a["proba"][k] - b["proba"][k]) <= tolerance for k in a["proba"])
    )


async def trained(kafka: Kafka, names: Names, worker: WorkerProcess) -> int:
    """Teach the worker TRAIN labelled events; return the version its checkpoint made."""
    data = sea(TRAIN, seed=51)
    await produce(kafka.bootstrap, names.topics["features"], feature_messages(data, inline=True))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    async def checkpointed() -> Any:
        newest = (await read_registry(kafka.bootstrap, names.app_id)).newest("default")
        return newest if newest is not None and newest.examples_learned >= TRAIN else None

    return int((await wait_for(checkpointed, what="the checkpoint after training")).version)


async def test_http_answers_equal_the_streams_and_batch_equals_single(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(extra_config=CONFIG)
    worker.wait_healthy()
    version = await trained(kafka, names, worker)
    # Unlabelled probes: the model learns nothing more, so stream and HTTP see the same state.
    probe = sea(520, seed=52)  # above inference.many_min_rows: the batch is one vectorised call
    events = [Event(x, id=f"q-{i}") for i, (x, _) in enumerate(probe)]
    async with AsyncClient(worker.url, kafka.bootstrap, topics=topics(names)) as kafka_client:
        await kafka_client.send_events(events)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    streamed = await predictions_by_id(kafka.bootstrap, names.topics["predictions"], "q-")
    before = worker.metrics()

    with Client(worker.url) as client:
        single = {e.id: client.predict(e) for e in events[:60]}
        batch = client.predict_batch(events)
        small = client.predict_batch(events[:60])  # below many_min_rows: event by event
        made_up = client.predict(Event(probe[0][0]))  # no id: one is made

    assert [p.id for p in batch] == [e.id for e in events]
    for answer in batch:
        stream_answer = streamed[answer.id]
        assert stream_answer["model_version"] == version
        assert same_answer(vars(answer), stream_answer, tolerance=1e-9), answer.id
    for event_id, answer in single.items():
        assert same_answer(vars(answer), streamed[event_id])  # exactly, the same call
        assert answer.model == "default" and answer.latency_ms >= 0
    assert [vars(a) | {"served_at": 0, "latency_ms": 0} for a in small] == [
        vars(single[a.id]) | {"served_at": 0, "latency_ms": 0} for a in small
    ]
    assert made_up.id and made_up.id not in streamed
    assert same_answer(vars(made_up), streamed["q-0"])

    # HTTP answers are not stream events and are not written to Kafka.
    after = worker.metrics()
    assert after["stream_app_events_total"] == before["stream_app_events_total"] == TRAIN + 520
    assert after["stream_app_predictions_total"] == before["stream_app_predictions_total"]
    assert len(await read_all(kafka.bootstrap, names.topics["predictions"])) == TRAIN + 520
    assert after['stream_app_http_requests_total{endpoint="predict",status="200"}'] == 61
    assert after['stream_app_http_requests_total{endpoint="predict_batch",status="200"}'] == 2
    assert after["stream_app_http_predictions_total"] == 61 + 520 + 60
    assert after['stream_app_http_request_latency_seconds_count{endpoint="predict"}'] == 61


async def test_learn_queues_labels_that_are_learned_exactly_once(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    early = "[learn]\nearly_label_ttl_s = 1.0\n"  # the stranger waits this long for its event
    worker = worker_factory(extra_config="[guard]\nenabled = false\n" + early)
    worker.wait_healthy()
    data = sea(40, seed=53)
    async with AsyncClient(worker.url, kafka.bootstrap, topics=topics(names)) as client:
        ids = await client.send_events(Event(x) for x, _ in data)
        await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
        queued = [await client.learn(Label(i, y)) for i, (_, y) in zip(ids, data, strict=True)]
        assert {q.topic for q in queued} == {names.topics["labels"]}
        assert [(q.id, q.label) for q in queued] == [
            (i, y) for i, (_, y) in zip(ids, data, strict=True)
        ]
        await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["labels"])
        assert worker.metrics()["stream_app_labels_learned_total"] == len(data)

        # The same label again: queued, then refused by the single writer as a duplicate.
        again = await client.learn(Label(ids[0], data[0][1]))
        assert again.offset > max(q.offset for q in queued if q.partition == again.partition)
        stranger = await client.learn(Label("never-served", True))
        await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["labels"])

    async def stranger_expired() -> bool:
        key = 'stream_app_labels_rejected_total{reason="label_without_event"}'
        return worker.metrics().get(key) == 1

    await wait_for(stranger_expired, what="the stranger's label to expire")

    records = await read_all(kafka.bootstrap, names.topics["dead_letters"])
    letters = [orjson.loads(r.value) for r in records]
    by_offset = {(d["source"]["partition"], d["source"]["offset"]): d["reason"] for d in letters}
    assert by_offset[(again.partition, again.offset)] == "duplicate_label"
    assert by_offset[(stranger.partition, stranger.offset)] == "label_without_event"
    metrics = worker.metrics()
    assert metrics["stream_app_labels_learned_total"] == len(data)
    assert metrics['stream_app_labels_rejected_total{reason="duplicate_label"}'] == 1
    assert metrics['stream_app_http_requests_total{endpoint="learn",status="202"}'] == len(data) + 2


BIG = 2048
BAD_CONFIG = (
    "[model]\nclasses = [false, true]\n"
    f"[limits]\nmax_message_bytes = {BIG}\nmax_features = 5\n"
    "[web]\nmax_batch_events = 3\n"
)
BAD: list[tuple[str, bytes, int, str]] = [
    ("/predict", b"\xff\xfe", 400, "invalid_utf8"),
    ("/predict", b'{"features": ', 400, "invalid_json"),
    ("/predict", b"[1, 2]", 400, "not_an_object"),
    ("/predict", b'{"id": 7, "features": {"x": 1}}', 400, "invalid_id"),
    ("/predict", b'{"id": "a"}', 400, "missing_features"),
    ("/predict", b'{"features": {"x": [1]}}', 400, "invalid_features"),
    ("/predict", b'{"features": {"x": NaN}}', 400, "non_finite_feature"),
    ("/predict", orjson.dumps({"features": {f"f{i}": 1 for i in range(6)}}), 400,
     "too_many_features"),
    ("/predict", b'{"features": {"x": 1}, "ts": "noon"}', 400, "invalid_ts"),
    ("/predict", orjson.dumps({"features": {"x": "y" * BIG}}), 413, "oversized"),
    ("/predict/batch", b'{"events": {}}', 400, "invalid_batch"),
    ("/predict/batch", b'"events"', 400, "not_an_object"),
    ("/predict/batch", orjson.dumps({"events": [{"features": {"x": 1}}] * 4}), 413, "oversized"),
    ("/predict/batch", b'{"events": [{"features": {"x": 1}}, {"features": {}}]}', 400,
     "invalid_features"),
    ("/learn", b'{"label": true}', 400, "missing_id"),
    ("/learn", b'{"id": "e"}', 400, "invalid_label"),
    ("/learn", b'{"id": "e", "label": 0.5}', 400, "invalid_label"),
    ("/learn", b'{"id": "e", "label": "spam"}', 400, "unknown_label"),
    ("/learn", b"{" + b" " * BIG + b"}", 413, "oversized"),
]  # fmt: skip


async def test_every_bad_request_gets_its_reason_and_the_worker_keeps_serving(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(extra_config=BAD_CONFIG)
    worker.wait_healthy()
    for path, body, status, reason in BAD:
        got_status, answer = post(worker, path, body)
        assert (got_status, answer["reason"]) == (status, reason), (path, body[:60], answer)
        assert answer["detail"]
    assert "events[1]" in post(worker, *BAD[13][:2])[1]["detail"]

    worker.wait_healthy()
    with Client(worker.url) as client:
        assert client.predict(Event({"x": 1.0}, id="fine")).id == "fine"
        with pytest.raises(RequestRejected) as refused:
            client.predict(Event({}))
        assert refused.value.reason == "invalid_features" and refused.value.status == 400
    metrics = worker.metrics()
    assert metrics['stream_app_http_requests_total{endpoint="predict",status="400"}'] >= 9
    assert metrics['stream_app_http_requests_total{endpoint="learn",status="413"}'] == 1
    assert metrics.get("stream_app_events_total", 0) == 0  # nothing was a stream event
