"""The OpenAPI 3.1 document of the worker's HTTP API, served at ``GET /openapi.json``.

Kept as a Python structure, built from the settings (limits, topic names) and the reason codes, so
the document cannot drift from what the code enforces. The schemas are JSON Schema 2020-12 (the
dialect of OpenAPI 3.1); tests/integration/test_openapi.py validates the document and checks real
answers of a running worker against them.

>>> doc = document(Settings())
>>> doc["openapi"], sorted(doc["paths"])[:3]
('3.1.0', ['/health', '/learn', '/metrics'])
>>> doc["components"]["schemas"]["BatchRequest"]["properties"]["events"]["maxItems"]
10000
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from stream_app import __version__, reasons
from stream_app.registry.records import REASONS, STATUSES, VersionRecord
from stream_app.settings import FACTORY_CHANGE_ACTIONS, Settings
from stream_app.worker.http_api import HTTP_REASONS

__all__ = ["document"]

_JSON: Final = "application/json"
_NULLABLE_INT: Final = {"type": ["integer", "null"]}
_LABEL: Final = {
    "type": ["string", "integer", "boolean", "number"],
    "description": "A class (string, integer, boolean) or, for regression, a number.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    """Describe a response (or request body) whose JSON follows the named schema."""
    return {"description": description, "content": {_JSON: {"schema": _ref(name)}}}


def _summary_fields() -> list[str]:
    """Name the fields of a version record's summary (the record less checksum and chunk count)."""
    hidden = ("sha256", "chunks", "signature")  # what VersionRecord.summary leaves out
    return [f.name for f in dataclasses.fields(VersionRecord) if f.name not in hidden]


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _schemas(s: Settings) -> dict[str, Any]:
    """Describe the message shapes: what goes in and out of the topics and the endpoints."""
    limits = s.limits
    event_id = {"type": "string", "minLength": 1, "maxLength": limits.max_id_chars}
    return {
        "FeatureValue": {
            "oneOf": [
                {"type": "number"},
                {"type": "boolean"},
                {"type": "string", "maxLength": limits.max_string_chars},
            ]
        },
        "FeatureEvent": {
            **_object(
                ["features"],
                id={**event_id, "description": "Optional over HTTP: one is made if absent."},
                features={
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": limits.max_features,
                    "additionalProperties": _ref("FeatureValue"),
                },
                ts={"type": "number", "description": "Event time, epoch seconds."},
                label={"description": "Inline label (the features topic); /predict ignores it."},
            ),
            "description": f"The `{s.topics.features}` topic's message shape.",
        },
        "Prediction": {
            **_object(
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
            ),
            "description": f"The `{s.topics.predictions}` topic's message shape (plus `joinable`"
            " over HTTP).",
        },
        "BatchRequest": _object(
            ["events"],
            events={
                "type": "array",
                "maxItems": s.web.max_batch_events,
                "items": _ref("FeatureEvent"),
            },
        ),
        "BatchAnswer": _object(
            ["predictions"], predictions={"type": "array", "items": _ref("Prediction")}
        ),
        "Label": {
            **_object(["id", "label"], id=event_id, label=_LABEL),
            "description": f"The `{s.topics.labels}` topic's message shape.",
        },
        "Queued": _object(
            ["id", "label", "topic", "partition", "offset"],
            id={"type": "string"},
            label={},
            topic={"type": "string"},
            partition={"type": "integer"},
            offset={"type": "integer"},
        ),
        "Problem": _object(
            ["reason", "detail"],
            reason={"enum": [*reasons.ALL, *HTTP_REASONS]},
            detail={"type": "string"},
        ),
        "DeadLetter": {
            **_object(
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
            ),
            "description": f"The `{s.topics.dead_letters}` topic's message shape.",
        },
        "Serving": _object(
            ["writer", "serving", "learning", "pinned", "shadow", "loaded_at"],
            writer={"type": "boolean"},
            serving={"type": "integer"},
            learning={"type": "integer"},
            pinned=_NULLABLE_INT,
            shadow=_NULLABLE_INT,
            loaded_at={"type": ["number", "null"]},
        ),
        "Health": {
            "allOf": [
                _ref("Serving"),
                _object(
                    ["status", "app_id", "group", "partitions", "model"],
                    status={"enum": ["ok", "starting"]},
                    app_id={"type": "string"},
                    group={"type": "string"},
                    partitions={"type": "array", "items": {"type": "integer"}},
                    model={"type": "string"},
                ),
            ]
        },
        "VersionRecord": _object(
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
        ),
        "Models": {
            "allOf": [
                _ref("Serving"),
                _object(
                    ["model", "versions"],
                    model={"type": "string"},
                    versions={
                        "type": "array",
                        "items": {
                            "allOf": [
                                _ref("VersionRecord"),
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
        },
        "OperationAnswer": {
            **_object(
                ["type", "model", "model_version", "request_id", "ok"],
                type={"enum": ["rollback", "pin", "unpin", "promote", "import", "canary"]},
                model={"type": "string"},
                model_version={"type": "integer"},
                request_id={"type": "string"},
                ok={"type": "boolean"},
                error={"type": "string"},
                pinned=_NULLABLE_INT,
                from_version={"type": "integer"},
            ),
            "description": f"The writer's answer, as published on `{s.topics.model_events}`.",
        },
        "Error": _object(["error"], error={"type": "string"}),
    }


def _operation(summary: str, description: str, version: bool) -> dict[str, Any]:
    """Describe a model operation (answered by the writer through Kafka)."""
    op: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": _json("OperationAnswer", "The writer carried it out."),
            "401": _json("Error", "web.token is set and the request did not carry it."),
            "409": _json("OperationAnswer", "The writer refused (ok is false; error says why)."),
            "504": _json("Error", "No answer from the writer in time."),
        },
    }
    if version:
        op["parameters"] = [
            {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}}
        ]
        op["responses"]["404"] = _json("Error", "Not a version number.")
    return {"post": op}


def _canary_operation() -> dict[str, Any]:
    """Describe ``POST /models/canary``: a version answers a share of events, or the abort."""
    operation = _operation(
        "Let a version answer a share of events (canary)",
        "The version (stored or shadow) answers the events whose id hashes below the share and "
        "steps up along rollout.steps while its quality holds; {abort: true} returns to the "
        "incumbent.",
        False,
    )
    body = {
        "type": "object",
        "properties": {
            "version": {"type": "integer"},
            "share": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "abort": {"type": "boolean"},
        },
    }
    post = operation["post"]
    post["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    post["responses"]["400"] = _json("Error", "Not a JSON object with an integer version.")
    return operation


def _paths(s: Settings) -> dict[str, Any]:
    problems = {
        "400": _json("Problem", "Invalid request; reason is the dead-letter code."),
        "413": _json("Problem", "Larger than the limit (reason: oversized)."),
        "503": _json("Problem", "The worker has not joined its group yet (reason: unavailable)."),
    }
    not_on_kafka = (
        f"Answered by the live model and version that serve the `{s.topics.features}` stream "
        "(pinned or serving; while a canary runs, the canary answers the ids that hash into "
        "its share, as on the stream, and model_version names it). Not written to the "
        f"`{s.topics.predictions}` topic, not counted as "
        "a stream event (metrics: stream_app_http_requests_total, "
        "stream_app_http_request_latency_seconds, stream_app_http_predictions_total)."
    )
    return {
        "/predict": {
            "post": {
                "summary": "Predict one feature event",
                "description": f"{not_on_kafka} Body limit: limits.max_message_bytes "
                f"({s.limits.max_message_bytes}).",
                "requestBody": {"required": True, **_json("FeatureEvent", "One event.")},
                "responses": {
                    "200": _json("Prediction", "The prediction."),
                    **problems,
                    "422": _json("Problem", "The model raised on this event (model_error)."),
                },
            }
        },
        "/predict/batch": {
            "post": {
                "summary": "Predict up to web.max_batch_events events with one batch call",
                "description": f"{not_on_kafka} One invalid event refuses the whole batch (its "
                "index is in detail). More than web.max_batch_events events, or a body over "
                f"web.max_batch_bytes ({s.web.max_batch_bytes}), is refused as oversized.",
                "requestBody": {"required": True, **_json("BatchRequest", "The events.")},
                "responses": {
                    "200": _json("BatchAnswer", "One prediction per event, in order."),
                    **problems,
                    "422": _json("Problem", "The model raised on an event (model_error)."),
                },
            }
        },
        "/learn": {
            "post": {
                "summary": "Queue a delayed label",
                "description": f"Produces the label to the `{s.topics.labels}` topic (key = id): "
                "the single writer learns it once, if the event went through the stream. A "
                "duplicate or a label without a served event becomes a dead letter "
                "(duplicate_label, label_without_event), as on the topic.",
                "requestBody": {"required": True, **_json("Label", "The label of one event.")},
                "responses": {
                    "202": _json("Queued", "Kafka has the label."),
                    **problems,
                    "409": _json("Problem", "learn.enabled is false (reason: learning_off)."),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Readiness and who serves what",
                "responses": {
                    "200": _json("Health", "Serving its share of partitions."),
                    "503": _json("Health", "Starting or stopping."),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of this worker",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/models": {
            "get": {
                "summary": "Stored versions, newest first",
                "responses": {"200": _json("Models", "This worker's view of the registry.")},
            }
        },
        "/models/{version}": {
            "get": {
                "summary": "One stored version's record",
                "parameters": [
                    {
                        "name": "version",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "responses": {
                    "200": _json("VersionRecord", "The record (no blob)."),
                    "404": _json("Error", "Not stored."),
                },
            }
        },
        "/models/{version}/rollback": _operation(
            "Learn from a stored version again", "A new version records the rollback.", True
        ),
        "/models/{version}/pin": _operation(
            "Serve a stored version on every worker", "The learner keeps learning.", True
        ),
        "/models/{version}/promote": _operation(
            "Make a shadow version serve", "The live challenger, or a stored version.", True
        ),
        "/models/unpin": _operation("Serve the newest version again", "Undoes a pin.", False),
        "/models/canary": _canary_operation(),
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3.1.", "content": {_JSON: {"schema": {}}}}
                },
            }
        },
    }


def document(settings: Settings) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document for a worker with these settings."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "stream_app worker",
            "version": __version__,
            "description": "Predict with the live model of the stream, queue labels, and operate "
            "model versions. Every worker answers with its current serving version.",
        },
        "paths": _paths(settings),
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
