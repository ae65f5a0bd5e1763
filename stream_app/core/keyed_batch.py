"""Batch inference of keyed events: a micro-batch asked once per model that answers it.

With ``inference.mode = "batch"`` a micro-batch of keyed events is grouped by the learner that
answers each (the key's own model, or the global fallback for a young key) and each group is
asked with one call (:meth:`~stream_app.core.keyed.KeyedModels.answer_many`): one vectorised
``predict_proba_many`` where the model supports it and the group has at least
``inference.many_min_rows`` events, else event by event. Then the events are emitted and their
inline labels learned in order. As without keys, every answer of a batch comes from the models
as they stood at the batch's start; the answers equal those of asking event by event before
learning, and the predictions carry the same ``model_key``, ``fallback`` and version.

:class:`KeyedBatch` is the part of :class:`~stream_app.core.keyed_path.KeyedPath` that does this.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stream_app.core.decode import FeatureEvent
from stream_app.core.keyed import Answer, KeyedModels
from stream_app.core.learn import Learner
from stream_app.core.ports import Outputs, Record

__all__ = ["KeyedBatch"]


class KeyedBatch:
    """Serve a micro-batch of keyed events with one call per answering model."""

    keys: KeyedModels | None = None

    if TYPE_CHECKING:  # the keyed path's state and steps this part works with (KeyedPath has them)
        _keys_learning: set[str]

        @property
        def learner(self) -> Learner:
            """The global learner: the fallback."""

        @property
        def _fallback(self) -> Learner | None: ...

        def _take_keyed(
            self, out: Outputs, record: Record
        ) -> tuple[FeatureEvent, str, int] | None: ...
        def _emit_keyed(
            self,
            out: Outputs,
            record: Record,
            event: FeatureEvent,
            key: str,
            home: int,
            answer: Answer,
            received: float,
        ) -> None: ...
        def _model_error(self, out: Outputs, record: Record, exc: Exception) -> None: ...

    def _serve_keyed_batch(self, records: Sequence[Record], received: float, out: Outputs) -> None:
        """Answer a micro-batch with one call per answering model; then emit and learn in order.

        Every answer comes from the models as they stood at the batch's start: a label inline in
        the batch is learned after the batch is answered (the batch mode's guarantee, per key).
        """
        assert self.keys is not None
        taken = []
        for record in records:
            kept = self._take_keyed(out, record)
            if kept is not None:
                taken.append((record, *kept))
        asks = [(key, event.features, home) for _, event, key, home in taken]
        answers = self.keys.answer_many(asks, time.time(), self._fallback)
        for (record, event, key, home), answer in zip(taken, answers, strict=True):
            if isinstance(answer, Exception):  # the estimator raised: dead-letter it
                self._model_error(out, record, answer)
            else:
                self._emit_keyed(out, record, event, key, home, answer, received)
        self._flush_keys()

    def _flush_keys(self) -> None:
        """Learn what ``inference.learn_many`` deferred, in the keys learned since the last flush.

        A key evicted meanwhile was flushed when it was stored (a snapshot flushes first).
        """
        assert self.keys is not None
        self.learner.flush()
        for key in self._keys_learning:
            state = self.keys.peek(key)
            if state is not None:
                state.learner.flush()
        self._keys_learning.clear()
