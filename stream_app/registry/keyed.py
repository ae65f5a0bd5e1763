"""Keyed models' versions: one message per version on a compacted topic partitioned like features.

A key's versions live on its home partition (``murmur2(key) % partitions``), so the worker that
owns the partition, and only it, reads and writes them, and a rebalance moves them with it. The
record key is ``<model key>/<version>`` (the version is the part after the last ``/``, so a
model key may contain ``/``); the value is one line of JSON (the header: model, key, version,
examples learned, reason, time, checksum and signature) and, after a newline, the packed learner
state (pickled and compressed, as a global version's blob). Keeping ``registry.keep_last``
versions per key is done with tombstones, which compaction turns into deletions.

Decoding verifies the checksum (and the signature, with a signing key) before the safe unpickler
(:mod:`stream_app.registry.safeload`) reads anything: a message written by someone else runs no
code, it is refused as a :class:`~stream_app.errors.CorruptVersion`.

>>> from stream_app.core.learn import Learner
>>> from stream_app.settings import Settings
>>> settings = Settings()
>>> key, value = encode_version(settings, "user/17", 3, Learner(settings), "checkpoint", at=1.0)
>>> key
b'user/17/3'
>>> header, learner = decode_version(settings, value)
>>> header["key"], header["version"], learner.serving.model.examples_learned
('user/17', 3, 0)
>>> split_record_key(key)
('user/17', 3)
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from typing import Any, Final, Protocol

import orjson

from stream_app.core.learn import Learner
from stream_app.errors import CorruptVersion
from stream_app.registry.records import decode_blob, pack, split_blob
from stream_app.settings import Settings

__all__ = [
    "FORMAT",
    "TOP_KEYS",
    "VALUES_KEPT",
    "KeyIndex",
    "KeyVersions",
    "MemoryValues",
    "ValueStore",
    "decode_version",
    "encode_version",
    "key_row",
    "key_summary",
    "record_key",
    "split_record_key",
    "tombstones",
]

TOP_KEYS: Final = 10
"""How many keys ``models keys`` (and ``GET /models/keys``) list by examples and by quality."""
FORMAT: Final = "stream_app.keyed/1"
"""The header's ``format``: what a reader must understand to load the state."""
_NEWLINE: Final = b"\n"


def record_key(model_key: str, version: int) -> bytes:
    """Return the record key of a key's version.

    >>> record_key("u-1", 12)
    b'u-1/12'
    """
    return f"{model_key}/{version}".encode()


def split_record_key(raw: bytes) -> tuple[str, int]:
    """Return (model key, version) of a record key; raise ``CorruptVersion`` if it is not one.

    >>> split_record_key(b"no-version")
    Traceback (most recent call last):
    ...
    stream_app.errors.CorruptVersion: not a keyed version's record key: b'no-version'
    """
    model_key, slash, version = raw.decode(errors="replace").rpartition("/")
    if not slash or not model_key or not version.isdigit():
        raise CorruptVersion(f"not a keyed version's record key: {raw[:140]!r}")
    return model_key, int(version)


def encode_version(
    settings: Settings,
    model_key: str,
    version: int,
    learner: Learner,
    reason: str,
    at: float,
) -> tuple[bytes, bytes]:
    """Return the (record key, value) of ``learner`` stored as ``model_key``'s ``version``."""
    registry = settings.registry
    quality = learner.serving.quality
    blob = split_blob(
        pack(learner.snapshot(), registry.compression_level),
        chunk_bytes=1 << 62,  # one piece: a keyed version is one message
        key=registry.signing_key,
    )
    header = {
        "format": FORMAT,
        "model": settings.model.name,
        "key": model_key,
        "version": version,
        "examples_learned": learner.serving.model.examples_learned,
        "quality": {"metric": quality.metric, "value": quality.value, "window": len(quality)},
        "reason": reason,
        "at": at,
        "sha256": blob.sha256,
        "signature": blob.signature,
    }
    return record_key(model_key, version), orjson.dumps(header) + _NEWLINE + blob.chunks[0]


def decode_version(settings: Settings, value: bytes) -> tuple[dict[str, Any], Learner]:
    """Verify and load a keyed version; raise :class:`~stream_app.errors.CorruptVersion`."""
    header = read_header(value)
    registry = settings.registry
    state = decode_blob(
        [value[value.index(_NEWLINE) + 1 :]],
        str(header.get("sha256", "")),
        str(header.get("signature", "")),
        registry.signing_key,
        registry.trusted_modules,
    )
    try:
        learner = Learner.restore(settings, state, int(header["version"]) + 1)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptVersion(f"a keyed version's state is not a learner's: {exc}") from None
    return header, learner


