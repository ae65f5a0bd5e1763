"""The OpenAPI 3.1 document of the worker's HTTP API, served at ``GET /openapi.json``.

Kept as a Python structure, built from the settings (limits, topic names) and the reason codes, so
the document cannot drift from what the code enforces. The schemas are JSON Schema 2020-12 (the
dialect of OpenAPI 3.1), in :mod:`stream_app.worker.schemas`; tests/integration/test_openapi.py
validates the document and checks real answers of a running worker against them.

>>> doc = document(Settings())
>>> doc["openapi"], sorted(doc["paths"])[:3]
('3.1.0', ['/health', '/learn', '/metrics'])
>>> doc["components"]["schemas"]["BatchRequest"]["properties"]["events"]["maxItems"]
10000
"""

from __future__ import annotations

from typing import Any, Final

from stream_app import __version__
from stream_app.settings import Settings
from stream_app.worker.schemas import JSON, json_of, schemas

__all__ = ["document"]


def _operation(summary: str, description: str, version: bool) -> dict[str, Any]:
    """Describe a model operation (answered by the writer through Kafka)."""
    op: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": json_of("OperationAnswer", "The writer carried it out."),
            "401": json_of("Error", "web.token is set and the request did not carry it."),
            "409": json_of("OperationAnswer", "The writer refused (ok is false; error says why)."),
            "504": json_of("Error", "No answer from the writer in time."),
        },
    }
    if version:
        op["parameters"] = [
            {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}}
        ]
        op["responses"]["404"] = json_of("Error", "Not a version number.")
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
    post["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    post["responses"]["400"] = json_of("Error", "Not a JSON object with an integer version.")
    return operation


def _serving_paths(s: Settings) -> dict[str, Any]:
    """Describe the serving endpoints: predict one event or a batch, queue a label."""
    problems = {
        "400": json_of("Problem", "Invalid request; reason is the dead-letter code."),
        "413": json_of("Problem", "Larger than the limit (reason: oversized)."),
        "503": json_of("Problem", "The worker has not joined its group yet (reason: unavailable)."),
    }
    misdirected = {
        "421": json_of(
            "Misdirected",
            "Keyed models (model.key_field): this worker does not own the event's key (in a "
            "batch: one event's); ask the owner, whose host:port is in owner.",
        )
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
                "requestBody": {"required": True, **json_of("FeatureEvent", "One event.")},
                "responses": {
                    "200": json_of("Prediction", "The prediction."),
                    **problems,
                    **misdirected,
                    "422": json_of("Problem", "The model raised on this event (model_error)."),
                },
            }
        },
        "/predict/batch": {
            "post": {
                "summary": "Predict up to web.max_batch_events events with one batch call",
                "description": f"{not_on_kafka} One invalid event refuses the whole batch (its "
                "index is in detail). More than web.max_batch_events events, or a body over "
                f"web.max_batch_bytes ({s.web.max_batch_bytes}), is refused as oversized.",
                "requestBody": {"required": True, **json_of("BatchRequest", "The events.")},
                "responses": {
                    "200": json_of("BatchAnswer", "One prediction per event, in order."),
                    **problems,
                    **misdirected,
                    "422": json_of("Problem", "The model raised on an event (model_error)."),
                },
            }
        },
        "/learn": {
            "post": {
                "summary": "Queue a delayed label",
                "description": f"Produces the label to the `{s.topics.labels}` topic (key = "
                "id; with keyed models and the key field in the body, key = the model key): "
                "the single writer learns it once, if the event went through the stream. A "
                "duplicate or a label without a served event becomes a dead letter "
                "(duplicate_label, label_without_event), as on the topic.",
                "requestBody": {
                    "required": True,
                    **json_of("Label", "The label of one event."),
                },
                "responses": {
                    "202": json_of("Queued", "Kafka has the label."),
                    **problems,
                    "409": json_of("Problem", "learn.enabled is false (reason: learning_off)."),
                },
            }
        },
    }


def _key_paths() -> dict[str, Any]:
    """Describe the keyed models' paths (only with ``model.key_field``): keys, a key, operations.

    What is stored reflects each key's last checkpoint; an operation is carried out by the key's
    owner, whichever worker is asked.
    """
    key = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
    reset = _operation(
        "Start one key over from a fresh model",
        "Carried out at once by the key's owner; a new version of the key records it.",
        False,
    )
    reset["post"]["parameters"] = [key]
    rollback = _operation(
        "Make a stored version of one key live again",
        "Carried out at once by the key's owner; a new version of the key records it.",
        True,
    )
    rollback["post"]["parameters"].append(key)
    return {
        "/models/keys": {
            "get": {
                "summary": "Keyed models: count, top keys by examples, worst by quality",
                "parameters": [{"name": "top", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": json_of("Keys", "As of each key's last checkpoint.")},
            }
        },
        "/models/keys/{key}": {
            "get": {
                "summary": "One key: its stored versions, its owner, its live model (on the owner)",
                "parameters": [key],
                "responses": {
                    "200": json_of("Key", "The key."),
                    "404": json_of("Error", "No stored version, not live here."),
                },
            }
        },
        "/models/keys/{key}/reset": reset,
        "/models/keys/{key}/{version}/rollback": rollback,
    }


_WORKER_PATHS: Final = {
    "/health": {
        "get": {
            "summary": "Readiness and who serves what",
            "responses": {
                "200": json_of("Health", "Serving its share of partitions."),
                "503": json_of("Health", "Starting or stopping."),
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
            "responses": {"200": json_of("Models", "This worker's view of the registry.")},
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
                "200": json_of("VersionRecord", "The record (no blob)."),
                "404": json_of("Error", "Not stored."),
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
                "200": {"description": "OpenAPI 3.1.", "content": {JSON: {"schema": {}}}}
            },
        }
    },
}
"""The paths no setting changes: health, metrics, the registry's versions and their operations."""


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
        "paths": {
            **_serving_paths(settings),
            **_WORKER_PATHS,
            **(_key_paths() if settings.model.key_field else {}),
        },
        "components": {
            "schemas": schemas(settings),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
