"""The worker's garbage collector tuning: a frozen start and rarer young collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from stream_app.worker.collector import tune_collector


@pytest.fixture
def collector() -> Iterator[None]:
    """Give the test process its collector back as it was."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("collector")
def test_it_freezes_the_start_and_raises_only_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    tune_collector(12345)
    assert gc.get_threshold() == (12345, middle, old)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector")
def test_zero_leaves_the_interpreter_as_it_is() -> None:
    before = gc.get_threshold()
    tune_collector(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_cycles_made_after_it_are_still_collected_without_being_asked() -> None:
    tune_collector(1000)

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    kept = [{} for _ in range(5000)]  # past the young threshold: a collection runs by itself
    assert gone() is None and len(kept) == 5000
