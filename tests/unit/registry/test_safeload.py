"""Loading stored models runs no code the bytes chose: the allowlist, renames, signatures."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import pickle
import re
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from stream_app import artifact
from stream_app.core.learn import Learner
from stream_app.core.quality import Quality
from stream_app.registry import safeload
from stream_app.registry.records import (
    CorruptVersion,
    Registry,
    VersionRecord,
    chunk_key,
    decode_blob,
    encode_blob,
    record_key,
    written_by,
)
from stream_app.registry.transfer import ImportRefused, admit, artifact_of
from stream_app.settings import RegistrySettings, Settings
from tests.unit.test_artifact import spam_model

KEY = "s3cret-signing-key"


class Creates:
    """Pickles as a call of ``func(*args)``: what a crafted blob does when it loads."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


class Local:
    """A class of a module that is not allowed unless trusted."""

    def __init__(self) -> None:
        self.value = 3


def crafted(tmp_path: Path) -> list[tuple[str, bytes]]:
    """Pickles that would create a file, run a command or evaluate code when loaded."""
    target = tmp_path / "pwned"
    return [
        ("pathlib:Path.touch", pickle.dumps(Creates(pathlib.Path.touch, target))),
        ("posix:system", pickle.dumps(Creates(os.system, f"touch {target}"))),
        ("builtins:eval", pickle.dumps(Creates(eval, f"open({str(target)!r}, 'w')"))),
        ("builtins:exec", pickle.dumps(Creates(exec, f"open({str(target)!r}, 'w')"))),
        ("subprocess:Popen", pickle.dumps(Creates(subprocess.Popen, ["touch", str(target)]))),
        ("io:open", pickle.dumps(Creates(open, str(target), "w"))),
    ]


def test_crafted_pickles_are_refused_and_run_nothing(tmp_path: Path) -> None:
    for name, data in crafted(tmp_path):
        with pytest.raises(safeload.UntrustedGlobal, match=re.escape(name)) as refused:
            safeload.loads(data)
        assert refused.value.name == name
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("stream_app.tools.broker", "fetch_kafka"),  # a stream_app function, not a class
        ("stream_app.__main__", "main"),  # importing it would run the CLI
        ("stream_app.registry.records", "hashlib.sha256"),  # reaching through an allowed module
        ("river.datasets.base", "RemoteDataset"),  # River's file-writing corner
        ("river.stream.cache", "Cache"),
        ("river", "__builtins__"),
    ],
)
def test_globals_reached_through_allowed_packages_are_refused(module: str, name: str) -> None:
    data = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" + _stack_global(module, name) + b"."
    with pytest.raises(safeload.UntrustedGlobal):
        safeload.loads(data)


def _stack_global(module: str, name: str) -> bytes:
    """Protocol 4 opcodes that push the global ``module.name``."""
    out = b""
    for text in (module, name):
        raw = text.encode()
        out += b"\x8c" + bytes([len(raw)]) + raw
    return out + b"\x93"


def test_a_users_module_loads_once_trusted() -> None:
    data = pickle.dumps(Local())
    refused = re.escape("tests.unit.registry.test_safeload:Local")
    with pytest.raises(safeload.UntrustedGlobal, match=refused):
        safeload.loads(data)
    assert safeload.loads(data, trusted_modules=["tests.unit"]).value == 3


def test_a_moved_class_loads_through_the_rename_map() -> None:
    state = Learner(Settings()).snapshot()
    moved = pickle.dumps(state).replace(b"stream_app.core.guard", b"stream_app.core.gvard")
    data = moved  # the same length: still a valid pickle
    with pytest.raises(ModuleNotFoundError, match=re.escape("stream_app.core.gvard")):
        safeload.loads(data)  # the module is not there any more
    renames = {
        **safeload.RENAMES,
        "stream_app.core.gvard:NoiseGuard": "stream_app.core.guard:NoiseGuard",
    }
    loaded = safeload.SafeUnpickler(_bytes_io(data), renames=renames).load()
    assert type(loaded["serving"].guard).__name__ == "NoiseGuard"


@pytest.mark.parametrize("old", ["stream_app.learn", "stream_app.core.learn"])
def test_the_quality_window_stored_under_the_learn_module_loads_from_its_own(old: str) -> None:
    unpickler = safeload.SafeUnpickler(_bytes_io(b""))
    assert unpickler.find_class(old, "Quality") is Quality


def _bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def test_an_untrusted_blob_is_a_corrupt_version_with_its_reason(tmp_path: Path) -> None:
    packed = zlib.compress(crafted(tmp_path)[0][1])
    blob = encode_blob(None, 1024)._replace(chunks=[packed])
    with pytest.raises(CorruptVersion, match=re.escape("pathlib:Path.touch")) as refused:
        decode_blob([packed], hashlib.sha256(packed).hexdigest())
    assert refused.value.reason == "untrusted"
    assert blob.signature == "" and not (tmp_path / "pwned").exists()