def read_header(value: bytes) -> dict[str, Any]:
    """Return a keyed version's header (no state is read); raise ``CorruptVersion``.

    >>> read_header(b'{"format": "other/9"}' + _NEWLINE)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_app.errors.CorruptVersion: a keyed version of format 'other/9'; ...
    """
    end = value.find(_NEWLINE)
    try:
        header = orjson.loads(value[:end]) if end > 0 else None
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict):
        raise CorruptVersion("not a keyed version: no JSON header line")
    if header.get("format") != FORMAT:
        raise CorruptVersion(
            f"a keyed version of format {header.get('format')!r:.40}; this release reads {FORMAT}"
        )
    return header


VALUES_KEPT: Final = 2
"""Raw values a :class:`KeyIndex` holds per key: the newest version, and one to fall back on."""


class ValueStore(Protocol):
    """Where a :class:`KeyIndex` keeps the encoded values it holds, by record key.

    In memory (:class:`MemoryValues`, the default) or on the worker's disk (``model.key_store =
    "disk"``: :mod:`stream_app.worker.key_disk`), so that memory holds version numbers only. What
    is read back is still only decoded by :func:`decode_version` (checksum, signature, safe
    unpickler), wherever it was kept.
    """

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or None."""

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing any)."""

    def delete(self, key: bytes) -> None:
        """Forget ``key`` (nothing if it is not stored)."""


class MemoryValues(dict[bytes, bytes]):
    """A :class:`ValueStore` in a dict: the values stay in this process's memory.

    >>> values = MemoryValues()
    >>> values.put(b"k/1", b"v"); values.get(b"k/1"), len(values)
    (b'v', 1)
    >>> values.delete(b"k/1"); values.delete(b"k/1"); values.get(b"k/1")
    """

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        self[key] = value

    def delete(self, key: bytes) -> None:
        """Forget ``key``."""
        self.pop(key, None)


@dataclasses.dataclass(slots=True)
class KeyVersions:
    """The versions of one key that a partition holds: every number, which values are held.

    The numbers are what ``registry.keep_last`` needs (which to tombstone); the values are what
    loading needs: the newest, and the one before it in case the newest does not load. Older
    values are dropped as newer ones come, so memory grows with keys, not with versions. The
    values themselves are in the index's :class:`ValueStore`; this holds their numbers.

    >>> versions = KeyVersions()
    >>> [versions.add(number) for number in (3, 1, 2, 4)]  # the numbers whose values go
    [[], [], [1], [2]]
    >>> versions.numbers, versions.held
    ([1, 2, 3, 4], [3, 4])
    >>> versions.remove(4), versions.numbers, versions.held, versions.latest
    (True, [1, 2, 3], [3], 3)
    """

    numbers: list[int] = dataclasses.field(default_factory=list)
    """Every stored version number, ascending."""
    held: list[int] = dataclasses.field(default_factory=list)
    """The numbers of the (at most ``kept``) newest versions whose values are held, ascending."""
    kept: int | None = VALUES_KEPT
    """How many of the newest values to hold (None: every one, for a one-off read)."""

    @property
    def latest(self) -> int:
        """The newest version number (-1 if none is left)."""
        return self.numbers[-1] if self.numbers else -1

    def add(self, number: int) -> list[int]:
        """Hold version ``number``; return the numbers whose values are no longer held."""
        for numbers in (self.numbers, self.held):
            at = bisect.bisect_left(numbers, number)
            if at == len(numbers) or numbers[at] != number:
                numbers.insert(at, number)
        dropped = 0 if self.kept is None else max(0, len(self.held) - self.kept)
        gone, self.held[:dropped] = self.held[:dropped], []
        return gone

    def remove(self, number: int) -> bool:
        """Forget version ``number`` (a tombstone); return whether its value was held.

        A value dropped before is not read back.
        """
        at = bisect.bisect_left(self.numbers, number)
        if at < len(self.numbers) and self.numbers[at] == number:
            del self.numbers[at]
        if number in self.held:
            self.held.remove(number)
            return True
        return False


