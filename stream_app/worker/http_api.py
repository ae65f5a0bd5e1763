"""Request-answer serving on the worker: predict one event or a batch, and queue a label.

The same live model as the stream answers (the serve loop's :class:`~stream_app.core.learn.Learner`:
its pinned or serving model, and that model's version; or, while a canary runs, the canary for
the ids that hash into its share: :func:`stream_app.worker.rollout.answering`), so a team that calls
the worker over HTTP gets what the ``predictions`` topic would have said, from the same version.
HTTP predictions are not written to the ``predictions`` topic and do not count as stream events;
they have metrics of their own. A request whose event carries an ``id`` is kept for joining exactly
like a streamed event: what was served goes to the id's home partition of the join topic (see
:mod:`stream_app.core.route`), whichever worker answered, and the answer says ``"joinable": true``
once Kafka has it. ``POST /learn`` produces the
label to the ``labels`` topic (key = event id), so learning stays single-writer and ordered: the
label joins the event that was served, over HTTP or the stream, like a label a producer sends.

Bad requests are answered with the dead-letter reason codes of :mod:`stream_app.reasons`, found by
the same validation code as the stream's (:mod:`stream_app.core.decode`,
:mod:`stream_app.core.label`):

>>> from stream_app.settings import Settings
>>> api = HttpApi(Settings(), Pipeline(Settings(), Learner(Settings()), Metrics()), Metrics())
>>> import asyncio
>>> asyncio.run(api.predict(b'{"id": "e-1", "features": {}}', 0.0)).body
b'{"reason":"invalid_features","detail":"features is empty; send at least one"}'
>>> answer = orjson.loads(asyncio.run(api.predict(b'{"features": {"x": 1.0}}', 0.0)).body)
>>> answer["prediction"], answer["model_version"], len(answer["id"]), answer["joinable"]
(None, 0, 32, False)
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple, Protocol

import orjson
from aiokafka.errors import KafkaError

from stream_app import reasons
from stream_app.core.decode import FeatureEvent, expect_object, parse_json, validate_event
from stream_app.core.join import Served
from stream_app.core.keyed import decode_keyed_label
from stream_app.core.label import check_label, decode_label
from stream_app.core.learn import Learner
from stream_app.core.messages import encode_prediction
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.predict import Prediction
from stream_app.core.route import home_partition
from stream_app.errors import RejectedMessage, StreamAppError
from stream_app.kafka.publish import all_taken
from stream_app.settings import Settings
from stream_app.worker.key_api import MISDIRECTED, KeyedHttp
from stream_app.worker.rollout import answering

__all__ = [
    "ENDPOINTS",
    "HTTP_REASONS",
    "INVALID_BATCH",
    "LEARNING_OFF",
    "UNAVAILABLE",
    "Answer",
    "HttpApi",
    "problem",
    "read_body",
    "status_of",
]

log = logging.getLogger(__name__)

ENDPOINTS: Final = {"predict": "/predict", "predict_batch": "/predict/batch", "learn": "/learn"}
"""Metric label of each endpoint, and its path."""

# Codes for what only HTTP can get wrong; everything else answers with a dead-letter reason.
INVALID_BATCH: Final = "invalid_batch"
"""``POST /predict/batch`` without an ``events`` array."""
UNAVAILABLE: Final = "unavailable"
"""The worker has not joined its group yet, or Kafka did not take a label (503)."""
LEARNING_OFF: Final = "learning_off"
"""``POST /learn`` on a worker with ``learn.enabled = false`` (409)."""
HTTP_REASONS: Final = (INVALID_BATCH, UNAVAILABLE, LEARNING_OFF, MISDIRECTED)

_OK: Final = 200
_ACCEPTED: Final = 202
_BAD_REQUEST: Final = 400
_CONFLICT: Final = 409
_TOO_LARGE: Final = 413
_UNPROCESSABLE: Final = 422
_UNAVAILABLE: Final = 503
_STATUS: Final = {
    reasons.OVERSIZED: _TOO_LARGE,
    reasons.MODEL_ERROR: _UNPROCESSABLE,
    UNAVAILABLE: _UNAVAILABLE,
    LEARNING_OFF: _CONFLICT,
}

_JOINABLE: Final = {True: b',"joinable":true}', False: b',"joinable":false}'}


class Send(Protocol):
    """Produce one message and return the (partition, offset) Kafka acknowledged."""

    def __call__(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> Awaitable[tuple[int, int]]:
        """Send ``value`` to ``partition``, or where its key hashes when ``None``."""


class Answer(NamedTuple):
    """An HTTP answer: status and JSON body."""

    status: int
    body: bytes


class Body(Protocol):
    """A request body stream (aiohttp's ``request.content``)."""

    async def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes; ``b""`` at the end."""


def status_of(reason: str) -> int:
    """Return the HTTP status for a reason code: 413 oversized, 422 model_error, else 400 (mostly).

    >>> status_of("oversized"), status_of("invalid_json"), status_of("model_error")
    (413, 400, 422)
    """
    return _STATUS.get(reason, _BAD_REQUEST)


def problem(reason: str, detail: str) -> Answer:
    """Answer a request that cannot be served with its reason code and a sentence for people.

    >>> problem("missing_features", "the event has no features")
    Answer(status=400, body=b'{"reason":"missing_features","detail":"the event has no features"}')
    """
    return Answer(status_of(reason), orjson.dumps({"reason": reason, "detail": detail}))


async def read_body(body: Body, declared: int | None, limit: int) -> bytes | None:
    """Read a request body of at most ``limit`` bytes; ``None`` if it is larger (never all of it).

    >>> import asyncio
    >>> class Chunks:
    ...     def __init__(self, data): self.data = data
    ...     async def read(self, n=-1): out, self.data = self.data[:n], self.data[n:]; return out
    >>> asyncio.run(read_body(Chunks(b"12345"), None, 5)), asyncio.run(read_body(Chunks(b"123456"), None, 5))
    (b'12345', None)
    """  # noqa: E501
    if declared is not None and declared > limit:
        return None
    data = bytearray()
    while chunk := await body.read(limit + 1 - len(data)):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


class HttpApi:
    """Answers ``/predict``, ``/predict/batch`` and ``/learn`` from the worker's pipeline."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        metrics: Metrics,
        send: Send | None = None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.send = send
        self.ready = ready
        self._batch_limits = dataclasses.replace(
            settings.limits, max_message_bytes=settings.web.max_batch_bytes
        )
        self._children: dict[tuple[str, int], Any] = {}
        self.keyed: KeyedHttp | None = None
        """With ``model.key_field``: who answers keyed events (``worker.key_api``)."""

    async def handle(self, endpoint: str, body: Body, declared: int | None) -> Answer:
        """Read the body within its limit, answer it, and count the request and its latency."""
        started = time.perf_counter()
        batch = endpoint == "predict_batch"
        limit = (
            self.settings.web.max_batch_bytes if batch else self.settings.limits.max_message_bytes
        )
        raw = await read_body(body, declared, limit)
        if raw is None:
            answer = problem(reasons.OVERSIZED, f"the body is larger than {limit} bytes")
        elif not self.ready():
            answer = problem(UNAVAILABLE, "the worker has not joined its consumer group yet")
        elif endpoint == "predict":
            answer = await self.predict(raw, started)
        elif batch:
            answer = await self.predict_batch(raw, started)
        else:
            answer = await self.learn(raw)
        self._count(endpoint, answer.status)
        self.metrics.http_latency.labels(endpoint).observe(time.perf_counter() - started)
        return answer

    async def predict(self, raw: bytes, started: float) -> Answer:
        """Predict one feature event (``id`` optional) with the live model; keep it to learn."""
        if self.keyed is not None:
            return await self._keyed(self.keyed.predict, raw, started)
        learner = self.pipeline.learner
        try:
            obj = parse_json(raw, self.settings.limits)
            event = self._event(obj)
            served, shadow = learner.answer(event.features)
        except RejectedMessage as rejected:
            return problem(rejected.reason, rejected.detail)
        except Exception as exc:  # the estimator raised, as the stream would dead-letter it
            return problem(reasons.MODEL_ERROR, f"the model raised {type(exc).__name__}: {exc}")
        self.metrics.http_predictions.inc()
        joinable = _has_id(obj) and await self._keep([(event, served, shadow)])
        return Answer(_OK, self._encode(learner, event, (served, shadow), started, joinable))

    async def _keep(
        self, answered: list[tuple[FeatureEvent, Prediction, Prediction | None]]
    ) -> bool:
        """Send what was served to each id's home for joining; True once Kafka has them all."""
        if not answered or not self.settings.learn.enabled or self.send is None:
            return False
        pipeline, now = self.pipeline, time.time()
        sends = []
        for event, served, shadow in answered:
            version = pipeline.learner.answering.version  # of ``served``, as the stream keeps
            kept = Served(
                event.features, served.prediction, served.proba, shadow, version, now, True
            )
            home = home_partition(event.id, pipeline.partitions)
            topic, partition, key, value = pipeline.served_message(event.id, kept, home)
            sends.append(self.send(topic, key, value, partition))
        return await all_taken(sends, "HTTP predictions for joining")

    async def predict_batch(self, raw: bytes, started: float) -> Answer:
        """Predict ``{"events": [...]}`` with one batch call; any bad event refuses the batch."""
        learner = self.pipeline.learner
        most = self.settings.web.max_batch_events
        try:
            events = expect_object(parse_json(raw, self._batch_limits)).get("events")
            if type(events) is not list:
                return problem(INVALID_BATCH, "the body needs an array of feature events: events")
            if len(events) > most:
                return problem(reasons.OVERSIZED, f"{len(events)} events; the limit is {most}")
            if self.keyed is not None:
                return await self._keyed(self.keyed.predict_batch, events, started)
            decoded = [self._event(item, index) for index, item in enumerate(events)]
            with_id = [_has_id(item) for item in events]
        except RejectedMessage as rejected:
            return problem(rejected.reason, rejected.detail)
        try:
            answers = learner.answer_many([e.features for e in decoded])
        except Exception:  # one bad row spoils a vectorised call: name the first that raises
            for index, event in enumerate(decoded):
                try:
                    learner.answer(event.features)
                except Exception as exc:
                    kind = type(exc).__name__
                    return problem(
                        reasons.MODEL_ERROR, f"events[{index}]: the model raised {kind}: {exc}"
                    )
            raise
        self.metrics.http_predictions.inc(len(decoded))
        answered = list(zip(decoded, answers, with_id, strict=True))
        joinable = await self._keep([(e, a[0], a[1]) for e, a, given in answered if given])
        parts = (
            self._encode(learner, e, a, started, joinable and given) for e, a, given in answered
        )
        return Answer(_OK, b'{"predictions":[' + b",".join(parts) + b"]}")

    async def _keyed(
        self, answer: Callable[[Any, float], Awaitable[tuple[int, bytes]]], *args: Any
    ) -> Answer:
        """Answer a keyed request with ``answer``; a refusal or a model error as for the rest."""
        try:
            return Answer(*await answer(*args))
        except RejectedMessage as rejected:
            return problem(rejected.reason, rejected.detail)
        except Exception as exc:  # the estimator raised, as the stream would dead-letter it
            return problem(reasons.MODEL_ERROR, f"the model raised {type(exc).__name__}: {exc}")

    async def learn(self, raw: bytes) -> Answer:
        """Check ``{"id", "label"}``, produce it to the labels topic; 202 once Kafka has it."""
        s = self.settings
        if not s.learn.enabled:
            return problem(LEARNING_OFF, "this worker does not learn (learn.enabled = false)")
        try:
            event_id, label = decode_label(raw, s.limits)
            label = check_label(
                label, self.pipeline.learner.task, s.model.classes, s.limits.max_string_chars
            )
            named = decode_keyed_label(raw, s.limits, s.model.key_field) if self.keyed else None
        except RejectedMessage as rejected:
            return problem(rejected.reason, rejected.detail)
        if self.send is None:
            return problem(UNAVAILABLE, "this worker has no producer")
        body = {"id": event_id, "label": label}
        if named is not None and named.key is not None:  # keyed by model key, to its home
            body[s.model.key_field] = named.key
        key = (named.key if named is not None and named.key else event_id).encode()
        value = orjson.dumps(body)
        try:
            partition, offset = await self.send(s.topics.labels, key, value)
        except (StreamAppError, KafkaError) as exc:
            return problem(UNAVAILABLE, f"Kafka did not take the label: {type(exc).__name__}")
        queued = {"id": event_id, "label": label, "topic": s.topics.labels}
        return Answer(_ACCEPTED, orjson.dumps({**queued, "partition": partition, "offset": offset}))

    def _event(self, obj: Any, index: int | None = None) -> FeatureEvent:
        """Validate one feature event like the stream does, giving it an id if it has none."""
        try:
            event = expect_object(obj)
            if event.get("id") is None:
                event = {**event, "id": uuid.uuid4().hex}
            return validate_event(event, self.settings.limits)
        except RejectedMessage as rejected:
            if index is None:
                raise
            raise RejectedMessage(rejected.reason, f"events[{index}]: {rejected.detail}") from None

    @staticmethod
    def _encode(
        learner: Learner,
        event: FeatureEvent,
        answers: tuple[Prediction, Prediction | None],
        started: float,
        joinable: bool,
    ) -> bytes:
        """Encode the answer (the canary's on its share) as the ``predictions`` topic would."""
        answer, model = answering(learner, event.id, *answers)
        latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        value = encode_prediction(
            event.id,
            answer.prediction,
            answer.proba,
            model.name,
            model.version,
            time.time(),
            latency_ms,
        )
        return value[:-1] + _JOINABLE[joinable]  # one more field in the JSON object

    def _count(self, endpoint: str, status: int) -> None:
        """Count one request (labelled children are looked up once: ``labels()`` costs)."""
        child = self._children.get((endpoint, status))
        if child is None:
            child = self._children[(endpoint, status)] = self.metrics.http_requests.labels(
                endpoint, str(status)
            )
        child.inc()


def _has_id(obj: Any) -> bool:
    """Whether a request's event named its own id (one made up here cannot be labelled).

    >>> _has_id({"id": "e-1", "features": {}}), _has_id({"features": {}})
    (True, False)
    """
    return isinstance(obj, dict) and obj.get("id") is not None
