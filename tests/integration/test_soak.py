"""A short soak in the suite: delayed labels through one worker, the pending store at its bound.

``bench/soak.py`` runs the long version (1,000,000 events) and prints RSS growth and events/s;
this one asserts behaviour only: the store never exceeds ``learn.pending_max`` and evicts to stay,
every event is served, every label is learned or rejected with a reason, no ERROR in the log.
"""

from __future__ import annotations

from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.load import soak
from tests.integration.support import predictions_by_id

EVENTS = 30_000
PENDING_MAX = 5_000


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
