"""Settings: typed, frozen, layered: defaults < config/default.toml < $STREAM_APP_CONFIG < env.

Every knob lives here, in one dataclass per concern, so code paths carry no magic numbers. The
environment overrides any setting as ``STREAM_APP_<SECTION>__<KEY>`` (for example
``STREAM_APP_SERVE__FETCH_MAX_WAIT_MS=20``); a few have short names that the contract promises:

>>> sorted(SHORT_ENV)[:3]
['STREAM_APP_BROKER', 'STREAM_APP_DATA_DIR', 'STREAM_APP_ID']
>>> load_settings(env={"STREAM_APP_PARTITIONS": "8"}, files=[]).topics.partitions
8
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from stream_app.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "FACTORY_CHANGE_ACTIONS",
    "SHORT_ENV",
    "AppSettings",
    "BrokerSettings",
    "DemoSettings",
    "DriftSettings",
    "GuardSettings",
    "InferenceSettings",
    "LearnSettings",
    "LimitSettings",
    "ModelSettings",
    "RegistrySettings",
    "ReportSettings",
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

ENV_PREFIX: Final = "STREAM_APP_"
DEFAULT_CONFIG_FILE: Final = Path(__file__).resolve().parent.parent / "config" / "default.toml"


MASK: Final = "***"


class _MaskedRepr:
    """A repr that shows ``***`` for the secrets a section names, so a logged repr leaks nothing."""

    SECRETS: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            shown.append(f"{f.name}={MASK if f.name in self.SECRETS and value else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclasses.dataclass(frozen=True)
class AppSettings:
    """Identity of the service and where it keeps local files."""

    id: str = "stream-app"
    """Faust app id; also the prefix of every consumer group and internal topic."""
    broker: str = "kafka://127.0.0.1:9092"
    """Kafka bootstrap URL(s), ``kafka://host:port[;host:port]``."""
    data_dir: str = ".stream_app"
    """Local state: the Faust table store, the local broker's log dirs."""
    log_level: str = "info"
    """Worker log level: debug, info, warning, error."""
    session_timeout_s: float = 10.0
    """How long the group waits for a silent worker before giving its partitions to others."""


@dataclasses.dataclass(frozen=True, repr=False)
class WebSettings(_MaskedRepr):
    """The worker's HTTP server (health, metrics, model operations)."""

    SECRETS: ClassVar[tuple[str, ...]] = ("token",)

    host: str = "127.0.0.1"
    """Bind address: loopback unless you mean to expose it."""
    port: int = 6066
    """Port of the health, metrics, model-operation and predict endpoints."""
    token: str = ""
    """If set, model operations (POST /models/...) need ``Authorization: Bearer <token>``."""
    max_batch_events: int = 10000
    """Most events one ``POST /predict/batch`` may carry; more is refused as ``oversized``."""
    max_batch_bytes: int = 33554432
    """Largest ``POST /predict/batch`` body (a single event's is ``limits.max_message_bytes``)."""


@dataclasses.dataclass(frozen=True)
class TopicSettings:
    """Topic names and how the app creates them when they are missing."""

    features: str = "features"
    """Input: feature events (JSON objects with id and features)."""
    labels: str = "labels"
    """Input: delayed labels, key = event id."""
    predictions: str = "predictions"
    """Output: one prediction per served event, same partition number as the event."""
    predictions_shadow: str = "predictions-shadow"
    """Output: the challenger's answers to the same events (gradual rollout)."""
    dead_letters: str = "dead-letters"
    """Output: every message not served or not learned, with its reason and bytes."""
    model_events: str = "model-events"
    """Output: drift, promotion, checkpoint and operation events, key = model name."""
    commands: str = ""
    """Model operations for the writer; empty means ``<app.id>-commands`` (one partition)."""
    examples: str = ""
    """Labeled examples other workers pass to the writer; empty means ``<app.id>-examples``."""
    learning_log: str = ""
    """Every example the writer learns, in the order it learns them (one partition): what a new
    writer replays after the newest version, and what ``models rebuild`` replays; empty means
    ``<app.id>-learning-log``."""
    join: str = ""
    """Served events and labels on their way to their id's home partition; empty means
    ``<app.id>-join`` (as many partitions as ``features``)."""
    partitions: int = 4
    """Partition count for topics the app creates: the unit of parallelism across workers."""
    replication_factor: int = 1
    """Replication of the topics the app creates (1 for a single broker)."""


