"""Tune Python's cyclic garbage collector for the worker: rarer young collections, a frozen start.

The straight path allocates a few container objects per event (the decoded event, its answer,
the example) and frees almost all of them at once by reference counting. With the interpreter's
default threshold (a young collection every 700 net allocations) the collector ran every few
hundred events, found almost nothing, and every tenth run promoted survivors towards a full
collection that walked the whole heap: the Faust app, the clients and the model, some 180,000
objects, at about 0.8 us each on the bench machine. A live worker spent about 8% of its time
there (``gc.callbacks`` timing, bench/run.py's features-off worker, 20,000 events).

:func:`tune_collector` freezes what the worker holds once started (``gc.freeze``: full
collections skip it from then on) and raises the young threshold (``serve.gc_threshold``).
Reference counting still frees everything that is not in a cycle at once; cycles are still
collected, only later. What is frozen is never collected as a cycle: it is what the worker needs
while it runs.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["tune_collector"]

log = logging.getLogger(__name__)


def tune_collector(threshold: int) -> None:
    """Freeze the objects alive now and collect young objects every ``threshold`` allocations.

    ``threshold`` 0 leaves the interpreter's collector as it is. The older generations keep
    their own thresholds (collections of the young one between two of theirs).
    """
    if threshold == 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
    log.debug(
        "garbage collector: %d objects frozen, young threshold %d", gc.get_freeze_count(), threshold
    )
