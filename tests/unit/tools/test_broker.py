"""The local broker's cluster ids: never read as an option by ``kafka-storage format``."""

from __future__ import annotations

import base64
import random

from stream_app.tools.broker import cluster_id

IDS = 20_000
"""Enough ids that one starting with '-' (1 in 64 before the fix) would surely show."""


def test_no_generated_cluster_id_starts_with_a_dash() -> None:
    ids = [cluster_id() for _ in range(IDS)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == IDS


def test_every_first_byte_gives_a_letter_first() -> None:
    rng = random.Random(15)
    for first in range(256):
        rest = bytes(rng.randrange(256) for _ in range(15))
        assert cluster_id(bytes([first]) + rest)[0].isalpha()


def test_a_cluster_id_is_sixteen_bytes_of_unpadded_base64url() -> None:
    made = cluster_id(bytes(range(16)))
    assert len(made) == 22
    assert base64.urlsafe_b64decode(made + "==") == bytes(range(16))