def stored(registry: Registry, key: str) -> int:
    """Store one small version written with ``key`` (empty: unsigned); return its number."""
    blob = encode_blob({"format": 1, "x": [1, 2]}, 1024, key=key)
    version = registry.latest("m") + 1
    record = VersionRecord(
        "m", version, None, 0.0, 0, {}, "periodic", "serving", blob.size, blob.sha256,
        len(blob.chunks), "f", "classification", blob.signature, **written_by(),
    )  # fmt: skip
    for i, chunk in enumerate(blob.chunks):
        registry.apply(chunk_key("m", version, i), chunk)
    registry.apply(record_key("m", version), record.to_json())
    return version


def test_a_worker_with_a_key_refuses_unsigned_and_wrongly_signed_versions() -> None:
    keyed = Registry(RegistrySettings(signing_key=KEY))
    unsigned, wrong, good = stored(keyed, ""), stored(keyed, "another key"), stored(keyed, KEY)
    with pytest.raises(CorruptVersion) as refused:
        keyed.load("m", unsigned)
    assert refused.value.reason == "unsigned"
    with pytest.raises(CorruptVersion) as refused:
        keyed.load("m", wrong)
    assert refused.value.reason == "bad_signature"
    assert keyed.load("m", good)["x"] == [1, 2]
    plain = Registry()
    assert plain.load("m", stored(plain, ""))["x"] == [1, 2]  # no key: as before
    assert plain.load("m", stored(plain, KEY))["x"] == [1, 2]  # signed, read without a key


def test_artifacts_are_signed_and_checked(tmp_path: Path) -> None:
    model = spam_model()
    signed, unsigned = artifact_of(model, None, signing_key=KEY), artifact_of(model, None)
    assert artifact.loads(signed, KEY).classes == ["ham", "spam"]
    assert artifact.loads(signed).classes == ["ham", "spam"]  # a reader without a key
    for data, reason in ((unsigned, "unsigned"), (signed, "bad_signature")):
        key = KEY if reason == "unsigned" else "another key"
        with pytest.raises(artifact.ArtifactError) as refused:
            artifact.loads(data, key)
        assert refused.value.reason == reason


def evil_artifact(tmp_path: Path) -> bytes:
    """A sound-looking artifact whose estimator pickle would create a file (checksum matches)."""
    return artifact.dumps(Creates(pathlib.Path.touch, tmp_path / "pwned"), _header())


def _header() -> dict[str, Any]:
    return {
        "model": "default", "version": 1, "task": "classification", "classes": ["ham", "spam"],
        "binary": True, "examples_learned": 500, "feature_names": ["f0"],
    }  # fmt: skip


def test_artifact_load_refuses_a_crafted_estimator(tmp_path: Path) -> None:
    path = tmp_path / "model.river"
    path.write_bytes(evil_artifact(tmp_path))
    with pytest.raises(artifact.ArtifactError, match=re.escape("pathlib:Path.touch")) as refused:
        artifact.load(path)
    assert refused.value.reason == "untrusted" and not (tmp_path / "pwned").exists()


def test_an_import_must_be_a_river_estimator_of_the_task_that_answers(tmp_path: Path) -> None:
    settings = Settings()
    learner = Learner(settings, spam_model())
    cases = [
        (evil_artifact(tmp_path), "untrusted", "pathlib:Path.touch"),
        (artifact.dumps(7, _header()), "corrupt", "int, not a River estimator"),
        (artifact.dumps({"w": 1}, _header()), "corrupt", "dict, not a River estimator"),
        (artifact_of(spam_model(), None)[:-40], "corrupt", "not a stream_app model artifact"),
        (b"", "corrupt", "not a stream_app model artifact"),
    ]
    for data, reason, message in cases:
        with pytest.raises(ImportRefused, match=message) as refused:
            admit(settings, learner, Registry(), data)
        assert refused.value.reason == reason
    assert learner.challenger is None and not (tmp_path / "pwned").exists()
    keyed = Settings().replace(registry={"signing_key": KEY})
    with pytest.raises(ImportRefused) as refused:
        admit(keyed, learner, Registry(), artifact_of(spam_model(), None))
    assert refused.value.reason == "unsigned"
    record, _ = admit(keyed, learner, Registry(), artifact_of(spam_model(), None, "", KEY))
    assert record.signature and record.river_version and learner.challenger is not None


def test_the_signing_key_is_masked() -> None:
    settings = Settings().replace(registry={"signing_key": KEY})
    assert KEY not in repr(settings) and "signing_key=***" in repr(settings.registry)


def test_a_version_from_another_river_minor_loads_with_a_warning_and_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, seen = Registry(), []
    registry.on_foreign = seen.append
    same = stored(registry, "")
    registry.load("m", same)
    assert not seen
    blob = encode_blob({"format": 1}, 1024)
    older = VersionRecord(
        "m", 9, None, 0.0, 0, {}, "periodic", "serving", blob.size, blob.sha256, 1, "f",
        "classification", river_version="0.19.0", stream_app_version="0.0.1",
    )  # fmt: skip
    registry.apply(chunk_key("m", 9, 0), blob.chunks[0])
    registry.apply(record_key("m", 9), older.to_json())
    assert registry.load("m", 9) == {"format": 1}
    assert [r.version for r in seen] == [9]
    assert "written by River 0.19.0" in caplog.text
