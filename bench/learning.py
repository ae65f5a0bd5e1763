"""Learning quality on seeded streams: the noise guard, drift detection and recovery.

    python bench/learning.py [--events N] [--seeds 1 2 3] [--json] [--guard JSON]
        [--retrain-every N] [--retrain-window N] [--retrain-min N]
        [--floor Q] [--patience N] [--floor-window N]

Runs the service's own Learner (the code the worker runs per label, without Kafka) over River
synthetic streams with a sudden concept change halfway, with 0% and 20% of labels flipped, guard on
and off. Accuracy is prequential and scored against the TRUE labels. Prints, per stream:

- accuracy for guard off/on at 0% and 20% noise, the share of the noise cost the guard recovers,
  and what the guard costs on clean data (goal: recovers >= 50%, costs <= 0.5 points);
- drift detection delay after the change, false alarms before it, and the events from the change
  until the rolling accuracy (500) is back within 3 points of its pre-change level (``recover``),
  and of the guard-off run's on the same data and noise (``common``: one bar for both, since the
  guard's own level before the change is higher under noise, and so further to climb back to).

Then a second table, retraining (``retrain.policy``), on the same streams without noise and with
the drift monitor off (``drift.policy = "none"``), so that what changes is the retraining alone:

- ``incremental``: per-label learning only;
- ``schedule``: plus a retrain every ``--retrain-every`` examples;
- ``quality_floor``: plus a retrain once the rolling accuracy over ``--floor-window`` labels has
  been below ``--floor`` for ``--patience`` labels in a row.

A retrain is the writer's: :meth:`RetrainPolicy.begin` decides, :func:`retrain.train` trains a
fresh model on the last ``--retrain-window`` entries of a learning log kept in memory (encoded as
the writer encodes them), and :func:`retrain.install` makes it the challenger, which takes over by
the promotion path once it is better over ``drift.challenger_window`` labels. Unlike the writer's,
the retrain here is synchronous (the worker trains in a thread while labels keep coming), so the
challenger starts a little earlier than it would live. Its columns: accuracy, the events from the
change until recovery (as above), retrains, retrained models that took over, and the seconds
spent training per run.

Last, the witness's false alarms: its adoptions on a steady stream, where none is right
(bench/steady_witness.py: ``--steady-events`` of bench/run.py's ``make_events`` per seed in
``--steady-seeds``, in one partition's order and in four partitions' round-robin order).

It asserts nothing; it prints the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

from river.datasets import synth

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import steady_witness
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.learning_log import encode_log_entry
from stream_app.settings import Settings
from stream_app.worker import retrain

WINDOW = 500
RECOVERED_WITHIN = 0.03
MEANINGFUL_COST = 0.005
RETRAIN_POLICIES = ("none", "schedule", "quality_floor")
RETRAIN_ROWS = {"none": "incremental", "schedule": "+ schedule", "quality_floor": "+ quality_floor"}


class LogEntry(NamedTuple):
    """A learning-log record kept in memory: its offset and the entry the writer would write."""

    offset: int
    value: bytes


def make_stream(kind: str, seed: int, n: int, change_at: int) -> list[tuple[dict[str, Any], Any]]:
    """A seeded stream with a sudden concept change at ``change_at`` (width 50)."""
    streams = {
        "SEA(0->3)": (synth.SEA(variant=0, seed=seed), synth.SEA(variant=3, seed=seed + 1)),
        "Sine(0->1)": (
            synth.Sine(classification_function=0, seed=seed),
            synth.Sine(classification_function=1, seed=seed + 1),
        ),
        "Hyperplane(5)": (
            synth.Hyperplane(seed=seed, n_features=5),
            synth.Hyperplane(seed=seed + 7, n_features=5),
        ),
    }
    before, after = streams[kind]
    drifting = synth.ConceptDriftStream(
        stream=before, drift_stream=after, position=change_at, width=50, seed=seed
    )
    return list(drifting.take(n))


def run(
    data: list[tuple[dict[str, Any], Any]],
    noise: float,
    guard: bool,
    seed: int,
    change_at: int,
    overrides: dict[str, Any] | None = None,
    bar: float | None = None,
) -> dict[str, Any]:
    """Prequential run of one Learner; labels flipped with probability ``noise``.

    ``overrides``: [guard] settings over the shipped ones (``--guard``), the guard on or off.
    ``bar``: the pre-change accuracy ``recovery_common`` is measured against (the guard-off run's
    on the same data and noise); None: this run's own (``pre``).
    """
    settings = Settings().replace(guard={**(overrides or {}), "enabled": guard})
    learner = Learner(settings)
    rng = random.Random(seed * 1000 + int(noise * 100))
    hits: list[bool] = []
    drifts: list[int] = []
    held_out = 0
    started = time.perf_counter()
    for i, (x, y) in enumerate(data):
        served, shadow = learner.answer(x)
        hits.append(served.prediction == y)
        label = type(y)(not y) if rng.random() < noise else y
        outcome = learner.learn(LabeledExample(f"e{i}", x, label, served, shadow, float(i)))
        held_out += outcome.reason is not None
        drifts += [i for event in outcome.events if event.kind == "drift"]
    elapsed = time.perf_counter() - started
    pre = sum(hits[change_at - 2000 : change_at]) / 2000
    return {
        "accuracy": sum(hits) / len(hits),
        "held_out": held_out,
        "drift_delay": next((d - change_at for d in drifts if d >= change_at), None),
        "false_alarms": sum(d < change_at for d in drifts),
        "recovery": recovery(hits, change_at, pre),
        "recovery_common": recovery(hits, change_at, pre if bar is None else bar),
        "pre": pre,
        "us_per_event": elapsed / len(data) * 1e6,
    }


def retrain_settings(policy: str, args: argparse.Namespace) -> Settings:
    """Settings of one retraining row: the drift monitor off, ``retrain.*`` from the options."""
    return Settings().replace(
        drift={"policy": "none"},
        learn={"quality_window": args.floor_window},
        retrain={
            "policy": policy,
            "every_s": 0.0,
            "every_examples": args.retrain_every,
            "quality_floor": args.floor,
            "patience": args.patience,
            "window": args.retrain_window,
            "min_examples": args.retrain_min,
        },
    )


def run_retrain(
    data: list[tuple[dict[str, Any], Any]], policy: str, change_at: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Prequential run of one Learner with ``retrain.policy = policy`` (clean labels)."""
    settings = retrain_settings(policy, args)
    learner = Learner(settings)
    rules = retrain.RetrainPolicy(settings.retrain, now=0.0)
    tail: deque[LogEntry] = deque(maxlen=settings.retrain.window)
    hits: list[bool] = []
    retrains: list[int] = []
    took_over = 0
    training_s = 0.0
    started = time.perf_counter()
    for i, (row, y) in enumerate(data):
        x = {str(name): value for name, value in row.items()}  # named as a JSON event names them
        served, shadow = learner.answer(x)
        hits.append(served.prediction == y)
        example = LabeledExample(f"e{i}", x, y, served, shadow, float(i))
        outcome = learner.learn(example)
        tail.append(LogEntry(i, encode_log_entry(example)))
        took_over += sum(e.kind == "promotion" and e.version in retrains for e in outcome.events)
        if rules.begin(learner, now=float(i)) is None or len(tail) < settings.retrain.min_examples:
            continue
        begun = time.perf_counter()
        classes = list(learner.serving.model.labels.classes)
        model = retrain.train(settings, list(tail), classes)
        retrains.append(retrain.install(learner, model, stored_latest=-1))
        training_s += time.perf_counter() - begun
    elapsed = time.perf_counter() - started
    pre = sum(hits[change_at - 2000 : change_at]) / 2000
    return {
        "accuracy": sum(hits) / len(hits),
        "recovery": recovery(hits, change_at, pre),
        "retrains": len(retrains),
        "took_over": took_over,
        "training_s": training_s,
        "us_per_event": elapsed / len(data) * 1e6,
    }


