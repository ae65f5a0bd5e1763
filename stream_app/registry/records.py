"""The model registry's pure core: version records, blob encoding, retention, and the view.

A version is stored as keys of one table (whose changelog topic is the registry in Kafka):

- ``<model>/v<version>``           the :class:`VersionRecord`, JSON (no blob);
- ``<model>/v<version>/c<i>``      chunk *i* of the blob: pickled state, zlib-compressed, split so
  that no message exceeds the broker's limit; the record holds the SHA-256 of the whole and, with
  ``registry.signing_key``, its HMAC (:mod:`stream_app.registry.signing`);
- ``<model>/pin``                  the pinned version (JSON), written by operators.

:class:`Registry` is the in-memory view built by applying those keys in changelog order; it holds
no Kafka code, so the CLI, the worker and the tests share it. Blobs are unpickled by
:mod:`stream_app.registry.safeload`, which resolves only allowlisted globals: bytes from Kafka run
no code.

>>> blob = encode_blob({"weights": [1.0, 2.0]}, chunk_bytes=16)
>>> len(blob.chunks) > 1, decode_blob(blob.chunks, blob.sha256)
(True, {'weights': [1.0, 2.0]})
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
import zlib
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, NamedTuple, TypedDict

import orjson

from stream_app import __version__
from stream_app.errors import CORRUPT, CorruptVersion
from stream_app.registry import signing
from stream_app.registry.safeload import UntrustedGlobal, loads
from stream_app.settings import RegistrySettings

__all__ = [
    "CORRUPT",
    "LOAD_FAILURES",
    "REASONS",
    "STATUSES",
    "TABLE_NAME",
    "UNTRUSTED",
    "Blob",
    "CorruptVersion",
    "Registry",
    "VersionRecord",
    "changelog_topic",
    "chunk_key",
    "decode_blob",
    "encode_blob",
    "minor",
    "pack",
    "pin_key",
    "record_key",
    "retained",
    "river_version",
    "split_blob",
    "written_by",
]

log = logging.getLogger(__name__)

REASONS: Final = (
    "periodic", "drift", "promotion", "rollback", "manual", "shutdown", "handover", "import",
    "factory_change", "canary", "retrain",
)  # fmt: skip
STATUSES: Final = ("serving", "shadow", "retired")
UNTRUSTED: Final = "untrusted"
LOAD_FAILURES: Final = (CORRUPT, UNTRUSTED, signing.UNSIGNED, signing.BAD_SIGNATURE)
"""Reasons a stored version does not load (``version_load_failures_total{reason}``)."""
TABLE_NAME: Final = "models"
"""The Faust table the registry is written through (:mod:`stream_app.registry.store`)."""


def river_version() -> str:
    """Return the installed River's version ("unknown" for a vendored copy)."""
    try:
        return version("river")
    except PackageNotFoundError:  # a vendored copy: nothing to compare
        return "unknown"


class WrittenBy(TypedDict):
    """The software versions a new record stores."""

    river_version: str
    stream_app_version: str


def written_by() -> WrittenBy:
    """Return the versions a new record stores: River's and stream_app's."""
    return {"river_version": river_version(), "stream_app_version": __version__}


def minor(text: str) -> str:
    """Return the ``major.minor`` of a version string.

    >>> minor("0.26.1"), minor("unknown")
    ('0.26', 'unknown')
    """
    return ".".join(text.split(".")[:2])


@dataclasses.dataclass(frozen=True)
class VersionRecord:
    """Everything known about one stored version, except its blob."""

    model: str
    version: int
    parent: int | None
    created_at: float
    examples_learned: int
    quality: dict[str, Any]
    """``{"metric": "accuracy"|"mae", "value": float|None, "window": labels}``."""
    reason: str
    status: str
    size: int
    """Bytes of the compressed blob."""
    sha256: str
    chunks: int
    factory: str
    """The factory that built this version's model (path and arguments, see ``factory_spec``)."""
    task: str
    signature: str = ""
    """HMAC-SHA256 of the blob under ``registry.signing_key``; empty when written without one."""
    river_version: str = ""
    """River's version where the blob was written (empty: written before versions were recorded)."""
    stream_app_version: str = ""
    """stream_app's version where the blob was written."""
    learned_through: int | None = None
    """Offset in the learning log of the last example this version learned (-1: none; None:
    written before the learning log existed)."""
    configured_factory: str = ""
    """``model.factory`` (with its arguments) of the worker that wrote this version; empty in
    versions written before it was recorded."""
    on_factory_change: str = ""
    """``model.on_factory_change`` of that worker: with ``configured_factory``, the change that
    was already acted on (a restart acts again only when either differs)."""
    features: int | None = None
    """Distinct inputs the model tracked when stored (None: stored before this was recorded)."""

    def to_json(self) -> bytes:
        """Encode as the table value."""
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> VersionRecord:
        """Decode a table value; unknown fields (from newer writers) are ignored."""
        data = orjson.loads(raw)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def summary(self) -> dict[str, Any]:
        """Return the record as a person or a JSON client reads it (no checksum, chunk count)."""
        out = dataclasses.asdict(self)
        del out["sha256"], out["chunks"], out["signature"]
        return out


