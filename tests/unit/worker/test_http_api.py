"""The HTTP serving logic without a web server or a broker: answers, limits, reasons, metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from openapi_spec_validator import validate

from stream_app import reasons
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.predict import predict_one
from stream_app.settings import Settings
from stream_app.worker.http_api import HTTP_REASONS, HttpApi, read_body
from stream_app.worker.openapi import document
from tests.unit.core.test_batch import rows, trained


class Chunks:
    def __init__(self, data: bytes, size: int = 7) -> None:
        self.data, self.size, self.read_bytes = data, size, 0

    async def read(self, n: int = -1) -> bytes:
        out = self.data[: min(n, self.size)]
        self.data = self.data[len(out) :]
        self.read_bytes += len(out)
        return out


def api(send: Any = None, ready: bool = True, **overrides: Any) -> tuple[HttpApi, Metrics]:
    settings = Settings().replace(guard={"enabled": False}, **overrides)
    metrics = Metrics()
    pipeline = Pipeline(settings, Learner(settings, trained("logistic_regression")), metrics)
    return HttpApi(settings, pipeline, metrics, send=send, ready=lambda: ready), metrics


def call(http: HttpApi, endpoint: str, body: bytes) -> tuple[int, Any]:
    answer = asyncio.run(http.handle(endpoint, Chunks(body), len(body)))
    return answer.status, orjson.loads(answer.body)


def test_predict_answers_with_the_serving_model_in_the_prediction_shape() -> None:
    http, metrics = api()
    x = rows(1, seed=9)[0]
    status, body = call(http, "predict", orjson.dumps({"id": "e-1", "features": x}))
    expected = predict_one(http.pipeline.learner.serving.model, x)
    assert status == 200
    assert set(body) == {
        "id", "prediction", "proba", "model", "model_version", "served_at", "latency_ms",
        "joinable",
    }  # fmt: skip
    assert body["joinable"] is False  # no producer here: nothing was kept for its label
    assert (body["id"], body["prediction"], body["proba"]) == (
        "e-1",
        expected.prediction,
        expected.proba,
    )
    assert metrics.events._value.get() == 0  # not a stream event
    assert metrics.http_predictions._value.get() == 1


def test_a_pinned_model_answers_with_its_own_version() -> None:
    http, _ = api()
    pinned = trained("logistic_regression", n=50)
    pinned.version = 42
    http.pipeline.learner.pinned = pinned
    x = rows(1, seed=10)[0]
    _, body = call(http, "predict", orjson.dumps({"features": x}))
    assert body["model_version"] == 42 and body["prediction"] == predict_one(pinned, x).prediction


@pytest.mark.parametrize("min_rows", [1, 10_000])
def test_a_batch_answers_like_single_requests(min_rows: int) -> None:
    http, _ = api(inference={"many_min_rows": min_rows})
    events = [{"id": f"e{i}", "features": x} for i, x in enumerate(rows(30, seed=11))]
    status, body = call(http, "predict_batch", orjson.dumps({"events": events}))
    assert status == 200
    singles = [call(http, "predict", orjson.dumps(e))[1] for e in events]
    for got, single in zip(body["predictions"], singles, strict=True):
        assert got["id"] == single["id"] and got["prediction"] == single["prediction"]
        assert got["proba"] == pytest.approx(single["proba"], abs=1e-12)


def test_batch_limits_and_bad_events_name_their_reason() -> None:
    http, _ = api(web={"max_batch_events": 2})
    one = {"features": {"x": 1.0}}
    assert call(http, "predict_batch", orjson.dumps({"events": [one] * 3}))[1]["reason"] == (
        reasons.OVERSIZED
    )
    status, body = call(http, "predict_batch", orjson.dumps({"events": [one, {"id": "b"}]}))
    assert (status, body["reason"]) == (400, reasons.MISSING_FEATURES)
    assert body["detail"].startswith("events[1]: ")
    assert call(http, "predict_batch", b'{"events": null}')[1]["reason"] == "invalid_batch"
    assert call(http, "predict_batch", b'{"events": []}') == (200, {"predictions": []})


def test_an_oversized_body_is_refused_without_reading_it_all() -> None:
    http, metrics = api(limits={"max_message_bytes": 64})
    body = Chunks(b"x" * 10_000)
    answer = asyncio.run(http.handle("predict", body, None))  # no length declared: chunked
    assert answer.status == 413 and orjson.loads(answer.body)["reason"] == reasons.OVERSIZED
    assert body.read_bytes <= 65
    assert asyncio.run(read_body(Chunks(b"abc"), 10**9, 64)) is None  # declared too large
    assert b'endpoint="predict",status="413"' in metrics.render()


def test_a_model_that_raises_is_a_model_error_not_a_crash() -> None:
    http, _ = api()

    class Broken:
        def predict_proba_one(self, x: Any) -> Any:
            raise ValueError("boom")

    http.pipeline.learner.serving.model.estimator = Broken()
    status, body = call(http, "predict", b'{"features": {"x": 1}}')
    assert (status, body["reason"]) == (422, reasons.MODEL_ERROR) and "boom" in body["detail"]
    status, body = call(http, "predict_batch", b'{"events": [{"features": {"x": 1}}]}')
    assert (status, body["reason"]) == (422, reasons.MODEL_ERROR)


def test_predictions_with_an_id_go_home_for_joining_and_say_so() -> None:
    from stream_app.core.messages import decode_join
    from stream_app.core.route import home_partition

    sent: list[tuple[str, bytes, int | None, dict[str, Any]]] = []

    async def send(
        topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        sent.append((topic, key, partition, decode_join(value)))
        return partition or 0, len(sent)

    http, _ = api(send=send, app={"id": "h"})
    x = rows(1, seed=12)[0]
    _, body = call(http, "predict", orjson.dumps({"id": "e-7", "features": x}))
    assert body["joinable"] is True
    topic, key, partition, kept = sent[0]
    assert (topic, key, partition) == ("h-join", b"e-7", home_partition("e-7", 4))
    assert (kept["kind"], kept["id"], kept["features"]) == ("served", "e-7", x)
    assert kept["served"] == [body["prediction"], body["proba"]]
    _, body = call(http, "predict", orjson.dumps({"features": x}))
    assert body["joinable"] is False and len(sent) == 1  # a made-up id cannot be labelled
    events = [{"id": "b-1", "features": x}, {"features": x}]
    _, body = call(http, "predict_batch", orjson.dumps({"events": events}))
    assert [p["joinable"] for p in body["predictions"]] == [True, False]
    assert [s[1] for s in sent] == [b"e-7", b"b-1"]


def test_a_prediction_kafka_did_not_keep_is_not_joinable() -> None:
    from aiokafka.errors import KafkaTimeoutError

    async def failing(
        topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        raise KafkaTimeoutError()

    http, _ = api(send=failing)
    status, body = call(http, "predict", b'{"id": "e", "features": {"x": 1}}')
    assert (status, body["joinable"]) == (200, False)
    http, _ = api(send=failing, learn={"enabled": False})
    assert call(http, "predict", b'{"id": "e", "features": {"x": 1}}')[1]["joinable"] is False


def test_learn_produces_the_checked_label_keyed_by_id() -> None:
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(
        topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        sent.append((topic, key, value))
        return 3, 17

    http, _ = api(send=send)
    status, body = call(http, "learn", b'{"id": "e-9", "label": true}')
    assert status == 202
    assert body == {"id": "e-9", "label": True, "topic": "labels", "partition": 3, "offset": 17}
    assert sent == [("labels", b"e-9", b'{"id":"e-9","label":true}')]
    assert call(http, "learn", b'{"id": "e-9", "label": 1.5}')[1]["reason"] == "invalid_label"
    assert len(sent) == 1


def test_learn_when_learning_is_off_or_kafka_refuses() -> None:
    http, _ = api(learn={"enabled": False})
    assert call(http, "learn", b'{"id": "e", "label": true}') == (
        409,
        {"reason": "learning_off", "detail": "this worker does not learn (learn.enabled = false)"},
    )

    async def failing(
        topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        from aiokafka.errors import KafkaTimeoutError

        raise KafkaTimeoutError()

    http, _ = api(send=failing)
    status, body = call(http, "learn", b'{"id": "e", "label": true}')
    assert (status, body["reason"]) == (503, "unavailable")


def test_a_worker_that_has_not_joined_yet_answers_503() -> None:
    http, _ = api(ready=False)
    assert call(http, "predict", b'{"features": {"x": 1}}')[0] == 503


def test_the_openapi_document_is_valid_and_names_every_reason() -> None:
    doc = document(Settings())
    validate(doc)  # OpenAPI 3.1 meta-schema
    problem = doc["components"]["schemas"]["Problem"]["properties"]["reason"]["enum"]
    assert set(problem) == set(reasons.ALL) | set(HTTP_REASONS)
    assert "Not written" in doc["paths"]["/predict"]["post"]["description"]
    assert "/models/keys" not in doc["paths"]
    keyed = document(Settings().replace(model={"key_field": "user"}))
    validate(keyed)
    assert "/models/keys/{key}/{version}/rollback" in keyed["paths"]


def streamed_incumbent(pipeline: Any, features: dict[str, Any]) -> Any:
    """What the incumbent (not the canary) answers ``features`` with."""
    return pipeline.learner.answer(features)[0].prediction


def test_a_canary_answers_its_share_over_http_exactly_as_on_the_stream() -> None:
    from stream_app.core.canary import bucket
    from stream_app.core.messages import decode_join
    from tests.unit.core.test_canary import feature_records, pipeline_with_canary, sea, settings
    from tests.unit.core.test_canary import trained as trained_canary
    from tests.unit.core.test_pipeline import Recorder

    s = settings(learn={"enabled": False})
    stream = pipeline_with_canary(s, trained_canary(s, sea(500, seed=1), flip=False), 0.25)
    out = Recorder()
    records = feature_records(400)
    stream.features(records, 0.0, out)
    streamed = {q["id"]: q for q in out.on("predictions")}

    kept: list[dict[str, Any]] = []

    async def send(
        topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        kept.append(decode_join(value))
        return partition or 0, len(kept)

    s = settings()  # learning on: what HTTP answered is kept for its label, as the stream keeps it
    served = pipeline_with_canary(s, trained_canary(s, sea(500, seed=1), flip=False), 0.25)
    http = HttpApi(s, served, Metrics(), send=send)
    events = [orjson.loads(r.value) for r in records]
    single = [call(http, "predict", orjson.dumps(e))[1] for e in events[:50]]
    _, batch = call(http, "predict_batch", orjson.dumps({"events": events}))
    for answer in [*single, *batch["predictions"]]:
        expected = streamed[answer["id"]]
        wanted = 9 if bucket(answer["id"]) < 0.25 else 0
        assert answer["model_version"] == expected["model_version"] == wanted
        assert (answer["prediction"], answer["proba"]) == (
            expected["prediction"],
            expected["proba"],
        )
    versions = [p["model_version"] for p in batch["predictions"]]
    assert set(versions) == {0, 9} and abs(versions.count(9) / len(versions) - 0.25) <= 0.05
    # what is kept for the label is the incumbent's answer, under the incumbent's version
    assert [k["model_version"] for k in kept] == [0] * len(single + batch["predictions"])
    assert [k["served"][0] for k in kept] == [
        streamed_incumbent(stream, k["features"]) for k in kept
    ]
