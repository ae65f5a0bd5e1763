"""A model version as one file an application loads itself, with River and the standard library.

``stream-app models export V --out model.river`` writes it; :func:`load` reads it back::

    from stream_app.artifact import load
    model = load("model.river")                  # checks the format and the checksum
    model.predict_one({"x": 1.0})                # (prediction, {class: probability}), as served
    model.estimator                              # the River estimator itself

The file is a zip archive with two members:

- ``header.json``: format, model name and version, factory path, task, classes (and whether the
  estimator learns them as booleans), the feature names it learned from, examples learned, the
  version record, River's version, and the SHA-256 of the estimator pickle;
- ``estimator.pickle``: the River estimator, pickled.

The pure-River equivalent of :func:`load`, for code that does not install stream_app::

    import json, pickle, zipfile
    with zipfile.ZipFile("model.river") as z:
        header = json.loads(z.read("header.json"))
        estimator = pickle.loads(z.read("estimator.pickle"))

The default factories' pipelines contain ``stream_app.models.OneHotStrings``, so their pickle needs
:mod:`stream_app.models` importable: that module imports River and the standard library only (not
Kafka, Faust, orjson or this package's other modules), and can be copied next to the application.
This module imports nothing of stream_app either. A pickle runs code when it loads: load only
artifacts you trust, as with any pickled model.

>>> from river import linear_model
>>> data = dumps(linear_model.LinearRegression(), {"model": "m", "version": 1, "task": "regression",
...     "classes": [], "binary": False, "examples_learned": 0})
>>> loads(data).predict_one({"x": 1.0})
(None, {})
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import platform
import zipfile
from pathlib import Path
from typing import Any, Final

__all__ = ["ESTIMATOR", "FORMAT", "HEADER", "Artifact", "ArtifactError", "dumps", "load", "loads"]

FORMAT: Final = "stream_app.artifact/1"
HEADER: Final = "header.json"
ESTIMATOR: Final = "estimator.pickle"


class ArtifactError(ValueError):
    """A file that is not an artifact, of an unknown format, or whose estimator fails its checksum.

    (A ``ValueError``, not a ``StreamAppError``: this module imports nothing of stream_app.)
    """


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A loaded artifact: the River estimator and the header that says how to read its answers."""

    estimator: Any
    header: dict[str, Any]

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return str(self.header["task"])

    @property
    def classes(self) -> list[Any]:
        """The classes, in the order the model knows them (the negative one first if binary)."""
        return list(self.header["classes"])

    @property
    def version(self) -> int:
        """The version it was exported from."""
        return int(self.header["version"])

    def predict_one(self, features: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        """Answer as the worker does: (prediction, probabilities keyed like the ``proba`` field).

        Mirrors :func:`stream_app.predict.predict_one` (tests/unit/test_artifact.py holds them
        equal) without its dependencies: a model that learned nothing says ``(None, {})``; a
        binary-only estimator's booleans are mapped back to the classes it was taught.
        """
        if not self.header["examples_learned"]:
            return None, {}
        if self.task == "regression":
            return float(self.estimator.predict_one(features)), {}
        proba = self.estimator.predict_proba_one(features)
        if not proba:
            return None, {}
        best = max(proba, key=proba.__getitem__)
        named = [(self._class(c), float(p)) for c, p in proba.items()]
        return self._class(best), {_key(c): p for c, p in named if c is not None}

    def _class(self, value: Any) -> Any:
        """Return the taught class of an estimator's answer (booleans for binary-only ones)."""
        if not self.header["binary"]:
            return value
        index = 1 if value else 0
        return self.classes[index] if index < len(self.classes) else None


def _key(label: Any) -> str:
    """Spell a class as a JSON key, as the worker does (``true``/``false`` for booleans)."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def dumps(estimator: Any, header: dict[str, Any]) -> bytes:
    """Write an artifact (zip bytes): ``header`` plus the format, checksum and versions."""
    pickled = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    full = {
        "format": FORMAT,
        **header,
        "estimator_sha256": hashlib.sha256(pickled).hexdigest(),
        "river_version": _river_version(),
        "python": platform.python_version(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(HEADER, json.dumps(full, indent=2, sort_keys=True))
        archive.writestr(ESTIMATOR, pickled)
    return buffer.getvalue()


def loads(data: bytes) -> Artifact:
    """Read an artifact from bytes; raise :class:`ArtifactError` if it is not a sound one."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            header = json.loads(archive.read(HEADER))
            pickled = archive.read(ESTIMATOR)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArtifactError(f"not a stream_app model artifact: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArtifactError(f"unknown artifact format; this code reads {FORMAT}")
    if hashlib.sha256(pickled).hexdigest() != header.get("estimator_sha256"):
        raise ArtifactError("the estimator fails its checksum")
    try:
        estimator = pickle.loads(pickled)  # noqa: S301 - checksummed; load only what you trust
    except Exception as exc:  # a missing module (a user's factory) or another River version
        raise ArtifactError(f"the estimator does not load: {type(exc).__name__}: {exc}") from exc
    return Artifact(estimator, header)


def load(path: str | Path) -> Artifact:
    """Read an artifact file written by ``stream-app models export``."""
    return loads(Path(path).read_bytes())


def _river_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("river")
    except PackageNotFoundError:  # a vendored copy
        return "unknown"
