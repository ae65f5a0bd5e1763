"""The route step's own murmur2 is Kafka's: the core needs no Kafka client to find a home."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from stream_app.core.route import home_partition, murmur2

_UNSIGNED = 0xFFFFFFFF


@given(st.binary(max_size=64))
def test_murmur2_equals_the_kafka_clients_on_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) & _UNSIGNED


def test_home_partition_is_where_a_murmur2_producer_puts_the_id() -> None:
    rng = random.Random(7)
    for _ in range(500):
        event_id = f"e-{rng.getrandbits(40)}"
        partitions = rng.randrange(1, 64)
        expected = (aiokafka_murmur2(event_id.encode()) & 0x7FFFFFFF) % partitions
        assert home_partition(event_id, partitions) == expected
