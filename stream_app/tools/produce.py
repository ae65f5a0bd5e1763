"""``stream-app produce FILE``: send a JSONL or CSV file to the features topic, one message a line.

Parsing is pure (:func:`parse_jsonl`, :func:`parse_csv`) and sending is thin (:func:`produce_file`).
A CSV row or a flat JSON object becomes an event: numeric-looking cells become numbers, the label
column becomes ``label``, the id column (``--id-column``, else a column named ``id``) becomes the
id, or one is made from the file name and line number, and every other column is a feature. Lines
already in the event shape (with ``features``) or the label shape (only ``id`` and ``label``) go as
they are. A line that cannot be parsed is reported and skipped, or sent as it is with ``raw``.

>>> columns = Columns()
>>> items = list(parse_csv(["x,colour,label", "1.5,red,1", "2,,0"], "data", columns))
>>> [item.value for item in items]  # doctest: +NORMALIZE_WHITESPACE
[b'{"id":"data-2","features":{"x":1.5,"colour":"red"},"label":1}',
 b'{"id":"data-3","features":{"x":2},"label":0}']
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

from stream_app.errors import StreamAppError
from stream_app.kafka.security import client_kwargs
from stream_app.settings import Settings

__all__ = [
    "Columns",
    "Message",
    "Skipped",
    "Summary",
    "cell_value",
    "parse_csv",
    "parse_jsonl",
    "produce_file",
    "read_items",
    "readable_values",
]

_NUMBER: Final = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")
_INTEGER: Final = re.compile(r"[+-]?\d+")
_SHOWN: Final = 10
"""Skipped lines reported one by one (the rest are counted)."""
_IN_FLIGHT: Final = 5000
"""Messages sent before their acknowledgements are awaited."""


class Message(NamedTuple):
    """One message to send: the file line it came from, its key (the event id) and value."""

    line: int
    key: bytes | None
    value: bytes


class Skipped(NamedTuple):
    """A line not sent as parsed: why, and its bytes (sent as they are with ``--raw``)."""

    line: int
    reason: str
    detail: str
    raw: bytes


@dataclass(frozen=True)
class Columns:
    """Which columns (or JSON keys) hold the label and the id."""

    label: str = "label"
    id: str | None = None
    """None: a column named ``id`` if there is one, else an id made from the file and line."""


@dataclass
class Summary:
    """What a run sent and skipped, for the one-line report."""

    topic: str
    sent: int = 0
    raw: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        """Say it in one line.

        >>> Summary("features", sent=3, skipped=Counter({"invalid JSON": 1}), seconds=2.0).line()
        'sent 3 messages to features in 2.0s (2/s); skipped 1 line: invalid JSON 1'
        """
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        text = f"sent {self.sent} messages to {self.topic} in {self.seconds:.1f}s ({rate:.0f}/s)"
        if self.raw:
            text += f", {self.raw} of them unparsed (--raw)"
        total = sum(self.skipped.values())
        if total:
            reasons = ", ".join(f"{reason} {n}" for reason, n in self.skipped.most_common())
            text += f"; skipped {total} line{'s' if total > 1 else ''}: {reasons}"
        return text


def cell_value(cell: str) -> int | float | str | None:
    """Read a CSV cell: a number if it looks like one, None if empty, else the text.

    >>> [cell_value(c) for c in ("42", "-1.5e3", " red ", "", "nan")]
    [42, -1500.0, 'red', None, 'nan']
    """
    text = cell.strip()
    if not text:
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    return text


def parse_jsonl(lines: Iterable[bytes], stem: str, columns: Columns) -> Iterator[Message | Skipped]:
    """Turn JSON lines into messages: events and labels as they are, flat objects as events.

    >>> lines = [b'{"id": "a", "features": {"x": 1}}', b'{"x": 2, "label": true}', b'[1]', b'{']
    >>> items = list(parse_jsonl(lines, "f", Columns()))
    >>> [item.value for item in items if isinstance(item, Message)]
    [b'{"id": "a", "features": {"x": 1}}', b'{"id":"f-2","features":{"x":2},"label":true}']
    >>> [(item.line, item.reason) for item in items if isinstance(item, Skipped)]
    [(3, 'not an object'), (4, 'invalid JSON')]
    """
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield Skipped(number, "invalid JSON", str(exc), text)
            continue
        if not isinstance(obj, dict):
            yield Skipped(number, "not an object", f"a JSON {type(obj).__name__}", text)
        elif "features" in obj or set(obj) == {"id", "label"}:
            event_id = obj.get("id")
            yield Message(number, event_id.encode() if isinstance(event_id, str) else None, text)
        else:
            yield _record(number, obj, stem, columns, text)


def parse_csv(lines: Iterable[str], stem: str, columns: Columns) -> Iterator[Message | Skipped]:
    """Turn CSV rows (the first is the header) into event messages, one per row.

    >>> rows = ["id,a,b", "e1,1,2", "e2,3"]
    >>> first, second = parse_csv(rows, "f", Columns())
    >>> first.value, second.line, second.reason
    (b'{"id":"e1","features":{"a":1,"b":2}}', 3, 'wrong number of cells')
    """
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raw = _csv_line(row)
            detail = f"{len(row)} cells, the header has {len(header)}"
            yield Skipped(number, "wrong number of cells", detail, raw)
            continue
        record = {name: cell_value(cell) for name, cell in zip(header, row, strict=True)}
        yield _record(number, record, stem, columns, _csv_line(row))


def _record(
    number: int, record: dict[str, Any], stem: str, columns: Columns, raw: bytes
) -> Message | Skipped:
    """Make an event (or, without features, a label message) of a flat record."""
    id_column = columns.id or "id"
    event_id = record.pop(id_column, None)
    if event_id is None:
        if columns.id is not None:
            return Skipped(number, "no id", f"the id column {columns.id!r} is empty", raw)
        event_id = f"{stem}-{number}"
    label = record.pop(columns.label, None)
    features = {name: value for name, value in record.items() if value is not None}
    for name, value in features.items():
        if not isinstance(value, int | float | str):  # (bool is an int)
            kind = type(value).__name__
            detail = f"{name!r} holds a JSON {kind}; features are numbers, booleans or strings"
            return Skipped(number, "nested value", detail, raw)
    if not features:
        if label is None:
            return Skipped(number, "no features", "no feature and no label", raw)
        message = {"id": str(event_id), "label": label}
        return Message(number, str(event_id).encode(), orjson.dumps(message))
    event: dict[str, Any] = {"id": str(event_id), "features": features}
    if label is not None:
        event["label"] = label
    return Message(number, str(event_id).encode(), orjson.dumps(event))


def _csv_line(row: list[str]) -> bytes:
    """Write a CSV row back as one line of text (what ``--raw`` sends)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue().encode()


