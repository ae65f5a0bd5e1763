"""HTTP views of keyed models: the keys, one key, and a rollback or reset of one key.

Registered before the global model's ``/models/{version}`` routes, which they would match.

- ``GET /models/keys``: the count of stored keys, the top keys by examples learned, the worst by
  rolling quality, and every key's row (``?top=N``);
- ``GET /models/keys/{key}``: the key's stored versions, its home partition and owner, and, on
  the owner, its live model (``live``: version, examples learned, rolling quality);
- ``POST /models/keys/{key}/{version}/rollback`` and ``POST /models/keys/{key}/reset``: carried
  out by the key's owner (any worker may be asked), answered 200, 409 if refused, 504 if no
  answer came.

What is read from ``<app id>-keyed-models`` reflects each key's last checkpoint
(:mod:`stream_app.worker.key_ops`). A key with ``/`` in it cannot be named in these paths: use
``stream-app models ... --key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from faust.web import Request, Response, View

from stream_app.errors import StreamAppError
from stream_app.registry.keyed import TOP_KEYS, key_summary
from stream_app.worker import key_ops
from stream_app.worker.key_api import KeyedHttp

if TYPE_CHECKING:
    from stream_app.worker.service import StreamApp

__all__ = ["add_key_views", "live_of"]

_OK: Final = 200
_NOT_FOUND: Final = 404
_CONFLICT: Final = 409
_TIMEOUT: Final = 504


def live_of(app: StreamApp, key: str) -> dict[str, Any] | None:
    """Return ``key``'s live model on this worker (if it owns it and holds it), else None."""
    keys = app.pipeline.keys
    state = None if keys is None else keys.peek(key)
    if state is None:
        return None
    model, quality = state.learner.answering, state.learner.serving.quality
    return {
        "version": model.version,
        "examples_learned": model.examples_learned,
        "quality": {"metric": quality.metric, "value": quality.value, "window": len(quality)},
        "since_checkpoint": state.since_checkpoint,
    }


def add_key_views(app: StreamApp, unauthorized: Any, keyed: KeyedHttp) -> None:
    """Register the keyed-model views; ``unauthorized(view, request)`` checks ``web.token``."""

    @app.page("/models/keys")
    async def keys(web: Any, request: Any) -> Any:
        """List the stored keys: count, top by examples, worst by quality, every key's row."""
        top = request.query.get("top", "")
        rows = await key_ops.list_keys(app.settings)
        summary = key_summary(rows, int(top) if top.isdigit() else TOP_KEYS)
        return web.json({"model": app.settings.model.name, **summary, "rows": rows})

    @app.page("/models/keys/{key}")
    async def key(web: Any, request: Any, key: str) -> Any:
        """Show one key: its stored versions, where it lives, its live model on its owner."""
        home, index = await key_ops.key_versions(app.settings, key)
        versions = index.versions(key)
        where = keyed.route(key)
        live = live_of(app, key)
        if not versions and live is None:
            return web.json({"error": f"key {key} has no stored version"}, status=_NOT_FOUND)
        body = {
            "key": key,
            "partition": home,
            "owner": app.settings.advertised_address if where.local else where.owner,
            "here": where.local,
            "versions": versions,
            "stored": key_ops.version_header(index, key, None) if versions else None,
            "live": live,
        }
        return web.json(body)

    @app.page("/models/keys/{key}/reset")
    class Reset(View):
        """``POST /models/keys/{key}/reset``: the key starts over from a fresh model."""

        async def post(self, request: Request, key: str) -> Response:
            refused: Response | None = unauthorized(self, request)
            return refused or await _operate(self, app, "reset", key, None)

    @app.page("/models/keys/{key}/{version}/rollback")
    class Rollback(View):
        """``POST /models/keys/{key}/{version}/rollback``: the key's version V goes live."""

        async def post(self, request: Request, key: str, version: str) -> Response:
            refused: Response | None = unauthorized(self, request)
            if refused is not None:
                return refused
            if not version.isdigit():
                return self.json({"error": f"not a version: {version}"}, status=_NOT_FOUND)
            return await _operate(self, app, "rollback", key, int(version))


async def _operate(view: View, app: StreamApp, op: str, key: str, version: int | None) -> Response:
    """Send the operation to the key's owner; answer with its answer (409 refused, 504 none)."""
    try:
        answer = await key_ops.run_key_command(app.settings, op, key, version)
    except StreamAppError as exc:
        timeout: Response = view.json({"error": str(exc)}, status=_TIMEOUT)
        return timeout
    answered: Response = view.json(answer, status=_OK if answer.get("ok") else _CONFLICT)
    return answered
