"""Keyed models: one learner per model key, learned where the key's partition lives.

With ``model.key_field`` set (say ``"user"``), the feature event's top-level field of that name
selects its model; every distinct key gets its own :class:`~stream_app.core.learn.Learner` from
``model.factory``, with its own guard and drift monitor. :class:`KeyedModels` holds the keys of
one worker: at most ``model.key_cache`` stay decoded, the least recently used are written back
(if they learned since their last checkpoint) and dropped, and a key not in memory is loaded from
its last checkpoint, or made fresh. Until a key has learned ``model.key_min_examples`` labels its
answers come from the fallback (``model.key_fallback``): the global model, or its own if ``none``.

Everything here is pure: the caller passes the clock, and the store behind ``load`` and
``write_back`` (a compacted topic partitioned like ``features``) belongs to the worker.

>>> from stream_app.settings import LimitSettings, Settings
>>> stored = {}
>>> keys = KeyedModels(Settings().replace(model={"key_cache": 2, "key_min_examples": 1}),
...     load=stored.get, write_back=lambda key, state: stored.__setitem__(key, state.learner))
>>> model_key({"user": "u-1"}, "user")
'u-1'
>>> keys.get("u-1", partition=0, now=0.0).learner.serving.model.examples_learned
0
>>> keys.young("u-1")
True
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from stream_app import reasons
from stream_app.core.decode import (
    FeatureEvent,
    check_id,
    expect_object,
    json_type,
    parse_json,
    validate_event,
)
from stream_app.core.events import CHALLENGER_STARTED, ModelEvent
from stream_app.core.learn import Contender, Learner
from stream_app.core.predict import Prediction, ServingModel
from stream_app.errors import ConfigError, RejectedMessage
from stream_app.settings import LimitSettings, Settings

__all__ = [
    "FALLBACKS",
    "MAX_MODEL_KEY_CHARS",
    "Answer",
    "Ask",
    "KeyState",
    "KeyedLabel",
    "KeyedModels",
    "decode_keyed_event",
    "decode_keyed_label",
    "key_events",
    "model_key",
]

MAX_MODEL_KEY_CHARS: Final = 128
"""A model key is a string of 1 to this many characters (the contract)."""

FALLBACKS: Final = ("global", "none")
"""``model.key_fallback``: who answers for a key younger than ``model.key_min_examples``."""

_MISSING: Final = object()


def model_key(obj: Mapping[str, Any], field: str) -> str:
    """Return the model key of a parsed event, or raise ``invalid_model_key``.

    >>> model_key({"user": 7}, "user")
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: invalid_model_key: user is a JSON number; expected a string
    >>> model_key({}, "user")
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: invalid_model_key: the event has no user (the model key)
    """
    value = obj.get(field, _MISSING)
    if value is _MISSING or value is None:
        raise RejectedMessage(
            reasons.INVALID_MODEL_KEY, f"the event has no {field} (the model key)"
        )
    if type(value) is not str:
        raise RejectedMessage(
            reasons.INVALID_MODEL_KEY,
            f"{field} is a JSON {json_type(value)}; expected a string",
        )
    if not 1 <= len(value) <= MAX_MODEL_KEY_CHARS:
        raise RejectedMessage(
            reasons.INVALID_MODEL_KEY,
            f"{field} has {len(value)} characters; expected 1 to {MAX_MODEL_KEY_CHARS}",
        )
    return value


class KeyedLabel(NamedTuple):
    """A delayed label of a keyed model: its event id, its value, and its model key if it says."""

    id: str
    label: Any
    key: str | None


def decode_keyed_event(raw: bytes | None, limits: LimitSettings, field: str) -> FeatureEvent:
    """Decode a feature event and its model key; raise ``RejectedMessage`` (``invalid_model_key``).

    >>> decode_keyed_event(b'{"id": "e", "features": {"x": 1}}', LimitSettings(), "user")
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: invalid_model_key: the event has no user (the model key)
    """
    obj = expect_object(parse_json(raw, limits))
    event_id, features, ts, label, _ = validate_event(obj, limits)
    return FeatureEvent(event_id, features, ts, label, model_key(obj, field))


def decode_keyed_label(raw: bytes | None, limits: LimitSettings, field: str) -> KeyedLabel:
    """Decode a delayed label and, if it carries the key field, its model key (checked).

    >>> decode_keyed_label(b'{"id": "e", "label": 1, "user": ""}', LimitSettings(), "user")
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: invalid_model_key: user has 0 characters; expected 1 to 128
    """
    obj = expect_object(parse_json(raw, limits))
    event_id = check_id(obj, limits)
    label = obj.get("label", _MISSING)
    if label is _MISSING:
        raise RejectedMessage(reasons.INVALID_LABEL, "the message has no label")
    return KeyedLabel(event_id, label, model_key(obj, field) if field in obj else None)


def key_events(
    learner: Learner, before: Contender | None, events: Iterable[ModelEvent]
) -> list[ModelEvent]:
    """Return the model events of one label a key's ``learner`` learned, its challenger's start too.

    ``before`` is the key's challenger before the label. A challenger that the label's drift
    started is announced as ``challenger_started``, after the drift, with the version of the key's
    model it challenges (a challenger is stored inside the key's versions, not as one).

    >>> from stream_app.settings import Settings
    >>> learner = Learner(Settings())
    >>> drift = ModelEvent("drift", 0, {})
    >>> _ = learner.challenge(learner._fresh())
    >>> [(e.kind, e.version) for e in key_events(learner, None, [drift])]
    [('drift', 0), ('challenger_started', 0)]
    >>> [e.kind for e in key_events(learner, learner.challenger, [drift])]
    ['drift']
    """
    out = list(events)
    challenger = learner.challenger
    if challenger is not None and challenger is not before:
        fields = {"factory": challenger.model.factory}
        out.append(ModelEvent(CHALLENGER_STARTED, learner.serving.model.version, fields))
    return out


@dataclasses.dataclass(slots=True)
class KeyState:
    """One key's learner and its bookkeeping (which partition, when last checkpointed)."""

    learner: Learner
    partition: int
    checkpointed_at: float
    """Clock time of the key's last checkpoint (or of its making or loading)."""
    since_checkpoint: int = 0
    """Labels learned since the last checkpoint: a key with some is dirty."""

    @property
    def dirty(self) -> bool:
        """True if the key learned since its last checkpoint (eviction must write it back)."""
        return self.since_checkpoint > 0


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What answered an event of a key: the served prediction, the shadow, and who served it."""

    served: Prediction
    shadow: Prediction | None
    fallback: bool
    """True when the fallback (the global model) answered because the key is young."""
    by: Learner
    """The learner that answered: the key's own, or the fallback."""
    model: ServingModel
    """The model of ``by`` that answered (its version goes in the prediction), taken when it
    answered: in a micro-batch a label learned earlier in the batch may promote another."""


Ask = tuple[str, dict[str, Any], int]
"""One event of a micro-batch to answer: its model key, its features, the key's home partition."""

Load = Callable[[str], Learner | None]
"""The key's last checkpoint, decoded, or None for a key never stored."""
WriteBack = Callable[[str, KeyState], None]
"""Store a dirty key's learner as its next version (called on eviction and on release)."""


class KeyedModels:
    """The keys one worker owns: decoded while recently used, written back when evicted."""

    def __init__(self, settings: Settings, load: Load, write_back: WriteBack) -> None:
        model = settings.model
        if model.key_fallback not in FALLBACKS:
            raise ConfigError(
                f"model.key_fallback is {model.key_fallback!r}; expected one of {FALLBACKS}"
            )
        self.settings = settings
        self._load = load
        self._write_back = write_back
        self._keys: OrderedDict[str, KeyState] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def get(self, key: str, partition: int, now: float) -> KeyState:
        """Return ``key``'s state, most recently used now; load or make it if not in memory."""
        state = self._keys.get(key)
        if state is not None:
            self._keys.move_to_end(key)
            return state
        learner = self._load(key)
        if learner is None:
            learner = Learner(self.settings)
        learner.challenge_min_examples = self.settings.model.key_min_examples
        state = self._keys[key] = KeyState(learner, partition, checkpointed_at=now)
        self._evict()
        return state

    def replace(self, key: str, learner: Learner, partition: int, now: float) -> KeyState:
        """Make ``learner`` ``key``'s live one at once (an operator's rollback or reset).

        The caller stores it as the key's next version and then marks it :meth:`checkpointed`.
        """
        self._keys.pop(key, None)
        state = self._keys[key] = KeyState(learner, partition, checkpointed_at=now)
        self._evict()
        return state

    def peek(self, key: str) -> KeyState | None:
        """Return ``key``'s state if it is in memory, without counting it as a use (or None)."""
        return self._keys.get(key)

    def young(self, key: str) -> bool:
        """Tell whether ``key`` has learned fewer than ``model.key_min_examples`` labels."""
        model = self._keys[key].learner.serving.model
        return model.examples_learned < self.settings.model.key_min_examples

    def answerer(
        self, key: str, partition: int, now: float, fallback: Learner | None
    ) -> tuple[Learner, bool]:
        """Return who answers ``key`` now, and whether that is the fallback (the key is young).

        ``fallback`` is the global learner when ``model.key_fallback`` is ``global`` (else None).
        """
        state = self.get(key, partition, now)
        if fallback is not None and self.young(key):
            return fallback, True
        return state.learner, False

    def answer(
        self,
        key: str,
        features: dict[str, Any],
        partition: int,
        now: float,
        fallback: Learner | None,
    ) -> Answer:
        """Answer ``features`` for ``key``: its own model, or ``fallback`` while it is young."""
        learner, is_fallback = self.answerer(key, partition, now, fallback)
        model = learner.answering
        served, shadow = learner.answer(features)
        return Answer(served, shadow, is_fallback, learner, model)

    def answer_many(
        self, asks: Sequence[Ask], now: float, fallback: Learner | None
    ) -> list[Answer | Exception]:
        """Answer a micro-batch of ``(key, features, partition)``: one call per answering learner.

        The events are grouped by the learner that answers them (each key's own, or the fallback
        for young keys) and each group is asked with one ``Learner.answer_many``: one vectorised
        call where the model supports it and the group has ``inference.many_min_rows`` events,
        else event by event. Every answer comes from the models as they stand now, before any
        label of the batch is learned (the guarantee of ``inference.mode = "batch"``), so they
        equal the answers of :meth:`answer` asked event by event before learning. An event its
        model raised on gets the exception instead of an answer, in its place.
        """
        groups: dict[int, tuple[Learner, bool, list[int]]] = {}
        for i, (key, _, partition) in enumerate(asks):
            learner, is_fallback = self.answerer(key, partition, now, fallback)
            group = groups.get(id(learner))  # (the groups hold their learners: ids stay unique)
            if group is None:
                group = groups[id(learner)] = (learner, is_fallback, [])
            group[2].append(i)
        answers: list[Answer | Exception | None] = [None] * len(asks)
        for learner, is_fallback, at in groups.values():
            model = learner.answering
            for i, got in zip(at, _ask_group(learner, [asks[i][1] for i in at]), strict=True):
                answers[i] = (
                    got
                    if isinstance(got, Exception)
                    else Answer(got[0], got[1], is_fallback, learner, model)
                )
        done = [answer for answer in answers if answer is not None]
        assert len(done) == len(asks)  # every event is in exactly one group
        return done

    def learned(self, key: str) -> None:
        """Count a label ``key`` learned: it is dirty until its next checkpoint."""
        self._keys[key].since_checkpoint += 1

    def due(self, now: float) -> list[str]:
        """Return the dirty keys whose checkpoint is due, by count or by age (oldest use first).

        ``registry.key_checkpoint_every_examples`` labels, or ``registry.key_checkpoint_every_s``
        seconds since the last checkpoint with at least one label learned.
        """
        every = self.settings.registry.key_checkpoint_every_examples
        every_s = self.settings.registry.key_checkpoint_every_s
        return [
            key
            for key, state in self._keys.items()
            if state.since_checkpoint >= every
            or (state.dirty and now - state.checkpointed_at >= every_s)
        ]

    def checkpointed(self, key: str, now: float) -> None:
        """Record that ``key``'s state as it stands was stored."""
        state = self._keys.get(key)
        if state is not None:
            state.since_checkpoint, state.checkpointed_at = 0, now

    def release(self, partitions: Iterable[int]) -> list[tuple[str, KeyState]]:
        """Drop the keys of ``partitions`` (revoked); return the dirty ones, to store first."""
        gone = set(partitions)
        released = [(k, s) for k, s in self._keys.items() if s.partition in gone]
        for key, _ in released:
            del self._keys[key]
        return [(key, state) for key, state in released if state.dirty]

    def items(self) -> list[tuple[str, KeyState]]:
        """Every key in memory with its state, least recently used first."""
        return list(self._keys.items())

    def _evict(self) -> None:
        """Write back and drop the least recently used keys beyond ``model.key_cache``."""
        while len(self._keys) > self.settings.model.key_cache:
            key, state = self._keys.popitem(last=False)
            if state.dirty:
                self._write_back(key, state)


def _ask_group(
    learner: Learner, rows: list[dict[str, Any]]
) -> list[tuple[Prediction, Prediction | None] | Exception]:
    """Answer one learner's rows with one call; if it raises, event by event to find the bad row.

    One bad row spoils a vectorised call, so the rows are asked again one at a time, and only
    the ones the model raised on get their exception.
    """
    try:
        return list(learner.answer_many(rows))
    except Exception:
        answers: list[tuple[Prediction, Prediction | None] | Exception] = []
        for x in rows:
            try:
                answers.append(learner.answer(x))
            except Exception as exc:  # the caller dead-letters this event as model_error
                answers.append(exc)
        return answers
