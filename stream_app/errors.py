"""The error tree of stream_app: one root, so callers can catch everything we raise on purpose.

::

    StreamAppError
    ├── ConfigError          a setting is missing, malformed or inconsistent
    ├── RejectedMessage      an input message cannot be served or learned (has a dead-letter reason)
    ├── ModelError           a model factory or estimator misbehaved, or a model was misused
    ├── BrokerError          the local Kafka broker could not be fetched, started or reached
    ├── CheckpointError      a model version could not be encoded or stored
    ├── CorruptVersion       a stored version cannot be trusted or loaded (has a reason)
    ├── ArtifactError        a file is not a sound or trusted artifact (also a ValueError)
    ├── OperationRefused     an operator's command cannot be carried out (answered ``ok: false``)
    │   └── ImportRefused    an imported artifact the writer will not store (has a reason)
    ├── EmitError            a message Kafka can never take (larger than a whole batch)
    ├── ReadTimeout          topics could not be read to their end in the time given
    └── RequestRejected      the worker refused a client's HTTP request (status, reason, detail)

A refusal is part of the contract and is answered; anything else that escapes an operation is a
bug and is logged as one. This module imports only the standard library, so
:mod:`stream_app.artifact` and :mod:`stream_app.models` can be copied next to an application
with it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ArtifactError",
    "BrokerError",
    "CheckpointError",
    "ConfigError",
    "CorruptVersion",
    "EmitError",
    "ImportRefused",
    "ModelError",
    "OperationRefused",
    "ReadTimeout",
    "RejectedMessage",
    "RequestRejected",
    "StreamAppError",
]

CORRUPT: Final = "corrupt"
"""The reason of a version or artifact that is not sound (see ``LOAD_FAILURES`` in the registry)."""


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
    """A model factory could not be resolved or built, an estimator call failed, or misuse."""


class BrokerError(StreamAppError):
    """The local Kafka broker could not be fetched, started or reached."""


class CheckpointError(StreamAppError):
    """A checkpoint could not be encoded or written; serving goes on with the last good version."""


class CorruptVersion(StreamAppError):
    """A stored version that cannot be trusted or loaded; ``reason`` is a load-failure reason.

    Its chunks are missing or fail their checksum, its pickle asks for a global outside the
    allowlist (``untrusted``), or a signing key is set and it is unsigned or wrongly signed.
    """

    def __init__(self, message: str, reason: str = CORRUPT) -> None:
        super().__init__(message)
        self.reason = reason


class ArtifactError(StreamAppError, ValueError):
    """A file that is not a sound artifact, or not a trusted one; ``reason`` says which.

    ``reason`` is ``corrupt`` (not an artifact, unknown format, failed checksum, does not load),
    ``untrusted`` (its pickle names a global outside the allowlist), ``unsigned`` or
    ``bad_signature``. Also a ``ValueError``, which is what it was before the tree held it.
    """

    def __init__(self, message: str, reason: str = CORRUPT) -> None:
        super().__init__(message)
        self.reason = reason


class OperationRefused(StreamAppError):
    """An operator's command that cannot be carried out: unknown version, no challenger, bad share.

    The writer answers it on ``model-events`` with ``ok: false`` and the message, and changes
    nothing.
    """


class ImportRefused(OperationRefused):
    """An import the writer will not store; ``reason`` is a version load-failure reason."""

    def __init__(self, message: str, reason: str = CORRUPT) -> None:
        super().__init__(message)
        self.reason = reason


class EmitError(StreamAppError):
    """A message that no batch can hold: Kafka would never take it."""


class ReadTimeout(StreamAppError):
    """Partitions not read to their end in the time given (the broker is slow or away).

    :func:`stream_app.kafka.read.read_to_end` raises it after yielding what it did read.
    """


class RequestRejected(StreamAppError):
    """The worker refused a request: HTTP status, reason code (as dead letters have), detail."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail
