"""The route step: every event id has one home partition, where its served answer and label meet.

A label must find what was served for its event. Producers do not agree on where a key goes:
Java clients, aiokafka and ``stream-app produce`` partition by murmur2, librdkafka clients (kcat,
confluent-kafka) by CRC32, and some producers name a partition. So the join does not trust the
partition a message arrived on: the *home* of an event id is ``murmur2(id) % partitions`` (what
Kafka's default partitioner gives a record keyed by that id). A served event or a label that
arrived elsewhere is passed to its home through the internal join topic, whose partition *p* is
read by the worker that serves ``features`` and ``labels`` partition *p*. Producers that key by id
with murmur2 never pay for that hop.

>>> home_partition("e-1", 4), crc32_partition(b"e-1", 4)
(3, 0)
>>> partitioner_of(b"e-1", 0, 4), partitioner_of(b"e-1", 3, 4), partitioner_of(None, 1, 4)
('crc32', 'murmur2', 'unkeyed')
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["PARTITIONER_FIX", "crc32_partition", "home_partition", "murmur2", "partitioner_of"]

_POSITIVE: Final = 0x7FFFFFFF
"""Kafka's default partitioner masks the sign bit of the murmur2 hash."""

_SEED: Final = 0x9747B28C
_MIX: Final = 0x5BD1E995
_SHIFT: Final = 24
_WORD: Final = 0xFFFFFFFF
"""Constants of Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``)."""

PARTITIONER_FIX: Final = (
    "produce with murmur2 keyed by event id to avoid the extra hop: "
    "kcat -X partitioner=murmur2_random, confluent-kafka {'partitioner': 'murmur2_random'}"
)
"""What to tell a user whose producer does not put an id on its home partition."""


def murmur2(data: bytes) -> int:
    """Hash ``data`` as Kafka's Java client does (murmur2, seed 0x9747b28c), unsigned 32-bit.

    Written here so the core needs no Kafka client; tests/unit/core/test_route.py checks it
    against aiokafka's partitioner.

    >>> murmur2(b"e-1"), murmur2(b"")
    (847945431, 275646681)
    """
    length = len(data)
    h = (_SEED ^ length) & _WORD
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _MIX) & _WORD
        k ^= k >> _SHIFT
        k = (k * _MIX) & _WORD
        h = ((h * _MIX) & _WORD) ^ k
    rest = length - tail
    if rest:
        h ^= int.from_bytes(data[tail:], "little")
        h = (h * _MIX) & _WORD
    h ^= h >> 13
    h = (h * _MIX) & _WORD
    h ^= h >> 15
    return h


def home_partition(event_id: str, partitions: int) -> int:
    """Return the partition Kafka's default (murmur2) partitioner gives the key ``event_id``.

    >>> home_partition("e-1", 1)
    0
    """
    return int(murmur2(event_id.encode()) & _POSITIVE) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """Return the partition librdkafka's default partitioner (``consistent_random``) gives ``key``.

    >>> crc32_partition(b"abc", 7) == zlib.crc32(b"abc") % 7
    True
    """
    return zlib.crc32(key) % partitions


def partitioner_of(key: bytes | None, partition: int, partitions: int) -> str:
    """Name the partitioner that would put ``key`` on ``partition``, for a log line.

    One of ``murmur2``, ``crc32``, ``unkeyed`` (no key: round-robin or sticky) or ``explicit``
    (neither hash gives that partition: the producer chose it).
    """
    if key is None:
        return "unkeyed"
    if int(murmur2(key) & _POSITIVE) % partitions == partition:
        return "murmur2"
    if crc32_partition(key, partitions) == partition:
        return "crc32"
    return "explicit"
