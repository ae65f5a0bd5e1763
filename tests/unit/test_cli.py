"""The command line without the tools extra: the worker imports, a tool says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream_app import cli

WORKER_ONLY = """
import sys
sys.modules["rich"] = None
sys.modules["matplotlib"] = None
import stream_app.app, stream_app.cli, stream_app.worker.service, stream_app.client
from stream_app.settings import load_settings
from stream_app.worker.service import build_app
build_app(load_settings())
print("ok")
"""


def test_the_worker_builds_without_the_tools_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WORKER_ONLY], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_a_tool_without_its_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")] + ["rich"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed, even if imported
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "features": {"x": 1.0}, "label": true}\n')
    argv = ["train", str(rows), "--factory", "stream_app.models:logistic_regression"]
    assert cli.main([*argv, "--out", str(tmp_path / "m.river")]) == 1
    err = capsys.readouterr().err
    assert "needs rich" in err and "stream-app[tools]" in err
