"""The OpenAPI document a real worker serves: valid OpenAPI 3.1, and its real answers match it."""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import WorkerProcess, produce, read_registry, wait_for
from tests.integration.test_http import post
from tests.integration.test_learning import feature_messages, sea

CONFIG = "[guard]\nenabled = false\n[registry]\ncheckpoint_every_examples = 100\n"


def checker(doc: dict[str, Any]) -> Any:
    """Validate a body against the schema of (path, method, status) in the document."""
    registry: Registry[Any] = Registry().with_resource("urn:api", DRAFT202012.create_resource(doc))

    def check(path: str, method: str, status: int, body: Any) -> None:
        content = doc["paths"][path][method]["responses"][str(status)]["content"]
        schema = content["application/json"]["schema"]
        pointer = schema["$ref"].removeprefix("#")
        Draft202012Validator({"$ref": f"urn:api#{pointer}"}, registry=registry).validate(body)

    return check


def get(worker: WorkerProcess, path: str) -> tuple[int, Any]:
    status, body = worker.http(path)
    return status, orjson.loads(body)


async def test_the_document_validates_and_real_answers_match_it(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(partitions=1, extra_config=CONFIG)
    worker.wait_healthy()
    status, raw = worker.http("/openapi.json")
    assert status == 200
    doc = orjson.loads(raw)
    validate(doc)  # against the OpenAPI 3.1 meta-schema
    check = checker(doc)

    await produce(
        kafka.bootstrap, names.topics["features"], feature_messages(sea(100, seed=61), inline=True)
    )

    async def stored() -> Any:
        return (await read_registry(kafka.bootstrap, names.app_id)).newest("default")

    version = (await wait_for(stored, what="a checkpoint")).version
    event = {"id": "o-1", "features": sea(1, seed=62)[0][0]}
    seen: set[tuple[str, str, int]] = set()

    def expect(path: str, method: str, status: int, answer: tuple[int, Any]) -> None:
        assert answer[0] == status, (path, answer)
        check(path, method, status, answer[1])
        seen.add((path, method, status))

    expect("/health", "get", 200, get(worker, "/health"))
    expect("/models", "get", 200, get(worker, "/models"))
    expect("/models/{version}", "get", 200, get(worker, f"/models/{version}"))
    expect("/models/{version}", "get", 404, get(worker, "/models/12345"))
    expect("/predict", "post", 200, post(worker, "/predict", orjson.dumps(event)))
    expect("/predict", "post", 400, post(worker, "/predict", b'{"id": 1}'))
    expect("/predict", "post", 413, post(worker, "/predict", b" " * 70_000))
    batch = orjson.dumps({"events": [event, {"features": {"x0": 1.0}}]})
    expect("/predict/batch", "post", 200, post(worker, "/predict/batch", batch))
    expect("/predict/batch", "post", 400, post(worker, "/predict/batch", b"{}"))
    expect("/learn", "post", 202, post(worker, "/learn", b'{"id": "o-1", "label": true}'))
    expect("/learn", "post", 400, post(worker, "/learn", b'{"id": "o-1"}'))
    expect("/models/{version}/pin", "post", 200, post(worker, f"/models/{version}/pin", b"{}"))
    expect("/models/unpin", "post", 200, post(worker, "/models/unpin", b"{}"))
    expect("/models/{version}/promote", "post", 409, post(worker, "/models/999/promote", b"{}"))
    expect("/models/{version}/rollback", "post", 404, post(worker, "/models/x/rollback", b"{}"))
    unknown = orjson.dumps({"version": 999, "share": 0.1})
    expect("/models/canary", "post", 409, post(worker, "/models/canary", unknown))
    expect("/models/canary", "post", 400, post(worker, "/models/canary", b"[]"))

    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        assert b"stream_app_http_requests_total" in response.read()
    # Every documented path was answered at least once.
    assert {path for path, _, _ in seen} | {"/metrics", "/openapi.json"} == set(doc["paths"])
