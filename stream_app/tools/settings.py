"""The tools' settings: ``[broker]``, ``[demo]`` and ``[report]``, beside the tools that read them.

:class:`ToolSettings` is the worker's :class:`~stream_app.settings.Settings` plus these sections,
loaded through the same layers (:mod:`stream_app.settings.layers`): the same TOML keys, the same
``STREAM_APP_<SECTION>__<KEY>`` variables. The worker imports nothing from here; it knows only the
names of these sections (:data:`~stream_app.settings.TOOL_SECTIONS`) and passes over them.

>>> env = {"STREAM_APP_BROKER__KAFKA_VERSION": "3.9.1", "STREAM_APP_PARTITIONS": "2"}
>>> settings = load_tool_settings(env, files=[])
>>> settings.broker.kafka_version, settings.topics.partitions
('3.9.1', 2)
>>> ToolSettings().replace(demo={"seed": 7}).demo.seed
7
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from stream_app.settings import Settings
from stream_app.settings.layers import load

__all__ = ["BrokerSettings", "DemoSettings", "ReportSettings", "ToolSettings", "load_tool_settings"]


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    """The local single-node KRaft Apache Kafka that ``stream-app broker`` and the tests start."""

    port: int = 9092
    """Listener port of the local broker (``stream-app broker --port``)."""
    controller_port: int = 0
    """0 means ``port + 1``."""
    kafka_version: str = "4.4.0"
    """Apache Kafka version whose jars are fetched from Maven Central."""
    scala_version: str = "2.13"
    """Scala version of the Kafka jars."""
    heap: str = "512m"
    """JVM heap of the local broker."""
    data_dir: str = ""
    """Empty means ``<app.data_dir>/kafka``."""
    cache_dir: str = ""
    """Where the jars are kept; empty means ``$XDG_CACHE_HOME/stream_app`` (~/.cache)."""
    start_timeout_s: float = 60.0
    """Most time to wait for the local broker to say it started."""
    stop_timeout_s: float = 30.0
    """Most time to wait for a clean broker stop before killing it."""


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The demo's stream: River's SEA features, a concept change, noise, late labels; its view."""

    seed: int = 42
    """Seed of the demo stream (the same seed, the same events)."""
    rate: float = 500.0
    """Feature events per second offered."""
    change_at: int = 1500
    """Event number where the concept changes (x1 + x2 > 8 is positive, then negative)..."""
    change_every: int = 20000
    """...and changes back and forth every this many events after it (0: once)."""
    drifting_keys: int = 3
    """With ``demo --keys``: how many keys change concept (once each); the rest keep theirs."""
    key_change_at: int = 500
    """With ``demo --keys``: a drifting key reverses after this many events of its own (more than
    ``drift.warmup``, so that its own drift monitor may tell)."""
    bad_share: float = 0.03
    """Share of extra malformed messages (features) and labels for unknown events (labels)."""
    flip_share: float = 0.03
    """Share of labels flipped (label noise)."""
    delayed_share: float = 0.5
    """Share of events whose label comes later on the labels topic instead of inline."""
    label_delay: int = 200
    """How many events later a delayed label is sent."""
    view_every_s: float = 1.0
    """How often the live view refreshes."""
    drain_timeout_s: float = 30.0
    """Most time waited at the end for the worker to answer everything sent."""
    early_label_ttl_s: float = 2.0
    """The demo worker's ``learn.early_label_ttl_s``: short, so that labels of events that never
    were show as ``label_without_event`` within the run (a real worker waits longer)."""
    report: str = ""
    """Where the demo writes its report; empty means ``<app.data_dir>/demo-report.html``."""


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """``stream-app report``: how quality, latency and throughput are summarised over time."""

    quality_window: int = 300
    """Labelled predictions in the rolling quality (accuracy or MAE) drawn over time."""
    buckets: int = 60
    """Time slices for latency percentiles and throughput."""
    read_timeout_s: float = 60.0
    """Most time spent reading the topics to their current end."""


@dataclasses.dataclass(frozen=True)
class ToolSettings(Settings):
    """The worker's settings and the tools' own sections: what each ``stream-app`` command reads."""

    broker: BrokerSettings = dataclasses.field(default_factory=BrokerSettings)
    demo: DemoSettings = dataclasses.field(default_factory=DemoSettings)
    report: ReportSettings = dataclasses.field(default_factory=ReportSettings)


def load_tool_settings(
    env: Mapping[str, str] | None = None, files: Sequence[Path] | None = None
) -> ToolSettings:
    """Build every setting, the tools' sections too, from the same layers as the worker's.

    Unknown keys of every section are refused, ``[broker]``, ``[demo]`` and ``[report]`` included.
    """
    return load(ToolSettings, env, files)
