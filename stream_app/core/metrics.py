"""Prometheus metrics of one worker, in a registry of its own (never the process-global one).

Names are the contract's, all prefixed ``stream_app_``. Build one :class:`Metrics` per app, so tests
that build several apps in one process do not share counters.

>>> m = Metrics()
>>> m.dead_letters.labels(reason="invalid_json").inc()
>>> b'stream_app_dead_letters_total{reason="invalid_json"} 1.0' in m.render()
True
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Final, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "METRICS", "Metric", "Metrics", "observe_many"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4"
LATENCY_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
)  # fmt: skip


class Metric(NamedTuple):
    """One metric's definition: its kind, exposition name, help text, label names and buckets."""

    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """A histogram's bucket bounds (the other kinds have none)."""

    def create(self, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
        """Create this metric in ``registry``."""
        if self.kind is Histogram:
            return Histogram(
                self.name, self.documentation, self.labels, buckets=self.buckets, registry=registry
            )
        return self.kind(self.name, self.documentation, self.labels, registry=registry)


METRICS: Final[Mapping[str, Metric]] = {
    "events": Metric(Counter, "stream_app_events", "Feature messages read from the input topic."),
    "predictions": Metric(
        Counter, "stream_app_predictions", "Predictions written to the predictions topic."
    ),
    "dead_letters": Metric(
        Counter,
        "stream_app_dead_letters",
        "Messages sent to the dead-letter topic, by reason.",
        labels=("reason",),
    ),
    "predict_latency": Metric(
        Histogram,
        "stream_app_predict_latency_seconds",
        "Time inside the worker from receiving an event to handing its prediction to Kafka.",
        buckets=LATENCY_BUCKETS,
    ),
    "consumer_lag": Metric(
        Gauge,
        "stream_app_consumer_lag",
        "Messages behind the end of each assigned input partition.",
        labels=("topic", "partition"),
    ),
    "healthy": Metric(
        Gauge,
        "stream_app_healthy",
        "1 while this worker serves its partitions and the broker answers (/health says 200), "
        "else 0.",
    ),
    "model_version": Metric(
        Gauge,
        "stream_app_model_version",
        "Model version in use, by model and status (serving, shadow).",
        labels=("model", "status"),
    ),
    "labels_learned": Metric(
        Counter, "stream_app_labels_learned", "Labeled examples the serving model learned."
    ),
    "labels_rejected": Metric(
        Counter,
        "stream_app_labels_rejected",
        "Labels not learned, by reason (unknown event, duplicate, invalid, guard).",
        labels=("reason",),
    ),
    "labels_forwarded": Metric(
        Counter,
        "stream_app_labels_forwarded",
        "Labeled examples passed to the single writer by this (non-writing) worker.",
    ),
    "labels_rerouted": Metric(
        Counter,
        "stream_app_labels_rerouted",
        "Labels that met their event through the join topic: the event or the label arrived "
        "on another partition than its id's home (another partitioner, an explicit partition, "
        "an HTTP prediction).",
    ),
    "learner_lag_examples": Metric(
        Gauge,
        "stream_app_learner_lag_examples",
        "Labeled examples forwarded to the single writer that it has not learned yet "
        "(reported by the writer, from the examples topic's end offset).",
    ),
    "learner_lag_seconds": Metric(
        Gauge,
        "stream_app_learner_lag_seconds",
        "How long ago the examples the single writer is learning now were forwarded "
        "(0 once it has caught up).",
    ),
    "labels_shed": Metric(
        Counter,
        "stream_app_labels_shed",
        "Forwarded labeled examples the writer did not learn because it was more than "
        "learn.max_lag_s behind (a uniform random sample of the backlog was learned).",
    ),
    "early_labels": Metric(
        Gauge, "stream_app_early_labels", "Labels held because their event has not been served yet."
    ),
    "drift_detected": Metric(
        Counter, "stream_app_drift_detected", "Drifts detected in the serving model's error."
    ),
    "model_quality": Metric(
        Gauge,
        "stream_app_model_quality",
        "Rolling prequential quality of the serving model (accuracy or mae).",
        labels=("metric",),
    ),
    "challenger_quality": Metric(
        Gauge,
        "stream_app_challenger_quality",
        "Rolling prequential quality of the challenger learning in shadow.",
        labels=("metric",),
    ),
    "pending_events": Metric(
        Gauge, "stream_app_pending_events", "Served events waiting for a delayed label."
    ),
    "checkpoints": Metric(
        Counter, "stream_app_checkpoints", "Checkpoints written to the model registry."
    ),
    "checkpoint_bytes": Metric(
        Gauge, "stream_app_checkpoint_bytes", "Compressed size of the last checkpoint."
    ),
    "model_features": Metric(
        Gauge,
        "stream_app_model_features",
        "Distinct inputs (feature names, string indicators, hash buckets) the serving model "
        "tracks; bounded by model.max_indicators for the shipped factories.",
    ),
    "model_bytes": Metric(
        Gauge,
        "stream_app_model_bytes",
        "Compressed size of the serving model's last checkpoint (or restored version).",
    ),
    "checkpoint_failures": Metric(
        Counter, "stream_app_checkpoint_failures", "Checkpoints that could not be written."
    ),
    "version_load_failures": Metric(
        Counter,
        "stream_app_version_load_failures",
        "Stored versions or imports refused or skipped, by reason (corrupt, untrusted, "
        "unsigned, bad_signature).",
        labels=("reason",),
    ),
    "version_river_mismatches": Metric(
        Counter,
        "stream_app_version_river_mismatches",
        "Stored versions loaded that another River minor version wrote.",
    ),
    "challengers_dropped": Metric(
        Counter,
        "stream_app_challengers_dropped",
        "Challengers dropped because they raised while answering or learning, by reason.",
        labels=("reason",),
    ),
    "delivery_failures": Metric(
        Counter,
        "stream_app_delivery_failures",
        "Output batches Kafka did not acknowledge; their input is re-read, not lost.",
    ),
    "model_keys": Metric(
        Gauge,
        "stream_app_model_keys",
        "Keyed models (model.key_field) this worker holds decoded in memory (at most "
        "model.key_cache).",
    ),
    "key_checkpoints": Metric(
        Counter,
        "stream_app_key_checkpoints",
        "Versions of keyed models written to <app id>-keyed-models (due, evicted or handed over).",
    ),
    "key_fallback_answers": Metric(
        Counter,
        "stream_app_key_fallback_answers",
        "Keyed events answered by the fallback (the global model) because their key had learned "
        "fewer than model.key_min_examples labels.",
    ),
    "key_model_events": Metric(
        Counter,
        "stream_app_key_model_events",
        "Model events of keyed models (drift, challenger_started, promotion, challenger_dropped, "
        "...), by type: one series per type, never one per key.",
        labels=("type",),
    ),
    "http_requests": Metric(
        Counter,
        "stream_app_http_requests",
        "Requests to the predict and learn endpoints, by endpoint and HTTP status.",
        labels=("endpoint", "status"),
    ),
    "http_latency": Metric(
        Histogram,
        "stream_app_http_request_latency_seconds",
        "Time from reading a predict or learn request to its answer, by endpoint.",
        labels=("endpoint",),
        buckets=LATENCY_BUCKETS,
    ),
    "http_predictions": Metric(
        Counter,
        "stream_app_http_predictions",
        "Predictions answered over HTTP (not written to Kafka, not counted as events).",
    ),
}
"""Every metric the worker exports, by the :class:`Metrics` attribute that holds it, in exposition
order. The names are the contract's (README.md, "Health and metrics");
tests/unit/core/test_metrics.py holds this table and the attributes of :class:`Metrics` equal."""


class Metrics:
    """Every metric of :data:`METRICS`, created in one registry, as typed attributes."""

    events: Counter
    predictions: Counter
    dead_letters: Counter
    predict_latency: Histogram
    consumer_lag: Gauge
    healthy: Gauge
    model_version: Gauge
    labels_learned: Counter
    labels_rejected: Counter
    labels_forwarded: Counter
    labels_rerouted: Counter
    learner_lag_examples: Gauge
    learner_lag_seconds: Gauge
    labels_shed: Counter
    early_labels: Gauge
    drift_detected: Counter
    model_quality: Gauge
    challenger_quality: Gauge
    pending_events: Gauge
    checkpoints: Counter
    checkpoint_bytes: Gauge
    model_features: Gauge
    model_bytes: Gauge
    checkpoint_failures: Counter
    version_load_failures: Counter
    version_river_mismatches: Counter
    challengers_dropped: Counter
    delivery_failures: Counter
    model_keys: Gauge
    key_checkpoints: Counter
    key_fallback_answers: Counter
    key_model_events: Counter
    http_requests: Counter
    http_latency: Histogram
    http_predictions: Counter

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        for attribute, metric in METRICS.items():
            setattr(self, attribute, metric.create(self.registry))

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        return bytes(generate_latest(self.registry))


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """Observe a batch of amounts at once: the same exposition as one ``observe`` per amount.

    ``Histogram.observe`` takes two locks per amount (~1.5 us, more than predicting with a linear
    model); the serve path observes a whole batch's latencies here, counting them per bucket first.
    It uses the histogram's own bucket bounds and values (prometheus_client has no public bulk
    call); tests/unit/core/test_metrics.py holds it equal to ``observe``.

    >>> m = Metrics()
    >>> observe_many(m.predict_latency, [0.00005, 0.003, 0.003])
    >>> b'stream_app_predict_latency_seconds_bucket{le="0.005"} 3.0' in m.render()
    True
    """
    if not amounts:
        return
    bounds = histogram._upper_bounds
    buckets = histogram._buckets
    for index, count in Tally(map(partial(bisect_left, bounds), amounts)).items():
        buckets[index].inc(count)
    histogram._sum.inc(sum(amounts))
