"""The message shapes of the worker's HTTP API and topics, as JSON Schema 2020-12.

The components of the OpenAPI document (:mod:`stream_app.worker.openapi`). Shapes that no setting
changes are module-level data; :func:`schemas` adds the ones built from the settings (limits,
topic names) and the reason codes, so the document cannot drift from what the code enforces.

>>> from stream_app.settings import Settings
>>> schemas(Settings())["FeatureEvent"]["properties"]["features"]["maxProperties"]
1000
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from stream_app import reasons
from stream_app.registry.records import REASONS, STATUSES, VersionRecord
from stream_app.settings import FACTORY_CHANGE_ACTIONS, Settings
from stream_app.worker.http_api import HTTP_REASONS

__all__ = ["JSON", "json_of", "ref", "schemas"]

JSON: Final = "application/json"
_NULLABLE_INT: Final = {"type": ["integer", "null"]}
_LABEL: Final = {
    "type": ["string", "integer", "boolean", "number"],
    "description": "A class (string, integer, boolean) or, for regression, a number.",
}


def ref(name: str) -> dict[str, str]:
    """Point at the named schema of the document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_of(name: str, description: str) -> dict[str, Any]:
    """Describe a response (or request body) whose JSON follows the named schema."""
    return {"description": description, "content": {JSON: {"schema": ref(name)}}}


def _summary_fields() -> list[str]:
    """Name the fields of a version record's summary (the record less checksum and chunk count)."""
    hidden = ("sha256", "chunks", "signature")  # what VersionRecord.summary leaves out
    return [f.name for f in dataclasses.fields(VersionRecord) if f.name not in hidden]


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    """Describe a JSON object with these properties, of which ``required`` must be present."""
    return {"type": "object", "required": required, "properties": properties}


_PREDICTION: Final = _object(
    ["id", "prediction", "proba", "model", "model_version", "served_at", "latency_ms"],
    id={"type": "string"},
    prediction={
        "type": ["string", "integer", "boolean", "number", "null"],
        "description": "null while the model has learned nothing.",
    },
    proba={"type": "object", "additionalProperties": {"type": "number"}},
    model={"type": "string"},
    model_version={"type": "integer"},
    served_at={"type": "number"},
    latency_ms={"type": "number"},
    joinable={
        "type": "boolean",
        "description": "HTTP answers only: true when the event had an id and is kept "
        "for its label, so a later label (POST /learn or the labels topic) is learned.",
    },
    model_key={"type": "string", "description": "Keyed models: the event's model key."},
    fallback={
        "const": True,
        "description": "Keyed models: the global fallback answered a young key.",
    },
)

_MISDIRECTED: Final = _object(
    ["reason", "detail", "model_key", "partition", "owner"],
    reason={"const": "misdirected"},
    detail={"type": "string"},
    model_key={"type": "string"},
    partition={"type": "integer", "description": "The key's home partition."},
    owner={"type": "string", "description": "host:port of the worker that owns the key."},
)

_KEY_ROW: Final = _object(
    ["key", "partition", "version", "versions", "examples_learned", "quality"],
    key={"type": "string"},
    partition={"type": "integer"},
    version={"type": "integer"},
    versions={"type": "array", "items": {"type": "integer"}},
    examples_learned={"type": "integer"},
    quality={"type": "object"},
    reason={"type": "string"},
    at={"type": "number"},
)

_KEYS: Final = _object(
    ["model", "keys", "top_by_examples", "worst_by_quality", "rows"],
    model={"type": "string"},
    keys={"type": "integer", "description": "Keys with a stored version."},
    top_by_examples={"type": "array", "items": ref("KeyRow")},
    worst_by_quality={"type": "array", "items": ref("KeyRow")},
    rows={"type": "array", "items": ref("KeyRow")},
)

_KEY: Final = _object(
    ["key", "partition", "owner", "here", "versions", "stored", "live"],
    key={"type": "string"},
    partition={"type": "integer"},
    owner={"type": ["string", "null"], "description": "host:port of the key's owner."},
    here={"type": "boolean", "description": "This worker owns the key."},
    versions={"type": "array", "items": {"type": "integer"}},
    stored={"type": ["object", "null"], "description": "The newest stored version's header."},
    live={"type": ["object", "null"], "description": "The live model, on its owner."},
)

_BATCH_ANSWER: Final = _object(
    ["predictions"], predictions={"type": "array", "items": ref("Prediction")}
)

_QUEUED: Final = _object(
    ["id", "label", "topic", "partition", "offset"],
    id={"type": "string"},
    label={},
    topic={"type": "string"},
    partition={"type": "integer"},
    offset={"type": "integer"},
)

_PROBLEM: Final = _object(
    ["reason", "detail"],
    reason={"enum": [*reasons.ALL, *HTTP_REASONS]},
    detail={"type": "string"},
)

_DEAD_LETTER: Final = _object(
    ["reason", "detail", "source", "payload"],
    reason={"enum": list(reasons.ALL)},
    detail={"type": "string"},
    source=_object(
        ["topic", "partition", "offset"],
        topic={"type": "string"},
        partition={"type": "integer"},
        offset={"type": "integer"},
    ),
    payload={"type": ["string", "null"], "contentEncoding": "base64"},
)