class Blob(NamedTuple):
    """An encoded blob: its chunks, checksum, size and signature (empty without a key)."""

    chunks: list[bytes]
    sha256: str
    size: int
    signature: str = ""


def encode_blob(state: Any, chunk_bytes: int, level: int = 3, key: str = "") -> Blob:
    """Pickle, compress, checksum, sign (with a key) and split ``state``."""
    return split_blob(pack(state, level), chunk_bytes, key)


def pack(state: Any, level: int = 3) -> bytes:
    """Pickle and compress ``state``: the costly half of encoding (checkpoints do it off-loop)."""
    return compress(pickled(state), level)


def pickled(state: Any) -> bytes:
    """Pickle ``state``: the first half of :func:`pack` (it holds the GIL; it is the snapshot)."""
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def compress(raw: bytes, level: int = 3) -> bytes:
    """Compress a pickle: the second half of :func:`pack` (zlib releases the GIL meanwhile).

    >>> compress(pickled({"a": 1})) == pack({"a": 1})
    True
    """
    return zlib.compress(raw, level)


def split_blob(packed: bytes, chunk_bytes: int, key: str = "") -> Blob:
    """Checksum (and, with a key, sign) packed bytes; split them into ``chunk_bytes`` pieces.

    >>> blob = split_blob(b"abcde", 2)
    >>> blob.chunks, blob.size
    ([b'ab', b'cd', b'e'], 5)
    """
    chunks = [packed[i : i + chunk_bytes] for i in range(0, len(packed), chunk_bytes)] or [b""]
    return Blob(chunks, hashlib.sha256(packed).hexdigest(), len(packed), signing.sign(packed, key))


def decode_blob(
    chunks: list[bytes],
    sha256: str,
    signature: str = "",
    key: str = "",
    trusted_modules: Iterable[str] = (),
) -> Any:
    """Join, verify and safely unpickle a blob; raise :class:`CorruptVersion` if anything is wrong.

    With a ``key``, the blob must carry its HMAC (``signature``); the pickle may name only the
    globals :mod:`stream_app.registry.safeload` allows, plus those of ``trusted_modules``.

    >>> blob = encode_blob([1, 2, 3], chunk_bytes=8)
    >>> decode_blob([blob.chunks[0][:-1] + b"!"] + blob.chunks[1:], blob.sha256)
    Traceback (most recent call last):
    ...
    stream_app.errors.CorruptVersion: the blob fails its checksum
    """
    packed = b"".join(chunks)
    if hashlib.sha256(packed).hexdigest() != sha256:
        raise CorruptVersion("the blob fails its checksum")
    refusal = signing.verify(packed, signature, key)
    if refusal is not None:
        raise CorruptVersion(f"the blob is refused: {refusal}", refusal)
    try:
        return loads(zlib.decompress(packed), trusted_modules)
    except UntrustedGlobal as exc:
        raise CorruptVersion(f"the blob is refused: {exc}", UNTRUSTED) from exc
    except Exception as exc:  # a corrupt or incompatible pickle: the caller falls back
        raise CorruptVersion(f"the blob does not load: {type(exc).__name__}: {exc}") from exc


def record_key(model: str, version: int) -> bytes:
    """Table key of a version record.

    >>> record_key("default", 7)
    b'default/v00000007'
    """
    return f"{model}/v{version:08d}".encode()


def chunk_key(model: str, version: int, index: int) -> bytes:
    """Table key of one chunk of a version's blob."""
    return f"{model}/v{version:08d}/c{index:05d}".encode()


def pin_key(model: str) -> bytes:
    """Table key of a model's pinned version."""
    return f"{model}/pin".encode()


