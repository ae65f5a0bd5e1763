"""HTTP views on the worker's own (Faust) web server: health and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stream_app.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from stream_app.service import StreamApp

__all__ = ["add_views"]

_UNAVAILABLE = 503


def add_views(app: StreamApp) -> None:
    """Register ``GET /health`` and ``GET /metrics`` on the app's web server."""

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """200 once this worker serves its share of partitions, 503 before (or while stopping)."""
        serve = app.serve_loop
        model = app.pipeline.learner.serving.model
        body = {
            "status": "ok" if serve.healthy else "starting",
            "app_id": app.settings.app.id,
            "group": serve.group_id,
            "partitions": sorted(
                tp.partition
                for tp in serve.assignment or ()
                if tp.topic == app.settings.topics.features
            ),
            "model": model.name,
            **app.keeper.describe(),
        }
        return web.json(body, status=200 if serve.healthy else _UNAVAILABLE)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        """Prometheus text exposition of this worker's metrics."""
        return web.bytes(app.metrics.render(), content_type=CONTENT_TYPE)
