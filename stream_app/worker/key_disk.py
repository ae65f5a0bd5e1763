"""The keyed models' held values on the worker's disk (``model.key_store = "disk"``), in RocksDB.

A worker holds, for every key of the partitions it owns, the encoded values of its newest
versions (:class:`~stream_app.registry.keyed.KeyIndex`): about 2 x 4.5 KB per key with the
shipped model, so memory grows with the number of keys. With this store the values live in one
RocksDB database (through rocksdict) per worker, at ``<app.data_dir>/keyed/<app.id>``, and memory
holds only version numbers per key.

The database is a cache, never a source of truth: the compacted topic ``<app id>-keyed-models``
is. It is wiped when the worker starts, and a partition's range is wiped when the partition is
assigned (then rebuilt by reading the topic, as in memory) or leaves; so nothing a former run left
is ever read, and the write-ahead log is off (a crash loses nothing the topic does not hold).
Keys are the partition (4 bytes, big-endian, so a partition is one range) and the record key;
values are the raw bytes as read from the topic. rocksdict runs in raw mode: it stores and
returns bytes and unpickles nothing; a value read back is decoded by
:func:`~stream_app.registry.keyed.decode_version` only (checksum, signature, safe unpickler).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     disk = DiskValues(Path(tmp) / "keyed")
...     values = disk.partition(3)
...     values.put(b"u-1/0", b"state")
...     found = values.get(b"u-1/0"), disk.partition(2).get(b"u-1/0")
...     disk.clear(3)
...     found, values.get(b"u-1/0")
...     disk.close()
((b'state', None), None)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from rocksdict import Options, Rdict, RdictIter, WriteOptions

from stream_app.errors import ConfigError
from stream_app.settings import Settings

__all__ = ["DiskValues", "PartitionValues", "store_path"]

log = logging.getLogger(__name__)

PARTITION_BYTES: Final = 4
"""Width of the partition prefix of every key (big-endian: a partition's keys are one range)."""


def store_path(settings: Settings) -> Path:
    """Return where a worker keeps its keyed values on disk: one directory per app id.

    >>> store_path(Settings()).as_posix()
    '.stream_app/keyed/stream-app'
    """
    return Path(settings.app.data_dir) / "keyed" / settings.app.id


def _prefix(partition: int) -> bytes:
    return partition.to_bytes(PARTITION_BYTES, "big")


class PartitionValues:
    """One partition's values in a :class:`DiskValues`: a ``ValueStore`` for its ``KeyIndex``."""

    def __init__(self, db: Rdict, partition: int) -> None:
        self._db = db
        self._prefix = _prefix(partition)

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key`` in this partition, or None."""
        value = self._db.get(self._prefix + key)
        return value if isinstance(value, bytes) else None

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` in this partition."""
        self._db.put(self._prefix + key, value)

    def delete(self, key: bytes) -> None:
        """Forget ``key`` in this partition."""
        self._db.delete(self._prefix + key)


class DiskValues:
    """The worker's RocksDB database of keyed values, wiped when opened (see the module)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        try:
            Rdict.destroy(str(path), options)  # whatever a former run left: the topic rules
            self._db = Rdict(str(path), options)
        except Exception as exc:  # rocksdict raises plain Exception (a lock held, a bad path)
            raise ConfigError(
                f"cannot open the keyed models' disk store {path} ({exc}); is another worker "
                "using the same app.data_dir and app.id? Give each worker its own app.data_dir"
            ) from exc
        writes = WriteOptions()
        # Rebuilt from the topic on every start: no log to replay. (A property, typed a method.)
        writes.disable_wal = True  # type: ignore[method-assign,assignment]
        self._db.set_write_options(writes)
        log.info("keyed models' values are kept on disk in %s (rebuilt from the topic)", path)

    def partition(self, partition: int) -> PartitionValues:
        """Return the values of ``partition``."""
        return PartitionValues(self._db, partition)

    def clear(self, partition: int) -> None:
        """Forget every value of ``partition`` (assigned anew, or gone)."""
        self._db.delete_range(_prefix(partition), _prefix(partition + 1))

    def count(self) -> int:
        """How many values the database holds (every partition; it walks them: for tests)."""
        walk: RdictIter = self._db.iter()
        walk.seek_to_first()
        held = 0
        while walk.valid():
            held += 1
            walk.next()
        return held

    def close(self) -> None:
        """Close the database (its files stay until the next start wipes them)."""
        self._db.close()
