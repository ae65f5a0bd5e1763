"""HTTP views on the worker's own (Faust) web server: health, metrics, model operations, predict.

This module only routes; the predict and learn endpoints are :mod:`stream_app.worker.http_api`'s,
the document at ``/openapi.json`` is :mod:`stream_app.worker.openapi`'s.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any, Final

import orjson
from faust.web import Request, Response, View

from stream_app.core.metrics import CONTENT_TYPE
from stream_app.errors import StreamAppError
from stream_app.worker.http_api import ENDPOINTS, HttpApi
from stream_app.worker.key_api import KeyedHttp
from stream_app.worker.key_views import add_key_views
from stream_app.worker.openapi import document
from stream_app.worker.operations import CANARY, OPERATIONS, run_command, version_table

if TYPE_CHECKING:
    from stream_app.worker.service import StreamApp

__all__ = ["add_views", "authorized", "health"]

_OK: Final = 200
_BAD_REQUEST: Final = 400
_UNAUTHORIZED: Final = 401
_NOT_FOUND: Final = 404
_CONFLICT: Final = 409
_UNAVAILABLE: Final = 503
_TIMEOUT: Final = 504
_JSON: Final = "application/json"


def authorized(token: str, header: str | None) -> bool:
    """Tell whether no token is configured, or the request carries it as a bearer token.

    >>> authorized("", None), authorized("s3cret", "Bearer s3cret"), authorized("s3cret", "s3cret")
    (True, True, False)
    """
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def add_views(app: StreamApp) -> None:
    """Register the worker's HTTP endpoints on the app's web server.

    With keyed models, their views come before ``/models/{version}``, which would match them.
    """
    _add_status_views(app)
    keyed = None
    if app.settings.model.key_field:
        table = app.serve_loop.owners
        keyed = KeyedHttp(
            app.settings, app.pipeline, app.metrics, lambda: table.table, app.publisher.send
        )
        add_key_views(app, lambda view, request: _unauthorized(view, app, request), keyed)
    _add_model_views(app)
    add_serving_views(app, keyed)


def health(app: StreamApp) -> tuple[dict[str, Any], int]:
    """Return ``/health``'s body and status: 200 while this worker serves, 503 with a reason."""
    serve = app.serve_loop
    model = app.pipeline.learner.serving.model
    features = app.settings.topics.features
    reason = serve.unhealthy_reason
    body = {
        "status": "ok" if reason is None else "unavailable",
        "reason": reason,
        "broker_silence_s": round(serve.broker_silence_s, 3),
        "app_id": app.settings.app.id,
        "group": serve.group_id,
        "partitions": sorted(tp.partition for tp in serve.assignment or () if tp.topic == features),
        "model": model.name,
        **app.keeper.describe(),
        "learner": {
            "writer": app.role.is_writer,
            "lag_examples": app.pipeline.lag_examples,
            "lag_s": round(app.pipeline.lag_seconds, 3),
            "max_lag_s": app.settings.learn.max_lag_s,
            "shedding": app.pipeline.shedder.shedding,
        },
    }
    return body, _OK if reason is None else _UNAVAILABLE


def _add_status_views(app: StreamApp) -> None:
    """Register ``GET /health`` and ``GET /metrics``."""

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        """200 while this worker serves its partitions and the broker answers; 503 with a reason."""
        body, status = health(app)
        return web.json(body, status=status)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        """Prometheus text exposition of this worker's metrics."""
        return web.bytes(app.metrics.render(), content_type=CONTENT_TYPE)


async def _operate(
    view: View, app: StreamApp, op: str, version: int | None, **fields: Any
) -> Response:
    """Send an operation to the writer; answer with its answer (409 if refused, 504 if none)."""
    try:
        answer = await run_command(app.settings, op, version, **fields)
    except StreamAppError as exc:
        timeout: Response = view.json({"error": str(exc)}, status=_TIMEOUT)
        return timeout
    answered: Response = view.json(answer, status=_OK if answer.get("ok") else _CONFLICT)
    return answered


