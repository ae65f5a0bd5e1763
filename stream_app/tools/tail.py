"""``stream-app tail TOPIC``: print a topic's messages as they arrive, one readable line each.

TOPIC is a contract name (``predictions``, ``dead-letters``, ...) mapped through the settings, so
the same command works whatever the topics are called. Formatting is pure (:func:`describe`); the
Kafka loop (:func:`tail`) is thin.

>>> describe("predictions", b'{"id": "e-1", "prediction": true, "proba": {"false": 0.1, '
...          b'"true": 0.9}, "model": "default", "model_version": 3, "latency_ms": 0.42}')
'e-1  -> True  p=0.900  default v3  0.42 ms'
>>> describe("dead-letters", b'{"reason": "invalid_json", "detail": "unexpected end", '
...          b'"source": {"topic": "features", "partition": 2, "offset": 17}, "payload": "YWJj"}')
"invalid_json: unexpected end  (features[2]@17)  payload b'abc'"
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sys
import time
from typing import Any, Final

import orjson

from stream_app.errors import StreamAppError
from stream_app.kafka.security import client_kwargs
from stream_app.kafka.topics import topic_partitions
from stream_app.settings import Settings

__all__ = ["TOPICS", "describe", "tail", "topic_name"]

TOPICS: Final = (
    "predictions",
    "predictions-shadow",
    "dead-letters",
    "model-events",
    "features",
    "labels",
)
_PREVIEW: Final = 60
"""Characters of a payload or feature list shown on a line."""
_POLL_MS: Final = 200


def topic_name(settings: Settings, name: str) -> str:
    """Map a contract name to the configured topic.

    >>> topic_name(Settings().replace(topics={"dead_letters": "t1-dlq"}), "dead-letters")
    't1-dlq'
    """
    if name not in TOPICS:
        raise StreamAppError(f"unknown topic {name!r}; one of {', '.join(TOPICS)}")
    topic: str = getattr(settings.topics, name.replace("-", "_"))
    return topic


def describe(kind: str, value: bytes | None) -> str:
    """Return one line for people about a message of topic ``kind`` (a contract name).

    >>> describe("model-events", b'{"type": "drift", "model": "m", "model_version": 0, '
    ...          b'"examples_seen": 1536, "detector": "ADWIN"}')
    'drift  m v0  examples_seen=1536 detector=ADWIN'
    >>> describe("labels", b'{"id": "e-9", "label": false}'), describe("features", b"{")
    ('e-9  label=False', "(not JSON) b'{'")
    """
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return f"(not JSON) {_clip(repr(value))}"
    if not isinstance(body, dict):
        return f"(not an object) {_clip(orjson.dumps(body).decode())}"
    try:
        if kind in ("predictions", "predictions-shadow"):
            return _prediction(body)
        if kind == "dead-letters":
            return _dead_letter(body)
        if kind == "model-events":
            return _model_event(body)
        if kind == "labels":
            return f"{body['id']}  label={body['label']!r}"
        return _event(body)
    except (KeyError, TypeError, ValueError, AttributeError):
        return f"(unexpected shape) {_clip(orjson.dumps(body).decode())}"


def _prediction(body: dict[str, Any]) -> str:
    proba = body.get("proba") or {}
    top = f"  p={max(proba.values()):.3f}" if proba else ""
    latency = body.get("latency_ms")
    timing = f"  {latency:.2f} ms" if latency else ""
    return (
        f"{body['id']}  -> {body['prediction']!r}{top}  "
        f"{body.get('model')} v{body.get('model_version')}{timing}"
    )


def _dead_letter(body: dict[str, Any]) -> str:
    source = body.get("source") or {}
    where = f"{source.get('topic')}[{source.get('partition')}]@{source.get('offset')}"
    payload = body.get("payload")
    try:
        preview = "none" if payload is None else repr(base64.b64decode(payload, validate=True))
    except (binascii.Error, TypeError, ValueError):
        preview = f"(not base64) {payload!r}"
    detail = _clip(str(body.get("detail", "")))
    return f"{body['reason']}: {detail}  ({where})  payload {_clip(preview)}"


def _model_event(body: dict[str, Any]) -> str:
    rest = {k: v for k, v in body.items() if k not in ("type", "model", "model_version")}
    fields = " ".join(f"{k}={_short(v)}" for k, v in rest.items())
    return f"{body['type']}  {body.get('model')} v{body.get('model_version')}  {fields}".rstrip()


def _event(body: dict[str, Any]) -> str:
    features = body.get("features")
    shown = " ".join(f"{k}={_short(v)}" for k, v in (features or {}).items())
    label = f"  label={body['label']!r}" if "label" in body else ""
    return f"{body.get('id')}  {_clip(shown)}{label}"


def _short(value: Any) -> str:
    """Print floats with 4 significant digits, the rest as they are."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _clip(text: str) -> str:
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + "..."


async def tail(
    settings: Settings,
    kind: str,
    *,
    raw_json: bool = False,
    from_beginning: bool = False,
    max_messages: int = 0,
    timeout: float = 0.0,
) -> int:
    """Print messages of topic ``kind``; return how many, after ``max_messages`` or ``timeout``.

    ``timeout`` is seconds of silence; 0 for either means no limit.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = topic_name(settings, kind)
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    printed = 0
    try:
        last = time.monotonic()
        partitions = await _partitions(consumer, topic, timeout)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*tps)
        last = time.monotonic()
        while not timeout or time.monotonic() - last < timeout:
            batches = await consumer.getmany(timeout_ms=_POLL_MS)
            for records in batches.values():
                for record in records:
                    _show(kind, record, raw_json)
                    printed += 1
                    last = time.monotonic()
                    if max_messages and printed >= max_messages:
                        return printed
    finally:
        await consumer.stop()
    return printed


def _show(kind: str, record: Any, raw_json: bool) -> None:
    """Print one record: readable, or its JSON value on one line (non-JSON goes to stderr)."""
    if not raw_json:
        print(describe(kind, record.value), flush=True)
        return
    try:
        print(orjson.dumps(orjson.loads(record.value or b"")).decode(), flush=True)
    except orjson.JSONDecodeError:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        print(f"{where}: not JSON ({len(record.value or b'')} bytes)", file=sys.stderr)


async def _partitions(consumer: Any, topic: str, timeout: float) -> set[int]:
    """Wait for ``topic`` to exist (a worker creates it); give up after ``timeout`` s if set."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        partitions = await topic_partitions(consumer, topic)
        if partitions:
            return partitions
        if timeout and time.monotonic() > deadline:
            raise StreamAppError(f"topic {topic} does not exist (waited {timeout:.0f}s)")
        if not told:
            print(f"waiting for topic {topic} to exist ...", file=sys.stderr, flush=True)
            told = True
        await asyncio.sleep(_POLL_MS / 1000)
