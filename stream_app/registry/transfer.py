"""Model versions in and out of the registry as artifact files (:mod:`stream_app.artifact`).

Export reads a stored version and writes its estimator with what is needed to answer like the
worker. Import goes through the single writer: ``stream-app models import`` sends the file as
``import`` commands on the commands topic, in chunks (a model can exceed Kafka's 1 MB message
limit); the writer reassembles them (:class:`Assembler`), checks the model fits the one it serves,
stores it as a new ``shadow`` version (reason ``import``) and lets it learn and answer in shadow,
on ``predictions-shadow``, until ``promote`` makes it serve.

Before storing it, the writer checks the artifact as it would a stored version (signature under
``registry.signing_key``, only allowlisted globals in its pickle), then that its estimator is a
River estimator of the serving model's task that answers a probe made of the serving model's
features.
A refusal is an :class:`ImportRefused` whose ``reason`` the worker counts.

>>> from stream_app.settings import ModelSettings
>>> from stream_app.core.predict import fresh_model
>>> model = fresh_model(ModelSettings())
>>> restored = serving_model(loads(artifact_of(model, None)), "default", 7)
>>> restored.version, restored.task, restored.labels.binary
(7, 'classification', True)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from numbers import Real
from typing import Any, Final

from river import base

from stream_app.artifact import Artifact, dumps, loads
from stream_app.core.label import LabelCodec
from stream_app.core.learn import Learner
from stream_app.core.predict import ServingModel
from stream_app.errors import (
    ArtifactError,
    ImportRefused,
    OperationRefused,
    StreamAppError,
)
from stream_app.models import task_of
from stream_app.registry.checkpoint import FORMAT, Write, load_model
from stream_app.registry.records import (
    Registry,
    VersionRecord,
    chunk_key,
    encode_blob,
    record_key,
    written_by,
)
from stream_app.settings import Settings

__all__ = [
    "PROBE_VALUE",
    "Assembler",
    "ImportRefused",
    "admit",
    "artifact_of",
    "check_estimator",
    "check_fits",
    "export_version",
    "import_commands",
    "serving_model",
]

PROBE_VALUE: Final = 0.0
"""The value of every known feature in the probe an imported estimator must answer."""


def artifact_of(
    model: ServingModel, record: dict[str, Any] | None, factory: str = "", signing_key: str = ""
) -> bytes:
    """Write a model (and its version record, if stored) as artifact bytes, signed with a key."""
    header = {
        "model": model.name,
        "version": model.version,
        "factory": record["factory"] if record else (factory or model.factory),
        "task": model.task,
        "classes": list(model.labels.classes),
        "binary": model.labels.binary,
        "feature_names": sorted(model.feature_names),
        "examples_learned": model.examples_learned,
        "record": record,
    }
    return dumps(model.estimator, header, signing_key)


def export_version(registry: Registry, name: str, version: int, signing_key: str = "") -> bytes:
    """Write a stored version as artifact bytes; raise ``StreamAppError`` if it is not stored."""
    record = registry.record(name, version)
    if record is None:
        raise StreamAppError(f"{name} v{version} is not stored")
    model = load_model(registry, name, version).model
    return artifact_of(model, record.summary(), signing_key=signing_key)


def check_estimator(imported: ServingModel, serving: ServingModel) -> None:
    """Refuse the import unless ``imported`` is a River estimator of our task that answers.

    A refusal is an :class:`~stream_app.errors.OperationRefused`.

    The probe is every feature either model knows, at :data:`PROBE_VALUE`.

    >>> from stream_app.settings import ModelSettings
    >>> from stream_app.core.predict import fresh_model
    >>> model = fresh_model(ModelSettings())
    >>> check_estimator(model, model)
    >>> model.estimator = 7
    >>> check_estimator(model, model)
    Traceback (most recent call last):
    ...
    stream_app.errors.OperationRefused: the imported object is a int, not a River estimator
    """
    estimator: Any = imported.estimator
    if not isinstance(imported.estimator, base.Estimator):
        raise OperationRefused(
            f"the imported object is a {type(estimator).__name__}, not a River estimator"
        )
    try:
        task = task_of(estimator)
    except TypeError as exc:
        raise OperationRefused(str(exc)) from None
    if task != serving.task:
        raise OperationRefused(
            f"the imported estimator does {task}; this model does {serving.task}"
        )
    probe = dict.fromkeys(sorted(serving.feature_names | imported.feature_names), PROBE_VALUE)
    try:
        if task == "classification":
            answer: Any = estimator.predict_proba_one(probe)
            ok = isinstance(answer, dict)
        else:
            answer = estimator.predict_one(probe)
            ok = isinstance(answer, Real)
    except Exception as exc:  # any failure refuses the import; serving never sees it
        raise OperationRefused(
            f"the imported estimator fails a probe: {type(exc).__name__}: {exc}"
        ) from None
    if not ok:
        raise OperationRefused(
            f"the imported estimator answers a probe with {type(answer).__name__}"
        )


def serving_model(artifact: Artifact, name: str, version: int) -> ServingModel:
    """Turn a loaded artifact into a model the worker serves, as ``name`` ``version``."""
    header = artifact.header
    codec = LabelCodec(artifact.task, binary=bool(header["binary"]), declared=())
    codec.classes = artifact.classes
    return ServingModel(
        name,
        version,
        artifact.estimator,
        artifact.task,
        codec,
        examples_learned=int(header["examples_learned"]),
        feature_names=set(header.get("feature_names", ())),
        factory=str(header.get("factory", "")),
    )


def check_fits(imported: ServingModel, serving: ServingModel) -> None:
    """Refuse the import unless ``imported`` can answer and learn the serving model's labels.

    A refusal is an :class:`~stream_app.errors.OperationRefused`.

    >>> from stream_app.settings import ModelSettings
    >>> from stream_app.core.predict import fresh_model
    >>> a, b = fresh_model(ModelSettings()), fresh_model(ModelSettings())
    >>> a.labels.classes, b.labels.classes = ["ham", "spam"], ["cat", "dog"]
    >>> try:
    ...     check_fits(a, b)
    ... except OperationRefused as refused:
    ...     print(refused)
    the imported model knows the classes ['ham', 'spam']; this one ['cat', 'dog']
    """
    if imported.task != serving.task:
        raise OperationRefused(
            f"the imported model is a {imported.task} model; this is {serving.task}"
        )
    mine, theirs = imported.labels.classes, serving.labels.classes
    if mine and theirs and sorted(map(repr, mine)) != sorted(map(repr, theirs)):
        raise OperationRefused(
            f"the imported model knows the classes {mine!r:.100}; this one {theirs!r:.100}"
        )
    if imported.labels.binary and theirs and mine and mine[0] != theirs[0]:
        raise OperationRefused(
            f"the imported model's negative class is {mine[0]!r}, not {theirs[0]!r}"
        )


def import_commands(
    data: bytes, model: str, request_id: str, chunk_bytes: int
) -> list[dict[str, Any]]:
    """Split an artifact into ``import`` commands of at most ``chunk_bytes`` (before base64).

    >>> [c["part"] for c in import_commands(b"x" * 10, "default", "r1", chunk_bytes=4)]
    [0, 1, 2]
    """
    pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    digest = hashlib.sha256(data).hexdigest()
    return [
        {
            "op": "import",
            "model": model,
            "request_id": request_id,
            "part": index,
            "parts": len(pieces),
            "sha256": digest,
            "data": base64.b64encode(piece).decode("ascii"),
        }
        for index, piece in enumerate(pieces)
    ]


class Assembler:
    """Collects the chunks of one import at a time (a new request id drops an unfinished one).

    At most ``max_bytes`` are held: a larger import is refused (and forgotten) as it arrives.

    >>> assembler = Assembler()
    >>> [assembler.add(c) for c in import_commands(b"hello", "default", "r1", chunk_bytes=2)]
    [None, None, b'hello']
    >>> small = Assembler(max_bytes=4)
    >>> [small.add(c) for c in import_commands(b"hello", "default", "r2", chunk_bytes=2)]
    Traceback (most recent call last):
    ...
    stream_app.errors.OperationRefused: the import is larger than registry.max_import_bytes (4 B)
    """

    def __init__(self, max_bytes: int = 2**28) -> None:
        self.max_bytes = max_bytes
        self._request: str | None = None
        self._parts: dict[int, bytes] = {}
        self._held = 0

    def add(self, command: dict[str, Any]) -> bytes | None:
        """Take one chunk; return the whole artifact once its last chunk is in, else None."""
        try:
            request, part, parts = command["request_id"], command["part"], command["parts"]
            data = base64.b64decode(command["data"], validate=True)
            digest = command["sha256"]
        except (KeyError, TypeError, binascii.Error) as exc:
            raise OperationRefused(f"a malformed import chunk: {exc}") from None
        if not (type(part) is int and type(parts) is int and 0 <= part < parts):
            raise OperationRefused("an import chunk needs integer part < parts")
        if request != self._request:
            self._request, self._parts, self._held = request, {}, 0
        self._held += len(data) - len(self._parts.get(part, b""))
        self._parts[part] = data
        if self._held > self.max_bytes or parts > self.max_bytes:
            self._request, self._parts, self._held = None, {}, 0
            raise OperationRefused(
                f"the import is larger than registry.max_import_bytes ({self.max_bytes} B)"
            )
        if len(self._parts) < parts:
            return None
        whole = b"".join(self._parts[i] for i in range(parts))
        self._request, self._parts, self._held = None, {}, 0
        if hashlib.sha256(whole).hexdigest() != digest:
            raise OperationRefused("the imported artifact fails its checksum")
        return whole


def admit(
    settings: Settings, learner: Learner, registry: Registry, data: bytes
) -> tuple[VersionRecord, list[Write]]:
    """Make an artifact the learner's challenger, numbered next; return its record and writes.

    Raises :class:`ImportRefused` (and changes nothing) if the artifact is not trusted, does not
    load, or does not fit.
    """
    s = settings.registry
    try:
        artifact = loads(data, s.signing_key, s.trusted_modules)
    except ArtifactError as exc:
        raise ImportRefused(str(exc), exc.reason) from None
    name = settings.model.name
    try:
        model = serving_model(artifact, name, 0)
        check_estimator(model, learner.serving.model)
        check_fits(model, learner.serving.model)
    except (OperationRefused, KeyError, TypeError, ValueError) as exc:  # a header read as data
        raise ImportRefused(f"the imported model does not fit: {exc}") from None
    model.version = learner.allocate_version(registry.latest(name))
    contender = learner.challenge(model)
    blob = encode_blob(
        {"format": FORMAT, "contender": contender},
        s.chunk_bytes,
        s.compression_level,
        s.signing_key,
    )
    record = VersionRecord(
        model=name,
        version=model.version,
        parent=None,
        created_at=time.time(),
        examples_learned=model.examples_learned,
        quality={"metric": contender.quality.metric, "value": None, "window": 0},
        reason="import",
        status="shadow",
        size=blob.size,
        sha256=blob.sha256,
        chunks=len(blob.chunks),
        factory=str(artifact.header.get("factory", "")),
        task=model.task,
        learned_through=learner.learned_through,
        signature=blob.signature,
        **written_by(),
    )
    writes: list[Write] = [
        (chunk_key(name, model.version, i), c) for i, c in enumerate(blob.chunks)
    ]
    writes.append((record_key(name, model.version), record.to_json()))
    return record, writes
