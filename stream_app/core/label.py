"""The label step: decode delayed-label messages, validate labels, map classes to the estimator's.

A label arrives inline (``"label"`` in a feature event) or later on the ``labels`` topic as
``{"id": ..., "label": ...}``. Classification labels are strings, integers or booleans (and one of
``model.classes`` when declared); regression labels are finite numbers.

>>> from stream_app.settings import LimitSettings
>>> decode_label(b'{"id": "e-1", "label": "spam"}', LimitSettings())
LabelEvent(id='e-1', label='spam')
>>> check_label(2.5, "classification", (), 256)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
stream_app.errors.RejectedMessage: invalid_label: a classification label is a string, ... number
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from stream_app import reasons
from stream_app.core.decode import check_id, expect_object, json_type, parse_json
from stream_app.errors import RejectedMessage
from stream_app.settings import LimitSettings

__all__ = ["LabelCodec", "LabelEvent", "check_label", "class_key", "decode_label"]

_MISSING = object()


class LabelEvent(NamedTuple):
    """A delayed label: which event it belongs to and its (not yet validated) value."""

    id: str
    label: Any


def decode_label(raw: bytes | None, limits: LimitSettings) -> LabelEvent:
    """Turn a ``labels`` message into a :class:`LabelEvent`, or raise ``RejectedMessage``."""
    obj = expect_object(parse_json(raw, limits))
    event_id = check_id(obj, limits)
    label = obj.get("label", _MISSING)
    if label is _MISSING:
        raise RejectedMessage(reasons.INVALID_LABEL, "the message has no label")
    return LabelEvent(event_id, label)


def check_label(label: Any, task: str, classes: tuple[Any, ...], max_chars: int) -> Any:
    """Return ``label`` if it fits the task (and the declared classes), else raise.

    >>> check_label(True, "classification", (False, True), 256)
    True
    >>> check_label("cat", "classification", ("ham", "spam"), 256)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: unknown_label: 'cat' is not one of the declared classes ...
    """
    kind = type(label)
    if task == "regression":
        if kind not in (int, float) or not math.isfinite(label) or abs(label) > 1e300:
            raise RejectedMessage(
                reasons.INVALID_LABEL,
                f"a regression label is a finite number; got {_show(label)}",
            )
        return float(label)
    if kind not in (str, int, bool):
        raise RejectedMessage(
            reasons.INVALID_LABEL,
            f"a classification label is a string, integer or boolean; got a {json_type(label)}",
        )
    if kind is str and not 0 < len(label) <= max_chars:
        raise RejectedMessage(
            reasons.INVALID_LABEL, f"a label has 1 to {max_chars} characters; got {len(label)}"
        )
    if classes and not any(type(c) is kind and c == label for c in classes):
        raise RejectedMessage(
            reasons.UNKNOWN_LABEL,
            f"{label!r:.60} is not one of the declared classes {list(classes)!r:.200}",
        )
    return label


def class_key(label: Any) -> str:
    """Spell a class as a JSON object key: booleans as JSON spells them, anything else as str().

    >>> class_key(True), class_key(1), class_key("cat")
    ('true', '1', 'cat')
    """
    if label is True:
        return "true"
    if label is False:
        return "false"
    return str(label)


def _show(value: Any) -> str:
    """Describe a bad label briefly: its JSON type, and its value when that is short."""
    return f"{json_type(value)} {value!r:.40}" if value is not None else "null"


class LabelCodec:
    """Maps the user's classes to what the estimator learns, and its answers back.

    Multi-class estimators learn the labels as they are. A binary-only estimator (River's
    logistic regression) learns booleans: the negative class is the first declared class, or
    ``0``/``False`` when the labels are those, or else the first class seen.

    >>> codec = LabelCodec("classification", binary=True, declared=())
    >>> codec.to_model("ham"), codec.to_model("spam"), codec.from_model(True)
    (False, True, 'spam')
    >>> codec.to_model("eggs")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: unknown_label: this model has two classes, ... a third
    """

    def __init__(self, task: str, *, binary: bool, declared: tuple[Any, ...]) -> None:
        self.task = task
        self.binary = binary and task == "classification"
        self.classes: list[Any] = list(declared)
        self._names: dict[Any, tuple[Any, str | None]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the naming cache (it is rebuilt on use)."""
        state = dict(self.__dict__)
        state.pop("_names", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, with an empty naming cache (also codecs stored before it existed)."""
        self.__dict__.update(state)
        self._names = {}

    def name(self, value: Any) -> tuple[Any, str | None]:
        """Return the user's class for an estimator's answer and its JSON key, cached per answer.

        The key is None while the class is not known yet. The serve path names each class of
        every prediction; the cache makes that a dictionary lookup.

        >>> codec = LabelCodec("classification", binary=True, declared=("ham", "spam"))
        >>> codec.name(True), codec.name(False)
        (('spam', 'spam'), ('ham', 'ham'))
        """
        named = self._names.get(value)
        if named is None:
            user = self.from_model(value)
            named = self._names[value] = (user, None if user is None else class_key(user))
        return named

    def to_model(self, label: Any) -> Any:
        """Return the value the estimator learns for ``label`` (registering a new class)."""
        if not self.binary:
            if self.task == "classification" and label not in self.classes:
                self.classes.append(label)
            return label
        if not self.classes:
            self.classes = [False, True] if type(label) is bool else [label]
            if type(label) is int and label in (0, 1):
                self.classes = [0, 1]
            self._names = {}
        for index, known in enumerate(self.classes):
            if type(known) is type(label) and known == label:
                return index == 1
        if len(self.classes) < 2:
            self.classes.append(label)
            self._names = {}
            return True
        raise RejectedMessage(
            reasons.UNKNOWN_LABEL,
            f"this model has two classes, {self.classes!r:.100}; {label!r:.60} is a third",
        )

    def from_model(self, value: Any) -> Any:
        """Return the user's class for an estimator's answer (``None`` if not known yet)."""
        if not self.binary:
            return value
        index = 1 if value else 0
        return self.classes[index] if index < len(self.classes) else None
