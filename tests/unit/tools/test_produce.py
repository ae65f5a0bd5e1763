"""Parsing files for ``stream-app produce``: CSV and JSONL to event messages, skipped lines."""

from __future__ import annotations

from pathlib import Path

import orjson

from stream_app.tools.produce import Columns, Message, Skipped, parse_csv, parse_jsonl, read_items


def values(items: list[Message | Skipped]) -> list[dict[str, object]]:
    return [orjson.loads(item.value) for item in items if isinstance(item, Message)]


def test_csv_numbers_label_id_and_generated_ids() -> None:
    rows = ["amount,city,target,ref", "12,Oslo,yes,r1", "-0.5,,no,", "1e3,7a,yes,r3"]
    items = list(parse_csv(rows, "pay", Columns(label="target", id="ref")))
    assert values(items) == [
        {"id": "r1", "features": {"amount": 12, "city": "Oslo"}, "label": "yes"},
        {"id": "r3", "features": {"amount": 1000.0, "city": "7a"}, "label": "yes"},
    ]
    skipped = [item for item in items if isinstance(item, Skipped)]
    assert [(s.line, s.reason) for s in skipped] == [(3, "no id")]
    generated = values(list(parse_csv(["a,label", "1,0", "2,1"], "pay", Columns())))
    assert [event["id"] for event in generated] == ["pay-2", "pay-3"]


def test_csv_keys_are_event_ids_and_a_label_only_row_is_a_label_message() -> None:
    items = list(parse_csv(["id,label", "e1,1"], "x", Columns()))
    assert items == [Message(2, b"e1", b'{"id":"e1","label":1}')]


def test_csv_wrong_cell_count_keeps_the_raw_line() -> None:
    [item] = parse_csv(["a,b", '1,"x,y",3'], "x", Columns())
    assert isinstance(item, Skipped) and item.reason == "wrong number of cells"
    assert item.raw == b'1,"x,y",3'


def test_jsonl_events_pass_unchanged_and_flat_objects_become_events() -> None:
    lines = [
        b'{"id": "a",  "features": {"x": 1}, "extra": [1]}\n',
        b"\n",
        b'{"id": "a", "label": 0}\n',
        b'{"x": 1.5, "tags": {"nested": 1}}\n',
        b'{"x": 1.5, "id": 7, "label": "spam"}\n',
        b'"just a string"\n',
        b"{not json\n",
    ]
    items = list(parse_jsonl(lines, "f", Columns()))
    sent = [item for item in items if isinstance(item, Message)]
    assert [item.value for item in sent[:2]] == [lines[0].strip(), lines[2].strip()]
    assert orjson.loads(sent[2].value) == {"id": "7", "features": {"x": 1.5}, "label": "spam"}
    assert [item.key for item in sent] == [b"a", b"a", b"7"]
    reasons = [(item.line, item.reason) for item in items if isinstance(item, Skipped)]
    assert reasons == [(4, "nested value"), (6, "not an object"), (7, "invalid JSON")]


def test_format_is_taken_from_the_suffix_or_the_content(tmp_path: Path) -> None:
    csv_file = tmp_path / "events.txt"
    csv_file.write_text("a,label\n1,0\n")
    jsonl_file = tmp_path / "events.data"
    jsonl_file.write_text('{"id": "e", "features": {"a": 1}}\n')
    assert values(list(read_items(csv_file, Columns()))) == [
        {"id": "events-2", "features": {"a": 1}, "label": 0}
    ]
    assert values(list(read_items(jsonl_file, Columns()))) == [{"id": "e", "features": {"a": 1}}]
