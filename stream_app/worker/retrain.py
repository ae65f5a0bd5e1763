"""Retraining beside per-label learning: a fresh model trained on the tail of the learning log.

Per-label learning stays on. ``retrain.policy`` adds a second pattern: on a ``schedule`` (every
``retrain.every_s`` or ``retrain.every_examples``), or when the serving model's rolling quality
stays beyond ``retrain.quality_floor`` for ``retrain.patience`` labels, the writer reads the last
``retrain.window`` examples of the learning log (the examples history, in the order they were
learned), trains a fresh model from the factory on them in a thread (off the event loop), and
gives it to the learner as its challenger. It learns in shadow from then on and takes over by the
promotion path, or by canary (``drift.promotion``). The retrain is announced on ``model-events``
(``retrain``: why, on how many examples, how long it took) and stored as a version of its own
(reason ``retrain``), which a replay starts from; with fewer than ``retrain.min_examples``
examples it is skipped (``retrain_skipped``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.core.learn import Learner
from stream_app.core.messages import encode_model_event
from stream_app.core.predict import ServingModel
from stream_app.kafka.read import read_to_end
from stream_app.kafka.security import client_kwargs
from stream_app.registry.replay import Logged, learn_logged, logged_examples
from stream_app.settings import RetrainSettings, Settings

if TYPE_CHECKING:
    from stream_app.core.pipeline import Pipeline
    from stream_app.worker.versions import VersionKeeper

__all__ = ["RETRAIN", "SKIPPED", "RetrainPolicy", "Retrainer", "install", "read_tail", "train"]

log = logging.getLogger(__name__)

RETRAIN: Final = "retrain"
"""The model-event type, and the reason of the version a retrain stores."""
SKIPPED: Final = "retrain_skipped"
"""The model-event type of a retrain with too few examples."""


class RetrainPolicy:
    """Decides when a retrain is due; pure, with the clock and the learner's figures passed in.

    The quality floor counts labels, not batches: the learner counts the labels in a row after
    which its rolling quality was beyond the floor (``Learner.beyond_floor``).

    >>> policy = RetrainPolicy(RetrainSettings(policy="schedule", every_examples=100), now=0.0)
    >>> policy.due(99, 0, now=1.0), policy.due(100, 0, now=1.0)
    (None, 'schedule')
    >>> policy.started(100, now=1.0); policy.due(150, 0, now=2.0)
    """

    def __init__(self, settings: RetrainSettings, now: float) -> None:
        self.settings = settings
        self._last_at = now
        self._last_seen = 0

    def due(self, examples_seen: int, beyond_floor: int, now: float) -> str | None:
        """Return why a retrain is due now (``schedule``, ``quality_floor``), or None."""
        s = self.settings
        if s.policy == "schedule":
            by_time = s.every_s > 0 and now - self._last_at >= s.every_s
            by_count = s.every_examples > 0 and examples_seen - self._last_seen >= s.every_examples
            return "schedule" if by_time or by_count else None
        if s.policy == "quality_floor" and beyond_floor >= s.patience:
            return "quality_floor"
        return None

    def started(self, examples_seen: int, now: float) -> None:
        """Count from a retrain that just started."""
        self._last_at, self._last_seen = now, examples_seen

    def begin(self, learner: Learner, now: float) -> str | None:
        """Return why a retrain is due for ``learner`` now, and count from it; None if none is.

        The learner's count of labels beyond the floor starts again: a floor needs ``patience``
        labels again before the next retrain. A floor does not fire while a challenger has had
        fewer than ``drift.challenger_window`` labels: the serving model stays below the floor
        until the challenger takes over, and a retrain then would replace it before it could
        (``bench/learning.py`` measured the churn). This is the whole decision the writer takes
        per batch, and what ``bench/learning.py`` takes per label.

        >>> from stream_app.settings import Settings
        >>> settings = Settings().replace(retrain={"policy": "schedule", "every_examples": 1})
        >>> learner, policy = Learner(settings), RetrainPolicy(settings.retrain, now=0.0)
        >>> policy.begin(learner, now=1.0) is None
        True
        >>> learner.examples_seen = 1
        >>> policy.begin(learner, now=1.0), policy.begin(learner, now=1.0)
        ('schedule', None)
        """
        why = self.due(learner.examples_seen, learner.beyond_floor, now)
        challenger, window = learner.challenger, learner.settings.drift.challenger_window
        if why == "quality_floor" and challenger is not None and challenger.labels < window:
            return None  # the last retrain (or drift's challenger) has not had its duel yet
        if why is not None:
            self.started(learner.examples_seen, now)
            learner.beyond_floor = 0
        return why


def train(settings: Settings, logged: Sequence[Logged], classes: list[Any]) -> ServingModel:
    """Train a fresh model from the factory on ``logged`` examples, in order, and return it.

    Every example is learned (no guard, no drift policy: the examples were judged when they were
    first learned). ``classes`` are the serving model's, so both answer with the same class order.
    """
    plain = settings.replace(
        guard={"enabled": False}, drift={"policy": "none"}, model={"challenger_factory": ""}
    )
    learner = Learner(plain)
    learner.serving.model.labels.classes = list(classes)
    for offset, example in logged:
        learn_logged(learner, example, offset)
    learner.flush()
    return learner.serving.model


def install(learner: Learner, model: ServingModel, stored_latest: int) -> int:
    """Make a retrained ``model`` the learner's challenger under a new version; return it.

    The number is above every version stored (``stored_latest``) or handed out before.
    """
    model.version = learner.allocate_version(stored_latest)
    learner.challenge(model)
    return model.version


async def read_tail(settings: Settings, count: int) -> list[Logged]:
    """Read the last ``count`` examples of the learning log (fewer if it holds fewer).

    A message holds a batch's examples (one, in a log written before batches), so the log is
    read backwards: one message first, then as many as the examples per message seen so far say
    are still needed, until ``count`` are read or the log's start is reached.
    """
    tp = TopicPartition(settings.learning_log_topic, 0)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, client_id=f"{settings.app.id}-retrain"
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        first = (await consumer.beginning_offsets([tp]))[tp]
        chunks: list[list[Logged]] = []
        held, upto, step = 0, end, 1
        while held < count and upto > first:
            start = max(first, upto - step)
            records: list[Any] = []
            async for _, batch in read_to_end(consumer, [tp], start={tp: start}, end={tp: upto}):
                records += batch
            chunks.append(logged_examples(records))
            held += len(chunks[-1])
            upto = start
            per_message = max(held, 1) / (end - upto)
            step = max(1, math.ceil((count - held) / per_message))
        tail = [item for chunk in reversed(chunks) for item in chunk]
        return tail[len(tail) - count :] if len(tail) > count else tail
    finally:
        await consumer.stop()


class Retrainer:
    """Runs the policy on the writer and one retrain at a time in the background."""

    def __init__(
        self, settings: Settings, pipeline: Pipeline, keeper: VersionKeeper, lock: asyncio.Lock
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.keeper = keeper
        self.lock = lock
        """The serve lock: the challenger is installed between batches."""
        self.policy = RetrainPolicy(settings.retrain, time.monotonic())
        self._task: asyncio.Task[None] | None = None

    def maybe_start(self) -> None:
        """Start a retrain in the background if one is due (call it as the writer, per batch)."""
        if self.settings.retrain.policy == "none":
            return
        if self._task is not None and not self._task.done():
            return
        why = self.policy.begin(self.pipeline.learner, time.monotonic())
        if why is not None:
            self._task = asyncio.create_task(self._retrain(why))

    async def settle(self) -> None:
        """Wait for a retrain under way to finish (before shutting down)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _retrain(self, why: str) -> None:
        """Read the log's tail, train off the loop, install the challenger, store and announce."""
        s, name = self.settings, self.settings.model.name
        started = time.perf_counter()
        try:
            tail = await read_tail(s, s.retrain.window)
            if len(tail) < s.retrain.min_examples:
                await self._announce(
                    SKIPPED,
                    reason=why,
                    examples=len(tail),
                    needed=s.retrain.min_examples,
                )
                log.info("retrain (%s) skipped: %d examples in the log", why, len(tail))
                return
            classes = list(self.pipeline.learner.serving.model.labels.classes)
            model = await asyncio.to_thread(train, s, tail, classes)
        except Exception as exc:  # a failed retrain must never take serving down
            log.error("retrain (%s) failed: %s", why, exc, exc_info=exc)
            await self._announce(SKIPPED, reason=why, error=f"{type(exc).__name__}: {exc}")
            return
        seconds = time.perf_counter() - started
        async with self.lock:
            install(self.pipeline.learner, model, self.keeper.store.registry.latest(name))
            await self.keeper.checkpoint(RETRAIN)
            version = model.version  # the checkpoint numbers it anew: the one it is stored under
            await self._announce(
                RETRAIN,
                reason=why,
                examples=len(tail),
                from_offset=tail[0].offset,
                to_offset=tail[-1].offset,
                seconds=round(seconds, 3),
                challenger_version=version,
            )
            log.info(
                "retrained (%s) on %d examples of the learning log in %.2fs: v%d challenges",
                why,
                len(tail),
                seconds,
                version,
            )
            self.pipeline.report_versions()

    async def _announce(self, kind: str, **fields: Any) -> None:
        """Publish a ``retrain`` or ``retrain_skipped`` event on ``model-events``."""
        name = self.settings.model.name
        version = self.pipeline.learner.serving.model.version
        event = encode_model_event(kind, name, version, **fields)
        await self.keeper.publish(self.settings.topics.model_events, name.encode(), event)