def read_items(path: Path, columns: Columns, fmt: str = "auto") -> Iterator[Message | Skipped]:
    """Parse a file as CSV or JSONL (``auto``: by suffix, else by its first character)."""
    if fmt == "auto":
        fmt = _sniff(path)
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            yield from parse_csv(handle, path.stem, columns)
    else:
        with path.open("rb") as binary:
            yield from parse_jsonl(binary, path.stem, columns)


def readable_values(
    items: Iterable[Message | Skipped], seen: Callable[[], None], rejected: Counter[str]
) -> Iterator[bytes]:
    """Yield the value of each readable line; count each unreadable one in ``rejected``.

    ``seen`` is called once per line (a progress bar). What ``score`` and ``train`` read.

    >>> rejected: Counter[str] = Counter()
    >>> items = [Message(1, None, b"{}"), Skipped(2, "not JSON", "", b"{")]
    >>> list(readable_values(items, lambda: None, rejected)), dict(rejected)
    ([b'{}'], {'unreadable line (not JSON)': 1})
    """
    for item in items:
        seen()
        if isinstance(item, Message):
            yield item.value
        else:
            rejected[f"unreadable line ({item.reason})"] += 1


def _sniff(path: Path) -> str:
    """Guess the format: ``.csv`` is CSV, ``.jsonl``/``.ndjson``/``.json`` is JSONL, else look."""
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    return "jsonl" if head[:1] in (b"{", b"[") else "csv"


def produce_file(
    settings: Settings,
    path: Path,
    *,
    topic: str | None = None,
    columns: Columns | None = None,
    rate: float = 0.0,
    raw: bool = False,
    fmt: str = "auto",
) -> Summary:
    """Send ``path`` to ``topic`` (default: the features topic) at ``rate`` messages/s (0: fast)."""
    if not path.is_file():
        raise StreamAppError(f"no such file: {path}")
    from stream_app.tools.tail import TOPICS, topic_name

    # A contract name (``labels``) means the topic configured for it; anything else is literal.
    summary = Summary(
        topic_name(settings, topic) if topic in TOPICS else (topic or settings.topics.features)
    )
    with path.open("rb") as handle:
        total = sum(1 for line in handle if line.strip())
    items = read_items(path, columns or Columns(), fmt)
    asyncio.run(_send(settings, items, summary, total, rate, raw))
    return summary


async def _send(
    settings: Settings,
    items: Iterator[Message | Skipped],
    summary: Summary,
    total: int,
    rate: float,
    raw: bool,
) -> None:
    """Send the messages with a progress bar, paced to ``rate``, and await every acknowledgement."""
    from aiokafka import AIOKafkaProducer
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5)
    await producer.start()
    started = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    shown = 0
    try:
        with Progress(console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task(f"sending to {summary.topic}", total=total)
            for item in items:
                progress.advance(task)
                if isinstance(item, Skipped):
                    if shown < _SHOWN:
                        console.print(f"line {item.line}: {item.reason}: {item.detail}")
                        shown += 1
                    if not raw:
                        summary.skipped[item.reason] += 1
                        continue
                    summary.raw += 1
                    key, value = None, item.raw
                else:
                    key, value = item.key, item.value
                pending.append(await producer.send(summary.topic, value, key=key))
                summary.sent += 1
                if len(pending) >= _IN_FLIGHT:
                    await asyncio.gather(*pending)
                    pending.clear()
                if rate > 0:
                    ahead = summary.sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
        summary.seconds = time.monotonic() - started
    if shown < sum(summary.skipped.values()) + summary.raw:
        print("(more unparsed lines were not shown one by one)", file=sys.stderr)
