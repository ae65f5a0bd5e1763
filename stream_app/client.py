"""A small typed client: send events and labels to Kafka, and call a worker's HTTP endpoints.

The message shapes are dataclasses (:class:`Event`, :class:`Label`, :class:`Prediction`,
:class:`Queued`), so an application never writes JSON by hand. :class:`AsyncClient` is for asyncio
code (aiokafka for Kafka, aiohttp for HTTP); :class:`Client` is the same API for plain code (the
standard library's ``urllib`` for HTTP; for Kafka one background thread runs an event loop that
owns one aiokafka producer, so a connection is made once and kept, not once per call).

>>> event = Event({"x": 1.5, "color": "red"}, id="e-1")
>>> event.to_json()
{'id': 'e-1', 'features': {'x': 1.5, 'color': 'red'}}
>>> Prediction.from_json({"id": "e-1", "prediction": True, "proba": {"true": 0.9, "false": 0.1},
...     "model": "default", "model_version": 3, "served_at": 1.0, "latency_ms": 0.2}).prediction
True

Use::

    with Client("http://127.0.0.1:6066", "127.0.0.1:9092") as client:
        ids = client.send_events([Event({"x": 1.0})])   # to the features topic
        client.send_labels([Label(ids[0], True)])        # to the labels topic
        answer = client.predict(Event({"x": 1.0}))     # POST /predict
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

import orjson

from stream_app.errors import RequestRejected, StreamAppError
from stream_app.settings import Settings, TopicSettings, bootstrap_servers

__all__ = [
    "AsyncClient",
    "Client",
    "Event",
    "Label",
    "Prediction",
    "Queued",
    "RequestRejected",
]

T = TypeVar("T")
LabelValue = str | int | bool | float
FeatureValue = float | int | bool | str
_JSON_HEADERS = {"Content-Type": "application/json"}


@dataclasses.dataclass(frozen=True)
class Event:
    """A feature event (the ``features`` topic's shape); ``id`` is made when left out."""

    features: Mapping[str, FeatureValue]
    id: str | None = None
    ts: float | None = None
    label: LabelValue | None = None
    """An inline label: the stream learns it right after serving the event (Kafka only)."""

    def to_json(self) -> dict[str, Any]:
        """Return the message as JSON-ready data, without the fields left out."""
        body: dict[str, Any] = {"id": self.id} if self.id is not None else {}
        body["features"] = dict(self.features)
        if self.ts is not None:
            body["ts"] = self.ts
        if self.label is not None:
            body["label"] = self.label
        return body

    def with_id(self) -> Event:
        """Return this event with an id (a new random one if it has none).

        >>> len(Event({"x": 1.0}).with_id().id or "")
        32
        """
        return self if self.id is not None else dataclasses.replace(self, id=uuid.uuid4().hex)


@dataclasses.dataclass(frozen=True)
class Label:
    """A delayed label for an event that went through the stream (the ``labels`` topic's shape)."""

    id: str
    label: LabelValue

    def to_json(self) -> dict[str, Any]:
        """Return the message as JSON-ready data."""
        return {"id": self.id, "label": self.label}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A prediction (the ``predictions`` topic's shape, and ``POST /predict``'s answer)."""

    id: str
    prediction: Any
    proba: dict[str, float]
    model: str
    model_version: int
    served_at: float
    latency_ms: float
    joinable: bool | None = None
    """``POST /predict`` only: whether a later label for this id will be learned."""

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Prediction:
        """Read a prediction message (extra fields are ignored)."""
        fields = dataclasses.fields(cls)
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        return cls(**{f.name: body[f.name] for f in fields if f.name in body or f.name in required})


@dataclasses.dataclass(frozen=True)
class Queued:
    """``POST /learn``'s answer: where Kafka put the label."""

    id: str
    label: LabelValue
    topic: str
    partition: int
    offset: int


def _answer(status: int, body: bytes) -> Any:
    """Decode an answer, or raise :class:`RequestRejected` for a refusal.

    >>> _answer(400, b'{"reason": "invalid_id", "detail": "id is a JSON number"}')
    Traceback (most recent call last):
    ...
    stream_app.errors.RequestRejected: 400 invalid_id: id is a JSON number
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = {"detail": body[:200].decode(errors="replace")}
    if status >= 300:
        reason = data.get("reason", "http_error") if isinstance(data, dict) else "http_error"
        detail = (
            str(data.get("detail") or data.get("error") or "") if isinstance(data, dict) else ""
        )
        raise RequestRejected(status, reason, detail)
    return data


def _batch(events: Sequence[Event]) -> bytes:
    return orjson.dumps({"events": [e.to_json() for e in events]})


class _Endpoints:
    """Where a client sends things: the worker's URL, the broker, the topic names."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:6066",
        bootstrap: str = "127.0.0.1:9092",
        *,
        topics: TopicSettings | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise StreamAppError(f"not an HTTP URL: {url}")
        self.url = url.rstrip("/")
        self.bootstrap = bootstrap
        self.topics = topics or TopicSettings()
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build a client for the worker and broker that these settings describe."""
        web = settings.web
        return cls(
            f"http://{web.host}:{web.port}",
            bootstrap_servers(settings.app.broker),
            topics=settings.topics,
        )


class AsyncClient(_Endpoints):
    """Talk to stream_app from asyncio code: Kafka for the stream, HTTP for requests."""

    _session: Any = None
    _producer: Any = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session and the Kafka producer, if they were opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def predict(self, event: Event) -> Prediction:
        """``POST /predict``: the live model's answer (not written to Kafka)."""
        return Prediction.from_json(await self._post("/predict", orjson.dumps(event.to_json())))

    async def predict_batch(self, events: Sequence[Event]) -> list[Prediction]:
        """``POST /predict/batch``: one answer per event, in order."""
        answer = await self._post("/predict/batch", _batch(events))
        return [Prediction.from_json(p) for p in answer["predictions"]]

    async def learn(self, label: Label) -> Queued:
        """``POST /learn``: the worker produces the label to the labels topic."""
        return Queued(**await self._post("/learn", orjson.dumps(label.to_json())))

    async def health(self) -> dict[str, Any]:
        """``GET /health`` (raises :class:`RequestRejected` while the worker is starting)."""
        session = await self._http()
        async with session.get(self.url + "/health") as response:
            result: dict[str, Any] = _answer(response.status, await response.read())
            return result

    async def send_events(self, events: Iterable[Event]) -> list[str]:
        """Produce events to the features topic (key = id); return their ids once Kafka has them."""
        sent = [e.with_id() for e in events]
        await self._produce(
            self.topics.features, [(e.id or "", orjson.dumps(e.to_json())) for e in sent]
        )
        return [e.id or "" for e in sent]

    async def send_labels(self, labels: Iterable[Label]) -> int:
        """Produce labels to the labels topic (key = id); return how many Kafka acknowledged."""
        batch = [(label.id, orjson.dumps(label.to_json())) for label in labels]
        await self._produce(self.topics.labels, batch)
        return len(batch)

    async def _produce(self, topic: str, messages: list[tuple[str, bytes]]) -> None:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer  # HTTP-only users never load Kafka code

            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
            )
            await producer.start()
            self._producer = producer
        futures = [await self._producer.send(topic, v, key=k.encode()) for k, v in messages]
        await asyncio.gather(*futures)

    async def _http(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), headers=_JSON_HEADERS
            )
        return self._session

    async def _post(self, path: str, body: bytes) -> Any:
        session = await self._http()
        async with session.post(self.url + path, data=body) as response:
            return _answer(response.status, await response.read())