class KeyIndex:
    """What one partition of the keyed-models topic holds: every key's stored versions.

    Built by applying the partition's messages in order (a tombstone deletes a version). It keeps
    every version's number but the encoded values of the ``values_kept`` newest only (see
    :class:`KeyVersions`; default :data:`VALUES_KEPT`, None for all), in ``values`` (default: a
    :class:`MemoryValues`); an older version's value must then be read from the topic again.
    """

    def __init__(
        self, values_kept: int | None = VALUES_KEPT, values: ValueStore | None = None
    ) -> None:
        self._keys: dict[str, KeyVersions] = {}
        self._kept = values_kept
        self._values: ValueStore = MemoryValues() if values is None else values

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def apply(self, raw_key: bytes, value: bytes | None) -> None:
        """Take one message of the topic (``value`` None: a tombstone)."""
        model_key, version = split_record_key(raw_key)
        held = self._keys.get(model_key)
        if value is None:
            if held is not None:
                if held.remove(version):
                    self._values.delete(raw_key)
                if not held.numbers:
                    del self._keys[model_key]
            return
        if held is None:
            held = self._keys[model_key] = KeyVersions(kept=self._kept)
        self._values.put(record_key(model_key, version), value)
        for gone in held.add(version):
            self._values.delete(record_key(model_key, gone))

    def versions(self, model_key: str) -> list[int]:
        """Return the stored versions of ``model_key``, oldest first."""
        held = self._keys.get(model_key)
        return list(held.numbers) if held else []

    def value(self, model_key: str, version: int | None = None) -> bytes | None:
        """Return the value of a version of ``model_key`` (default: its latest), or None.

        None also for a stored version whose value this index no longer holds (an older one).
        """
        held = self._keys.get(model_key)
        if held is None:
            return None
        number = held.latest if version is None else version
        return self._values.get(record_key(model_key, number)) if number in held.held else None

    def keys(self) -> Iterator[str]:
        """Every key with a stored version."""
        return iter(self._keys)


def tombstones(index: KeyIndex, model_key: str, keep_last: int) -> list[bytes]:
    """Return the record keys of the versions of ``model_key`` to delete.

    Kept: the newest (the one the key serves) and ``keep_last`` besides it, as for the global
    model's versions.

    >>> index = KeyIndex()
    >>> for v in range(5):
    ...     index.apply(record_key("k", v), b"x")
    >>> tombstones(index, "k", keep_last=2)
    [b'k/0', b'k/1']
    """
    versions = index.versions(model_key)
    return [record_key(model_key, v) for v in versions[: max(0, len(versions) - keep_last - 1)]]


def key_row(index: KeyIndex, model_key: str, partition: int) -> dict[str, Any] | None:
    """Return one key's row for ``models keys``: its newest stored version's header, summed up.

    None if the key has no version left, or its newest one is not a keyed version's.

    >>> index = KeyIndex()
    >>> _, value = encode_version(Settings(), "k", 0, Learner(Settings()), "reset", at=2.0)
    >>> index.apply(record_key("k", 0), value)
    >>> row = key_row(index, "k", partition=1)
    >>> row["key"], row["version"], row["versions"], row["examples_learned"], row["quality"]
    ('k', 0, [0], 0, {'metric': 'accuracy', 'value': None, 'window': 0})
    """
    value = index.value(model_key)
    if value is None:
        return None
    try:
        header = read_header(value)
    except CorruptVersion:
        return None
    return {
        "key": model_key,
        "partition": partition,
        "version": header.get("version"),
        "versions": index.versions(model_key),
        "examples_learned": header.get("examples_learned", 0),
        "quality": header.get("quality") or {"metric": None, "value": None, "window": 0},
        "reason": header.get("reason"),
        "at": header.get("at"),
    }


def key_summary(rows: list[dict[str, Any]], top: int) -> dict[str, Any]:
    """Return the count of keys, the ``top`` keys by examples learned, and the worst by quality.

    Worst: the lowest accuracy, or the highest MAE (keys with no quality yet are left out).

    >>> rows = [{"key": k, "examples_learned": n, "quality": {"metric": "accuracy", "value": q}}
    ...         for k, n, q in (("a", 5, 0.9), ("b", 9, 0.5), ("c", 1, None))]
    >>> summary = key_summary(rows, top=2)
    >>> summary["keys"], [r["key"] for r in summary["top_by_examples"]]
    (3, ['b', 'a'])
    >>> [r["key"] for r in summary["worst_by_quality"]]
    ['b', 'a']
    """
    by_examples = sorted(rows, key=lambda r: (-int(r["examples_learned"] or 0), r["key"]))
    rated = [r for r in rows if r["quality"].get("value") is not None]

    def badness(row: dict[str, Any]) -> tuple[float, str]:
        value = float(row["quality"]["value"])
        return (value if row["quality"].get("metric") == "accuracy" else -value, row["key"])

    return {
        "keys": len(rows),
        "top_by_examples": by_examples[:top],
        "worst_by_quality": sorted(rated, key=badness)[:top],
    }
