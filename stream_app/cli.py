"""The ``stream-app`` command: run the worker, a local broker, and the tools around them."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

from stream_app.errors import StreamAppError
from stream_app.tools.settings import load_tool_settings
from stream_app.tools.tail import TOPICS

__all__ = ["main"]

log = logging.getLogger("stream_app")

# Faust's CLI spells two log levels its own way.
_FAUST_LEVELS = {"warning": "warn", "critical": "crit"}


TOOLS_EXTRA: Final = frozenset({"rich", "matplotlib"})
"""Packages of the ``tools`` extra: the worker runs without them, the demo and report do not."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run one subcommand; return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # the tools' output is for people
    try:
        code: int = args.run(args)
    except StreamAppError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in TOOLS_EXTRA:
            raise
        print(
            f"stream-app {args.command}: needs {missing}, from the tools extra: "
            "pip install 'stream-app[tools]'",
            file=sys.stderr,
        )
        return 1
    return code


_FORMATS: Final = ("auto", "jsonl", "csv")
"""What ``--format`` of the file tools may say (``auto``: by the file's suffix)."""

_Commands = argparse._SubParsersAction  # the type of add_subparsers(): no public name


def _parser() -> argparse.ArgumentParser:
    """Build the ``stream-app`` parser: a function per group of subcommands, in ``--help`` order."""
    parser = argparse.ArgumentParser(
        prog="stream-app", description="Serve and keep training a River model from Kafka."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_worker, _add_broker, _add_models, _add_demo, _add_file_tools, _add_readers):
        add(commands)
    return parser


def _add_worker(commands: _Commands[argparse.ArgumentParser]) -> None:
    """``worker``: the Faust worker, as ``faust -A stream_app.app worker`` runs it."""
    worker = commands.add_parser(
        "worker", help="run the worker (same as faust -A stream_app.app worker)"
    )
    worker.add_argument("-l", "--loglevel", default=None, help="log level (default: app.log_level)")
    worker.set_defaults(run=_worker)


def _add_broker(commands: _Commands[argparse.ArgumentParser]) -> None:
    """``broker``: a local single-node Kafka, or only its jars (``--fetch-only``)."""
    broker = commands.add_parser(
        "broker", help="run a local single-node KRaft Kafka in the foreground"
    )
    broker.add_argument(
        "--port", type=int, default=None, help="listener port (default: broker.port)"
    )
    broker.add_argument("--data-dir", type=Path, default=None, help="log dirs and broker logs")
    broker.add_argument(
        "--fetch-only", action="store_true", help="download the jars into the cache and exit"
    )
    broker.set_defaults(run=_broker)


def _add_models(commands: _Commands[argparse.ArgumentParser]) -> None:
    """``models``: list and show versions, and the operations the writer carries out."""
    models = commands.add_parser("models", help="list, show and operate model versions")
    ops = models.add_subparsers(dest="op", required=True)
    listing = ops.add_parser("list", help="a table of stored versions")
    listing.add_argument("--model", default=None, help="model name (default: model.name)")
    listing.add_argument("--json", action="store_true", help="print JSON for machines")
    keys = ops.add_parser("keys", help="keyed models: count, top by examples, worst by quality")
    keys.add_argument("--json", action="store_true", help="print JSON (every key) for machines")
    keys.add_argument("--top", type=int, default=None, help="how many keys in each list")
    show = ops.add_parser("show", help="one version's record (no blob)")
    show.add_argument("version", type=int, nargs="?", help="(with --key: default its newest)")
    for op, text in (
        ("rollback", "serve and learn from version V again, as a new version"),
        ("pin", "serve version V on every worker; the learner keeps learning"),
        ("promote", "make a shadow version (a challenger) serve"),
    ):
        ops.add_parser(op, help=text).add_argument("version", type=int)
    ops.add_parser("reset", help="start --key K over from a fresh model, as a new version")
    ops.add_parser("unpin", help="serve the newest version again")
    canary = ops.add_parser(
        "canary", help="let version V answer a share of events, stepping up along rollout.steps"
    )
    canary.add_argument("version", type=int, nargs="?", help="a stored or shadow version")
    canary.add_argument("--share", type=float, default=None, help="its first share, e.g. 0.05")
    canary.add_argument("--abort", action="store_true", help="return to the incumbent")
    export = ops.add_parser("export", help="write version V as a file (stream_app.artifact)")
    export.add_argument("version", type=int, nargs="?", help="(with --key: default its newest)")
    export.add_argument("--out", type=Path, required=True, help="the file to write")
    rebuild = ops.add_parser(
        "rebuild", help="rebuild version V from an older one and the learning log, as a file"
    )
    rebuild.add_argument("version", type=int)
    rebuild.add_argument("--out", type=Path, required=True, help="the file to write")
    ops.add_parser("import", help="store a file as a new shadow version").add_argument(
        "path", type=Path
    )
    for op in ("show", "rollback", "reset", "export"):
        ops.choices[op].add_argument("--key", default=None, help="a keyed model's key")
    models.set_defaults(run=_models)


