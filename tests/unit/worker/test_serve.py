"""The serve loop without a broker: its clients' settings, health, commits and the writer role."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.role import WriterRole
from stream_app.kafka.publish import Publisher
from stream_app.settings import Settings
from stream_app.worker.clients import consumer_config, producer_config
from stream_app.worker.serve import ServeLoop
from stream_app.worker.versions import VersionKeeper
from tests.unit.worker.memory import MemoryStore, Published


class FakeConsumer:
    """The consumer calls the loop makes around a rebalance and a commit, kept in memory."""

    def __init__(self, fail_commits: int = 0) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commits = fail_commits

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaError("rebalancing")
        self.commits.append(dict(offsets))

    async def committed(self, tp: TopicPartition) -> int | None:
        return None  # a new group: nothing to restore

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        """Nothing was committed on the join topic: read it from its start."""


class Loop:
    """A serve loop wired as the service wires it, with a fake consumer and keeper calls noted."""

    def __init__(self, **overrides: Any) -> None:
        self.settings = s = Settings().replace(**overrides)
        self.role = WriterRole(writer=False)
        metrics = Metrics()
        self.pipeline = Pipeline(s, Learner(s), metrics, self.role)
        keeper = VersionKeeper(s, MemoryStore(s), self.pipeline, metrics, self.role, Published())
        self.calls: list[str] = []

        async def become_writer() -> None:  # (the real one replays the learning log from Kafka)
            self.calls.append("become_writer")

        async def hand_over() -> None:
            self.calls.append("hand_over")

        keeper.become_writer = become_writer  # type: ignore[method-assign]
        keeper.hand_over = hand_over  # type: ignore[method-assign]
        self.loop = ServeLoop(s, self.pipeline, metrics, keeper, self.role, Publisher())
        self.consumer = FakeConsumer()
        self.loop._consumer = self.consumer  # type: ignore[assignment]

    def partitions(self, *numbers: int, writer: bool = False) -> frozenset[TopicPartition]:
        s = self.settings
        tps = {TopicPartition(t, p) for t in (s.topics.features, s.topics.labels) for p in numbers}
        if writer:
            tps.add(TopicPartition(s.commands_topic, 0))
        return frozenset(tps)

    async def assign(self, tps: Iterable[TopicPartition]) -> None:
        await self.loop._on_assigned(tps)

    async def revoke(self, tps: Iterable[TopicPartition]) -> None:
        await self.loop._on_revoked(tps)


def test_the_producer_waits_for_every_replica_unless_told_otherwise() -> None:
    assert producer_config(Settings())["acks"] == -1
    assert (
        producer_config(Settings().replace(serve={"acks": "1", "idempotence": False}))["acks"] == 1
    )
    config = producer_config(Settings().replace(app={"id": "shop"}))
    assert config["client_id"] == "shop-serve" and config["enable_idempotence"] is True


def test_the_consumer_commits_by_hand_and_waits_a_micro_batch_in_batch_mode() -> None:
    event = Settings().replace(serve={"fetch_max_wait_ms": 50})
    config = consumer_config(event, "g")
    assert config["group_id"] == "g" and config["enable_auto_commit"] is False
    assert config["fetch_max_wait_ms"] == 50
    batch = event.replace(inference={"mode": "batch", "max_wait_ms": 80})
    assert consumer_config(batch, "g")["fetch_max_wait_ms"] == 80
    timeouts = consumer_config(Settings().replace(app={"session_timeout_s": 9.0}), "g")
    assert timeouts["session_timeout_ms"] == 9000 and timeouts["heartbeat_interval_ms"] == 3000


async def test_health_says_why_until_the_worker_has_partitions_and_hears_the_broker() -> None:
    w = Loop()
    assert w.loop.unhealthy_reason == "starting: not yet given partitions by the consumer group"
    await w.assign(w.partitions(0))
    assert w.loop.healthy and w.loop.unhealthy_reason is None
    limit = w.settings.serve.broker_timeout_s
    w.loop._last_contact = time.monotonic() - limit - 1.0
    reason = w.loop.unhealthy_reason
    assert reason is not None and reason.startswith("the broker has not answered for")


async def test_the_serve_loop_owns_the_writer_role_through_rebalances() -> None:
    w = Loop()
    await w.assign(w.partitions(0, 1))
    assert not w.role.is_writer and w.calls == []
    await w.assign(w.partitions(0, 1, writer=True))
    assert w.role.is_writer and w.pipeline.role.is_writer and w.calls == ["become_writer"]
    await w.assign(w.partitions(0, writer=True))  # still the writer: no second takeover
    assert w.calls == ["become_writer"]
    commands = TopicPartition(w.settings.commands_topic, 0)
    await w.revoke([commands])
    assert w.calls == ["become_writer", "hand_over"]
    await w.assign(w.partitions(0))
    assert not w.role.is_writer


async def test_a_follower_gives_up_no_writer_state_when_a_partition_moves() -> None:
    w = Loop()
    await w.assign(w.partitions(0, 1))
    await w.revoke(w.partitions(1))
    assert w.calls == []


async def test_commits_are_of_acknowledged_offsets_and_only_of_what_changed() -> None:
    w = Loop(serve={"commit_interval_s": 3600.0})
    tp = TopicPartition(w.settings.topics.features, 0)
    w.loop._acked[tp] = 5
    await w.loop._commit(force=True)
    assert w.consumer.commits == [{tp: 5}]
    await w.loop._commit(force=True)  # nothing new acknowledged
    w.loop._acked[tp] = 9
    await w.loop._commit(force=False)  # not due within the interval
    assert w.consumer.commits == [{tp: 5}]
    await w.loop._commit(force=True)
    assert w.consumer.commits == [{tp: 5}, {tp: 9}]


async def test_a_failed_commit_is_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app")  # whatever level others left
    w = Loop()
    w.consumer.fail_commits = 1
    tp = TopicPartition(w.settings.topics.features, 0)
    w.loop._acked[tp] = 3
    await w.loop._commit(force=True)
    assert w.consumer.commits == [] and "commit of 1 partition(s) failed" in caplog.text
    await w.loop._commit(force=True)
    assert w.consumer.commits == [{tp: 3}]


async def test_revoked_partitions_are_committed_and_forgotten() -> None:
    w = Loop()
    tps = w.partitions(0)
    await w.assign(tps)
    for tp in tps:
        w.loop._acked[tp] = 7
    await w.revoke(tps)
    assert w.consumer.commits == [dict.fromkeys(tps, 7)]
    assert w.loop._acked == {}