def recovery(hits: list[bool], change_at: int, pre: float) -> int | None:
    """Events after the change until rolling accuracy is back within 3 points of ``pre``."""
    window: deque[bool] = deque(maxlen=WINDOW)
    for i in range(change_at, len(hits)):
        window.append(hits[i])
        if len(window) == WINDOW and sum(window) / WINDOW >= pre - RECOVERED_WITHIN:
            return i - change_at
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--guard", type=json.loads, default={}, help="[guard] overrides, JSON (e.g. witness_odds)"
    )
    retraining = parser.add_argument_group("retraining rows (retrain.*)")
    retraining.add_argument("--retrain-every", type=int, default=2000, help="schedule: examples")
    retraining.add_argument("--retrain-window", type=int, default=500, help="examples trained on")
    retraining.add_argument("--retrain-min", type=int, default=500, help="fewer: skipped")
    retraining.add_argument("--floor", type=float, default=0.9, help="quality_floor: accuracy")
    retraining.add_argument("--patience", type=int, default=300, help="quality_floor: labels")
    retraining.add_argument("--floor-window", type=int, default=200, help="learn.quality_window")
    steady = parser.add_argument_group("the witness's false alarms (bench/steady_witness.py)")
    steady.add_argument("--steady-events", type=int, default=50000, help="events per seed")
    steady.add_argument("--steady-seeds", type=int, nargs="+", default=[7, 1, 3])
    steady.add_argument("--steady-chunk", type=int, default=100, help="records per partition")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    change_at = args.events // 2
    results: dict[str, Any] = {}
    retrained: dict[str, Any] = {}
    for kind in ("SEA(0->3)", "Sine(0->1)", "Hyperplane(5)"):
        runs: dict[str, list[dict[str, Any]]] = {}
        retrain_runs: dict[str, list[dict[str, Any]]] = {}
        for seed in args.seeds:
            data = make_stream(kind, seed, args.events, change_at)
            for noise in (0.0, 0.2):
                bar = None  # the guard-off run's pre-change accuracy, the guard-on run's common bar
                for guard in (False, True):
                    key = f"noise={noise:.0%} guard={'on' if guard else 'off'}"
                    result = run(data, noise, guard, seed, change_at, args.guard, bar)
                    bar = result["pre"]
                    runs.setdefault(key, []).append(result)
            for policy in RETRAIN_POLICIES:
                result = run_retrain(data, policy, change_at, args)
                retrain_runs.setdefault(policy, []).append(result)
        results[kind] = summarize(runs)
        retrained[kind] = summarize_retrain(retrain_runs)
    steady_counts = steady_witness.count(
        args.steady_events, args.steady_seeds, args.steady_chunk, args.guard
    )
    if args.json:
        print(
            json.dumps(
                {
                    "events": args.events,
                    "seeds": args.seeds,
                    "guard": args.guard,
                    "streams": results,
                    "retraining": retrained,
                    "steady_witness": steady_counts,
                }
            )
        )
    else:
        print_table(results, args)
        print_retrain_table(retrained, args)
        print()
        steady_witness.print_counts(steady_counts, args.steady_events, args.steady_chunk)
    return 0


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Average each configuration over seeds; derive the guard's recovered share and clean cost."""
    out: dict[str, Any] = {}
    for key, items in runs.items():
        delays = [r["drift_delay"] for r in items if r["drift_delay"] is not None]
        recoveries = [r["recovery"] for r in items if r["recovery"] is not None]
        common = [r["recovery_common"] for r in items if r["recovery_common"] is not None]
        out[key] = {
            "accuracy": statistics.mean(r["accuracy"] for r in items),
            "held_out": statistics.mean(r["held_out"] for r in items),
            "drift_delay": statistics.mean(delays) if delays else None,
            "missed_drifts": len(items) - len(delays),
            "false_alarms": sum(r["false_alarms"] for r in items),
            "recovery": statistics.mean(recoveries) if recoveries else None,
            "recovery_common": statistics.mean(common) if common else None,
            "us_per_event": statistics.mean(r["us_per_event"] for r in items),
        }
    clean_off = out["noise=0% guard=off"]["accuracy"]
    clean_on = out["noise=0% guard=on"]["accuracy"]
    noisy_off = out["noise=20% guard=off"]["accuracy"]
    noisy_on = out["noise=20% guard=on"]["accuracy"]
    cost = clean_off - noisy_off
    out["guard"] = {
        "noise_cost_points": 100 * cost,
        # Below half a point, the noise costs nothing worth recovering: a share would be noise.
        "recovered_share": (noisy_on - noisy_off) / cost if cost >= MEANINGFUL_COST else None,
        "clean_cost_points": 100 * (clean_off - clean_on),
    }
    return out


