"""A model version as one file an application loads itself, with River and the standard library.

``stream-app models export V --out model.river`` writes it; :func:`load` reads it back::

    from stream_app.artifact import load
    model = load("model.river")                  # checks the format, checksum (and signature)
    model.predict_one({"x": 1.0})                # (prediction, {class: probability}), as served
    model.estimator                              # the River estimator itself

The file is a zip archive with two or three members:

- ``header.json``: format, model name and version, factory path, task, classes (and whether the
  estimator learns them as booleans), the feature names it learned from, examples learned, the
  version record, River's and stream_app's versions, and the SHA-256 of the estimator pickle;
- ``estimator.pickle``: the River estimator, pickled;
- ``signature``: with ``registry.signing_key``, the hex HMAC-SHA256 of ``header.json`` (which
  holds the estimator's SHA-256). ``load(path, signing_key=...)`` refuses an artifact that is
  unsigned or wrongly signed.

:func:`load` unpickles with :mod:`stream_app.registry.safeload`: only River, stream_app and data
globals resolve, so a crafted file cannot run code (``trusted_modules`` adds your own factory
modules). The default factories' pipelines contain ``stream_app.models.OneHotStrings``, so their
pickle needs :mod:`stream_app.models` importable: that module imports River, the standard library
and :mod:`stream_app.errors` only (not Kafka, Faust, orjson or this package's other modules), and
can be copied next to the application, with :mod:`stream_app.registry.safeload`,
:mod:`stream_app.registry.signing` and :mod:`stream_app.errors` (standard library only), which
are all this module imports of stream_app. A plain ``pickle.loads``
of the member would run any code the file's writer chose: do not use it on files you did not make.

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
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from stream_app import __version__
from stream_app.errors import ArtifactError
from stream_app.registry import safeload, signing

__all__ = [
    "ESTIMATOR",
    "FORMAT",
    "HEADER",
    "SIGNATURE",
    "Artifact",
    "ArtifactError",
    "dumps",
    "load",
    "loads",
]

FORMAT: Final = "stream_app.artifact/1"
HEADER: Final = "header.json"
ESTIMATOR: Final = "estimator.pickle"
SIGNATURE: Final = "signature"
UNTRUSTED: Final = "untrusted"


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

        Mirrors :func:`stream_app.core.predict.predict_one` (tests/unit/test_artifact.py holds them
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


def dumps(estimator: Any, header: dict[str, Any], signing_key: str = "") -> bytes:
    """Write an artifact (zip bytes): ``header`` plus format, checksum, versions and signature."""
    pickled = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    full = {
        "format": FORMAT,
        **header,
        "estimator_sha256": hashlib.sha256(pickled).hexdigest(),
        "river_version": _river_version(),
        "stream_app_version": __version__,
        "python": platform.python_version(),
    }
    written = json.dumps(full, indent=2, sort_keys=True).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(HEADER, written)
        archive.writestr(ESTIMATOR, pickled)
        if signing_key:
            archive.writestr(SIGNATURE, signing.sign(written, signing_key))
    return buffer.getvalue()


def loads(data: bytes, signing_key: str = "", trusted_modules: Iterable[str] = ()) -> Artifact:
    """Read an artifact from bytes; raise :class:`ArtifactError` if it is not a sound one.

    With ``signing_key``, the artifact must carry the key's signature; its pickle may name only
    the globals :mod:`stream_app.registry.safeload` allows, plus those of ``trusted_modules``.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            written = archive.read(HEADER)
            pickled = archive.read(ESTIMATOR)
            names = archive.namelist()
            signature = archive.read(SIGNATURE).decode() if SIGNATURE in names else ""
        header = json.loads(written)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArtifactError(f"not a stream_app model artifact: {exc}") from None
    refusal = signing.verify(written, signature, signing_key)
    if refusal is not None:
        raise ArtifactError(f"the artifact is refused: {refusal}", refusal)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArtifactError(f"unknown artifact format; this code reads {FORMAT}")
    if hashlib.sha256(pickled).hexdigest() != header.get("estimator_sha256"):
        raise ArtifactError("the estimator fails its checksum")
    try:
        estimator = safeload.loads(pickled, trusted_modules)
    except safeload.UntrustedGlobal as exc:
        raise ArtifactError(f"the estimator is refused: {exc}", UNTRUSTED) from exc
    except Exception as exc:  # a missing module (a user's factory) or another River version
        raise ArtifactError(f"the estimator does not load: {type(exc).__name__}: {exc}") from exc
    return Artifact(estimator, header)


def load(path: str | Path, signing_key: str = "", trusted_modules: Iterable[str] = ()) -> Artifact:
    """Read an artifact file written by ``stream-app models export`` (see :func:`loads`)."""
    return loads(Path(path).read_bytes(), signing_key, trusted_modules)


def _river_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("river")
    except PackageNotFoundError:  # a vendored copy
        return "unknown"
