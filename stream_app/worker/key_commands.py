"""Operations on one model key, carried out by the worker that owns it: rollback and reset.

A key's live model is in the memory of one worker only, the one that serves the key's home
partition (``murmur2(key) % partitions``). So an operation on a key is not sent to the single
writer: it goes to the key's home partition of ``<app id>-key-commands``, a topic partitioned like
``features`` that the serve loop reads with them (range assignor), so it reaches the owner, and
after a rebalance the new owner. The owner carries it out inside a batch, as it serves:

- ``rollback`` (a stored ``version``): that version becomes the key's live learner at once;
- ``reset``: a fresh learner from ``model.factory`` becomes the key's live one at once;

and in both cases the new learner is stored as the key's next version (reason ``rollback`` or
``reset``) with the batch's outputs, so a restart, or the next owner, serves it too. The answer
goes to ``model-events`` with the request id, ``model_key`` and the new ``model_version``, sent
with the same batch. A command is read at least once: one read again after a crash does again
what it did (a rollback stores the same state once more; a reset starts the key over again).

>>> command = encode_key_command("reset", "user-17", None, "default", "r-1")
>>> parse_key_command(command)
KeyCommand(op='reset', key='user-17', version=None, request_id='r-1')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson

from stream_app.core.keyed import model_key
from stream_app.core.learn import Learner
from stream_app.core.messages import encode_model_event
from stream_app.core.ports import Outputs, Record
from stream_app.core.route import home_partition
from stream_app.errors import CorruptVersion, OperationRefused, RejectedMessage
from stream_app.registry.keyed import decode_version

if TYPE_CHECKING:
    from stream_app.core.pipeline import Pipeline
    from stream_app.worker.keyed_store import KeyedStore

__all__ = ["KEY_OPERATIONS", "KeyCommand", "carry_out", "encode_key_command", "parse_key_command"]

log = logging.getLogger(__name__)

KEY_OPERATIONS: Final = ("rollback", "reset")
"""What an operator can do to one key's live model (``stream-app models rollback|reset --key``)."""
_KEY: Final = "key"
"""The command's field that names the model key."""


class KeyCommand(NamedTuple):
    """One operation on one key, as the owner reads it."""

    op: str
    key: str
    version: int | None
    request_id: str


def encode_key_command(
    op: str, key: str, version: int | None, model: str, request_id: str
) -> bytes:
    """Encode an operation on ``key`` for ``<app id>-key-commands`` (record key: the model key)."""
    body = {"op": op, _KEY: key, "version": version, "model": model, "request_id": request_id}
    return orjson.dumps(body)


def parse_key_command(raw: bytes | None) -> KeyCommand:
    """Read a key command; raise ``OperationRefused`` if it is not one.

    >>> parse_key_command(b'{"op": "rollback", "key": "u", "request_id": "r"}')
    Traceback (most recent call last):
    ...
    stream_app.errors.OperationRefused: rollback needs a version (an integer)
    >>> parse_key_command(b'{"op": "drop", "key": "u"}')
    Traceback (most recent call last):
    ...
    stream_app.errors.OperationRefused: unknown key operation 'drop'
    """
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise OperationRefused(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise OperationRefused("a key command is a JSON object")
    op = body.get("op")
    if op not in KEY_OPERATIONS:
        raise OperationRefused(f"unknown key operation {op!r:.40}")
    try:
        key = model_key(body, _KEY)
    except RejectedMessage as rejected:
        raise OperationRefused(rejected.detail) from None
    version = body.get("version")
    if op == "rollback" and type(version) is not int:
        raise OperationRefused("rollback needs a version (an integer)")
    return KeyCommand(op, key, version if op == "rollback" else None, str(body.get("request_id")))


def rollback_target(record: Record) -> tuple[str, int] | None:
    """Return (key, version) if ``record`` is a well-formed rollback, else None.

    >>> class R: value = b'{"op": "rollback", "key": "u", "version": 3, "request_id": "r"}'
    >>> rollback_target(R())
    ('u', 3)
    """
    try:
        command = parse_key_command(record.value)
    except OperationRefused:
        return None  # carry_out logs it
    if command.op != "rollback" or command.version is None:
        return None
    return command.key, command.version


def carry_out(
    store: KeyedStore, pipeline: Pipeline, records: Sequence[Record], out: Outputs
) -> None:
    """Carry out the key commands of one batch, in order; queue each answer on ``out``."""
    name = store.settings.model.name
    for record in records:
        try:
            command = parse_key_command(record.value)
        except OperationRefused as exc:
            log.warning("ignoring a malformed key command at offset %d: %s", record.offset, exc)
            continue
        fields: dict[str, Any] = {"model_key": command.key, "request_id": command.request_id}
        try:
            version, source = _apply(store, pipeline, command, time.time())
            fields.update(ok=True, from_version=source)
        except (CorruptVersion, OperationRefused) as exc:
            version = -1
            fields.update(ok=False, error=str(exc))
            log.warning("key %r %s refused: %s", command.key, command.op, exc)
        event = encode_model_event(command.op, name, version, **fields)
        out.keyed(store.settings.topics.model_events, name.encode(), event)


def _apply(
    store: KeyedStore, pipeline: Pipeline, command: KeyCommand, now: float
) -> tuple[int, int | None]:
    """Make the command's learner the key's live one and store it; return (new, from) versions."""
    keys = pipeline.keys
    home = home_partition(command.key, store.partitions)
    if keys is None or not store.owns(home):
        raise OperationRefused(f"this worker does not own key {command.key!r} (partition {home})")
    if command.op == "reset":
        learner, source = Learner(store.settings), None
    else:
        assert command.version is not None  # parse_key_command checked it
        value = store.stored(command.key, command.version)
        if value is None:
            raise OperationRefused(f"key {command.key!r} has no stored version {command.version}")
        _, learner = decode_version(store.settings, value)
        source = command.version
    keys.replace(command.key, learner, home, now)
    store.save(command.key, home, learner, command.op, now)
    keys.checkpointed(command.key, now)
    store.metrics.key_checkpoints.inc()
    made = learner.serving.model.version
    log.info("key %r: %s%s is now v%d", command.key, command.op, _from(source), made)
    return made, source


def _from(source: int | None) -> str:
    """`` from vN`` for a log line, or nothing for a reset."""
    return "" if source is None else f" from v{source}"
