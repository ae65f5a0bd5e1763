"""The replay step: learn the learning log after a stored version, exactly as it was first learned.

The writer appends every example it gives its learner to the learning log (one partition, so one
order), the examples of a batch in one message (older logs: one message per example; both are
read), and each version records ``learned_through``, the log offset of the last message it had
learned. A version is taken only between batches, so it has learned a message whole or not at
all. A writer that takes over (after a crash, a rebalance or a restart) restores the newest
version and learns the log from ``learned_through + 1`` before anything new, so nothing learned
since that checkpoint is lost; the learned-id memory, part of the version and refilled by the
replay, refuses an event served again after the crash. ``models rebuild`` replays the same way from
an older version (or a fresh model) to rebuild any version while the log still holds its examples.

Replaying is learning with the same arguments in the same order, so the guard, the drift monitor
and a challenger decide as they did the first time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, NamedTuple, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.core.example import LabeledExample
from stream_app.core.factory import parse_spec
from stream_app.core.learn import Learner
from stream_app.core.learning_log import decode_log_entries
from stream_app.errors import CorruptVersion, RejectedMessage, StreamAppError
from stream_app.kafka.read import read_to_end
from stream_app.kafka.security import client_kwargs
from stream_app.registry.records import Registry, VersionRecord
from stream_app.settings import Settings

__all__ = [
    "BOUNDARIES",
    "Logged",
    "Replayed",
    "learn_logged",
    "logged_examples",
    "rebuild_learner",
    "replay",
    "replay_log",
]

log = logging.getLogger(__name__)

BOUNDARIES: Final = frozenset(
    {"rollback", "promotion", "import", "manual", "factory_change", "canary", "retrain"}
)
"""Version reasons that are not their parent plus the log: an operator swapped the state."""


class LogRecord(Protocol):
    """A learning-log record: its offset and value."""

    @property
    def offset(self) -> int:
        """Its offset in the log."""

    @property
    def value(self) -> bytes | None:
        """The encoded examples (a batch's, or one)."""


class Replayed(NamedTuple):
    """What a replay did."""

    learned: int
    """Entries given to the learner."""
    corrupt: list[Any]
    """Records that were not examples (to dead-letter)."""


def replay(learner: Learner, records: Iterable[LogRecord]) -> Replayed:
    """Learn ``records``' examples in order, as the writer did; move ``learned_through`` along.

    >>> from stream_app.core.learning_log import encode_log_batch, encode_log_entry
    >>> from stream_app.core.predict import NO_ANSWER
    >>> from stream_app.settings import Settings
    >>> class Rec(NamedTuple):
    ...     offset: int
    ...     value: bytes
    >>> learner = Learner(Settings().replace(guard={"enabled": False}))
    >>> old = encode_log_entry(LabeledExample("e-1", {"x": 1.0}, True, NO_ANSWER, None, at=5.0))
    >>> two = [LabeledExample(f"e-{i}", {"x": 1.0}, True, NO_ANSWER, None, 6.0) for i in (2, 3)]
    >>> [batch] = encode_log_batch(two, 1 << 16)
    >>> replay(learner, [Rec(0, old), Rec(1, b"{oops"), Rec(2, batch)]).learned
    3
    >>> learner.learned_through, learner.has_learned("e-3"), learner.serving.model.examples_learned
    (2, True, 3)
    """
    learned = 0
    corrupt: list[Any] = []
    for record in records:
        learner.learned_through = record.offset
        try:
            examples = decode_log_entries(record.value or b"")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error("learning log entry %d is not an example (%s); skipped", record.offset, exc)
            corrupt.append(record)
            continue
        for example in examples:
            learn_logged(learner, example, record.offset)
        learned += len(examples)
    return Replayed(learned, corrupt)


class Logged(NamedTuple):
    """One example of the learning log and the offset of the message that holds it."""

    offset: int
    example: LabeledExample


def logged_examples(records: Iterable[LogRecord]) -> list[Logged]:
    """Return the examples ``records`` hold, in log order (a record that holds none: logged).

    >>> from stream_app.core.learning_log import encode_log_batch
    >>> from stream_app.core.predict import NO_ANSWER
    >>> class Rec(NamedTuple):
    ...     offset: int
    ...     value: bytes
    >>> two = [LabeledExample(f"e-{i}", {}, True, NO_ANSWER, None, 6.0) for i in (1, 2)]
    >>> [(o, e.event_id) for o, e in logged_examples([Rec(7, b"[]"), *(Rec(8, m)
    ...     for m in encode_log_batch(two, 1 << 16))])]
    [(8, 'e-1'), (8, 'e-2')]
    """
    logged: list[Logged] = []
    for record in records:
        try:
            examples = decode_log_entries(record.value or b"")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error("learning log entry %d is not an example (%s); skipped", record.offset, exc)
            continue
        logged += [Logged(record.offset, example) for example in examples]
    return logged


def learn_logged(learner: Learner, example: LabeledExample, offset: int) -> None:
    """Learn one logged example again; what the learner refused or raised on, it did so before."""
    try:
        learner.learn(example)
    except RejectedMessage as rejected:  # logged entries were taken once; not expected
        log.warning("learning log entry %d refused on replay: %s", offset, rejected)
    except Exception as exc:  # the estimator raised, as it did when the entry was logged
        log.warning("learning log entry %d: the model raised %r again", offset, exc)


async def replay_log(
    settings: Settings,
    learner: Learner,
    until: int | None = None,
    on_corrupt: Callable[[Any], Awaitable[None]] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Replayed:
    """Replay the log from ``learner.learned_through + 1`` to ``until`` (default: its end now).

    ``on_progress(examples_left, seconds_behind)`` is told after each fetched batch (the learner
    lag during a takeover; the examples left are estimated from the messages left and the
    examples per message so far), and ``(0, 0.0)`` at the end.

    Raises ``StreamAppError`` when the log no longer holds the first entry needed (retention).
    """
    tp = TopicPartition(settings.learning_log_topic, 0)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, client_id=f"{settings.app.id}-replay"
    )
    await consumer.start()
    learned, corrupt = 0, []
    try:
        consumer.assign([tp])
        start = learner.learned_through + 1
        end = (await consumer.end_offsets([tp]))[tp] if until is None else until + 1
        if start >= end:
            return Replayed(0, [])
        first = (await consumer.beginning_offsets([tp]))[tp]
        if first > start:
            raise StreamAppError(
                f"the learning log starts at offset {first}; offsets {start}..{first - 1} are "
                f"gone (retention): raise the retention of {tp.topic} to replay this far"
            )
        started, read = time.monotonic(), 0
        async for _, records in read_to_end(consumer, [tp], start={tp: start}, end={tp: end}):
            done = replay(learner, records)
            read += len(records)
            if on_progress is not None:
                per_message = (learned + done.learned) / read
                left = round((end - 1 - records[-1].offset) * per_message)
                on_progress(left, time.time() - records[-1].timestamp / 1e3)
            learned += done.learned
            corrupt += done.corrupt
            for record in done.corrupt:
                if on_corrupt is not None:
                    await on_corrupt(record)
        if on_progress is not None:
            on_progress(0, 0.0)
        log.info(
            "replayed %d examples of the learning log (offsets %d..%d) in %.2fs",
            learned,
            start,
            end - 1,
            time.monotonic() - started,
        )
    finally:
        await consumer.stop()
    return Replayed(learned, corrupt)


def base_of(registry: Registry, name: str, target: VersionRecord) -> VersionRecord | None:
    """Find the nearest stored version whose learner state a replay of the log can start from.

    Follows ``parent`` links up to the first stored serving version (a shadow version holds a
    challenger, not a learner). A version made by an operator (:data:`BOUNDARIES`) is not its
    parent plus the log: it is its own base. ``None`` means: a fresh model, from the log's start.
    """
    current = target
    while True:
        if current is not target and current.status != "shadow":
            return current
        if current.reason in BOUNDARIES:
            if current.status == "shadow":
                raise StreamAppError(
                    f"{name} v{target.version} cannot be rebuilt from the log: it descends from "
                    f"v{current.version}, which came in by {current.reason}"
                )
            return current
        parent = None if current.parent is None else registry.record(name, current.parent)
        if parent is None:
            return None
        if parent.learned_through is None:
            raise StreamAppError(
                f"{name} v{parent.version} was stored before the learning log existed"
            )
        current = parent


async def rebuild_learner(
    settings: Settings, registry: Registry, name: str, version: int
) -> tuple[Learner, VersionRecord | None]:
    """Rebuild the learner as it was when ``version`` was stored; return it and its base.

    Starts from the nearest loadable ancestor (or a fresh model from the version's factory) and
    replays the learning log up to the version's ``learned_through``.
    """
    target = registry.record(name, version)
    if target is None:
        raise StreamAppError(f"{name} v{version} is not stored")
    if target.learned_through is None:
        raise StreamAppError(f"{name} v{version} was stored before the learning log existed")
    model: dict[str, Any] = {"name": name}
    if target.factory:  # the factory that built it, with its arguments
        model["factory"], model["factory_params"] = parse_spec(target.factory)
    configured = settings.replace(model=model)
    base = base_of(registry, name, target)
    if base is None:
        learner = Learner(configured)
    else:
        try:
            state = registry.load(name, base.version)
            learner = Learner.restore(configured, state["learner"], base.version + 1)
        except (CorruptVersion, KeyError, TypeError, AttributeError) as exc:
            raise StreamAppError(f"{name} v{base.version} does not load: {exc}") from None
        learner.serving.model.version = base.version
        learner.learned_through = base.learned_through if base.learned_through is not None else -1
    await replay_log(configured, learner, until=target.learned_through)
    learner.flush()
    if target.status == "shadow" and learner.challenger is not None:
        learner.challenger.model.version = version
    else:
        learner.serving.model.version = version
    return learner, base
