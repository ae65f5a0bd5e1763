"""The README's five-minute tour, run as written against a real broker and worker.

The commands between ``<!-- tour:start -->`` and ``<!-- tour:end -->`` run in order, in a scratch
directory that links the repo's ``.venv`` and ``examples``. The two background lines are what this
test provides itself: the session broker, and a worker started with the environment the README's
worker line sets. Where a person would read for a moment (after sending a file), the test waits
until the worker has consumed it. Only the worker's address differs: the README's 127.0.0.1:6066
becomes this worker's port.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import orjson

from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    read_registry,
    stream_app_command,
    wait_consumed,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
TOPIC_FLAG = re.compile(r"--topic\s+(\S+)")


def tour_commands() -> list[str]:
    """The shell lines of the README tour, continuation lines joined, comments and blanks gone."""
    text = (ROOT / "README.md").read_text()
    tour = text.split("<!-- tour:start -->", 1)[1].split("<!-- tour:end -->", 1)[0]
    block = tour.split("```sh", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if words and words[-1] == "&":
            commands.append(shlex.join(words[:-1]) + " &")
        elif words:
            commands.append(shlex.join(words))
    return commands


def worker_env(command: str) -> dict[str, str]:
    """The ``NAME=value`` assignments in front of the README's worker command."""
    return dict(w.split("=", 1) for w in shlex.split(command) if re.match(r"^[A-Z_]+=", w))


async def test_the_readme_tour_runs_as_written(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    commands = tour_commands()
    background = [c for c in commands if c.endswith("&")]
    assert [("broker" in c, "worker" in c) for c in background] == [(True, False), (False, True)]
    settings = "".join(
        f"[{k.split('__')[0].removeprefix('STREAM_APP_').lower()}]\n"
        f"{k.split('__')[1].lower()} = {v}\n"
        for k, v in worker_env(background[1]).items()
    )
    worker = worker_factory(stream_app_command(), partitions=1, extra_config=settings)
    worker.wait_healthy()
    for name in (".venv", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    group = f"{names.app_id}-serve"
    outputs: dict[str, str] = {}
    for command in commands:
        if command.endswith("&"):
            continue
        if " models " in command:

            async def stored() -> object:
                return (await read_registry(kafka.bootstrap, names.app_id)).versions("default")

            await wait_for(stored, what="the first checkpoint (a person reads meanwhile)")
        line = command.replace("127.0.0.1:6066", f"127.0.0.1:{worker.web_port}")
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env={**worker.env, "PATH": os.environ["PATH"]},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs[command] = done.stdout
        if " produce " in command:
            flag = TOPIC_FLAG.search(command)
            topic = names.topics[flag.group(1) if flag else "features"]
            await wait_consumed(kafka.bootstrap, group, topic)

    by_start = {c.split(" --")[0]: out for c, out in outputs.items()}
    assert len(by_start[".venv/bin/stream-app tail predictions"].strip().splitlines()) == 3
    answer = orjson.loads(next(out for c, out in outputs.items() if "/predict" in c))
    assert answer["prediction"] in (0, 1) and answer["model"] == "default"
    assert re.search(r"^\s+1\s", by_start[".venv/bin/stream-app models list"], re.M)  # v1 listed
    assert (tmp_path / "model.river").stat().st_size > 0
    scored = (tmp_path / "scored.jsonl").read_bytes().splitlines()
    assert len(scored) == 2000 and orjson.loads(scored[0])["model_version"] == 1
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    metrics = worker.metrics()
    rejected = sum(
        v for k, v in metrics.items() if k.startswith("stream_app_labels_rejected_total")
    )
    assert metrics["stream_app_labels_learned_total"] + rejected == 2020  # inline and delayed
