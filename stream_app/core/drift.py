"""The drift-check step: a River detector on the error stream, counting only degradations.

Detectors such as ADWIN report any change in the error's mean, including the fall of a new
model's error while it learns. A change counts as drift only after ``warmup`` labels and only if
the error of the last ``compare_window`` labels is higher than the error before them.

>>> from stream_app.settings import DriftSettings
>>> monitor = DriftMonitor(DriftSettings(warmup=100, compare_window=50))
>>> errors = [0.0] * 900 + [1.0] * 100
>>> [i for i, e in enumerate(errors) if monitor.update(e)][:1]
[9...]
"""

from __future__ import annotations

from collections import deque
from typing import Any

from river import drift

from stream_app.errors import ConfigError
from stream_app.settings import DriftSettings

__all__ = ["DriftMonitor", "build_detector"]


def build_detector(name: str, params: dict[str, Any]) -> Any:
    """Build a River drift detector by class name, from ``river.drift`` or ``river.drift.binary``.

    >>> type(build_detector("PageHinkley", {"threshold": 10})).__name__
    'PageHinkley'
    """
    cls = getattr(drift, name, None) or getattr(drift.binary, name, None)
    if cls is None:
        raise ConfigError(f"drift.detector {name!r} is not a detector in river.drift")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"drift.params do not fit {name}: {exc}") from exc


class DriftMonitor:
    """Feed errors one by one; :meth:`update` is True when the error has drifted upwards."""

    detector: Any
    _recent: deque[float]
    _recent_sum: float
    _seen: int
    """Errors since the last counted drift or reset."""
    _sum: float

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self.detector_name = settings.detector
        self.ignored = 0
        """Changes the detector reported that were not degradations (or came during warm-up)."""
        self.reset()

    def update(self, error: float) -> bool:
        """Add one error; return True if this completes a drift (the error went up)."""
        recent, detector = self._recent, self.detector  # (once per label: locals)
        if len(recent) == recent.maxlen:
            self._recent_sum -= recent[0]
        recent.append(error)
        self._recent_sum += error
        self._seen += 1
        self._sum += error
        detector.update(error)
        if not detector.drift_detected:
            return False
        older = self._seen - len(self._recent)
        if self._seen < self.settings.warmup or older <= 0:
            self.ignored += 1
            return False
        recent_mean = self._recent_sum / len(self._recent)
        older_mean = (self._sum - self._recent_sum) / older
        if recent_mean <= older_mean:
            self.ignored += 1
            return False
        # Start the baseline again from the recent errors: the next drift is against this level.
        self._seen, self._sum = len(self._recent), self._recent_sum
        return True

    def reset(self) -> None:
        """Start afresh: a new detector and baseline (a new model's errors are a new stream)."""
        self.detector = build_detector(self.settings.detector, dict(self.settings.params))
        self._recent = deque(maxlen=self.settings.compare_window)
        self._recent_sum = 0.0
        self._seen = 0
        self._sum = 0.0