@dataclasses.dataclass(frozen=True)
class LimitSettings:
    """What a valid input message may contain; anything beyond is dead-lettered, never served."""

    max_message_bytes: int = 65536
    max_features: int = 1000
    """Most features in one event (more: ``too_many_features``)."""
    max_id_chars: int = 128
    """Longest event id."""
    max_string_chars: int = 256
    """Longest string feature value, feature name or string label."""


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Which estimator to serve and learn."""

    name: str = "default"
    """Model name: the registry key, the ``model`` field of predictions."""
    factory: str = "stream_app.models:logistic_regression"
    """Dotted path ``module:function`` of a function returning a fresh River estimator."""
    factory_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Keyword arguments the factory is called with, e.g. ``{grace_period = 100}`` (none: empty).
    Path and arguments together name the factory each version records."""
    on_factory_change: str = "challenger"
    """What a start does when the factory (path and arguments) differs from the restored
    version's: ``challenger`` (a fresh model from it proves itself in shadow, then takes over),
    ``replace`` (it serves at once as a new version; the old ones stay for rollback) or ``keep``
    (the stored version serves; a WARNING at every start names both)."""
    task: str = "auto"
    """``classification``, ``regression``, or ``auto`` (derived from the estimator)."""
    challenger_factory: str = ""
    """A second factory whose model learns in shadow from the start and takes over once it beats
    the serving model by ``drift.promotion_margin`` over ``drift.challenger_window`` labels."""
    classes: tuple[Any, ...] = ()
    """Declared classes (classification); a label outside them is dead-lettered as unknown_label.
    Empty: any string, integer or boolean label is a class. For a binary-only estimator (logistic
    regression) the first class is the negative one."""
    max_indicators: int = 2**16
    """Distinct inputs (numeric names, ``name=value`` string indicators) the shipped factories'
    models keep exactly; inputs first seen beyond it share as many hash buckets, so a model
    tracks at most twice this many, whatever the strings or names. A stored model keeps the
    bound it was built with; a raised one applies to the next fresh model (challenger, reset)."""


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """How the model is asked: event by event, or once per micro-batch."""

    mode: str = "event"
    """``event``: predict, emit and learn one event at a time (predict-then-learn exactly).
    ``batch``: predict a micro-batch at once, then emit and learn its events in order; every
    prediction of a batch comes from the model as it stood at the batch's start."""
    max_batch: int = 1000
    """Largest micro-batch (and the most records one poll takes in batch mode)."""
    max_wait_ms: int = 20
    """How long the broker may hold a fetch to fill a batch in batch mode: the added latency."""
    many_min_rows: int = 500
    """Smallest batch worth one ``predict_proba_many`` call (building a data frame costs)."""
    learn_many: bool = False
    """In batch mode, learn a batch's accepted examples with one ``learn_many`` call. Faster,
    but one gradient step per batch: a different model from per-event ``learn_one``."""


