"""The registry store without a broker: the changelog's name, and following it into the view."""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka import TopicPartition

from stream_app.errors import ConfigError
from stream_app.registry.records import VersionRecord, changelog_topic, pin_key, record_key
from stream_app.registry.store import RegistryStore
from stream_app.settings import Settings
from stream_app.worker.service import build_app
from tests.unit.kafka.fake_consumer import FakeConsumer

WAIT_S = 5.0


def test_the_changelog_is_named_in_one_place_and_faust_agrees() -> None:
    settings = Settings().replace(app={"id": "shop"})
    app = build_app(settings)
    assert app.store.topic == changelog_topic("shop") == "shop-models-changelog"
    assert str(app.store.table.changelog_topic.get_topic_name()) == app.store.topic


def test_a_faust_app_that_would_name_the_changelog_otherwise_is_refused() -> None:
    settings = Settings().replace(app={"id": "shop"})
    other = faust.App("shop", version=2, autodiscover=False)  # Faust ids it "shop-v2"
    with pytest.raises(ConfigError, match="Faust names the registry 'shop-v2-models-changelog'"):
        RegistryStore(settings, other)


async def test_the_view_catches_up_then_listeners_hear_each_later_change() -> None:
    settings = Settings().replace(app={"id": "shop"}, registry={"follow_poll_ms": 50})
    store = build_app(settings).store
    tp = TopicPartition(store.topic, 0)
    consumer = FakeConsumer(batch=1)
    consumer.append(tp, pin_key("default"), b'{"version": 3}')
    store._consumer = consumer  # type: ignore[assignment]
    heard: list[str] = []
    store.on_change(heard.append)
    following = asyncio.create_task(RegistryStore._follow(store))
    try:
        await asyncio.wait_for(store.ready.wait(), WAIT_S)
        assert store.registry.pins == {"default": 3}
        assert heard == []  # what was there at start is not a change
        consumer.append(tp, pin_key("other"), b'{"version": 5}')
        await asyncio.wait_for(_until(lambda: heard == ["other"]), WAIT_S)
        assert store.registry.pins == {"default": 3, "other": 5}
        consumer.append(tp, pin_key("third"), b'{"version": 1}')
        await asyncio.wait_for(store.caught_up(), WAIT_S)  # returns once the view has it
        assert store.registry.pins["third"] == 1
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


async def test_an_empty_changelog_is_ready_at_once() -> None:
    store = build_app(Settings()).store
    store._consumer = FakeConsumer()  # type: ignore[assignment]
    following = asyncio.create_task(RegistryStore._follow(store))
    try:
        await asyncio.wait_for(store.ready.wait(), WAIT_S)
        assert store.registry.records == {}
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


async def _until(condition: object) -> None:
    assert callable(condition)
    while not condition():
        await asyncio.sleep(0)


class _Table(dict[bytes, bytes]):
    """The table's write side, without a running app."""

    def on_key_del(self, key: bytes) -> None:
        self.pop(key, None)


class _Producer:
    async def flush(self) -> None:
        return None


async def test_the_view_sees_its_own_writes_before_the_follower_fetches_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkpoint written a moment ago is the next one's parent (CI once saw parent None)."""
    store = build_app(Settings()).store
    store.table = _Table()  # type: ignore[assignment]
    monkeypatch.setattr(type(store.app), "producer", _Producer())
    record = VersionRecord(
        model="default",
        version=1,
        parent=None,
        created_at=0.0,
        examples_learned=500,
        quality={"metric": "accuracy", "value": None, "window": 0},
        reason="periodic",
        status="serving",
        size=1,
        sha256="0" * 64,
        chunks=1,
        factory="river.linear_model.LogisticRegression",
        task="classification",
    )
    await store.write([(record_key("default", 1), record.to_json()), (pin_key("default"), None)])
    assert store.registry.record("default", 1) == record  # no follower ran
    assert store.registry.pins == {"default": None}
