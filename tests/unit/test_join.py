"""The join step's pending store: bounded by age and count, per partition."""

from __future__ import annotations

from stream_app.join import PendingStore, Served


def served(at: float) -> Served:
    return Served({"x": at}, True, {"true": 1.0}, None, 0, at)


def test_put_then_take_once() -> None:
    store = PendingStore(ttl_s=60, max_items=10)
    store.put(0, "a", served(1.0))
    assert len(store) == 1
    assert store.take(0, "a", now=2.0) == served(1.0)
    assert store.take(0, "a", now=2.0) is None
    assert len(store) == 0


def test_partitions_are_separate() -> None:
    store = PendingStore(ttl_s=60, max_items=10)
    store.put(0, "a", served(1.0))
    assert store.take(1, "a", now=2.0) is None
    assert store.take(0, "a", now=2.0) is not None


def test_ttl_expires_on_take_and_on_sweep() -> None:
    store = PendingStore(ttl_s=10, max_items=10)
    for i in range(5):
        store.put(0, f"e{i}", served(float(i)))
    assert store.take(0, "e0", now=10.5) is None  # 10.5 s old
    assert store.expire(now=13.5) == 3  # e1, e2, e3 are older than 10 s
    assert len(store) == 1 and store.expired == 4
    assert store.take(0, "e4", now=13.5) is not None


def test_count_bound_drops_the_oldest_across_partitions() -> None:
    store = PendingStore(ttl_s=1e9, max_items=3)
    store.put(0, "a", served(1.0))
    store.put(1, "b", served(2.0))
    store.put(0, "c", served(3.0))
    store.put(1, "d", served(4.0))
    assert len(store) == 3 and store.expired == 1
    assert store.take(0, "a", now=5.0) is None
    assert {store.take(1, "b", now=5.0) is not None, store.take(0, "c", now=5.0) is not None} == {
        True
    }


def test_reserving_an_id_keeps_the_latest_answer() -> None:
    store = PendingStore(ttl_s=60, max_items=10)
    store.put(0, "a", served(1.0))
    store.put(0, "a", served(2.0))
    assert len(store) == 1
    assert store.take(0, "a", now=3.0) == served(2.0)


def test_drop_partition() -> None:
    store = PendingStore(ttl_s=60, max_items=10)
    store.put(0, "a", served(1.0))
    store.put(2, "b", served(1.0))
    assert store.drop_partition(2) == 1 and store.drop_partition(5) == 0
    assert len(store) == 1


def test_rebuild_restores_answered_unlabeled_events_only() -> None:
    from dataclasses import dataclass

    import orjson

    from stream_app.restore import rebuild
    from stream_app.settings import Settings

    @dataclass
    class Rec:
        value: bytes

    events = [
        Rec(orjson.dumps({"id": "a", "features": {"x": 1.0}})),
        Rec(orjson.dumps({"id": "b", "features": {"x": 2.0}, "label": True})),  # learned inline
        Rec(b"{broken"),  # was dead-lettered
        Rec(orjson.dumps({"id": "c", "features": {"x": 3.0}})),  # never answered
    ]
    answer = {
        "prediction": True,
        "proba": {"true": 0.7, "false": 0.3},
        "model_version": 2,
        "served_at": 5.0,
    }
    store = PendingStore(ttl_s=60, max_items=10)
    assert rebuild(store, 3, events, {"a": answer, "b": answer}, Settings()) == 1
    kept = store.take(3, "a", now=6.0)
    assert kept == Served({"x": 1.0}, True, {"true": 0.7, "false": 0.3}, None, 2, 5.0)