def _add_demo(commands: _Commands[argparse.ArgumentParser]) -> None:
    """``demo``: a broker, a worker, the demo stream and its live view, then a report."""
    demo = commands.add_parser("demo", help="local broker, a worker, a demo stream, a live view")
    demo.add_argument("--broker", default=None, help="use this broker (kafka://HOST:PORT)")
    demo.add_argument("--events", type=int, default=0, help="stop after N events (default: Ctrl-C)")
    demo.add_argument("--rate", type=float, default=None, help="events/s (default: demo.rate)")
    demo.add_argument("--report", type=Path, default=None, help="report file (HTML; PNG beside)")
    demo.add_argument(
        "--keys", type=int, default=0, help="keyed models: one model per user of N (default: one)"
    )
    demo.set_defaults(run=_demo)


def _add_file_tools(commands: _Commands[argparse.ArgumentParser]) -> None:
    """``score``, ``train`` and ``produce``: a JSONL or CSV file of events, read the same way."""
    score = commands.add_parser("score", help="score a JSONL or CSV file with a stored version")
    score.add_argument("input", type=Path)
    score.add_argument("--version", type=int, default=None, help="version (default: serving)")
    score.add_argument("--out", type=Path, required=True, help="JSONL output, one line an event")
    _add_columns(score)
    score.add_argument("--format", choices=_FORMATS, default="auto")
    score.set_defaults(run=_score)

    train = commands.add_parser(
        "train", help="train a model offline on a JSONL or CSV file; write it as an artifact"
    )
    train.add_argument("file", type=Path)
    train.add_argument(
        "--factory", required=True, help="module:function returning a fresh River estimator"
    )
    train.add_argument("--out", type=Path, required=True, help="the artifact file to write")
    _add_columns(train)
    train.add_argument("--format", choices=_FORMATS, default="auto")
    train.set_defaults(run=_train)

    produce = commands.add_parser("produce", help="send a JSONL or CSV file, one event a line")
    produce.add_argument("file", type=Path)
    produce.add_argument(
        "--topic",
        default=None,
        help="features, labels (as configured) or a topic name (default: features)",
    )
    _add_columns(produce)
    produce.add_argument("--rate", type=float, default=0.0, help="messages/s (0: fast)")
    produce.add_argument("--raw", action="store_true", help="send unparsable lines as they are")
    produce.add_argument("--format", choices=_FORMATS, default="auto")
    produce.set_defaults(run=_produce)


def _add_columns(tool: argparse.ArgumentParser) -> None:
    """Add the two columns every file tool asks about: which is the label, which the event id."""
    tool.add_argument("--label-column", default="label", help="column that is the label")
    tool.add_argument("--id-column", default=None, help="id column (default: id, or made)")


def _add_readers(commands: _Commands[argparse.ArgumentParser]) -> None:
    """``tail`` and ``report``: read what the worker wrote, as it comes or as charts."""
    tail = commands.add_parser("tail", help="print a topic's messages readably as they come")
    tail.add_argument("topic", choices=TOPICS)
    tail.add_argument("--json", action="store_true", help="print the raw JSON values")
    tail.add_argument("--from-beginning", action="store_true", help="not only new messages")
    tail.add_argument("-n", "--max", type=int, default=0, help="stop after N messages")
    tail.add_argument("--timeout", type=float, default=0.0, help="stop after S s of silence")
    tail.set_defaults(run=_tail)

    report = commands.add_parser("report", help="charts of quality, latency and model events")
    report.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML page")
    report.add_argument("--png", type=Path, default=None, help="(default: report.png beside it)")
    report.set_defaults(run=_report)


def _models(args: argparse.Namespace) -> int:
    """Model operations through Kafka: see :mod:`stream_app.tools.versions`."""
    import orjson

    from stream_app.tools import versions
    from stream_app.worker.operations import import_artifact, run, run_command

    settings = load_tool_settings()
    if getattr(args, "model", None):
        settings = settings.replace(model={"name": args.model})
    name = settings.model.name
    if args.op == "keys" or getattr(args, "key", None) is not None or args.op == "reset":
        if args.op != "keys" and not args.key:
            raise StreamAppError(f"models {args.op} needs --key K")
        return versions.keyed(settings, args.op, getattr(args, "key", None), vars(args))
    if getattr(args, "version", 0) is None and args.op in ("show", "export"):
        raise StreamAppError(f"models {args.op} needs a version (or --key K)")
    if args.op == "list":
        return versions.list_versions(settings, name, as_json=args.json)
    if args.op == "show":
        return versions.show_version(settings, name, args.version)
    if args.op == "rebuild":
        return versions.rebuild_to(settings, name, args.version, args.out)
    if args.op == "export":
        return versions.export_to(settings, name, args.version, args.out)
    if args.op == "import":
        try:
            data = args.path.read_bytes()
        except OSError as exc:
            raise StreamAppError(f"cannot read {args.path}: {exc.strerror}") from None
        answer = run(import_artifact(settings, data))
    elif args.op == "canary":
        answer = run(_canary(settings, args))
    else:
        answer = run(run_command(settings, args.op, getattr(args, "version", None)))
    print(orjson.dumps(answer).decode())
    return 0 if answer.get("ok") else 1


