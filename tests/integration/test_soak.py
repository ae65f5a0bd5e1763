"""Short soaks in the suite: delayed labels through one worker; the pending store, the model.

``bench/soak.py`` runs the long versions (1,000,000 events) and prints RSS growth and events/s;
these assert behaviour only: the store never exceeds ``learn.pending_max`` and evicts to stay,
every event is served, every label is learned or rejected with a reason, no ERROR in the log; with
a new string and new feature names in every event, the model's inputs never exceed their bound
and its checkpoint stops growing.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.load import soak
from tests.integration.support import predictions_by_id, read_all, wait_for

EVENTS = 30_000
PENDING_MAX = 5_000
UNIQUE_EVENTS = 24_000
MAX_INDICATORS = 512
"""Small, so that the model reaches its bound (2 * 512 inputs) within the first few thousand."""
EARLY = 8_000
"""By here the bound is reached: the checkpoint at the end must be the same size, within 10%."""
CHECKPOINT_EVERY = 1_000
CHECKPOINT_EVERY_S = 1.0
"""Soon after the last labels of a round, a checkpoint holds all that was learned."""
REJECTED = "stream_app_labels_rejected_total"
LEARNED_IDS = 3_000
"""``learn.pending_max``: above the events awaiting labels (a chunk), and it bounds the learned ids
a checkpoint carries, a bound also reached early."""


async def test_a_short_soak_keeps_the_pending_store_bounded_and_logs_no_error(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(extra_config=f"[learn]\npending_max = {PENDING_MAX}\n")
    worker.wait_healthy()
    observed = await soak(worker, kafka.bootstrap, EVENTS, chunk=1000, label_after_chunks=1)

    # A fifth of the events is never labeled: they fill the store, which evicts the oldest. The
    # TTL is an hour, so only the bound can have dropped some: fewer are left than were unlabeled.
    assert max(observed.pending) <= PENDING_MAX
    assert 0 < observed.pending[-1] < EVENTS - observed.labels
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert set(served) == {f"e-{i}" for i in range(EVENTS)}
    scraped = worker.metrics()
    rejected = {
        k: v for k, v in scraped.items() if k.startswith("stream_app_labels_rejected_total")
    }
    assert scraped["stream_app_labels_learned_total"] + sum(rejected.values()) == observed.labels
    # Evictions took unlabeled events only: every label found its event.
    assert not rejected.get('stream_app_labels_rejected_total{reason="label_without_event"}')
    assert worker.proc.poll() is None
    assert observed.errors == []


async def test_unique_strings_and_new_names_cannot_grow_the_model_past_its_bound(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    config = (  # no guard: every label found its event is learned, counted as examples_learned
        "[guard]\nenabled = false\n"
        f"[model]\nmax_indicators = {MAX_INDICATORS}\n"
        f"[learn]\npending_max = {LEARNED_IDS}\n"
        f"[registry]\ncheckpoint_every_examples = {CHECKPOINT_EVERY}\n"
        f"checkpoint_every_s = {CHECKPOINT_EVERY_S}\n"
    )
    worker = worker_factory(extra_config=config)
    worker.wait_healthy()

    async def checkpointed(labels_sent: int) -> tuple[dict[str, float], dict[str, Any]]:
        """The scrape once every label is handled, and the checkpoint that holds all it learned."""

        async def handled() -> dict[str, float] | None:
            scraped = worker.metrics()
            rejected = sum(v for k, v in scraped.items() if k.startswith(REJECTED))
            done = scraped.get("stream_app_labels_learned_total", 0) + rejected == labels_sent
            return scraped if done else None

        scraped = await wait_for(handled, what=f"{labels_sent} labels learned or rejected")
        learned = scraped["stream_app_labels_learned_total"]

        async def stored() -> dict[str, Any] | None:
            events = await read_all(kafka.bootstrap, names.topics["model_events"])
            checkpoints = [orjson.loads(r.value) for r in events]
            return next(
                (
                    c
                    for c in checkpoints
                    if c["type"] == "checkpoint"
                    and c["status"] == "serving"
                    and c["examples_learned"] == learned
                ),
                None,
            )

        checkpoint: dict[str, Any] = await wait_for(stored, what=f"a checkpoint of {learned}")
        return worker.metrics(), checkpoint

    # Two rounds, so that each ends with all its labels learned and checkpointed (the soak's own
    # samples come before the labels of the last chunks are read).
    early = await soak(
        worker, kafka.bootstrap, EARLY, chunk=1000, label_after_chunks=1, cardinality="unique"
    )
    at_early, checkpoint_early = await checkpointed(early.labels)
    late = await soak(
        worker,
        kafka.bootstrap,
        UNIQUE_EVENTS - EARLY,
        chunk=1000,
        label_after_chunks=1,
        first=EARLY,
        cardinality="unique",
    )
    at_end, checkpoint_end = await checkpointed(early.labels + late.labels)

    bound = 2 * MAX_INDICATORS
    features = [at_early["stream_app_model_features"], at_end["stream_app_model_features"]]
    assert max([*early.model_features, *late.model_features, *features]) <= bound
    assert min(features) > 0.9 * bound  # the stream did reach the bound, early
    size_early, size_end = checkpoint_early["bytes"], checkpoint_end["bytes"]
    assert size_early > 0 and abs(size_end - size_early) <= 0.1 * size_early
    assert at_end["stream_app_model_bytes"] == size_end  # the gauge shows the last checkpoint
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert len(served) == UNIQUE_EVENTS
    assert worker.log_text().count("Raise model.max_indicators") == 1  # the one-time warning
    assert not at_end.get(f'{REJECTED}{{reason="label_without_event"}}')
    assert worker.proc.poll() is None
    assert early.errors == late.errors == []
