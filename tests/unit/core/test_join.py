"""The join step's pending store: bounded by age and count, per partition."""

from __future__ import annotations

from stream_app.core.join import PendingStore, Served


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

    from stream_app.core.join import EarlyLabels
    from stream_app.core.route import home_partition
    from stream_app.settings import Settings
    from stream_app.worker.restore import Past, rebuild

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
    early = EarlyLabels(ttl_s=60, max_items=10)
    home = home_partition("a", 4)
    past = Past(events, {"a": answer, "b": answer})
    assert rebuild(store, early, home, 4, past, Settings()) == (1, 0)
    kept = store.take(home, "a", now=6.0)
    assert kept == Served({"x": 1.0}, True, {"true": 0.7, "false": 0.3}, None, 2, 5.0)


def test_rebuild_replays_the_join_topic_and_labels_at_home() -> None:
    """A label whose served event is restored too had joined it already; the others wait again."""
    from dataclasses import dataclass

    import orjson

    from stream_app.core.join import EarlyLabels
    from stream_app.core.messages import encode_join_label, encode_join_served
    from stream_app.core.route import home_partition
    from stream_app.settings import Settings
    from stream_app.worker.restore import Past, rebuild

    @dataclass
    class Rec:
        topic: str
        partition: int
        offset: int
        timestamp: int
        key: bytes | None
        value: bytes | None

    ids = [f"id-{i}" for i in range(60)]
    home = home_partition(ids[0], 4)
    mine = [i for i in ids if home_partition(i, 4) == home][:3]  # a, b, c: all at home
    a, b, c = mine
    joins = [
        Rec("j", home, 0, 1000, a.encode(),
            encode_join_served(a, {"x": 1.0}, (True, {"true": 0.9}), None, 1, 1.0)),
        Rec("j", home, 1, 2000, a.encode(), encode_join_label(a, True, "labels", 2, 7, b"{}")),
        Rec("j", home, 2, 3000, b.encode(), encode_join_label(b, False, "labels", 1, 8, b"{}")),
    ]  # fmt: skip
    labels = [
        Rec("labels", home, 5, 4000, c.encode(), orjson.dumps({"id": c, "label": True})),
        Rec("labels", home, 6, 4000, b"x", orjson.dumps({"id": ids[-1], "label": True})),
    ]
    pending, early = PendingStore(ttl_s=60, max_items=10), EarlyLabels(ttl_s=60, max_items=10)
    restored = rebuild(pending, early, home, 4, Past([], {}, joins, labels), Settings())
    foreign = home_partition(ids[-1], 4) != home
    assert restored == (0, 2 + (not foreign))  # a had joined; b and c wait for their events
    assert len(pending) == 0 and (home, b) in early and (home, c) in early
    held = early.take(home, b)
    assert held is not None and held.rerouted and held.arrived_at == 3.0
    assert held.source == ("labels", 1, 8, b.encode(), b"{}")
