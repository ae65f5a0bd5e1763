"""Instructions per event on the straight path, counted by valgrind: the same on a busy machine.

    python bench/instructions.py [--config defaults|features_off] [--warm 3000] [--events 3000]
                                 [--without learned,drift,names,label,encode,log,quality]
                                 [--guard JSON]

Without ``--config`` it counts both, the shipped defaults first (what users run).

Runs :mod:`bench.profile_path`'s path (event mode) under ``valgrind --tool=callgrind``: ``--warm``
events first, then ``--events`` more between two markers (callgrind dumps its counts each time
``os.getppid`` is called), so the figure is the measured events' alone, without start-up, imports
or making the events. Repeated runs agree to about 0.3%. ``--without`` removes pieces after the
warm-up to price them (the path then does less than it must: a measurement, never a
configuration): the learned-id memory, the drift monitor, feature-name tracking, the label check
(its call, which plain labels skip already), encoding the prediction, the learning log, the
quality window. ``--guard`` overrides [guard] settings (``'{"enabled": false}'`` with ``--config
defaults`` prices the guard: the defaults' count against it). Needs valgrind and an interpreter
with its symbols. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.profile_path import Rec, pipeline, run
from bench.run import make_events
from stream_app.settings import Settings
from stream_app.worker.collector import tune_collector

PIECES = ("learned", "drift", "names", "label", "encode", "log", "quality")
CONFIGS = ("defaults", "features_off")
"""Configurations of :mod:`bench.run`, the shipped defaults first."""


def remove(piece: str, path: Any) -> None:
    """Make one piece of the path do nothing (to price it)."""
    import stream_app.core.pipeline as module
    from stream_app.core.join import RecentIds
    from stream_app.core.learning_log import LogBuffer

    learner = path.learner
    if piece == "learned":
        RecentIds.add = lambda self, event_id, now: None  # type: ignore[method-assign]
        RecentIds.__contains__ = lambda self, event_id: False  # type: ignore[method-assign]
    elif piece == "drift":
        learner.monitor.update = lambda error: False
    elif piece == "names":
        learner.serving.model.note_names = lambda names: None
    elif piece == "label":
        module.check_label = lambda label, task, classes, chars: label  # type: ignore[assignment]
    elif piece == "encode":
        module.encode_prediction = lambda *fields: b"{}"  # type: ignore[assignment]
    elif piece == "log":
        LogBuffer.add = lambda self, example: None  # type: ignore[method-assign]
    elif piece == "quality":
        learner.serving.quality.add = lambda error: None


def inner(config: str, warm: int, events: int, without: list[str], guard: dict[str, Any]) -> None:
    """The measured process: warm up, remove pieces, then the events between the markers."""
    made = make_events(warm + events)
    records = [Rec(i, key, value) for i, (key, value, _, _) in enumerate(made)]
    tune_collector(Settings().serve.gc_threshold)
    path = pipeline("event", False, config, guard)
    run(path, records[:warm])
    for piece in without:
        remove(piece, path)
    os.getppid()  # (callgrind dumps here and at the next: the second part is the events')
    run(path, records[warm:])
    os.getppid()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", choices=CONFIGS, help="one of them (default: each in turn)")
    parser.add_argument("--warm", type=int, default=3000)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--without", default="", help=f"comma-separated: {', '.join(PIECES)}")
    parser.add_argument("--guard", type=json.loads, default={}, help="[guard] overrides, JSON")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    without = [p for p in args.without.split(",") if p]
    if unknown := sorted(set(without) - set(PIECES)):
        parser.error(f"--without knows {', '.join(PIECES)}; not {', '.join(unknown)}")
    if args.inner:
        inner(args.config, args.warm, args.events, without, args.guard)
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    for config in [args.config] if args.config else CONFIGS:
        per_event = count(valgrind, config, args.warm, args.events, without, args.guard)
        if per_event is None:
            print("no count between the markers: does valgrind see os_getppid?", file=sys.stderr)
            return 2
        print(
            f"bench/instructions.py: {config}, event mode, {args.events} events after "
            f"{args.warm}{', without ' + ', '.join(without) if without else ''}"
            f"{', guard ' + json.dumps(args.guard) if args.guard else ''}: "
            f"{per_event:,.0f} instructions an event"
        )
    return 0


def count(
    valgrind: str,
    config: str,
    warm: int,
    events: int,
    without: list[str],
    guard: dict[str, Any] | None = None,
) -> float | None:
    """Instructions an event of ``config``'s measured events, or None without the markers."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [valgrind, "--tool=callgrind", "--dump-before=os_getppid"]
        command += [f"--callgrind-out-file={out}", sys.executable, __file__, "--inner"]
        command += ["--config", config, "--warm", str(warm)]
        command += ["--events", str(events), "--without", ",".join(without)]
        command += ["--guard", json.dumps(guard or {})]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, env=env, capture_output=True)
        part = Path(f"{out}.2")
        if not part.exists():
            return None
        lines = part.read_text().splitlines()
        total = next(int(line.split()[1]) for line in lines if line.startswith("summary:"))
    return total / events


if __name__ == "__main__":
    raise SystemExit(main())