def changelog_topic(app_id: str) -> str:
    """Name the registry in Kafka: the changelog topic of the ``models`` table of ``app_id``.

    Faust names a table's changelog ``<app id>-<table>-changelog``; the worker checks that its
    table agrees (:class:`~stream_app.registry.store.RegistryStore`), and everything that reads
    the registry without Faust (the CLI, tests) takes the name from here.

    >>> changelog_topic("stream-app")
    'stream-app-models-changelog'
    """
    return f"{app_id}-{TABLE_NAME}-changelog"


def retained(
    records: Iterable[VersionRecord], keep_last: int, protected: Iterable[int | None]
) -> set[int]:
    """Versions to keep: the newest ``keep_last``, plus any protected one (serving, pinned, shadow).

    >>> recs = [VersionRecord("m", v, None, 0, 0, {}, "periodic", "retired", 0, "", 1, "", "")
    ...         for v in range(1, 8)]
    >>> sorted(retained(recs, keep_last=3, protected=[2, None]))
    [2, 5, 6, 7]
    """
    versions = sorted(r.version for r in records)
    keep = set(versions[-keep_last:]) if keep_last > 0 else set()
    return keep | {v for v in protected if v is not None and v in versions}


class Registry:
    """The registry as seen from the changelog: records, chunks and pins by model.

    ``settings`` gives the signing key and trusted modules that loading a version checks.
    """

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.records: dict[str, dict[int, VersionRecord]] = {}
        self._chunks: dict[tuple[str, int], dict[int, bytes]] = {}
        self.pins: dict[str, int | None] = {}
        self._settings = settings if settings is not None else RegistrySettings()
        self.on_foreign: Callable[[VersionRecord], None] | None = None
        """Called when a version written by another River minor version loads (to count it)."""

    def apply(self, key: bytes, value: bytes | None) -> str | None:
        """Apply one changelog message (``None`` deletes); return the model it touched."""
        text = key.decode()
        model, _, rest = text.partition("/")
        if rest == "pin":
            self.pins[model] = None if value is None else orjson.loads(value)["version"]
            return model
        if not rest.startswith("v"):
            return None
        version_text, _, chunk = rest[1:].partition("/c")
        version = int(version_text)
        if chunk:
            parts = self._chunks.setdefault((model, version), {})
            if value is None:
                parts.pop(int(chunk), None)
            else:
                parts[int(chunk)] = value
        elif value is None:
            self.records.get(model, {}).pop(version, None)
            self._chunks.pop((model, version), None)
        else:
            self.records.setdefault(model, {})[version] = VersionRecord.from_json(value)
        return model

    def versions(self, model: str) -> list[VersionRecord]:
        """Every stored version of ``model``, oldest first."""
        return [r for _, r in sorted(self.records.get(model, {}).items())]

    def latest(self, model: str) -> int:
        """Return the highest version number stored (0 if none)."""
        return max(self.records.get(model, {}), default=0)

    def record(self, model: str, version: int) -> VersionRecord | None:
        """One version's record, if stored."""
        return self.records.get(model, {}).get(version)

    def newest(self, model: str, status: str = "serving") -> VersionRecord | None:
        """Return the newest version written with ``status`` (pins aside)."""
        candidates = [r for r in self.versions(model) if r.status == status]
        return candidates[-1] if candidates else None

    def serving(self, model: str) -> VersionRecord | None:
        """Return the version that should serve: the pinned one, else the newest serving one."""
        pinned = self.pins.get(model)
        if pinned is not None and self.record(model, pinned) is not None:
            return self.record(model, pinned)
        return self.newest(model, "serving")

    def load(self, model: str, version: int) -> Any:
        """Decode a version's blob; raise :class:`CorruptVersion` if it cannot be had."""
        record = self.record(model, version)
        if record is None:
            raise CorruptVersion(f"{model} v{version} is not stored")
        parts = self._chunks.get((model, version), {})
        if len(parts) != record.chunks:
            raise CorruptVersion(f"{model} v{version} has {len(parts)} of {record.chunks} chunks")
        s = self._settings
        state = decode_blob(
            [parts[i] for i in range(record.chunks)],
            record.sha256,
            record.signature,
            s.signing_key,
            s.trusted_modules,
        )
        self._check_river(record)
        return state

    def _check_river(self, record: VersionRecord) -> None:
        """Warn (and count) when a version was written by another River minor version."""
        mine = river_version()
        if not record.river_version or minor(record.river_version) == minor(mine):
            return
        log.warning(
            "model %s v%d was written by River %s; this is River %s: it loaded, check its answers",
            record.model,
            record.version,
            record.river_version,
            mine,
        )
        if self.on_foreign is not None:
            self.on_foreign(record)
