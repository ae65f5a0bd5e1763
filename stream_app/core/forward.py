"""The forward step: a follower passes each labeled example to the single writer, which learns it.

Only the writer learns (one learner, one learning log). A worker that is not the writer forwards
the labeled example it joined, with the answers that were served, to the writer's examples topic,
keyed by event id. The writer learns those as if it had served them; its lag behind that topic is
published, and past ``learn.max_lag_s`` it learns a uniform sample and counts what it shed
(:mod:`stream_app.core.shed`), so that it catches up rather than fall further behind.

:class:`Forwarding` is the part of :class:`~stream_app.core.pipeline.Pipeline` that does this; the
pipeline's state it works on is declared in its body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from stream_app import reasons
from stream_app.core.events import ModelEvent
from stream_app.core.messages import decode_example, encode_example
from stream_app.core.ports import Forwarded, Outputs, Record

if TYPE_CHECKING:
    from stream_app.core.example import LabeledExample
    from stream_app.core.join import RecentIds
    from stream_app.core.learn import Learner
    from stream_app.core.metrics import Metrics
    from stream_app.core.shed import Shedder
    from stream_app.settings import Settings

__all__ = ["Forwarding"]

log = logging.getLogger(__name__)


class Forwarding:
    """Forwarded examples in a :class:`~stream_app.core.pipeline.Pipeline`: send, learn, shed."""

    if TYPE_CHECKING:  # the pipeline's state and steps this part works with (the Pipeline has them)
        settings: Settings

        @property
        def learner(self) -> Learner:
            """The learner the pipeline serves with (swapped only by ``Pipeline.use``)."""

        metrics: Metrics
        shedder: Shedder
        lag_examples: int
        lag_seconds: float
        _taken: RecentIds

        def _apply(self, out: Outputs, record: Record, example: LabeledExample) -> None: ...
        def _dead_letter(self, out: Outputs, record: Record, reason: str, detail: str) -> None: ...
        def _model_event(self, out: Outputs, event: ModelEvent) -> None: ...
        def _report_learning(self, out: Outputs) -> None: ...

    def _forward(self, out: Outputs, example: LabeledExample) -> None:
        """Pass a checked example to the writer (as a follower); its id counts as taken here."""
        self._taken.add(example.event_id, example.at)
        key = example.event_id.encode()
        out.keyed(self.settings.examples_topic, key, encode_example(example))
        self.metrics.labels_forwarded.inc()

    def examples(self, records: Sequence[Forwarded], out: Outputs) -> None:
        """Learn, as the writer, the examples other workers forwarded (as if it had served them).

        The batch's age is the writer's lag; past ``learn.max_lag_s`` it learns a uniform sample
        of the batch (see :mod:`stream_app.core.shed`) and counts and announces what it skipped.
        """
        if not records:
            return
        now = time.time()
        started = time.perf_counter()
        backlog = max(self.lag_examples, len(records))  # the topic's lag, as last read
        share = self.shedder.share(now - records[0].timestamp / 1000.0, backlog)
        shed = 0
        for record in records:
            try:
                example = decode_example(record.value or b"", now)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.error(
                    "skipping a malformed forwarded example at offset %d: %s", record.offset, exc
                )
                self._dead_letter(
                    out, record, reasons.INVALID_JSON, f"not a forwarded example: {exc}"
                )
                continue
            event_id = example.event_id
            sampled_out = share < 1.0 and not self.shedder.keep(event_id, share)
            if sampled_out and not self.learner.has_learned(event_id):  # (a duplicate says so)
                self.learner.shed(event_id, now)
                shed += 1
                continue
            self._apply(out, record, example)
        self.shedder.observe(time.perf_counter() - started, len(records) - shed)
        self._report_lag(out, now, share, now - records[-1].timestamp / 1000.0, shed)
        self._report_learning(out)

    def _report_lag(self, out: Outputs, now: float, share: float, lag_s: float, shed: int) -> None:
        """Publish how far behind the writer is; count and announce what it shed."""
        self.set_learner_lag(seconds=max(lag_s, 0.0))
        if shed:
            self.metrics.labels_shed.inc(shed)
        fields = self.shedder.note(now, share, lag_s, shed)
        if fields is not None:
            version = self.learner.serving.model.version
            self._model_event(out, ModelEvent("shedding", version, fields))
            if share < 1.0:
                log.warning(
                    "the writer is %.1fs behind the forwarded labels (learn.max_lag_s %g): it "
                    "learns %.0f%% of them and skips the rest (%d since the last notice; "
                    "all counted in stream_app_labels_shed_total)",
                    lag_s,
                    self.shedder.max_lag_s,
                    100 * share,
                    fields["shed"],
                )

    def set_learner_lag(self, *, examples: int | None = None, seconds: float | None = None) -> None:
        """Record (and publish) how far behind the writer is: examples not learned, their age."""
        if examples is not None:
            self.lag_examples = examples
            self.metrics.learner_lag_examples.set(examples)
        if seconds is not None:
            self.lag_seconds = seconds
            self.metrics.learner_lag_seconds.set(seconds)
