"""The learning's sections: the model, how it is asked, how it learns, guards, drifts and rolls out.

Each section is a frozen dataclass of plain values; every field's docstring is its line in
``docs/settings.md``. A section checks its own fields as it is built (``__post_init__``):

>>> InferenceSettings(mode="stream")
Traceback (most recent call last):
    ...
stream_app.errors.ConfigError: inference.mode must be event or batch
>>> RolloutSettings(steps=(0.5, 1.0)).steps
(0.5, 1.0)
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Final

from stream_app.errors import ConfigError

__all__ = [
    "DRIFT_POLICIES",
    "FACTORY_CHANGE_ACTIONS",
    "INFERENCE_MODES",
    "KEY_STORES",
    "PROMOTIONS",
    "RETRAIN_POLICIES",
    "TASKS",
    "DriftSettings",
    "GuardSettings",
    "InferenceSettings",
    "LearnSettings",
    "ModelSettings",
    "RetrainSettings",
    "RolloutSettings",
]

TASKS: Final = ("auto", "classification", "regression")
"""What ``model.task`` may say."""
FACTORY_CHANGE_ACTIONS: Final = ("challenger", "replace", "keep")
"""What ``model.on_factory_change`` may say."""
KEY_STORES: Final = ("memory", "disk")
"""What ``model.key_store`` may say."""
INFERENCE_MODES: Final = ("event", "batch")
"""What ``inference.mode`` may say."""
DRIFT_POLICIES: Final = ("none", "reset", "challenger")
"""What ``drift.policy`` may say."""
PROMOTIONS: Final = ("immediate", "canary")
"""What ``drift.promotion`` may say."""
RETRAIN_POLICIES: Final = ("none", "schedule", "quality_floor")
"""What ``retrain.policy`` may say."""


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
    key_field: str = ""
    """Keyed models: the feature event's top-level field whose value (a string of 1 to 128
    characters) selects the model; every distinct key gets its own model from ``factory``,
    learned by the worker that owns the key's partition. Empty: one global model."""
    key_min_examples: int = 50
    """Keyed models: until a key has learned this many labels, ``key_fallback`` answers for it."""
    key_fallback: str = "global"
    """Keyed models: who answers a young key: ``global`` (the global model, learned as without
    keys) or ``none`` (the key's own model, even young; no single writer at all)."""
    key_cache: int = 10000
    """Keyed models: at most this many keys' models stay decoded in a worker's memory; the least
    recently used are written back (if they learned since their checkpoint) and dropped."""
    key_store: str = "memory"
    """Keyed models: where a worker keeps the stored state of its keys' newest versions (what a
    key loads from when its first event comes): ``memory`` (2 x ~4.5 KB per key with the shipped
    model, for every key of its partitions) or ``disk`` (a RocksDB database under
    ``<app.data_dir>/keyed/<app.id>``, wiped at start and rebuilt from the keyed-models topic on
    assignment; memory then holds version numbers only, so a worker can hold more keys)."""

    def __post_init__(self) -> None:
        if self.key_fallback not in ("global", "none"):
            raise ConfigError("model.key_fallback must be global or none")
        if self.key_store not in KEY_STORES:
            raise ConfigError("model.key_store must be memory or disk")
        if self.key_min_examples < 0 or self.key_cache < 1:
            raise ConfigError("model.key_min_examples must be >= 0 and model.key_cache >= 1")
        if self.task not in TASKS:
            raise ConfigError("model.task must be auto, classification or regression")
        if self.max_indicators < 1:
            raise ConfigError("model.max_indicators must be positive")
        if ":" not in self.factory:
            raise ConfigError("model.factory must be a dotted path 'module:function'")
        if self.on_factory_change not in FACTORY_CHANGE_ACTIONS:
            raise ConfigError(
                f"model.on_factory_change must be one of {', '.join(FACTORY_CHANGE_ACTIONS)}"
            )


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
    many_min_rows: int = 200
    """Smallest batch worth one ``predict_proba_many`` call (building a data frame costs about a
    millisecond). The shipped linear models do without it: they answer from 5 events with NumPy
    (``stream_app.core.linear_batch``). Measured break-even: ~100 events for Gaussian naive Bayes,
    ~300 for logistic regression through the data frame."""
    learn_many: bool = False
    """In batch mode, learn a batch's accepted examples with one ``learn_many`` call. Faster,
    but one gradient step per batch: a different model from per-event ``learn_one``."""

    def __post_init__(self) -> None:
        if self.mode not in INFERENCE_MODES:
            raise ConfigError("inference.mode must be event or batch")
        if self.max_batch < 1:
            raise ConfigError("inference.max_batch must be at least 1")


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

    def __post_init__(self) -> None:
        if self.early_label_ttl_s < 0 or self.early_label_max < 0:
            raise ConfigError(
                "learn.early_label_ttl_s and learn.early_label_max cannot be negative"
            )


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
    stats_every: int = 8
    """After a feature's warm-up, its running statistics learn one in this many learned examples."""
    witness: bool = True
    """Classification: twin linear models judge the held-out labels; if they were right, the
    model takes an unguarded witness's state."""
    witness_window: int = 10
    """Contested labels (exactly one twin right) worth of a fair duel that the long-run win share
    starts from: a few early contests cannot set the test's reference. (Before the sequential
    test: the sliding window the twins were scored over; old values keep a sound meaning.)"""
    witness_lead: float = 0.85
    """The unguarded twin's share of the contested labels that the witness's sequential test looks
    for, above 0.5. Each contest adds the log-likelihood ratio of this share against the
    reference: the share the unguarded twin has won so far, at most 0.5 and at least 1 - this."""
    witness_odds: float = 1000.0
    """The model takes the witness's state when the contested labels since the score last stood
    at 0 are this many times likelier under ``witness_lead`` than under the reference (Page's
    CUSUM, threshold ``log(witness_odds)``): on a steady stream, false adoptions are on average
    at least this many contested labels apart (measured: several times more)."""
    witness_horizon: float = 500.0
    """Contested labels over which the long-run win share (the test's reference) forgets."""
    witness_floor: float = 0.35
    """The lowest reference: under heavy noise the unguarded twin's usual share counts down to
    this, no further, so that a short run of wins is not strong evidence (contests come in runs;
    a batch's are answered by the same weights). Higher: fewer false adoptions, slower ones."""
    witness_lr: float = 0.01
    """The twins' learning rate (stochastic gradient descent on standardised numeric features)."""
    witness_span: int = 4000
    """The witness is rebuilt from a copy of the model taken one to two spans of labels ago."""
    witness_batch: int = 64
    """The twins answer, are scored and learn in batches of this many reviewed examples (one
    matrix product each): a change is seen this many labels later at most."""

    def __post_init__(self) -> None:
        if not 0.0 < self.cap_share <= 1.0 or not 0.5 <= self.label_confidence < 1.0:
            raise ConfigError(
                "guard.cap_share must be in (0, 1] and guard.label_confidence in [0.5, 1)"
            )
        if not 0.5 < self.witness_lead < 1.0 or not self.witness_odds > 1.0:
            raise ConfigError(
                "guard.witness_lead must be in (0.5, 1) and guard.witness_odds above 1"
            )
        if (
            self.witness_window < 0
            or not self.witness_horizon >= 1.0
            or not 0.0 <= self.witness_floor <= 0.5
        ):
            raise ConfigError(
                "guard.witness_window cannot be negative, guard.witness_horizon must be at least "
                "1 and guard.witness_floor in [0, 0.5]"
            )
        if (
            min(self.stats_every, self.witness_span, self.witness_batch) < 1
            or not self.witness_lr > 0.0
        ):
            raise ConfigError(
                "guard.stats_every, guard.witness_span and guard.witness_batch must be at least 1 "
                "and guard.witness_lr above 0"
            )


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

    def __post_init__(self) -> None:
        if self.policy not in DRIFT_POLICIES:
            raise ConfigError("drift.policy must be none, reset or challenger")
        if self.promotion not in PROMOTIONS:
            raise ConfigError(f"drift.promotion must be one of {', '.join(PROMOTIONS)}")


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

    def __post_init__(self) -> None:
        """Refuse canary steps that do not climb to 1.0, and windows that judge nothing."""
        steps = self.steps
        climbing = all(a < b for a, b in itertools.pairwise(steps))
        if not steps or not climbing or steps[0] <= 0.0 or steps[-1] != 1.0:
            raise ConfigError(
                "rollout.steps must increase from above 0 to 1.0, e.g. [0.05, 0.5, 1.0]"
            )
        if self.window < 1 or self.max_regression < 0.0:
            raise ConfigError("rollout.window must be positive and rollout.max_regression >= 0")


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

    def __post_init__(self) -> None:
        """Refuse a retrain policy that could never fire, or train on nothing."""
        if self.policy not in RETRAIN_POLICIES:
            raise ConfigError(f"retrain.policy must be one of {', '.join(RETRAIN_POLICIES)}")
        if self.every_s < 0 or self.every_examples < 0:
            raise ConfigError("retrain.every_s and retrain.every_examples cannot be negative")
        if self.policy == "schedule" and not (self.every_s > 0 or self.every_examples > 0):
            raise ConfigError(
                "retrain.policy = schedule needs retrain.every_s or every_examples > 0"
            )
        if self.window < 1 or self.min_examples < 0 or self.patience < 1:
            raise ConfigError(
                "retrain.window and retrain.patience must be positive, retrain.min_examples >= 0"
            )
