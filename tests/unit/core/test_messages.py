"""Output message shapes are the contract: pin them."""

from __future__ import annotations

import weakref

import orjson
import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.learning_log import (
    CHUNK,
    LogBuffer,
    decode_log_entries,
    decode_log_entry,
    encode_log_batch,
    encode_log_entry,
    join_log_entries,
)
from stream_app.core.messages import (
    decode_dead_letter,
    decode_example,
    encode_dead_letter,
    encode_example,
    encode_model_event,
    encode_prediction,
)
from stream_app.core.predict import Prediction


def test_prediction_shape() -> None:
    msg = orjson.loads(
        encode_prediction("e-1", True, {"false": 0.1, "true": 0.9}, "m", 2, 1.5, 0.2)
    )
    assert list(msg) == [
        "id", "prediction", "proba", "model", "model_version", "served_at", "latency_ms",
    ]  # fmt: skip
    assert msg["prediction"] is True and msg["proba"]["true"] == 0.9


def test_dead_letter_carries_reason_source_and_original_bytes() -> None:
    payload = b"\xff\x00 not json"
    letter = decode_dead_letter(
        encode_dead_letter("invalid_utf8", "bad", "features", 3, 42, payload)
    )
    assert letter["reason"] == "invalid_utf8"
    assert letter["detail"] == "bad"
    assert letter["source"] == {"topic": "features", "partition": 3, "offset": 42}
    assert letter["original"] == payload


def test_dead_letter_of_a_tombstone() -> None:
    letter = decode_dead_letter(encode_dead_letter("invalid_json", "empty", "features", 0, 1, None))
    assert letter["payload"] is None and letter["original"] is None


def test_model_event_shape() -> None:
    msg = orjson.loads(encode_model_event("drift", "default", 4, examples_seen=9, detector="ADWIN"))
    assert msg == {
        "type": "drift", "model": "default", "model_version": 4, "examples_seen": 9,
        "detector": "ADWIN",
    }  # fmt: skip


def test_a_learning_log_entry_keeps_its_shape_and_reads_back_as_the_example() -> None:
    example = LabeledExample(
        "e", {"x": 1.0}, False, Prediction(True, {"true": 0.75}), Prediction(False, {}), 5.5
    )
    entry = encode_log_entry(example)
    assert entry == (
        b'{"id":"e","features":{"x":1.0},"label":false,"served":[true,{"true":0.75}],'
        b'"shadow":[false,{}],"at":5.5}'
    )
    assert decode_log_entry(entry) == example
    forwarded = encode_example(example)  # the writer learns it at its own time
    assert b'"at"' not in forwarded
    assert decode_example(forwarded, at=9.0) == example._replace(at=9.0)


STORED_OLD_ENTRY = (
    b'{"id":"ev-17","features":{"x":1.5,"city":"Lyon"},"label":"spam",'
    b'"served":["ham",{"ham":0.6,"spam":0.4}],"shadow":null,"at":1763800000.25}'
)
"""A learning-log message as writers stored it before batches: one example per message."""


def test_a_stored_one_example_message_still_reads_as_its_example() -> None:
    [example] = decode_log_entries(STORED_OLD_ENTRY)
    assert example == LabeledExample(
        "ev-17",
        {"x": 1.5, "city": "Lyon"},
        "spam",
        Prediction("ham", {"ham": 0.6, "spam": 0.4}),
        None,
        1763800000.25,
    )


def test_a_batch_is_one_message_of_the_same_entries_split_only_past_the_limit() -> None:
    examples = [
        LabeledExample(f"e{i}", {"x": float(i)}, i % 2 == 0, Prediction(True, {}), None, 5.0 + i)
        for i in range(50)
    ]
    [whole] = encode_log_batch(examples, 1 << 20)
    entries = orjson.loads(whole)["entries"]
    assert [orjson.dumps(e) for e in entries] == [encode_log_entry(e) for e in examples]
    assert decode_log_entries(whole) == examples
    limit = len(whole) // 3
    parts = encode_log_batch(examples, limit)
    assert len(parts) > 1 and all(len(part) <= limit for part in parts)
    assert [e for part in parts for e in decode_log_entries(part)] == examples
    assert encode_log_batch([], limit) == []
    big = LabeledExample("big", {"x": 1.0}, "y" * limit, Prediction(None, {}), None, 1.0)
    assert decode_log_entries(encode_log_batch([big], limit)[0]) == [big]  # alone, whatever size