def summarize_retrain(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Average each retraining policy over seeds (recovery over the runs that recovered)."""
    out: dict[str, Any] = {}
    for policy, items in runs.items():
        recoveries = [r["recovery"] for r in items if r["recovery"] is not None]
        out[policy] = {
            "accuracy": statistics.mean(r["accuracy"] for r in items),
            "recovery": statistics.mean(recoveries) if recoveries else None,
            "not_recovered": len(items) - len(recoveries),
            "retrains": statistics.mean(r["retrains"] for r in items),
            "took_over": statistics.mean(r["took_over"] for r in items),
            "training_s": statistics.mean(r["training_s"] for r in items),
            "us_per_event": statistics.mean(r["us_per_event"] for r in items),
        }
    return out


def print_retrain_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the retraining rows: one per stream and policy, averaged over the seeds."""
    print()
    print(
        f"retraining (no noise, drift.policy none): schedule every {args.retrain_every} "
        f"examples; quality_floor {args.floor} over {args.floor_window} labels for "
        f"{args.patience}; trained on the last {args.retrain_window} "
        f"(at least {args.retrain_min})"
    )
    header = (
        f"{'stream':14} {'configuration':24} {'accuracy':>8} {'recover':>7} {'retrains':>8} "
        f"{'took over':>9} {'train s':>7} {'us/ev':>6}"
    )
    print(header)
    print("-" * len(header))
    for kind, out in results.items():
        for policy, r in out.items():
            rec = "-" if r["recovery"] is None else f"{r['recovery']:.0f}"
            if r["recovery"] is not None and r["not_recovered"]:
                rec += "*"
            print(
                f"{kind:14} {RETRAIN_ROWS[policy]:24} {r['accuracy']:8.4f} {rec:>7} "
                f"{r['retrains']:8.1f} {r['took_over']:9.1f} {r['training_s']:7.2f} "
                f"{r['us_per_event']:6.1f}"
            )
    print("recover: events from the change until back within 3 points ('*': some seeds never)")
    sys.stdout.flush()


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    change = args.events // 2
    guard = f", guard overrides {json.dumps(args.guard)}" if args.guard else ""
    print(f"bench/learning.py: {args.events} events, change at {change}, seeds {args.seeds}{guard}")
    header = (
        f"{'stream':14} {'configuration':24} {'accuracy':>8} {'held out':>8} {'delay':>6} "
        f"{'false':>5} {'recover':>7} {'common':>6} {'us/ev':>6}"
    )
    print(header)
    print("-" * len(header))
    for kind, out in results.items():
        for key, r in out.items():
            if key == "guard":
                continue
            delay = "-" if r["drift_delay"] is None else f"{r['drift_delay']:.0f}"
            rec = "-" if r["recovery"] is None else f"{r['recovery']:.0f}"
            common = "-" if r["recovery_common"] is None else f"{r['recovery_common']:.0f}"
            print(
                f"{kind:14} {key:24} {r['accuracy']:8.4f} {r['held_out']:8.0f} {delay:>6} "
                f"{r['false_alarms']:5d} {rec:>7} {common:>6} {r['us_per_event']:6.1f}"
            )
        g = out["guard"]
        share = "n/a" if g["recovered_share"] is None else f"{g['recovered_share']:.0%}"
        print(
            f"{kind:14} guard: 20% noise costs {g['noise_cost_points']:.2f} points, the guard "
            f"recovers {share} of it and costs {g['clean_cost_points']:.2f} points on clean data"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
