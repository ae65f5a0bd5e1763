"""Every metric the Grafana dashboard reads appears in a real worker's /metrics scrape.

The worker is started as the container starts it (``stream-app worker``), against the real broker.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from stream_app import reasons
from stream_app.core.metrics import Metrics
from tests.deployment import dashboard, exported_names, exprs, grouping_labels, metric_names, panels
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    produce,
    stream_app_command,
    wait_consumed,
    wait_for,
)

# A challenger from the start, so that its quality gauge has a sample as the serving model's does.
CHALLENGER = (
    '[model]\nchallenger_factory = "stream_app.models:hoeffding_tree"\n'
    "[learn]\nearly_label_ttl_s = 1.0\n"  # the stranger's label waits this long for its event
)
LABELLED_EVENTS = 60

# Families with labels export no sample line (only # HELP and # TYPE) until a label set is used;
# each needs the traffic named here. Families without labels (counters, plain gauges, the latency
# histogram) export a sample, zero or empty buckets, from the start. stream_app_model_version has
# labels too but is set when the model is restored, before the worker reports healthy.
NEEDS_TRAFFIC = {
    "stream_app_dead_letters": "a malformed event (reason invalid_json)",
    "stream_app_labels_rejected": "a label for an event never served (label_without_event)",
    "stream_app_model_quality": "a labelled event learned by the serving model",
    "stream_app_challenger_quality": "a labelled event learned by the challenger",
}
REFRESHED = {
    "stream_app_consumer_lag": "set every serve.lag_interval_s once partitions are assigned"
}


def scrape(worker: WorkerProcess) -> dict[str, list[dict[str, str]]]:
    """The worker's /metrics as {sample name: [label sets]}: sample lines only, no comments."""
    status, body = worker.http("/metrics")
    assert status == 200, body
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def dashboard_queries() -> list[tuple[str, str]]:
    return [(panel["title"], expr) for panel in panels(dashboard()) for expr in exprs(panel)]


def traffic(rng: random.Random) -> tuple[list[Any], list[Any]]:
    """Labelled events, one malformed event, and a label for an event that was never served."""
    events: list[tuple[bytes | None, bytes | None]] = []
    for i in range(LABELLED_EVENTS):
        x = rng.gauss(0.0, 1.0)
        body = {"id": f"d-{i}", "features": {"x": x, "y": rng.random()}, "label": x > 0}
        events.append((f"d-{i}".encode(), orjson.dumps(body)))
    events.append((b"bad", b'{"id": "bad", "features": {"x": 1}'))
    labels = [(b"stranger", orjson.dumps({"id": "stranger", "label": True}))]
    return events, labels


async def test_every_dashboard_metric_appears_in_a_real_scrape(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(stream_app_command(), extra_config=CHALLENGER)
    worker.wait_healthy()
    exported = exported_names(Metrics())
    used = {name for _, expr in dashboard_queries() for name in metric_names(expr)}

    before = scrape(worker)
    missing_before = {exported[name] for name in used if name not in before}
    # NEEDS_TRAFFIC is exact; a REFRESHED family may or may not have had its first refresh yet.
    assert missing_before - set(REFRESHED) == set(NEEDS_TRAFFIC), missing_before

    events, labels = traffic(random.Random(7))
    await produce(kafka.bootstrap, names.topics["features"], events)
    await produce(kafka.bootstrap, names.topics["labels"], labels)
    group = f"{names.app_id}-serve"
    await wait_consumed(kafka.bootstrap, group, names.topics["features"])
    await wait_consumed(kafka.bootstrap, group, names.topics["labels"])

    async def refreshed() -> object:
        samples = scrape(worker)
        stranger = any(  # held for learn.early_label_ttl_s, then dead-lettered
            labels.get("reason") == reasons.LABEL_WITHOUT_EVENT
            for labels in samples.get("stream_app_labels_rejected_total", [])
        )
        return samples if stranger and all(samples.get(name) for name in REFRESHED) else None

    after = await wait_for(refreshed, what="the periodic metrics' first refresh")
    for title, expr in dashboard_queries():
        for name in metric_names(expr):
            assert after.get(name), f"{title}: no sample of {name} in the scrape"
            # The labels the panel groups by are labels the samples carry.
            carried = {label for labels in after[name] for label in labels}
            assert grouping_labels(expr) <= carried, f"{title}: {expr} vs {carried}"
    # The traffic reached each family that needed it, with the label values it should have.
    reasons_seen = {labels["reason"] for labels in after["stream_app_dead_letters_total"]}
    assert reasons.INVALID_JSON in reasons_seen
    rejected = {labels["reason"] for labels in after["stream_app_labels_rejected_total"]}
    assert rejected == {reasons.LABEL_WITHOUT_EVENT}
    for family in ("stream_app_model_quality", "stream_app_challenger_quality"):
        assert after[family] == [{"metric": "accuracy"}]
    assert {labels["topic"] for labels in after["stream_app_consumer_lag"]} >= {
        names.topics["features"]
    }
    statuses = {labels["status"] for labels in after["stream_app_model_version"]}
    assert statuses == {"serving", "shadow", "canary"}  # -1 where none: a series per status
