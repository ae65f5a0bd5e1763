"""The checkpoint step: when the learner's state becomes a stored version, and how it comes back.

A checkpoint is due after ``checkpoint_every_examples`` labels or ``checkpoint_every_s`` seconds
with something learned, whichever comes first, and at a clean shutdown. It gives the serving model
(and a challenger, if any) new version numbers and writes, in this order, the blob chunks, the
version records, the retirement of the previous serving record, and tombstones for versions past
the retention: a reader never sees a record whose chunks are not there yet.

One path makes every checkpoint: :meth:`Checkpointer.snapshot` numbers the versions and starts
encoding them (an :data:`Encoder`: in a forked child, or inline), then
:meth:`Checkpointer.checkpoint` awaits the encoding and turns it into table writes.
:func:`restore_learner` loads the newest version that decodes, skipping corrupt ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Final, NoReturn

from stream_app.core.factory import spec_of
from stream_app.core.learn import Contender, Learner
from stream_app.core.model_size import model_inputs
from stream_app.errors import CheckpointError
from stream_app.registry.records import (
    CORRUPT,
    CorruptVersion,
    Registry,
    VersionRecord,
    chunk_key,
    compress,
    pack,
    pickled,
    record_key,
    retained,
    split_blob,
    written_by,
)
from stream_app.settings import Settings

__all__ = [
    "Checkpoint",
    "Checkpointer",
    "Encoder",
    "Plan",
    "Snapshot",
    "Write",
    "encode_in_child",
    "encode_inline",
    "fork_encoder",
    "load_model",
    "restore_learner",
]

log = logging.getLogger(__name__)

FORMAT: Final = 1
Write = tuple[bytes, bytes | None]
"""A table write: key and value (``None`` deletes)."""
Encoder = Callable[[list[Any], int], Awaitable[list[bytes]]]
"""How a snapshot's states are packed (at a compression level): :func:`fork_encoder` packs them
in a forked child, :func:`encode_inline` on the caller's thread; either way the snapshot is taken
when the encoder is called, and the packed states come when its result is awaited."""


@dataclass(frozen=True)
class _Version:
    """What a version's record will say, taken when the snapshot was."""

    status: str
    number: int
    parent: int
    examples_learned: int
    quality: dict[str, Any]
    task: str
    learned_through: int
    factory: str
    """The canonical name of the factory that built the model ("" if unknown)."""
    features: int