def _canary(settings: Any, args: argparse.Namespace) -> Any:
    """Return the coroutine of a canary start (``V --share S``) or abort (``--abort``)."""
    from stream_app.worker.operations import CANARY, run_command

    if args.abort:
        return run_command(settings, CANARY, None, abort=True)
    if args.version is None or args.share is None:
        raise StreamAppError("models canary needs a version and --share S, or --abort")
    return run_command(settings, CANARY, args.version, share=args.share)


def _demo(args: argparse.Namespace) -> int:
    """Run the demo: see :mod:`stream_app.tools.demo`."""
    from stream_app.tools.demo import DemoOptions, run_demo

    options = DemoOptions(args.broker, args.events, args.rate, args.report, args.keys)
    return run_demo(load_tool_settings(), options)


def _produce(args: argparse.Namespace) -> int:
    """Send a file to a topic: see :mod:`stream_app.tools.produce`."""
    from stream_app.tools.produce import Columns, produce_file

    columns = Columns(label=args.label_column, id=args.id_column)
    summary = produce_file(
        load_tool_settings(), args.file, topic=args.topic, columns=columns, rate=args.rate,
        raw=args.raw, fmt=args.format,
    )  # fmt: skip
    print(summary.line(), flush=True)
    return 0 if summary.sent else 1


def _score(args: argparse.Namespace) -> int:
    """Score a file offline with a stored version: see :mod:`stream_app.tools.score`."""
    from stream_app.tools.score import load_version, score_file

    settings = load_tool_settings()
    model = load_version(settings, args.version)
    summary = score_file(
        settings, model, args.input, args.out,
        label_column=args.label_column, id_column=args.id_column, fmt=args.format,
    )  # fmt: skip
    print(summary.line(model), flush=True)
    return 0 if summary.scored else 1


def _train(args: argparse.Namespace) -> int:
    """Train offline on a file and write an artifact: see :mod:`stream_app.tools.train`."""
    from stream_app.tools.train import train_file

    model, summary = train_file(
        load_tool_settings(), args.file, args.out, args.factory,
        label_column=args.label_column, id_column=args.id_column, fmt=args.format,
    )  # fmt: skip
    print(summary.line(model, args.out), flush=True)
    return 0 if summary.trained else 1


def _tail(args: argparse.Namespace) -> int:
    """Print a topic's messages: see :mod:`stream_app.tools.tail`."""
    import asyncio

    from stream_app.tools.tail import tail

    options = {"raw_json": args.json, "from_beginning": args.from_beginning}
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(
            tail(
                load_tool_settings(),
                args.topic,
                max_messages=args.max,
                timeout=args.timeout,
                **options,
            )
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    """Write the HTML report and its PNG: see :mod:`stream_app.tools.report`."""
    from stream_app.tools.charts import report_to

    png = args.png or args.out.with_name("report.png")
    _, charts = report_to(load_tool_settings(), args.out, png)
    print(f"report: {args.out} and {png} ({charts.counts['predictions']:,} predictions)")
    return 0


def _worker(args: argparse.Namespace) -> int:
    """Run the Faust worker for the app built from the settings."""
    from stream_app.worker.service import build_app  # Kafka code is imported only for this command

    settings = load_tool_settings()
    app = build_app(settings)
    level = (args.loglevel or settings.app.log_level).lower()
    level = _FAUST_LEVELS.get(level, level)
    sys.argv = ["stream-app", "worker", "-l", level]
    app.main()
    return 0


def _broker(args: argparse.Namespace) -> int:
    """Run a local broker until SIGINT or SIGTERM; print one line when clients can connect."""
    from stream_app.tools.broker import LocalKafka, fetch_kafka

    settings = load_tool_settings()
    if args.fetch_only:
        jars = fetch_kafka(settings.broker)
        print(f"kafka {settings.broker.kafka_version}: {len(jars)} jars cached in {jars[0].parent}")
        return 0
    data_dir = args.data_dir or Path(
        settings.broker.data_dir or Path(settings.app.data_dir) / "kafka"
    )
    broker = LocalKafka(
        settings.broker, data_dir, port=args.port, partitions=settings.topics.partitions
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    broker.start()
    print(f"broker ready on {broker.bootstrap}", flush=True)
    try:
        while not stop.wait(0.5):
            if not broker.running:
                log.error("the broker exited by itself; see %s", broker.log_file)
                return 1
    finally:
        code = broker.stop()
        log.info("broker stopped (exit code %s)", code)
    return 0
