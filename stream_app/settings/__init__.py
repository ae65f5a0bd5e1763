"""Settings: typed, frozen, layered: defaults < config/default.toml < $STREAM_APP_CONFIG < env.

Every knob lives here, in one dataclass per concern, so code paths carry no magic numbers. The
environment overrides any setting as ``STREAM_APP_<SECTION>__<KEY>`` (for example
``STREAM_APP_SERVE__FETCH_MAX_WAIT_MS=20``); a few have short names that the contract promises:

>>> sorted(SHORT_ENV)[:3]
['STREAM_APP_BROKER', 'STREAM_APP_DATA_DIR', 'STREAM_APP_ID']
>>> load_settings(env={"STREAM_APP_PARTITIONS": "8"}, files=[]).topics.partitions
8

Where things are: the service's sections in :mod:`~stream_app.settings.service`, the learning's in
:mod:`~stream_app.settings.learning`, the layering (files, environment, types) in
:mod:`~stream_app.settings.layers`. The tools' sections (``[broker]``, ``[demo]``, ``[report]``)
live beside the tools, in ``stream_app.tools.settings``, which extends :class:`Settings` and loads
through the same layers; the worker knows only their names (:data:`TOOL_SECTIONS`) and passes over
them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self

from stream_app.settings import layers
from stream_app.settings.layers import DEFAULT_CONFIG_FILE, ENV_PREFIX, MASK, SHORT_ENV
from stream_app.settings.learning import (
    FACTORY_CHANGE_ACTIONS,
    DriftSettings,
    GuardSettings,
    InferenceSettings,
    LearnSettings,
    ModelSettings,
    RetrainSettings,
    RolloutSettings,
)
from stream_app.settings.service import (
    AppSettings,
    LimitSettings,
    RegistrySettings,
    SecuritySettings,
    ServeSettings,
    TopicSettings,
    WebSettings,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "FACTORY_CHANGE_ACTIONS",
    "MASK",
    "SHORT_ENV",
    "TOOL_SECTIONS",
    "AppSettings",
    "DriftSettings",
    "GuardSettings",
    "InferenceSettings",
    "LearnSettings",
    "LimitSettings",
    "ModelSettings",
    "RegistrySettings",
    "RetrainSettings",
    "RolloutSettings",
    "SecuritySettings",
    "ServeSettings",
    "Settings",
    "TopicSettings",
    "WebSettings",
    "bootstrap_servers",
    "load_settings",
]

TOOL_SECTIONS: Final = ("broker", "demo", "report")
"""Sections that ``stream_app.tools.settings`` reads and checks: the worker passes over them, in a
file and in the environment (``STREAM_APP_BROKER__KAFKA_VERSION``), without importing the tools."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings of the worker, one section per concern."""

    app: AppSettings = dataclasses.field(default_factory=AppSettings)
    web: WebSettings = dataclasses.field(default_factory=WebSettings)
    topics: TopicSettings = dataclasses.field(default_factory=TopicSettings)
    limits: LimitSettings = dataclasses.field(default_factory=LimitSettings)
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    inference: InferenceSettings = dataclasses.field(default_factory=InferenceSettings)
    learn: LearnSettings = dataclasses.field(default_factory=LearnSettings)
    guard: GuardSettings = dataclasses.field(default_factory=GuardSettings)
    drift: DriftSettings = dataclasses.field(default_factory=DriftSettings)
    rollout: RolloutSettings = dataclasses.field(default_factory=RolloutSettings)
    retrain: RetrainSettings = dataclasses.field(default_factory=RetrainSettings)
    registry: RegistrySettings = dataclasses.field(default_factory=RegistrySettings)
    serve: ServeSettings = dataclasses.field(default_factory=ServeSettings)
    security: SecuritySettings = dataclasses.field(default_factory=SecuritySettings)

    @property
    def commands_topic(self) -> str:
        """The one-partition topic of model operations; its owner is the single writer."""
        return self.topics.commands or f"{self.app.id}-commands"

    @property
    def examples_topic(self) -> str:
        """The one-partition topic of labeled examples forwarded to the single writer."""
        return self.topics.examples or f"{self.app.id}-examples"

    @property
    def learning_log_topic(self) -> str:
        """The one-partition topic of every example the writer learned, in learning order."""
        return self.topics.learning_log or f"{self.app.id}-learning-log"

    @property
    def join_topic(self) -> str:
        """The internal topic that carries served events and labels to their id's home partition."""
        return self.topics.join or f"{self.app.id}-join"

    @property
    def keyed_models_topic(self) -> str:
        """The compacted topic of keyed models' versions, partitioned like ``features``."""
        return self.topics.keyed_models or f"{self.app.id}-keyed-models"

    @property
    def key_commands_topic(self) -> str:
        """Operations on one model key, on the key's home partition (partitioned like features)."""
        return self.topics.key_commands or f"{self.app.id}-key-commands"

    @property
    def advertised_address(self) -> str:
        """``host:port`` other workers and clients reach this worker's web server at."""
        return self.web.advertised or f"{self.web.host}:{self.web.port}"

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Return the settings as plain nested dicts (the shape of the TOML files)."""
        return layers.as_dict(self)

    def replace(self, **sections: Mapping[str, Any]) -> Self:
        """Return a copy with some keys of some sections replaced, validated like a config file.

        >>> Settings().replace(web={"port": 7000}).web.port
        7000
        """
        return layers.rebuild(self, sections)


def load_settings(
    env: Mapping[str, str] | None = None, files: Sequence[Path] | None = None
) -> Settings:
    """Build the worker's settings from the layers: defaults, files in order, then the environment.

    ``files`` defaults to ``config/default.toml`` (when present) and then ``$STREAM_APP_CONFIG``.
    The tools' sections (:data:`TOOL_SECTIONS`) are passed over: the tools check them.

    >>> load_settings(env={"STREAM_APP_SERVE__LINGER_MS": "0"}, files=[]).serve.linger_ms
    0
    """
    return layers.load(Settings, env, files, elsewhere=TOOL_SECTIONS)


def bootstrap_servers(broker_url: str) -> str:
    """Turn Faust's ``kafka://h1:p1;h2:p2`` into aiokafka's ``h1:p1,h2:p2``.

    >>> bootstrap_servers("kafka://127.0.0.1:9092;127.0.0.1:9093")
    '127.0.0.1:9092,127.0.0.1:9093'
    """
    hosts = broker_url.removeprefix("kafka://").replace(";", ",")
    return ",".join(host.strip().removeprefix("kafka://") for host in hosts.split(","))
