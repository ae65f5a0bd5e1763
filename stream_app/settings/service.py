"""The service's sections: identity, HTTP, topics, input limits, the hot path, versions, security.

Each section is a frozen dataclass of plain values; every field's docstring is its line in
``docs/settings.md``. A section checks its own fields as it is built (``__post_init__``), so a bad
value is refused with a message that names the key, wherever it came from:

>>> ServeSettings(acks="1")
Traceback (most recent call last):
    ...
stream_app.errors.ConfigError: serve.idempotence needs serve.acks = 'all'
>>> repr(SecuritySettings(sasl_password="s3cret")).count("s3cret")
0
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Final

from stream_app.errors import ConfigError
from stream_app.settings.layers import MaskedRepr

__all__ = [
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "AppSettings",
    "LimitSettings",
    "RegistrySettings",
    "SecuritySettings",
    "ServeSettings",
    "TopicSettings",
    "WebSettings",
]

BROKER_SCHEME: Final = "kafka://"
"""How ``app.broker`` starts (Faust's URL form)."""
ACKS: Final = ("all", "1", "0")
"""What ``serve.acks`` may say."""
OFFSET_RESETS: Final = ("earliest", "latest")
"""What ``serve.auto_offset_reset`` may say."""
SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
"""What ``security.protocol`` may say."""
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
"""What ``security.sasl_mechanism`` may say."""


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

    def __post_init__(self) -> None:
        if not self.broker.startswith(BROKER_SCHEME):
            raise ConfigError("app.broker must look like kafka://host:port")


@dataclasses.dataclass(frozen=True, repr=False)
class WebSettings(MaskedRepr):
    """The worker's HTTP server (health, metrics, model operations)."""

    SECRETS: ClassVar[tuple[str, ...]] = ("token",)

    host: str = "127.0.0.1"
    """Bind address: loopback unless you mean to expose it."""
    port: int = 6066
    """Port of the health, metrics, model-operation and predict endpoints."""
    advertised: str = ""
    """``host:port`` at which other workers and clients reach this worker's endpoints: what a
    worker that does not own a model key names in its 421 answer (keyed models); empty means
    ``web.host:web.port``."""
    token: str = ""
    """If set, model operations (POST /models/...) need ``Authorization: Bearer <token>``."""
    max_batch_events: int = 10000
    """Most events one ``POST /predict/batch`` may carry; more is refused as ``oversized``."""
    max_batch_bytes: int = 33554432
    """Largest ``POST /predict/batch`` body (a single event's is ``limits.max_message_bytes``)."""

    def __post_init__(self) -> None:
        if self.max_batch_events < 1 or self.max_batch_bytes < 1:
            raise ConfigError("web.max_batch_events and web.max_batch_bytes must be positive")


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
    keyed_models: str = ""
    """Keyed models' versions (compacted, as many partitions as ``features``; a key's versions
    live on its home partition); empty: ``<app.id>-keyed-models``."""
    key_commands: str = ""
    """Operations on one model key (rollback, reset), sent to the key's home partition so that
    its owner carries them out (as many partitions as ``features``); empty:
    ``<app.id>-key-commands``."""
    partitions: int = 4
    """Partition count for topics the app creates: the unit of parallelism across workers."""
    replication_factor: int = 1
    """Replication of the topics the app creates (1 for a single broker)."""

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError("topics.partitions must be at least 1")


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

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 1:
                raise ConfigError(f"limits.{f.name} must be positive")


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
    log_message_max_bytes: int = 262144
    """Largest learning-log message: the examples the writer learned in a batch go in one message
    (not one per example), split in several past this size. At most ``max_batch_bytes``, and
    below the broker's ``message.max.bytes``; a replay fetches one at a time at least."""
    idempotence: bool = True
    """Idempotent producer (needs acks=all): client retries write no duplicate outputs."""
    retry_backoff_s: float = 0.5
    """Pause after a failed delivery or fetch before reading the same input again."""
    lag_interval_s: float = 1.0
    """How often the worker asks the broker for its input partitions' end offsets: this refreshes
    ``stream_app_consumer_lag`` and is the broker contact that ``/health`` judges."""
    broker_timeout_s: float = 5.0
    """``/health`` reports unhealthy once the broker has not answered for this long."""
    gc_threshold: int = 20000
    """Objects allocated (net) between young garbage collections in the worker (Python's own is
    700); the worker also freezes what it holds once started, so full collections skip it. The
    path allocates a few objects per event and frees them at once, so collections found little
    and cost about 8% of a worker's time; 0 keeps the interpreter's defaults and freezes
    nothing."""

    def __post_init__(self) -> None:
        if self.gc_threshold < 0:
            raise ConfigError("serve.gc_threshold must be 0 (the interpreter's) or positive")
        if self.acks not in ACKS:
            raise ConfigError("serve.acks must be all, 1 or 0")
        if self.idempotence and self.acks != "all":
            raise ConfigError("serve.idempotence needs serve.acks = 'all'")
        if self.auto_offset_reset not in OFFSET_RESETS:
            raise ConfigError("serve.auto_offset_reset must be earliest or latest")
        if not 0 < self.log_message_max_bytes <= self.max_batch_bytes:
            raise ConfigError(
                "serve.log_message_max_bytes must be positive and at most serve.max_batch_bytes"
            )


@dataclasses.dataclass(frozen=True, repr=False)
class RegistrySettings(MaskedRepr):
    """Model versions: when the learner checkpoints, how many versions are kept, how blobs split."""

    SECRETS: ClassVar[tuple[str, ...]] = ("signing_key",)

    checkpoint_every_examples: int = 10000
    """Checkpoint after this many learned examples..."""
    checkpoint_every_s: float = 30.0
    """...or after this many seconds with something learned, whichever comes first."""
    keep_last: int = 10
    """Versions kept besides the serving, pinned and shadow ones."""
    key_checkpoint_every_examples: int = 100
    """Keyed models: checkpoint a key after this many of its labels (batched with other keys)."""
    key_checkpoint_every_s: float = 60.0
    """Keyed models: or once this many seconds have passed since a key's last checkpoint."""
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

    def __post_init__(self) -> None:
        if self.key_checkpoint_every_examples < 1 or self.key_checkpoint_every_s <= 0:
            raise ConfigError(
                "registry.key_checkpoint_every_examples and key_checkpoint_every_s must be positive"
            )


@dataclasses.dataclass(frozen=True, repr=False)
class SecuritySettings(MaskedRepr):
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

    def __post_init__(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"security.protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"security.sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}"
            )
        if self.protocol.startswith("SASL_") and not self.sasl_username:
            raise ConfigError(f"security.protocol {self.protocol} needs security.sasl_username")