_SERVING: Final = _object(
    ["writer", "serving", "learning", "pinned", "shadow", "loaded_at"],
    writer={"type": "boolean"},
    serving={"type": "integer"},
    learning={"type": "integer"},
    pinned=_NULLABLE_INT,
    shadow=_NULLABLE_INT,
    loaded_at={"type": ["number", "null"]},
)

_HEALTH: Final = {
    "allOf": [
        ref("Serving"),
        _object(
            ["status", "app_id", "group", "partitions", "model"],
            status={"enum": ["ok", "starting"]},
            app_id={"type": "string"},
            group={"type": "string"},
            partitions={"type": "array", "items": {"type": "integer"}},
            model={"type": "string"},
        ),
    ]
}

_VERSION_RECORD: Final = _object(
    _summary_fields(),
    model={"type": "string"},
    version={"type": "integer"},
    parent=_NULLABLE_INT,
    created_at={"type": "number"},
    examples_learned={"type": "integer"},
    quality=_object(
        ["metric", "value", "window"],
        metric={"enum": ["accuracy", "mae"]},
        value={"type": ["number", "null"]},
        window={"type": "integer"},
    ),
    reason={"enum": list(REASONS)},
    status={"enum": list(STATUSES)},
    size={"type": "integer"},
    factory={"type": "string"},
    task={"enum": ["classification", "regression"]},
    configured_factory={"type": "string"},
    on_factory_change={"enum": ["", *FACTORY_CHANGE_ACTIONS]},
    river_version={"type": "string"},
    stream_app_version={"type": "string"},
    learned_through={
        **_NULLABLE_INT,
        "description": "Learning-log offset of the last example this version learned.",
    },
    features={
        **_NULLABLE_INT,
        "description": "Distinct inputs the model tracked when stored.",
    },
)

_MODELS: Final = {
    "allOf": [
        ref("Serving"),
        _object(
            ["model", "versions"],
            model={"type": "string"},
            versions={
                "type": "array",
                "items": {
                    "allOf": [
                        ref("VersionRecord"),
                        _object(
                            ["serves", "pinned"],
                            serves={"type": "boolean"},
                            pinned={"type": "boolean"},
                        ),
                    ]
                },
            },
        ),
    ]
}

_OPERATION_ANSWER: Final = _object(
    ["type", "model", "model_version", "request_id", "ok"],
    type={"enum": ["rollback", "pin", "unpin", "promote", "import", "canary", "reset"]},
    model={"type": "string"},
    model_version={"type": "integer"},
    request_id={"type": "string"},
    ok={"type": "boolean"},
    error={"type": "string"},
    pinned=_NULLABLE_INT,
    from_version=_NULLABLE_INT,
    model_key={"type": "string", "description": "Keyed models: the key operated on."},
)

_ERROR: Final = _object(["error"], error={"type": "string"})


def schemas(s: Settings) -> dict[str, Any]:
    """Describe the message shapes: what goes in and out of the topics and the endpoints."""
    limits, topics = s.limits, s.topics
    event_id = {"type": "string", "minLength": 1, "maxLength": limits.max_id_chars}
    feature_value = {"type": "string", "maxLength": limits.max_string_chars}
    return {
        "FeatureValue": {"oneOf": [{"type": "number"}, {"type": "boolean"}, feature_value]},
        "FeatureEvent": {
            **_object(
                ["features"],
                id={**event_id, "description": "Optional over HTTP: one is made if absent."},
                features={
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": limits.max_features,
                    "additionalProperties": ref("FeatureValue"),
                },
                ts={"type": "number", "description": "Event time, epoch seconds."},
                label={"description": "Inline label (the features topic); /predict ignores it."},
            ),
            "description": f"The `{topics.features}` topic's message shape.",
        },
        "Prediction": {
            **_PREDICTION,
            "description": f"The `{topics.predictions}` topic's message shape (plus `joinable`"
            " over HTTP).",
        },
        "BatchRequest": _object(
            ["events"],
            events={
                "type": "array",
                "maxItems": s.web.max_batch_events,
                "items": ref("FeatureEvent"),
            },
        ),
        "BatchAnswer": _BATCH_ANSWER,
        "Label": {
            **_object(["id", "label"], id=event_id, label=_LABEL),
            "description": f"The `{topics.labels}` topic's message shape.",
        },
        "Queued": _QUEUED,
        "Problem": _PROBLEM,
        "DeadLetter": {
            **_DEAD_LETTER,
            "description": f"The `{topics.dead_letters}` topic's message shape.",
        },
        "Serving": _SERVING,
        "Health": _HEALTH,
        "VersionRecord": _VERSION_RECORD,
        "Models": _MODELS,
        "OperationAnswer": {
            **_OPERATION_ANSWER,
            "description": f"The writer's answer, as published on `{topics.model_events}`.",
        },
        "Error": _ERROR,
        "Misdirected": _MISDIRECTED,
        "KeyRow": _KEY_ROW,
        "Keys": _KEYS,
        "Key": _KEY,
    }