def test_a_batch_with_shadow_answers_is_the_joined_entries_byte_for_byte() -> None:
    """Answers (served and shadow) are written as the same arrays in a batch as in one entry."""
    examples = [
        LabeledExample(
            f"e{i}",
            {"x": float(i), "color": "red"},
            2.5 * i,
            Prediction(1.5, {}),
            Prediction(i * 0.5, {"a": 0.25}) if i % 2 else None,
            5.0 + i,
        )
        for i in range(6)
    ]
    [whole] = encode_log_batch(examples, 1 << 20)
    assert join_log_entries([encode_log_entry(e) for e in examples], 1 << 20) == [whole]
    assert decode_log_entries(whole) == examples


@pytest.mark.parametrize("limit", [1 << 20, 9_000, 300])
def test_batches_longer_than_a_chunk_are_the_joined_entries_byte_for_byte(limit: int) -> None:
    """Past :data:`CHUNK` examples the buffer encodes as it goes; the messages are the same
    entries, in order, within the limit (chunks that fit, and chunks too big for one message)."""
    buffer = LogBuffer(limit)
    examples = [
        LabeledExample(f"e{i}", {"x": i * 0.5}, i % 3, Prediction(1, {}), None, 5.0 + i)
        for i in range(3 * CHUNK + 5)
    ]
    for count, example in enumerate(examples, 1):
        buffer.add(example)
        assert len(buffer) == count
    messages = buffer.take()
    assert len(buffer) == 0 and buffer.take() == []
    assert all(len(m) <= limit for m in messages)
    assert [e for m in messages for e in decode_log_entries(m)] == examples
    if limit == 1 << 20:
        assert messages == join_log_entries([encode_log_entry(e) for e in examples], limit)
    for message in messages:
        part = decode_log_entries(message)
        assert join_log_entries([encode_log_entry(e) for e in part], 1 << 20) == [message]


class _Features(dict[str, float]):
    """Features that can be watched with a weak reference (a plain dict cannot)."""


def test_the_buffer_lets_go_of_each_chunk_of_examples_once_it_is_encoded() -> None:
    buffer = LogBuffer(1 << 20)
    watched = []
    for i in range(CHUNK):
        features = _Features(x=float(i))
        watched.append(weakref.ref(features))
        buffer.add(LabeledExample(f"e{i}", features, 1, Prediction(1, {}), None, 5.0))
        del features
    assert all(ref() is None for ref in watched) and len(buffer) == CHUNK
    assert [e.features for m in buffer.take() for e in decode_log_entries(m)] == [
        {"x": float(i)} for i in range(CHUNK)
    ]


def test_batches_of_varied_entries_are_the_joined_entries_byte_for_byte_within_the_limit() -> None:
    """The buffer guesses a message's entries from the last batch: never past the limit, and
    each message is exactly what joining :func:`encode_log_entry`'s bytes gives (old readers)."""
    limit = 700
    buffer = LogBuffer(limit)
    for batch in range(4):  # entries grow from batch to batch: the old guess is too big
        examples = [
            LabeledExample(
                f"e{batch}-{i}",
                {"x": i * 0.1},
                "y" * (batch * 40 + i % 7),
                Prediction(True, {}),
                None,
                5.0,
            )
            for i in range(25)
        ]
        for example in examples:
            buffer.add(example)
        messages = buffer.take()
        assert all(len(m) <= limit for m in messages) and len(messages) > 1
        decoded = [decode_log_entries(m) for m in messages]
        assert [e for part in decoded for e in part] == examples
        for message, part in zip(messages, decoded, strict=True):
            assert join_log_entries([encode_log_entry(e) for e in part], 1 << 20) == [message]
    assert buffer.take() == [] and len(buffer) == 0
