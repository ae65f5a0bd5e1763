"""The error tree of stream_app: one root, so callers can catch everything we raise.

::

    StreamAppError
    ├── ConfigError          a setting is missing, malformed or inconsistent
    ├── RejectedMessage      an input message cannot be served or learned (has a dead-letter reason)
    ├── ModelError           a model factory or estimator misbehaved
    ├── BrokerError          the local Kafka broker could not be fetched, started or reached
    └── CheckpointError      a model version could not be encoded or stored
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CheckpointError",
    "ConfigError",
    "ModelError",
    "RejectedMessage",
    "StreamAppError",
]


class StreamAppError(Exception):
    """Root of every error stream_app raises on purpose."""


class ConfigError(StreamAppError):
    """A setting is missing, malformed or inconsistent with another."""


class RejectedMessage(StreamAppError):
    """An input message that goes to the dead-letter topic instead of being served or learned.

    ``reason`` is a code from :mod:`stream_app.reasons`; ``detail`` is a sentence for people.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ModelError(StreamAppError):
    """A model factory could not be resolved or built, or an estimator call failed."""


class BrokerError(StreamAppError):
    """The local Kafka broker could not be fetched, started or reached."""


class CheckpointError(StreamAppError):
    """A checkpoint could not be encoded or written; serving goes on with the last good version."""
