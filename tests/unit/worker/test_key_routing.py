"""Who answers a keyed request: the owner of the key's home partition, else 421 to the owner.

Without a broker: the serve group's assignor as the leader runs it (every member gets the table
of owners), and the keyed HTTP answers of a worker that owns some partitions.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from stream_app.core.owners import decode_table
from stream_app.core.route import home_partition
from stream_app.worker.http_api import HttpApi
from stream_app.worker.key_api import KeyedHttp
from stream_app.worker.owners import OwnersAssignor
from tests.unit.core.test_pipeline import Rec, Recorder
from tests.unit.worker.test_http_api import Chunks
from tests.unit.worker.test_key_commands import PARTITIONS, PROBE, live, owner, teach

TOPICS = ["features", "labels", "t-join", "t-key-commands"]


class Cluster:
    """What the assignor asks of the cluster's metadata: each topic's partitions."""

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))


def test_the_leader_gives_every_member_the_table_of_who_serves_each_partition() -> None:
    members = {
        name: OwnersAssignor(f"{host}:6066", "features")
        for name, host in (("m-b", "10.0.0.2"), ("m-a", "10.0.0.1"))
    }
    metadata = {
        name: ConsumerProtocolMemberMetadata.decode(member.metadata(TOPICS).encode())
        for name, member in members.items()
    }
    old = ConsumerProtocolMemberMetadata(0, TOPICS, b"")  # a member of an older release
    assigned = members["m-a"].assign(Cluster(), {**metadata, "m-c": old})
    for name, member in members.items():
        member.on_assignment(assigned[name])
    # range: m-a 0-1, m-b 2, m-c 3 (members sorted) for every topic alike: co-partitioned
    assert {t: p for t, p in assigned["m-a"].assignment} == {t: [0, 1] for t in TOPICS}
    table = {0: "10.0.0.1:6066", 1: "10.0.0.1:6066", 2: "10.0.0.2:6066"}
    assert members["m-a"].table == members["m-b"].table == table  # m-c told no address
    assert decode_table(assigned["m-c"].user_data) == table


def keyed_api(owned: set[int], table: dict[int, str]) -> tuple[HttpApi, Any]:
    pipeline, store = owner(owned)
    http = HttpApi(pipeline.settings, pipeline, pipeline.metrics)
    http.keyed = KeyedHttp(pipeline.settings, pipeline, pipeline.metrics, lambda: table)
    return http, store


def call(http: HttpApi, endpoint: str, body: Any) -> tuple[int, Any]:
    raw = orjson.dumps(body)
    answer = asyncio.run(http.handle(endpoint, Chunks(raw), len(raw)))
    return answer.status, orjson.loads(answer.body)


KEY = "user-17"
HOME = home_partition(KEY, PARTITIONS)


def test_the_owner_answers_with_the_keys_live_model() -> None:
    http, _ = keyed_api(set(range(PARTITIONS)), {})  # a single worker owns every key
    teach(http.pipeline, KEY, 20, seed=3)
    teach(http.pipeline, "user-2", 20, seed=4, start=100)
    status, body = call(http, "predict", {"id": "h-1", "features": PROBE, "user": KEY})
    expected = live(http.pipeline, KEY).answer(PROBE)[0]
    assert status == 200 and body["model_key"] == KEY and body["joinable"] is False  # no producer
    assert (body["prediction"], body["proba"]) == (expected.prediction, expected.proba)
    status, batch = call(
        http, "predict_batch", {"events": [{"features": PROBE, "user": k} for k in (KEY, "user-2")]}
    )
    assert status == 200 and [p["model_key"] for p in batch["predictions"]] == [KEY, "user-2"]
    assert batch["predictions"][0]["proba"] == expected.proba


def test_another_worker_answers_421_with_the_owners_address_and_touches_no_model() -> None:
    table = {p: "10.0.0.9:6066" for p in range(PARTITIONS)}
    others = {p for p in range(PARTITIONS) if p != HOME}
    http, _ = keyed_api(others, table)
    status, body = call(http, "predict", {"features": PROBE, "user": KEY})
    assert status == 421 and body["owner"] == "10.0.0.9:6066" and body["partition"] == HOME
    assert http.pipeline.keys is not None and http.pipeline.keys.peek(KEY) is None
    mine = next(k for k in (f"u-{i}" for i in range(100)) if home_partition(k, PARTITIONS) != HOME)
    status, body = call(
        http, "predict_batch", {"events": [{"features": PROBE, "user": k} for k in (mine, KEY)]}
    )
    assert status == 421 and body["detail"].startswith("events[1]:")
    status, body = call(http, "predict", {"features": PROBE, "user": KEY})
    http2, _ = keyed_api(others, {})  # mid-rebalance: no owner known yet
    status, body = call(http2, "predict", {"features": PROBE, "user": KEY})
    assert status == 503 and body["reason"] == "unavailable"


def test_a_keyed_request_without_a_valid_key_is_refused_with_the_streams_reason() -> None:
    http, _ = keyed_api(set(range(PARTITIONS)), {})
    status, body = call(http, "predict", {"features": PROBE, "user": random.random()})
    assert status == 400 and body["reason"] == "invalid_model_key"


def test_a_partition_given_up_or_not_yet_restored_is_answered_by_no_one_here() -> None:
    """Between revoke and assign, and while its keys are read, a worker answers none of them."""
    http, store = keyed_api(set(range(PARTITIONS)), {})
    keyed = http.keyed
    assert keyed is not None and keyed.route(KEY).local
    asyncio.run(store.release(http.pipeline, [HOME], Flushed()))
    assert not keyed.route(KEY).local and keyed.route(KEY).owner is None  # given up: 503
    asyncio.run(store.assign(range(PARTITIONS)))  # the same partitions again: the index is kept
    assert keyed.route(KEY).local
    mine = {p: http.settings.advertised_address for p in range(PARTITIONS)}
    http2, _ = keyed_api({p for p in range(PARTITIONS) if p != HOME}, mine)  # still reading
    assert call(http2, "predict", {"features": PROBE, "user": KEY})[0] == 503


class Flushed:
    """An emitter with nothing to send."""

    def tombstone(self, *args: Any) -> None: ...

    def to_partition(self, *args: Any) -> None: ...

    async def flush(self) -> list[Any]:
        return []

    def discard(self) -> None: ...


def test_a_keyed_http_prediction_with_an_id_is_kept_at_its_keys_home_and_its_label_teaches_it() -> (
    None
):
    http, _ = keyed_api(set(range(PARTITIONS)), {})
    sent: list[tuple[str, bytes, bytes, int | None]] = []

    async def send(topic: str, key: bytes, value: bytes, partition: int | None = None) -> Any:
        sent.append((topic, key, value, partition))
        return partition or 0, len(sent)

    http.send = send
    assert http.keyed is not None
    http.keyed.send = send
    teach(http.pipeline, KEY, 20, seed=3)
    learned = live(http.pipeline, KEY).serving.model.examples_learned
    status, body = call(http, "predict", {"id": "h-9", "features": PROBE, "user": KEY})
    assert status == 200 and body["joinable"] is True
    [(topic, _, value, partition)] = sent
    assert topic == http.settings.join_topic and partition == HOME
    assert orjson.loads(value)["model_key"] == KEY
    status, _ = call(http, "learn", {"id": "h-9", "label": True, "user": KEY})
    assert status == 202 and sent[-1][1] == KEY.encode()  # keyed by model key: to its home
    out = Recorder()
    http.pipeline.joins([Rec(topic, HOME, 0, b"h-9", value)], out)
    label = sent[-1][2]
    assert orjson.loads(label) == {"id": "h-9", "label": True, "user": KEY}
    http.pipeline.labels([Rec(http.settings.topics.labels, HOME, 0, KEY.encode(), label)], out)
    assert live(http.pipeline, KEY).serving.model.examples_learned == learned + 1
    assert out.on(http.settings.topics.dead_letters) == []
