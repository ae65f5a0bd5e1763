"""Build the whole service from settings in one function: the Faust app and what it hosts.

``stream_app/app.py`` calls :func:`build_app` with the settings from files and the environment, for
the Faust CLI; tests call it with their own settings and metrics registry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust

from stream_app.core.factory import warm_up
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.role import WriterRole
from stream_app.kafka.publish import Publisher
from stream_app.kafka.security import broker_credentials
from stream_app.registry.store import RegistryStore
from stream_app.settings import Settings
from stream_app.worker.serve import ServeLoop
from stream_app.worker.versions import VersionKeeper
from stream_app.worker.web import add_views

log = logging.getLogger(__name__)

__all__ = ["StreamApp", "build_app"]


class StreamApp(faust.App):
    """A Faust app that also carries the service's settings, metrics and serve loop."""

    settings: Settings
    metrics: Metrics
    role: WriterRole
    publisher: Publisher
    serve_loop: ServeLoop
    pipeline: Pipeline
    store: RegistryStore
    keeper: VersionKeeper

    async def on_first_start(self) -> None:
        """Create the data dir with its parents (Faust creates only the last level)."""
        Path(self.conf.datadir).mkdir(parents=True, exist_ok=True)
        await super().on_first_start()


def build_app(settings: Settings, metrics: Metrics | None = None) -> StreamApp:
    """Create the Faust app, the model, the serve loop and the web views, wired together.

    Nothing connects to Kafka here: the serve loop starts with the worker, after Faust's start-up.
    """
    app = StreamApp(
        settings.app.id,
        broker=settings.app.broker,
        broker_credentials=broker_credentials(settings),
        web_host=settings.web.host,
        web_bind=settings.web.host,
        web_port=settings.web.port,
        datadir=str(Path(settings.app.data_dir) / "faust"),
        store="memory://",
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        autodiscover=False,
        broker_session_timeout=settings.app.session_timeout_s,
        key_serializer="raw",  # the registry table holds bytes; nothing else uses Faust topics
        value_serializer="raw",
    )
    app.settings = settings
    app.metrics = metrics if metrics is not None else Metrics()
    # Not the writer until the consumer group gives this worker the commands partition.
    app.role = WriterRole(writer=False)
    app.publisher = Publisher()  # the serve loop's producer, once it has started
    app.pipeline = Pipeline(settings, Learner(settings), app.metrics, app.role)
    app.store = RegistryStore(settings, app)
    app.keeper = VersionKeeper(
        settings, app.store, app.pipeline, app.metrics, app.role, app.publisher
    )
    app.serve_loop = ServeLoop(
        settings, app.pipeline, app.metrics, app.keeper, app.role, app.publisher
    )
    # Read at each scrape, so that an alert sees what /health says (a worker can be up, unhealthy).
    app.metrics.healthy.set_function(lambda: float(app.serve_loop.healthy))
    add_views(app)

    async def start_serving(*_: Any) -> None:
        """Once Faust is up: follow the registry, restore the model, warm River up, then serve."""
        await app.add_runtime_dependency(app.store)
        await app.keeper.restore()
        model = app.keeper.settings.model  # (the restored version's factory, if kept)
        try:
            warm_up(model.factory, model.factory_params)
        except Exception as exc:  # a user's model may refuse a made-up example: serve anyway
            log.info("no warm-up for model %s (%s: %s)", model.name, type(exc).__name__, exc)
        await app.add_runtime_dependency(app.serve_loop)

    app.task(start_serving)
    return app