@dataclass(frozen=True)
class Plan:
    """A snapshot to encode (one state per version) and what its records will say."""

    versions: list[_Version]
    states: list[Any]
    started: float


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint's plan and its encoding under way (a forked child's, or done already)."""

    plan: Plan
    encoding: Awaitable[list[bytes]]


@dataclass(frozen=True)
class Checkpoint:
    """What one checkpoint wrote: the versions made, their records and the table writes."""

    records: list[VersionRecord]
    writes: list[Write]
    bytes: int
    seconds: float


class Checkpointer:
    """Decides when a checkpoint is due and turns the learner's state into table writes."""

    def __init__(self, settings: Settings, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self._encoder = encoder
        """Always this encoder; ``None``: in a child or inline by size (see :meth:`in_child`)."""
        self._last_at = time.monotonic()
        self._last_seen = 0
        self.last_bytes: int | None = None
        """Encoded size of the last checkpoint's serving state; None until one is known."""

    def due(self, learner: Learner, now: float) -> bool:
        """Tell whether enough was learned, or enough time passed with something learned."""
        s = self.settings.registry
        since = learner.examples_seen - self._last_seen
        return since > 0 and (
            since >= s.checkpoint_every_examples or now - self._last_at >= s.checkpoint_every_s
        )

    def start_from(self, learner: Learner, stored_bytes: int | None = None) -> None:
        """Count from a restored learner: what it knew is stored already (in ``stored_bytes``)."""
        self._last_at, self._last_seen = time.monotonic(), learner.examples_seen
        if stored_bytes is not None:
            self.last_bytes = stored_bytes

    def in_child(self) -> bool:
        """Tell whether the next checkpoint is big enough to be worth encoding in a child."""
        s = self.settings.registry
        return s.encode_in_child and (
            self.last_bytes is None or self.last_bytes >= s.child_min_bytes
        )

    def dirty(self, learner: Learner) -> bool:
        """Tell whether something was learned since the last checkpoint."""
        return learner.examples_seen > self._last_seen

    def snapshot(self, learner: Learner, registry: Registry) -> Snapshot:
        """Take a checkpoint's snapshot now: plan its versions and start encoding them.

        Call it where the learner has learned exactly what the learning log has acknowledged
        (between batches), so that the versions' ``learned_through`` is exact.
        """
        plan = self.plan(learner, registry)
        encoder = self._encoder or (fork_encoder if self.in_child() else encode_inline)
        return Snapshot(plan, encoder(plan.states, self.settings.registry.compression_level))

    async def checkpoint(self, snapshot: Snapshot, registry: Registry, reason: str) -> Checkpoint:
        """Await a snapshot's encoding and turn it into the table writes of its new versions."""
        packed = await snapshot.encoding
        return self.finish(snapshot.plan, packed, registry, reason)

    def plan(self, learner: Learner, registry: Registry) -> Plan:
        """Give the new versions numbers and take the snapshot; encoding may happen elsewhere.

        The snapshot holds the live objects: encode it before the learner learns again (in a
        forked child, see :func:`encode_in_child`, the fork is that instant).
        """
        name = self.settings.model.name
        challenger = learner.challenger
        # New numbers first: the snapshot must carry the versions it is stored as.
        parents = {"serving": learner.serving.model.version}
        learner.serving.model.version = learner.allocate_version(registry.latest(name))
        if challenger is not None:
            parents["shadow"] = challenger.model.version
            challenger.model.version = learner.allocate_version(registry.latest(name))
        contenders = [("serving", learner.serving)]
        states: list[Any] = [{"format": FORMAT, "learner": learner.snapshot()}]
        if challenger is not None:
            contenders.append(("shadow", challenger))
            states.append({"format": FORMAT, "contender": challenger})
        versions = [
            _Version(
                status,
                c.model.version,
                parents[status],
                c.model.examples_learned,
                {"metric": c.quality.metric, "value": c.quality.value, "window": len(c.quality)},
                c.model.task,
                learner.learned_through,
                c.model.factory,
                model_inputs(c.model)[0],
            )
            for status, c in contenders
        ]
        self._last_at, self._last_seen = time.monotonic(), learner.examples_seen
        return Plan(versions, states, time.perf_counter())

    def finish(
        self, plan: Plan, packed: list[bytes], registry: Registry, reason: str
    ) -> Checkpoint:
        """Turn the encoded snapshot into table writes: chunks, records, retirement, tombstones."""
        s, name = self.settings, self.settings.model.name
        previous = registry.newest(name, "serving")
        configured = spec_of(s.model)
        records: list[VersionRecord] = []
        writes: list[Write] = []
        total = 0
        for version, data in zip(plan.versions, packed, strict=True):
            blob = split_blob(data, s.registry.chunk_bytes, s.registry.signing_key)
            writes += [(chunk_key(name, version.number, i), c) for i, c in enumerate(blob.chunks)]
            record = VersionRecord(
                model=name,
                version=version.number,
                parent=version.parent if registry.record(name, version.parent) else None,
                created_at=time.time(),
                examples_learned=version.examples_learned,
                quality=version.quality,
                reason=reason,
                status=version.status,
                size=blob.size,
                sha256=blob.sha256,
                chunks=len(blob.chunks),
                factory=version.factory or configured,
                task=version.task,
                learned_through=version.learned_through,
                signature=blob.signature,
                **written_by(),
                configured_factory=configured,
                on_factory_change=s.model.on_factory_change,
                features=version.features,
            )
            writes.append((record_key(name, version.number), record.to_json()))
            records.append(record)
            total += blob.size
        if previous is not None and previous.status == "serving":
            retired = replace(previous, status="retired")
            writes.append((record_key(name, previous.version), retired.to_json()))
        writes += self._expired(registry, records)
        self.last_bytes = records[0].size
        return Checkpoint(records, writes, total, time.perf_counter() - plan.started)

    def _expired(self, registry: Registry, new: list[VersionRecord]) -> list[Write]:
        """Tombstones for the versions that fall out of the retention."""
        name = self.settings.model.name
        stored = registry.versions(name)
        protected = [r.version for r in new] + [registry.pins.get(name)]
        keep = retained([*stored, *new], self.settings.registry.keep_last, protected)
        writes: list[Write] = []
        for record in stored:
            if record.version not in keep:
                writes += [(chunk_key(name, record.version, i), None) for i in range(record.chunks)]
                writes.append((record_key(name, record.version), None))
        return writes


def restore_learner(
    settings: Settings, registry: Registry
) -> tuple[Learner, VersionRecord | None, list[str]]:
    """Rebuild the learner from the newest stored learner state that loads.

    Returns the learner, the record it came from (None for a fresh one), and the reasons
    (:data:`~stream_app.registry.records.LOAD_FAILURES`) of the versions skipped on the way.
    """
    name = settings.model.name
    skipped: list[str] = []
    next_version = registry.latest(name) + 1
    for record in reversed(registry.versions(name)):
        if record.status == "shadow":
            continue  # a challenger's blob holds no learner state
        try:
            state = registry.load(name, record.version)
            learner = Learner.restore(settings, state["learner"], next_version)
        except (CorruptVersion, KeyError, TypeError, AttributeError) as exc:
            skipped.append(exc.reason if isinstance(exc, CorruptVersion) else CORRUPT)
            log.error(
                "model %s v%d cannot be restored (%s); trying an older version",
                name,
                record.version,
                exc,
            )
            continue
        learner.serving.model.version = record.version
        return learner, record, skipped
    learner = Learner(settings)
    learner.next_version = max(learner.next_version, next_version)
    return learner, None, skipped


def load_model(registry: Registry, name: str, version: int) -> Contender:
    """Load the contender (model, guard, quality) stored as ``version``, serving or shadow."""
    state = registry.load(name, version)
    if "learner" in state:
        contender: Contender = state["learner"]["serving"]
    else:
        contender = state["contender"]
    contender.model.version = version
    return contender


def encode_inline(states: list[Any], level: int) -> Coroutine[Any, Any, list[bytes]]:
    """Pickle ``states`` now, on the caller's thread; return what packs them once awaited.

    For small models, whose pickling costs less than a fork (``registry.child_min_bytes``). The
    pickle is the snapshot, taken at once; compressing it (about as long again, and zlib releases
    the GIL) happens in a thread when the result is awaited, while the serve loop goes on. The
    bytes are :func:`~stream_app.registry.records.pack`'s.
    """
    raw = [pickled(state) for state in states]

    async def ready() -> list[bytes]:
        return await asyncio.to_thread(_compress_all, raw, level)

    return ready()


def _compress_all(raw: list[bytes], level: int) -> list[bytes]:
    """Compress each pickle (in a worker thread: see :func:`encode_inline`)."""
    return [compress(state, level) for state in raw]


async def encode_in_child(states: list[Any], level: int) -> list[bytes]:
    """Pickle and compress ``states`` in a forked child, so serving goes on meanwhile."""
    return await fork_encoder(states, level)


def fork_encoder(states: list[Any], level: int) -> Coroutine[Any, Any, list[bytes]]:
    """Fork now; return what collects the packed ``states`` from the child once awaited.

    The fork is the snapshot's instant: the child sees the learner exactly as it was (copy on
    write) while the parent keeps learning. Pickling a large model (an adaptive random forest:
    tens of MB, about a second) would otherwise stop the event loop for that long.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: encode, write, exit without running the parent's cleanup
        _child_encode(read_fd, write_fd, states, level)
    os.close(write_fd)
    return asyncio.to_thread(_collect, pid, read_fd, len(states))


def _child_encode(read_fd: int, write_fd: int, states: list[Any], level: int) -> NoReturn:
    """Run in the forked child: write each packed state, length first, then exit."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)  # the parent's event loop must not hear the child's signals
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        os.close(read_fd)
        with os.fdopen(write_fd, "wb") as pipe:
            for state in states:
                data = pack(state, level)
                pipe.write(len(data).to_bytes(8, "big"))
                pipe.write(data)
        code = 0
    except BaseException as exc:  # report it on stderr; the parent sees the exit code
        os.write(2, f"checkpoint encoder failed: {type(exc).__name__}: {exc}\n".encode())
    finally:
        os._exit(code)


def _collect(pid: int, read_fd: int, count: int) -> list[bytes]:
    """Read the child's packed states (in a thread: reading releases the GIL), then reap it."""
    out: list[bytes] = []
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            for _ in range(count):
                size = int.from_bytes(pipe.read(8) or b"\0", "big")
                data = pipe.read(size)
                if len(data) != size or not size:
                    break
                out.append(data)
    finally:
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or len(out) != count:
        raise CheckpointError(f"the checkpoint encoder exited with {code}")
    return out
