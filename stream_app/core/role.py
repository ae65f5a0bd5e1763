"""The writer role: whether this worker is the single writer, asked in one place.

One worker in the serve group learns, checkpoints and carries out operations: the one that holds
the commands partition. The serve loop owns the role and changes it when the consumer group
assigns or revokes that partition; the pipeline (learn here, or forward to the writer), the
versions keeper (checkpoint, follow) and the web views (``/health``) only read it, through
:class:`Role`.

>>> role = WriterRole(writer=False)
>>> role.is_writer
False
>>> role.assign(writer=True), role.is_writer
(True, True)
>>> role.assign(writer=True)
False
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Role", "WriterRole"]


class Role(Protocol):
    """What readers of the role see: whether this worker is the writer now."""

    @property
    def is_writer(self) -> bool:
        """True while this worker learns and checkpoints (it holds the commands partition)."""


class WriterRole:
    """The role itself, changed only by its owner (the serve loop, or a test or bench)."""

    __slots__ = ("_writer",)

    def __init__(self, *, writer: bool) -> None:
        self._writer = writer

    @property
    def is_writer(self) -> bool:
        """True while this worker learns and checkpoints (it holds the commands partition)."""
        return self._writer

    def assign(self, *, writer: bool) -> bool:
        """Become the writer or stop being it; return whether the role changed."""
        changed = writer != self._writer
        self._writer = writer
        return changed

    def __repr__(self) -> str:
        return f"WriterRole(writer={self._writer})"
