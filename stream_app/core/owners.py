"""Who owns a model key: the worker that serves its home partition, and where to reach it.

With keyed models (``model.key_field``) only the worker that serves a key's home partition of
``features`` holds the key's live model, so only it may answer the key over HTTP. Every worker
learns the whole table (partition -> the owner's ``host:port``) with each assignment of the serve
group: each member tells its address in its subscription, and the group's leader hands the table
to every member with its partitions (:mod:`stream_app.worker.owners`). The pure parts live here.

>>> table = owner_table({"m1": {"features": [0, 1]}, "m2": {"features": [2, 3]}},
...     {"m1": "10.0.0.1:6066", "m2": "10.0.0.2:6066"}, "features")
>>> table
{0: '10.0.0.1:6066', 1: '10.0.0.1:6066', 2: '10.0.0.2:6066', 3: '10.0.0.2:6066'}
>>> decode_table(encode_table(table)) == table
True
>>> route("user-17", 4, owned={2, 3}, owners=table)
Route(home=0, local=False, owner='10.0.0.1:6066')
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import NamedTuple

import orjson

from stream_app.core.route import home_partition

__all__ = ["Route", "decode_table", "encode_table", "owner_table", "route"]


class Route(NamedTuple):
    """Where a model key is answered: its home, whether here, and the owner's address if known."""

    home: int
    local: bool
    owner: str | None
    """The owner's ``host:port``; None if this worker owns it or no owner is known yet."""


def owner_table(
    assignments: Mapping[str, Mapping[str, Collection[int]]],
    addresses: Mapping[str, str],
    topic: str,
) -> dict[int, str]:
    """Return partition -> address of the member that got it, for ``topic``'s partitions.

    ``assignments`` is member -> topic -> partitions (what the leader hands out), ``addresses``
    member -> the address it told; a member that told none (an older release) is left out.

    >>> owner_table({"m1": {"features": [0]}, "m2": {"labels": [0]}}, {"m1": "a:1"}, "features")
    {0: 'a:1'}
    """
    table: dict[int, str] = {}
    for member, topics in assignments.items():
        address = addresses.get(member)
        if not address:
            continue
        for partition in topics.get(topic, ()):
            table[partition] = address
    return dict(sorted(table.items()))


def encode_table(table: Mapping[int, str]) -> bytes:
    """Encode the table for an assignment's user data (JSON, partitions as strings)."""
    return orjson.dumps({str(p): address for p, address in table.items()})


def decode_table(data: bytes | None) -> dict[int, str]:
    """Decode :func:`encode_table`'s bytes; empty or foreign user data gives an empty table.

    >>> decode_table(b""), decode_table(b"not json"), decode_table(b'{"x": "a:1", "2": 7}')
    ({}, {}, {})
    """
    try:
        raw = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        int(p): address
        for p, address in raw.items()
        if isinstance(p, str) and p.isdigit() and isinstance(address, str)
    }


def route(key: str, partitions: int, owned: Collection[int], owners: Mapping[int, str]) -> Route:
    """Tell where ``key`` is answered: here if this worker serves its home partition.

    A single worker owns every partition, so it answers every key.

    >>> route("user-17", 4, owned={0, 1, 2, 3}, owners={})
    Route(home=0, local=True, owner=None)
    >>> route("user-17", 4, owned=set(), owners={})
    Route(home=0, local=False, owner=None)
    """
    home = home_partition(key, partitions)
    if home in owned:
        return Route(home, True, None)
    return Route(home, False, owners.get(home))