def _unauthorized(view: View, app: StreamApp, request: Request) -> Response | None:
    """Return the 401 answer if ``web.token`` is set and the request does not carry it."""
    if authorized(app.settings.web.token, request.headers.get("Authorization")):
        return None
    refused: Response = view.json({"error": "a bearer token is required"}, status=_UNAUTHORIZED)
    return refused


def _add_model_views(app: StreamApp) -> None:
    """Register ``/models``: the stored versions, one version, and the operations on them."""

    @app.page("/models")
    async def models(web: Any, request: Any) -> Any:
        """Every stored version, newest first, from this worker's view of the registry."""
        name = app.settings.model.name
        versions = version_table(app.store.registry, name)
        return web.json({"model": name, **app.keeper.describe(), "versions": versions})

    @app.page("/models/unpin")
    class Unpin(View):
        """``POST /models/unpin``: serve the newest version again."""

        async def post(self, request: Request) -> Response:
            refused = _unauthorized(self, app, request)
            return refused or await _operate(self, app, "unpin", None)

    @app.page("/models/canary")
    class Canary(View):
        """``POST /models/canary``: ``{"version": V, "share": S}``, or ``{"abort": true}``."""

        async def post(self, request: Request) -> Response:
            refused = _unauthorized(self, app, request)
            if refused is not None:
                return refused
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                return self.json({"error": "the body is a JSON object"}, status=_BAD_REQUEST)
            abort, version = bool(body.get("abort")), body.get("version")
            if not abort and type(version) is not int:
                return self.json({"error": "version is an integer"}, status=_BAD_REQUEST)
            fields = {"abort": True} if abort else {"share": body.get("share")}
            return await _operate(self, app, CANARY, version, **fields)

    @app.page("/models/{version}")
    async def show(web: Any, request: Any, version: str) -> Any:
        """One stored version's record (no blob)."""
        name = app.settings.model.name
        record = app.store.registry.record(name, int(version)) if version.isdigit() else None
        if record is None:
            return web.json({"error": f"version {version} is not stored"}, status=_NOT_FOUND)
        return web.json(record.summary())

    @app.page("/models/{version}/{op}")
    class Operate(View):
        """``POST /models/{version}/rollback|pin|promote`` and ``POST /models/unpin``."""

        async def post(self, request: Request, version: str, op: str) -> Response:
            refused = _unauthorized(self, app, request)
            if refused is not None:
                return refused
            if op not in OPERATIONS or (op != "unpin" and not version.isdigit()):
                return self.json({"error": f"unknown operation {version}/{op}"}, status=_NOT_FOUND)
            return await _operate(self, app, op, None if op == "unpin" else int(version))


def add_serving_views(app: StreamApp, keyed: KeyedHttp | None = None) -> None:
    """Register ``POST /predict``, ``/predict/batch``, ``/learn`` and ``GET /openapi.json``.

    ``keyed`` answers keyed events (``model.key_field``): the owner of each key, or 421.
    """
    serve = app.serve_loop
    api = HttpApi(
        app.settings,
        app.pipeline,
        app.metrics,
        send=app.publisher.send,
        ready=lambda: serve.healthy,
    )
    api.keyed = keyed
    spec = orjson.dumps(document(app.settings))

    for endpoint, path in ENDPOINTS.items():

        class Serving(View):
            """A serving endpoint, answered by :class:`~stream_app.worker.http_api.HttpApi`."""

            endpoint_name = endpoint

            async def post(self, request: Request) -> Response:
                aio: Any = request  # aiohttp's request, under Faust's aiohttp driver
                answer = await api.handle(self.endpoint_name, aio.content, aio.content_length)
                return self.bytes(answer.body, content_type=_JSON, status=answer.status)

        app.page(path, name=f"serving-{endpoint}")(Serving)

    @app.page("/openapi.json")
    async def openapi(web: Any, request: Any) -> Any:
        """Serve the OpenAPI 3.1 document of these endpoints."""
        return web.bytes(spec, content_type=_JSON)
