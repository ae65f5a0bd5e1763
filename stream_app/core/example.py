"""The labeled example: an event's features, its label, and what was answered for it.

The pipeline builds one when a label meets what was served for its event (inline in the event, at
the id's home partition, or read back from the examples topic on the writer) and passes it whole:
to the learner, to the learning log and to the examples topic. The answers travel with it because
learning is prequential: quality, the drift monitor and the noise guard judge the answer that was
*given*, not what the model would say now.

>>> from stream_app.core.predict import Prediction
>>> example = LabeledExample("e-1", {"x": 1.0}, 3, Prediction(2.5, {}), None, at=5.0)
>>> example.label, example.served.prediction
(3, 2.5)
>>> example.with_label(3.0).label  # a checked label may come back coerced (int to float)
3.0
>>> example.at = 6.0  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
...
AttributeError: can't set attribute

It is a ``NamedTuple``, as :class:`~stream_app.core.predict.Prediction` and
:class:`~stream_app.core.join.Served` are: immutable and slotted (no instance dict), and built
once per label on the hot path in about 0.25 us, where a ``dataclass(frozen=True, slots=True)``
takes about 0.65 us (six ``object.__setattr__`` calls): bench/profile_path.py measured the
difference on the path, and the issue asks for no slower.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from stream_app.core.decode import Features
from stream_app.core.predict import Prediction

__all__ = ["LabeledExample"]


class LabeledExample(NamedTuple):
    """One labeled example, as it is learned: immutable, so every step sees the same one."""

    event_id: str
    features: Features
    label: Any
    """The truth, as the label step checked it (the raw label until then)."""
    served: Prediction
    """What the service answered for the event (the pinned, serving or canary model)."""
    shadow: Prediction | None
    """The challenger's answer in shadow, if one was running when the event was served."""
    at: float
    """Epoch seconds at which it is learned (in a replay: when the writer first learned it)."""

    def with_label(self, label: Any) -> LabeledExample:
        """Return this example with ``label`` in place of its own (the checked label)."""
        return self._replace(label=label)