@dataclasses.dataclass(frozen=True)
class LearnSettings:
    """Learning from labels: the join of delayed labels and the quality window."""

    enabled: bool = True
    """Learn from labels; off = serve only (no pending store, no labels topic)."""
    pending_ttl_s: float = 3600.0
    """How long a served event waits for its delayed label."""
    pending_max: int = 50000
    """Most served events kept for delayed labels per worker (~1 KB each for 15 features)."""
    quality_window: int = 1000
    """Labels in the rolling quality figure (accuracy or MAE)."""
    restore_timeout_s: float = 60.0
    """Most time spent re-reading a newly assigned partition's served events from Kafka."""
    early_label_ttl_s: float = 600.0
    """How long a label whose event has not been served yet waits for it (a backfill, a lagging
    ``features`` backlog); then it is dead-lettered as ``label_without_event``."""
    early_label_max: int = 100000
    """Most labels held for events not served yet, per worker; past it the oldest is
    dead-lettered."""
    max_lag_s: float = 0.0
    """Most seconds the single writer may fall behind the labeled examples other workers forward
    (0 = no bound: it learns every one, however late). When exceeded, it learns a uniform random
    sample of the backlog that brings it back within bound, counts the rest in
    ``stream_app_labels_shed_total`` and announces a ``shedding`` model event."""


@dataclasses.dataclass(frozen=True)
class GuardSettings:
    """The noise guard: which examples are predicted but not learned."""

    enabled: bool = True
    """The noise guard as a whole; each rule below can be switched on its own."""
    warmup: int = 200
    """Learned examples before any rule may hold an example out."""
    outliers: bool = True
    """Rule: hold out examples with a feature far outside its running statistics."""
    outlier_z: float = 8.0
    """A numeric feature this many standard deviations from its running mean is an outlier."""
    noisy_labels: bool = True
    """Rule: hold out labels the model contradicts with high confidence."""
    label_confidence: float = 0.7
    """Classification: hold out a label the model gave less than 1 - this probability."""
    residual_scale: float = 6.0
    """Regression: hold out a label whose residual exceeds this many mean absolute residuals."""
    cap_share: float = 0.3
    """Stand down when more than this share of the recent window is flagged (the world changed)."""
    cap_window: int = 500
    """Reviewed examples over which the held-out share is measured."""
    cap_ratio: float = 2.0
    """Also stand down when the recent flagged share exceeds this multiple of the long-run share."""
    cap_floor: float = 0.05
    """...but only above this share, so that a quiet stream's few flags do not trip the ratio."""
    cap_baseline: int = 5000
    """Examples the long-run flagged share averages over."""
    stats_every: int = 1
    """After a feature's warm-up, its running statistics learn one in this many learned examples."""
    witness: bool = True
    """Classification: twin linear models judge the held-out labels; if they were right, the
    model takes an unguarded witness's state."""
    witness_window: int = 30
    """Labels exactly one of the two twins predicted, over which the two are scored."""
    witness_lead: float = 0.6
    """The model takes the witness's state when the unguarded twin won more than this share."""
    witness_lr: float = 0.01
    """The twins' learning rate (stochastic gradient descent on standardised numeric features)."""
    witness_span: int = 4000
    """The witness is rebuilt from a copy of the model taken one to two spans of labels ago."""