class Client(_Endpoints):
    """The same API without asyncio: ``urllib`` for HTTP, a background event loop for Kafka."""

    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._kafka = AsyncClient(
            self.url, self.bootstrap, topics=self.topics, timeout=self.timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the Kafka producer and its thread, if they were started."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._kafka.close(), loop).result(self.timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout)
        loop.close()

    def predict(self, event: Event) -> Prediction:
        """``POST /predict``: the live model's answer (not written to Kafka)."""
        return Prediction.from_json(self._post("/predict", orjson.dumps(event.to_json())))

    def predict_batch(self, events: Sequence[Event]) -> list[Prediction]:
        """``POST /predict/batch``: one answer per event, in order."""
        answer = self._post("/predict/batch", _batch(events))
        return [Prediction.from_json(p) for p in answer["predictions"]]

    def learn(self, label: Label) -> Queued:
        """``POST /learn``: the worker produces the label to the labels topic."""
        return Queued(**self._post("/learn", orjson.dumps(label.to_json())))

    def health(self) -> dict[str, Any]:
        """``GET /health`` (raises :class:`RequestRejected` while the worker is starting)."""
        request = urllib.request.Request(self.url + "/health")  # noqa: S310 - http(s), checked
        result: dict[str, Any] = self._call(request)
        return result

    def send_events(self, events: Iterable[Event]) -> list[str]:
        """Produce events to the features topic (key = id); return their ids once Kafka has them."""
        return self._run(self._kafka.send_events(list(events)))

    def send_labels(self, labels: Iterable[Label]) -> int:
        """Produce labels to the labels topic (key = id); return how many Kafka acknowledged."""
        return self._run(self._kafka.send_labels(list(labels)))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's own event loop thread and wait for its result."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="stream-app-client", daemon=True
                )
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _post(self, path: str, body: bytes) -> Any:
        request = urllib.request.Request(  # noqa: S310 - http(s), checked in __init__
            self.url + path, data=body, headers=_JSON_HEADERS, method="POST"
        )
        return self._call(request)

    def _call(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return _answer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return _answer(exc.code, exc.read())
