"""``POST /predict`` and ``/predict/batch`` for keyed models: answered only by the key's owner.

With ``model.key_field`` set, an event's model key selects its model, and that model lives in
the memory of one worker: the one that serves the key's home partition
(:mod:`stream_app.core.owners`). That worker answers with the key's live model (or the global
fallback while the key is young, as on the stream: ``"fallback": true``). Any other worker does
not guess: it answers **421 Misdirected Request** with the owner's address (``owner``, its
``web.advertised`` host:port, from the table the serve group's leader hands out), so the client
asks there; while no owner is known (a rebalance) the answer is 503 ``unavailable``. A batch is
answered only if this worker owns every event's key; otherwise it is refused whole with 421,
naming the first event whose key lives elsewhere.

A keyed event with an ``id`` is kept for its label as on the stream: what was served goes to the
key's home partition of the join topic, naming its key, and the answer says ``"joinable": true``
once Kafka has it; its label (``POST /learn`` with the key field, or the labels topic keyed by
model key) teaches the key's model.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson

from stream_app.core.decode import FeatureEvent, expect_object, parse_json, validate_event
from stream_app.core.join import Served
from stream_app.core.keyed import model_key
from stream_app.core.messages import encode_keyed_prediction
from stream_app.core.metrics import Metrics
from stream_app.core.owners import Route, route
from stream_app.core.pipeline import Pipeline
from stream_app.errors import RejectedMessage
from stream_app.kafka.publish import all_taken
from stream_app.settings import Settings

__all__ = ["MISDIRECTED", "MISDIRECTED_STATUS", "KeyedHttp", "misdirected"]

log = logging.getLogger(__name__)

MISDIRECTED: Final = "misdirected"
"""The reason code of a keyed request sent to a worker that does not own the key."""
MISDIRECTED_STATUS: Final = 421
"""HTTP 421 Misdirected Request (RFC 9110): this server cannot answer for that key."""
_OK: Final = 200
_UNAVAILABLE: Final = 503
_JOINABLE: Final = {True: b',"joinable":true}', False: b',"joinable":false}'}

Answer = tuple[int, bytes]
"""(HTTP status, JSON body)."""


def misdirected(key: str, where: Route, index: int | None = None) -> Answer:
    """Answer a request for a key this worker does not own: 421 with the owner, or 503.

    >>> misdirected("u-1", Route(2, False, "10.0.0.2:6066"))
    (421, b'{"reason":"misdirected","detail":"key u-1 lives on partition 2, served by 10.0.0.2:6066","model_key":"u-1","partition":2,"owner":"10.0.0.2:6066"}')
    >>> misdirected("u-1", Route(2, False, None))[0]
    503
    """  # noqa: E501
    at = "" if index is None else f"events[{index}]: "
    if where.owner is None:
        detail = f"{at}no owner of partition {where.home} (key {key}) is known yet; try again"
        return _UNAVAILABLE, orjson.dumps({"reason": "unavailable", "detail": detail})
    body = {
        "reason": MISDIRECTED,
        "detail": f"{at}key {key} lives on partition {where.home}, served by {where.owner}",
        "model_key": key,
        "partition": where.home,
        "owner": where.owner,
    }
    return MISDIRECTED_STATUS, orjson.dumps(body)


class KeyedHttp:
    """Answers keyed ``/predict`` requests from the keys this worker owns; 421 for the others."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        metrics: Metrics,
        owners: Callable[[], Mapping[int, str]],
        send: Callable[..., Awaitable[tuple[int, int]]] | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.owners = owners
        """partition -> the owner's address (the serve group's table)."""
        self.send = send
        """Produce (topic, key, value, partition): what was served, to its key's home."""

    def route(self, key: str) -> Route:
        """Where ``key`` is answered (this worker owns a partition once it read its keys).

        A partition the table gives this worker but whose keys it has not read yet has no owner
        to name (503 until it has).
        """
        pipeline = self.pipeline
        store = pipeline.key_store
        owned = [p for p in range(pipeline.partitions) if store is not None and store.owns(p)]
        where = route(key, pipeline.partitions, owned, self.owners())
        if where.owner == self.settings.advertised_address:  # assigned here, not yet restored
            return where._replace(owner=None)
        return where

    async def predict(self, raw: bytes, started: float) -> Answer:
        """Answer one keyed event with its key's live model, or 421 to the owner.

        Raises ``RejectedMessage`` for an invalid event or key, and whatever the model raises:
        :class:`~stream_app.worker.http_api.HttpApi` answers them as it answers the global model's.
        """
        obj = parse_json(raw, self.settings.limits)
        event = self._event(obj)
        assert event.key is not None
        where = self.route(event.key)
        if not where.local:
            return misdirected(event.key, where)
        body, kept = self._answer(event, where.home, started)
        self.metrics.http_predictions.inc()
        joinable = _has_id(obj) and await self._keep([(event.id, kept, where.home)])
        return _OK, body + _JOINABLE[joinable]

    async def predict_batch(self, events: list[Any], started: float) -> Answer:
        """Answer a batch whose keys this worker all owns, in order; else 421 for the batch."""
        decoded = [self._event(item, index) for index, item in enumerate(events)]
        homes = []
        for index, event in enumerate(decoded):
            assert event.key is not None
            where = self.route(event.key)
            if not where.local:
                return misdirected(event.key, where, index)
            homes.append(where.home)
        answered = [self._answer(e, home, started) for e, home in zip(decoded, homes, strict=True)]
        self.metrics.http_predictions.inc(len(answered))
        given = [_has_id(item) for item in events]
        keep = [
            (event.id, kept, home)
            for event, (_, kept), home, has_id in zip(decoded, answered, homes, given, strict=True)
            if has_id
        ]
        joinable = await self._keep(keep)
        parts = [
            body + _JOINABLE[joinable and has_id]
            for (body, _), has_id in zip(answered, given, strict=True)
        ]
        return _OK, b'{"predictions":[' + b",".join(parts) + b"]}"

    async def _keep(self, answered: list[tuple[str, Served, int]]) -> bool:
        """Send what was served to the key's home for its label; True once Kafka has them all."""
        if not answered or not self.settings.learn.enabled or self.send is None:
            return False
        sends = []
        for event_id, kept, home in answered:
            topic, partition, key, value = self.pipeline.served_message(event_id, kept, home)
            sends.append(self.send(topic, key, value, partition))
        return await all_taken(sends, "keyed HTTP predictions for joining")

    def _event(self, obj: Any, index: int | None = None) -> FeatureEvent:
        """Validate one event and its model key like the stream; give it an id if it has none."""
        try:
            event = expect_object(obj)
            if event.get("id") is None:
                event = {**event, "id": uuid.uuid4().hex}
            event_id, features, ts, label, _ = validate_event(event, self.settings.limits)
            return FeatureEvent(
                event_id, features, ts, label, model_key(event, self.settings.model.key_field)
            )
        except RejectedMessage as rejected:
            if index is None:
                raise
            raise RejectedMessage(rejected.reason, f"events[{index}]: {rejected.detail}") from None

    def _answer(self, event: FeatureEvent, home: int, started: float) -> tuple[bytes, Served]:
        """Answer with the key's live model (or the fallback while young), as the stream does.

        A model that raises is the caller's ``model_error`` (:class:`HttpApi` answers 422).
        """
        pipeline, key = self.pipeline, event.key
        keys = pipeline.keys
        assert keys is not None and key is not None
        fallback = pipeline.learner if self.settings.model.key_fallback == "global" else None
        answer = keys.answer(key, event.features, home, time.time(), fallback)
        shadow = None  # the global challenger's answer is not the key's challenger's
        if answer.fallback:
            model = pipeline.learner.answering
        else:
            state = keys.peek(key)
            assert state is not None
            model, shadow = state.learner.answering, answer.shadow
        served, now = answer.served, time.time()
        value = encode_keyed_prediction(
            event.id,
            served.prediction,
            served.proba,
            model.name,
            model.version,
            now,
            round((time.perf_counter() - started) * 1000.0, 3),
            key,
            answer.fallback,
        )
        kept = Served(
            event.features, served.prediction, served.proba, shadow, model.version, now, True, key
        )
        return value[:-1], kept


def _has_id(obj: Any) -> bool:
    """Whether a request's event named its own id (one made up here cannot be labelled)."""
    return isinstance(obj, dict) and obj.get("id") is not None
