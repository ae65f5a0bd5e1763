"""HTTP serving on one worker, side by side with the floor of the web stack.

    python bench/http_api.py [--seconds 3] [--connections 4] [--train 5000] [--json]

Targets, same River model (the worker's checkpointed version, exported with
``stream-app models export`` and loaded with ``stream_app.artifact``):

(a) floor: a bare aiohttp app in its own process: orjson in, the model, orjson out, no checks;
(b) worker: ``POST /predict`` and ``POST /predict/batch`` of a ``stream-app worker`` (validation,
    the live learner, metrics, Faust's web server).

Requests: one event (``/predict``), batches of 100 and 1,000 events (``/predict/batch``), sent by
an aiohttp client on loopback with a few concurrent connections for ``--seconds`` each. Prints
requests/s, events/s and latency p50/p99 per request (or one JSON object); asserts nothing.
Starts its own broker unless STREAM_APP_BROKER is set.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from stream_app.artifact import load
from stream_app.core.predict import predict_many, predict_one
from stream_app.registry.transfer import serving_model
from stream_app.settings import Settings
from stream_app.tools.broker import free_port

_spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).parent / "run.py")
assert _spec is not None and _spec.loader is not None
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)

SIZES = (1, 100, 1000)


def floor_server(artifact_path: str, port: int) -> None:
    """(a) The floor: parse, ask the same model the same way, encode; nothing else."""
    model = serving_model(load(artifact_path), "default", 0)
    min_rows = Settings().inference.many_min_rows

    def encode(event_id: str, answer: Any) -> dict[str, Any]:
        return {"id": event_id, "prediction": answer.prediction, "proba": answer.proba}

    async def single(request: web.Request) -> web.Response:
        event = orjson.loads(await request.read())
        body = orjson.dumps(encode(event["id"], predict_one(model, event["features"])))
        return web.Response(body=body, content_type="application/json")

    async def batch(request: web.Request) -> web.Response:
        events = orjson.loads(await request.read())["events"]
        answers = predict_many(model, [e["features"] for e in events], min_rows)
        out = [encode(e["id"], a) for e, a in zip(events, answers, strict=True)]
        return web.Response(
            body=orjson.dumps({"predictions": out}), content_type="application/json"
        )

    app = web.Application(client_max_size=Settings().web.max_batch_bytes)
    app.router.add_post("/predict", single)
    app.router.add_post("/predict/batch", batch)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def load_run(url: str, bodies: list[bytes], seconds: float, connections: int) -> dict:
    """Send ``bodies`` round-robin from ``connections`` loops for ``seconds``; time each request."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> None:
            started = time.perf_counter()
            async with session.post(url, data=body) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
            latencies.append(time.perf_counter() - started)

        for body in bodies[:connections]:  # warm up the connections
            await one(body)
        latencies.clear()
        deadline = time.perf_counter() + seconds

        async def loop(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                await one(bodies[i % len(bodies)])
                i += connections

        started = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(connections)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests_per_s": len(ordered) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "requests": len(ordered),
    }


def request_bodies(events: list[Any], size: int) -> tuple[str, list[bytes]]:
    """Bodies of ``size`` events each (one event: /predict), from the probe events."""
    docs = [{"id": f"p-{i}", "features": x} for i, (_, _, x, _) in enumerate(events)]
    if size == 1:
        return "/predict", [orjson.dumps(d) for d in docs[:1000]]
    chunks = [docs[i : i + size] for i in range(0, len(docs) - size + 1, size)]
    return "/predict/batch", [orjson.dumps({"events": chunk}) for chunk in chunks]


def trained_worker(bootstrap: str, workdir: Path, train: int) -> tuple[Any, int, Path]:
    """Start a worker, teach it ``train`` labelled events, export its checkpoint to a file."""
    prefix = f"http-{uuid.uuid4().hex[:6]}"
    os.environ["STREAM_APP_REGISTRY__CHECKPOINT_EVERY_EXAMPLES"] = str(train)
    asyncio.run(run.prefill(bootstrap, f"{prefix}-features", run.make_events(train, seed=7)))
    proc, port = run.start_worker(bootstrap, prefix, "logistic_regression", workdir)
    run.wait_healthy(port)
    deadline = time.monotonic() + 120
    version = 0
    while not version and time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            version = orjson.loads(response.read())["serving"]
        time.sleep(0.2)
    if not version:
        raise RuntimeError("the worker made no checkpoint")
    path = workdir / "model.river"
    env = {
        **os.environ,
        "STREAM_APP_BROKER": f"kafka://{bootstrap}",
        "STREAM_APP_ID": prefix,
        "STREAM_APP_CONFIG": str(workdir / f"{prefix}.toml"),
    }
    subprocess.run(
        [sys.executable, "-m", "stream_app", "models", "export", str(version), "--out", str(path)],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return proc, port, path


def wait_answering(port: int, body: bytes, timeout: float = 30.0) -> None:
    """Wait until a server answers ``POST /predict``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body)
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def same_answers(worker: int, floor: int, bodies: list[bytes]) -> bool:
    """Check both targets give the same answers to the same events (the same model)."""

    def ask(port: int, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body)
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = orjson.loads(response.read())
            return {k: answer[k] for k in ("id", "prediction", "proba")}

    return all(ask(worker, body) == ask(floor, body) for body in bodies[:20])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--train", type=int, default=5000, help="labelled events taught first")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--floor-server", nargs=2, metavar=("ARTIFACT", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.floor_server:
        floor_server(args.floor_server[0], int(args.floor_server[1]))
        return 0
    logging.disable(logging.WARNING)
    probe = run.make_events(2000, seed=8)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="stream-app-bench-http-") as tmp:
        workdir = Path(tmp)
        with run.bench_broker(workdir) as bootstrap:
            worker = floor = None
            try:
                worker, worker_port, artifact = trained_worker(bootstrap, workdir, args.train)
                floor_port = free_port()
                floor = subprocess.Popen(
                    [sys.executable, __file__, "--floor-server", str(artifact), str(floor_port)]
                )
                wait_answering(floor_port, request_bodies(probe, 1)[1][0])
                agree = same_answers(worker_port, floor_port, request_bodies(probe, 1)[1])
                for size in SIZES:
                    path, bodies = request_bodies(probe, size)
                    for name, port in (("floor", floor_port), ("worker", worker_port)):
                        url = f"http://127.0.0.1:{port}{path}"
                        result = asyncio.run(load_run(url, bodies, args.seconds, args.connections))
                        result["events_per_s"] = result["requests_per_s"] * size
                        results[f"{name}/{size}"] = result
            finally:
                for proc in (floor, worker):
                    if proc is not None:
                        proc.terminate()
                        proc.wait(60)
    report = {
        "seconds": args.seconds,
        "connections": args.connections,
        "same_answers": agree,
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"bench/http_api.py: {args.connections} connections, {args.seconds:.0f} s per row, "
        f"15 features, logistic_regression; same answers from both: {agree}"
    )
    print(
        f"{'target':8} {'events/req':>10} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for size in SIZES:
        for name in ("floor", "worker"):
            r = results[f"{name}/{size}"]
            print(
                f"{name:8} {size:>10,} {r['requests_per_s']:>9,.0f} {r['events_per_s']:>10,.0f} "
                f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
            )
        worker_share = (
            results[f"worker/{size}"]["requests_per_s"] / results[f"floor/{size}"]["requests_per_s"]
        )
        print(f"{'':8} {'':>10} worker / floor: {worker_share:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
