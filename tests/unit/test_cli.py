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


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["models", "reset"], "models reset needs --key K"),
        (["models", "show"], "models show needs a version (or --key K)"),
        (["models", "export", "--out", "m.artifact"], "models export needs a version (or --key K)"),
        (["models", "pin", "3", "--key", "u"], "unrecognized arguments: --key u"),
    ],
)
def test_operations_per_key_are_refused_before_any_broker_is_asked(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key operation without its key (or a global one given a key) never reaches Kafka."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse refuses unknown arguments itself
        code = int(exit_.code or 0)
    assert code != 0 and says in capsys.readouterr().err