@dataclasses.dataclass(frozen=True)
class DriftSettings:
    """Drift detection on the error stream, and what to do about it."""

    detector: str = "ADWIN"
    """A class in ``river.drift`` (ADWIN, PageHinkley, KSWIN) or ``river.drift.binary`` (DDM)."""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Keyword arguments for the detector, e.g. ``{delta = 0.002}``."""
    policy: str = "challenger"
    """``none``, ``reset`` (a fresh model) or ``challenger`` (a fresh model proves itself first)."""
    warmup: int = 300
    """Labeled examples before a detection may count (the error of a new model is still falling)."""
    compare_window: int = 200
    """A detection counts only if the error of this many recent labels exceeds the earlier error."""
    challenger_window: int = 500
    """Labels over which challenger and serving model are compared (the challenger's minimum)."""
    promotion_margin: float = 0.0
    """How much better (accuracy points or MAE) the challenger must be to take over."""
    challenger_patience: int = 10000
    """Labels after which a challenger that has not won is dropped."""
    promotion: str = "immediate"
    """How a challenger that won in shadow enters: ``immediate`` (it serves everything at once)
    or ``canary`` (it serves the first of ``rollout.steps`` and steps up while it holds up)."""


@dataclasses.dataclass(frozen=True)
class RolloutSettings:
    """Canary rollout: a version serves a share of events, chosen by a hash of the event id."""

    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    """Shares the canary steps through, increasing; the last is 1.0 (it then serves)."""
    window: int = 500
    """Labels on each share (the canary's and the incumbent's) that one step is judged on."""
    max_regression: float = 0.02
    """How much worse (accuracy points, or MAE) the canary may be than the incumbent and still
    step up; worse than that, it is rolled back."""


@dataclasses.dataclass(frozen=True)
class RetrainSettings:
    """Retraining a fresh model on the learning log, beside the per-label learning."""

    policy: str = "none"
    """``none``, ``schedule`` (every ``every_s`` or ``every_examples``) or ``quality_floor``
    (when the rolling quality stays below ``quality_floor`` for ``patience`` labels)."""
    every_s: float = 86400.0
    """``schedule``: retrain this often (seconds; 0 = not by time)."""
    every_examples: int = 0
    """``schedule``: ...or after this many learned examples (0 = not by count)."""
    quality_floor: float = 0.8
    """``quality_floor``: the rolling accuracy below which (or MAE above which) a retrain is due."""
    patience: int = 500
    """``quality_floor``: labels in a row that the quality must stay beyond the floor."""
    window: int = 10000
    """The last this many learned examples of the learning log, in order, are trained on."""
    min_examples: int = 1000
    """A retrain with fewer examples is skipped (a ``retrain_skipped`` event)."""


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """The hot path: how the serving consumer fetches and the producer sends."""

    fetch_max_wait_ms: int = 5
    """How long the broker may hold a fetch waiting for data: the floor of idle latency."""
    max_poll_records: int = 2000
    """Most records taken from the consumer in one batch."""
    poll_timeout_ms: int = 200
    """How long one poll waits when nothing arrives (bounds shutdown and health reaction time)."""
    commit_interval_s: float = 1.0
    """How often acknowledged input offsets are committed."""
    linger_ms: int = 1
    """Producer linger: a little batching of outputs at low load."""
    acks: str = "all"
    """Producer acks: ``all`` (durable) or ``1``."""
    auto_offset_reset: str = "earliest"
    """Where a new consumer group starts: ``earliest`` also serves what came before the worker."""
    max_partition_fetch_bytes: int = 1048576
    """Most bytes fetched per partition per request (the consumer setting)."""
    max_batch_bytes: int = 900000
    """Largest output batch: one batch per partition per poll keeps round trips few."""
    idempotence: bool = True
    """Idempotent producer (needs acks=all): client retries write no duplicate outputs."""
    retry_backoff_s: float = 0.5
    """Pause after a failed delivery or fetch before reading the same input again."""
    lag_interval_s: float = 1.0
    """How often the worker asks the broker for its input partitions' end offsets: this refreshes
    ``stream_app_consumer_lag`` and is the broker contact that ``/health`` judges."""
    broker_timeout_s: float = 5.0
    """``/health`` reports unhealthy once the broker has not answered for this long."""


@dataclasses.dataclass(frozen=True, repr=False)
class RegistrySettings(_MaskedRepr):
    """Model versions: when the learner checkpoints, how many versions are kept, how blobs split."""

    SECRETS: ClassVar[tuple[str, ...]] = ("signing_key",)

    checkpoint_every_examples: int = 10000
    """Checkpoint after this many learned examples..."""
    checkpoint_every_s: float = 30.0
    """...or after this many seconds with something learned, whichever comes first."""
    keep_last: int = 10
    """Versions kept besides the serving, pinned and shadow ones."""
    chunk_bytes: int = 524288
    """Largest piece of a blob in one message (below the broker's 1 MB default)."""
    max_import_bytes: int = 268435456
    """Largest artifact ``models import`` takes (256 MiB); a larger one is refused, by the CLI
    before it sends and by the writer while it assembles the chunks."""
    compression_level: int = 3
    """zlib level of checkpoint blobs (1 fast .. 9 small)."""
    follow_poll_ms: int = 100
    """How long a follower's fetch waits: bounds how soon other workers see a new version."""
    encode_in_child: bool = True
    """Pickle checkpoints in a forked child (copy-on-write snapshot) so serving never waits."""
    child_min_bytes: int = 1048576
    """Encode in the child only once the last checkpoint was this big: forking costs a few ms,
    more than pickling a small model on the spot. The first checkpoint always uses the child."""
    trusted_modules: tuple[str, ...] = ()
    """Modules (and their submodules) whose globals stored models may load besides River's and
    stream_app's: your own factory modules. Loading runs their code: list only modules you trust."""
    signing_key: str = ""
    """If set, every stored version and exported artifact is signed (HMAC-SHA256) and only
    versions and imports signed with this key load. Best given as
    ``STREAM_APP_REGISTRY__SIGNING_KEY``; never logged. Empty: nothing is signed or checked."""


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


@dataclasses.dataclass(frozen=True, repr=False)
class SecuritySettings(_MaskedRepr):
    """How every Kafka client of the service authenticates and encrypts (Faust's and our own).

    Secrets (``sasl_password``, ``ssl_key_password``) are best given in the environment, e.g.
    ``STREAM_APP_SECURITY__SASL_PASSWORD``; reprs show them as ``***`` and nothing logs them.
    """

    SECRETS: ClassVar[tuple[str, ...]] = ("sasl_password", "ssl_key_password")

    protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``."""
    sasl_mechanism: str = "PLAIN"
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (for the SASL protocols)."""
    sasl_username: str = ""
    """SASL user name (needed with SASL_PLAINTEXT and SASL_SSL)."""
    sasl_password: str = ""
    ssl_cafile: str = ""
    """CA bundle that signed the brokers' certificates; empty means the system's defaults."""
    ssl_certfile: str = ""
    """Client certificate (PEM) for brokers that require one (mutual TLS); empty for none."""
    ssl_keyfile: str = ""
    """Private key of the client certificate."""
    ssl_key_password: str = ""
    ssl_check_hostname: bool = True
    """Check that the broker's certificate names the host we connect to."""


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
class Settings:
    """All settings, one section per concern."""

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
    broker: BrokerSettings = dataclasses.field(default_factory=BrokerSettings)
    demo: DemoSettings = dataclasses.field(default_factory=DemoSettings)
    report: ReportSettings = dataclasses.field(default_factory=ReportSettings)
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

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Return the settings as plain nested dicts (the shape of the TOML files)."""
        return {
            name: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
            for name, section in dataclasses.asdict(self).items()
        }

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """Return a copy with some keys of some sections replaced, validated like a config file.

        >>> Settings().replace(web={"port": 7000}).web.port
        7000
        """
        return _build(_merge(self.as_dict(), dict(sections), "replace()", strings=False))


SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
FACTORY_CHANGE_ACTIONS: Final = ("challenger", "replace", "keep")
PROMOTIONS: Final = ("immediate", "canary")
"""What ``drift.promotion`` may say."""
RETRAIN_POLICIES: Final = ("none", "schedule", "quality_floor")
"""What ``retrain.policy`` may say."""
"""What ``model.on_factory_change`` may say."""

SHORT_ENV: Final[Mapping[str, tuple[str, str]]] = {
    "STREAM_APP_BROKER": ("app", "broker"),
    "STREAM_APP_ID": ("app", "id"),
    "STREAM_APP_DATA_DIR": ("app", "data_dir"),
    "STREAM_APP_WEB_PORT": ("web", "port"),
    "STREAM_APP_PARTITIONS": ("topics", "partitions"),
}


def load_settings(
    env: Mapping[str, str] | None = None, files: Sequence[Path] | None = None
) -> Settings:
    """Build the settings from the layers: defaults, files (in order), then the environment.

    ``files`` defaults to ``config/default.toml`` (when present) and then ``$STREAM_APP_CONFIG``.

    >>> load_settings(env={"STREAM_APP_SERVE__LINGER_MS": "0"}, files=[]).serve.linger_ms
    0
    """
    env = os.environ if env is None else env
    if files is None:
        files = [DEFAULT_CONFIG_FILE] if DEFAULT_CONFIG_FILE.exists() else []
        if env.get("STREAM_APP_CONFIG"):
            files = [*files, Path(env["STREAM_APP_CONFIG"])]
    layered = Settings().as_dict()
    for path in files:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        layered = _merge(layered, data, str(path), strings=False)
    return _build(_merge(layered, _from_env(env), "environment", strings=True))


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``STREAM_APP_*`` variables as a nested dict of raw strings."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if name in SHORT_ENV:
            section, key = SHORT_ENV[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        else:
            continue
        out.setdefault(section, {})[key] = value
    return out


def _merge(
    base: dict[str, dict[str, Any]], layer: Mapping[str, Any], origin: str, *, strings: bool
) -> dict[str, dict[str, Any]]:
    """Overlay ``layer`` on ``base``, refusing unknown sections, keys and types.

    ``strings`` says the layer's values are text to parse (the environment); a TOML file's values
    must already have the setting's type.
    """
    merged = {section: dict(values) for section, values in base.items()}
    hints = typing.get_type_hints(Settings)
    for section, values in layer.items():
        if section not in merged or not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: unknown settings section [{section}]")
        section_hints = typing.get_type_hints(hints[section])
        for key, value in values.items():
            if key not in merged[section]:
                raise ConfigError(f"{origin}: unknown setting {section}.{key}")
            where = f"{origin}: {section}.{key}"
            merged[section][key] = _coerce(value, section_hints[key], where, strings=strings)
    return merged


def _coerce(value: Any, kind: Any, where: str, *, strings: bool) -> Any:
    """Convert ``value`` (a TOML value or an environment string) to the setting's type."""
    origin = typing.get_origin(kind)
    if origin in (tuple, dict):
        if strings and isinstance(value, str):  # the environment spells them as TOML values
            try:
                value = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{where}: expected a TOML {origin.__name__}: {exc}") from exc
        if origin is tuple and isinstance(value, list | tuple):
            return tuple(value)
        if origin is dict and isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"{where}: expected a {'list' if origin is tuple else 'table'}")
    if strings and isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            lowered = text.lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ConfigError(f"{where}: expected a boolean, got {value!r}")
        try:
            return kind(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from exc
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _build(data: Mapping[str, Mapping[str, Any]]) -> Settings:
    """Instantiate the dataclasses from a validated nested dict and check cross-field rules."""
    hints = typing.get_type_hints(Settings)
    settings = Settings(**{name: hints[name](**data[name]) for name in hints})
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    """Refuse settings that cannot work together, with a message that names the fix."""
    if s.topics.partitions < 1:
        raise ConfigError("topics.partitions must be at least 1")
    if s.inference.mode not in {"event", "batch"}:
        raise ConfigError("inference.mode must be event or batch")
    if s.inference.max_batch < 1:
        raise ConfigError("inference.max_batch must be at least 1")
    if s.learn.early_label_ttl_s < 0 or s.learn.early_label_max < 0:
        raise ConfigError("learn.early_label_ttl_s and learn.early_label_max cannot be negative")
    if s.drift.policy not in {"none", "reset", "challenger"}:
        raise ConfigError("drift.policy must be none, reset or challenger")
    if s.drift.promotion not in PROMOTIONS:
        raise ConfigError(f"drift.promotion must be one of {', '.join(PROMOTIONS)}")
    _check_rollout(s.rollout)
    _check_retrain(s.retrain)
    if not 0.0 < s.guard.cap_share <= 1.0 or not 0.5 <= s.guard.label_confidence < 1.0:
        raise ConfigError(
            "guard.cap_share must be in (0, 1] and guard.label_confidence in [0.5, 1)"
        )
    if s.guard.witness_window < 1 or not 0.5 <= s.guard.witness_lead < 1.0:
        raise ConfigError(
            "guard.witness_window must be at least 1 and guard.witness_lead in [0.5, 1)"
        )
    if s.guard.stats_every < 1 or s.guard.witness_span < 1 or not s.guard.witness_lr > 0.0:
        raise ConfigError(
            "guard.stats_every and guard.witness_span must be at least 1 and guard.witness_lr "
            "above 0"
        )
    if s.model.task not in {"auto", "classification", "regression"}:
        raise ConfigError("model.task must be auto, classification or regression")
    if s.model.max_indicators < 1:
        raise ConfigError("model.max_indicators must be positive")
    if ":" not in s.model.factory:
        raise ConfigError("model.factory must be a dotted path 'module:function'")
    if s.model.on_factory_change not in FACTORY_CHANGE_ACTIONS:
        raise ConfigError(
            f"model.on_factory_change must be one of {', '.join(FACTORY_CHANGE_ACTIONS)}"
        )
    if s.serve.acks not in {"all", "1", "0"}:
        raise ConfigError("serve.acks must be all, 1 or 0")
    if s.serve.idempotence and s.serve.acks != "all":
        raise ConfigError("serve.idempotence needs serve.acks = 'all'")
    if s.serve.auto_offset_reset not in {"earliest", "latest"}:
        raise ConfigError("serve.auto_offset_reset must be earliest or latest")
    if not s.app.broker.startswith("kafka://"):
        raise ConfigError("app.broker must look like kafka://host:port")
    if s.security.protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(f"security.protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
    if s.security.sasl_mechanism not in SASL_MECHANISMS:
        raise ConfigError(f"security.sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}")
    if s.security.protocol.startswith("SASL_") and not s.security.sasl_username:
        raise ConfigError(f"security.protocol {s.security.protocol} needs security.sasl_username")
    if s.web.max_batch_events < 1 or s.web.max_batch_bytes < 1:
        raise ConfigError("web.max_batch_events and web.max_batch_bytes must be positive")
    for name in ("max_message_bytes", "max_features", "max_id_chars", "max_string_chars"):
        if getattr(s.limits, name) < 1:
            raise ConfigError(f"limits.{name} must be positive")


def _check_rollout(r: RolloutSettings) -> None:
    """Refuse canary steps that do not climb to 1.0, and windows that judge nothing."""
    steps = r.steps
    climbing = all(a < b for a, b in itertools.pairwise(steps))
    if not steps or not climbing or steps[0] <= 0.0 or steps[-1] != 1.0:
        raise ConfigError("rollout.steps must increase from above 0 to 1.0, e.g. [0.05, 0.5, 1.0]")
    if r.window < 1 or r.max_regression < 0.0:
        raise ConfigError("rollout.window must be positive and rollout.max_regression >= 0")


def _check_retrain(r: RetrainSettings) -> None:
    """Refuse a retrain policy that could never fire, or train on nothing."""
    if r.policy not in RETRAIN_POLICIES:
        raise ConfigError(f"retrain.policy must be one of {', '.join(RETRAIN_POLICIES)}")
    if r.every_s < 0 or r.every_examples < 0:
        raise ConfigError("retrain.every_s and retrain.every_examples cannot be negative")
    if r.policy == "schedule" and not (r.every_s > 0 or r.every_examples > 0):
        raise ConfigError("retrain.policy = schedule needs retrain.every_s or every_examples > 0")
    if r.window < 1 or r.min_examples < 0 or r.patience < 1:
        raise ConfigError(
            "retrain.window and retrain.patience must be positive, retrain.min_examples >= 0"
        )


def bootstrap_servers(broker_url: str) -> str:
    """Turn Faust's ``kafka://h1:p1;h2:p2`` into aiokafka's ``h1:p1,h2:p2``.

    >>> bootstrap_servers("kafka://127.0.0.1:9092;127.0.0.1:9093")
    '127.0.0.1:9092,127.0.0.1:9093'
    """
    hosts = broker_url.removeprefix("kafka://").replace(";", ",")
    return ",".join(host.strip().removeprefix("kafka://") for host in hosts.split(","))
