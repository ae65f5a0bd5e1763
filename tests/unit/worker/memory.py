"""Broker-free stand-ins for the worker's Kafka edges: a registry store in memory, a publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from stream_app.registry.checkpoint import Write
from stream_app.registry.records import Registry
from stream_app.settings import Settings


class MemoryStore:
    """A :class:`~stream_app.registry.store.VersionStore` whose changelog is a list in memory.

    A write is applied to the view at once and heard by the listeners, as the Kafka store's
    follower would after the changelog brought it back.
    """

    def __init__(self, settings: Settings) -> None:
        self.registry = Registry(settings.registry)
        self.ready = asyncio.Event()
        self.ready.set()
        self.changelog: list[Write] = []
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    async def write(self, writes: list[Write]) -> None:
        touched: set[str] = set()
        for key, value in writes:
            self.changelog.append((key, value))
            model = self.registry.apply(key, value)
            if model is not None:
                touched.add(model)
        for model in touched:
            for listener in self._listeners:
                listener(model)

    async def caught_up(self) -> None:
        """Everything written is applied already."""


class Published:
    """A publisher that keeps what it was given: ``(topic, key, value)`` in order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bytes]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        self.messages.append((topic, key, value))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The model events published (of one ``kind`` if given), decoded."""
        decoded = [orjson.loads(value) for _, _, value in self.messages]
        return [e for e in decoded if kind is None or e.get("type") == kind]
