"""Every label learned exactly once across crashes: the learning log and versions that replay.

A writer killed with SIGKILL loses nothing it learned after its last checkpoint: the worker that
takes over restores the newest version and learns the learning log after it, in the same order.
The final model is then exactly River's own loop over the log (1e-9), and ``models rebuild``
turns an older version back into the same model from its ancestor and the log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_app import artifact
from stream_app.core.example import LabeledExample
from stream_app.core.learning_log import decode_log_entries, encode_log_entry
from stream_app.core.messages import decode_dead_letter
from stream_app.core.predict import Prediction
from stream_app.models import logistic_regression
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    produce,
    read_all,
    read_registry,
    wait_consumed,
    wait_for,
)
from tests.integration.test_learning import feature_messages, sea
from tests.integration.test_scaling import partitions

TOTAL = 5000
EVERY = 1000
AFTER = 300
"""Examples learned (and logged) after the last checkpoint when the writer is killed."""
CONFIG = (
    "[guard]\nenabled = false\n[drift]\npolicy = 'none'\n"
    f"[registry]\ncheckpoint_every_examples = {EVERY}\ncheckpoint_every_s = 3600.0\n"
)
PROBE = sea(100, seed=404)


async def log_examples(kafka: Kafka, names: Names) -> tuple[list[LabeledExample], int]:
    """The learning log's examples in log order (a corrupt entry is skipped, as the replay does),
    and the offset of its last message."""
    examples: list[LabeledExample] = []
    records = await read_all(kafka.bootstrap, f"{names.app_id}-learning-log")
    for record in records:
        try:
            examples += decode_log_entries(record.value)
        except orjson.JSONDecodeError:
            continue
    return examples, records[-1].offset


def river_loop(examples: list[LabeledExample]) -> Any:
    """The plain River loop over the log: the model the service must have built."""
    model = logistic_regression()
    for example in examples:
        model.learn_one(example.features, example.label)
    return model


def assert_same_model(stored: Any, reference: Any) -> None:
    for x, _ in PROBE:
        got, want = stored.predict_proba_one(x), reference.predict_proba_one(x)
        assert abs(got[True] - want[True]) <= 1e-9, (got, want)


async def newest_after_stop(kafka: Kafka, names: Names) -> tuple[Any, Any]:
    """The newest serving version's record and estimator, read from the registry."""
    registry = await read_registry(kafka.bootstrap, names.app_id)
    newest = registry.newest("default", "serving")
    assert newest is not None
    state = registry.load("default", newest.version)
    return newest, state["learner"]["serving"].model.estimator


async def kill_after_learning_past_a_checkpoint(
    kafka: Kafka, names: Names, victim: WorkerProcess
) -> list[tuple[bytes | None, bytes | None]]:
    """Serve 2,000 labelled events in two rounds (a checkpoint after each), then 300 more that are
    learned, logged and committed but not checkpointed; SIGKILL the writer; return the rest."""
    messages = feature_messages(sea(TOTAL, seed=81), inline=True)
    group = f"{names.app_id}-serve"
    for start, end in ((0, EVERY), (EVERY, 2 * EVERY), (2 * EVERY, 2 * EVERY + AFTER)):
        await produce(kafka.bootstrap, names.topics["features"], messages[start:end])
        await wait_consumed(kafka.bootstrap, group, names.topics["features"])
        await wait_consumed(kafka.bootstrap, group, f"{names.app_id}-examples")

        async def learned(count: int = end) -> bool:
            return victim.metrics().get("stream_app_labels_learned_total") == count

        await wait_for(learned, what=f"the writer to learn {end} labels")
    registry = await read_registry(kafka.bootstrap, names.app_id)
    newest = registry.newest("default", "serving")
    assert newest is not None and newest.examples_learned == 2 * EVERY  # the 300 are not stored
    victim.kill()
    return messages[2 * EVERY + AFTER :]


async def finish(kafka: Kafka, names: Names, survivor: WorkerProcess) -> None:
    """Wait until the survivor has served and learned everything, then stop it cleanly."""
    group = f"{names.app_id}-serve"
    await wait_consumed(kafka.bootstrap, group, names.topics["features"], timeout=120)
    await wait_consumed(kafka.bootstrap, group, f"{names.app_id}-examples", timeout=120)
    assert survivor.stop() == 0  # a clean stop checkpoints what it learned


async def test_sigkill_the_writer_and_every_label_is_learned_exactly_once(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    first = worker_factory(partitions=4, extra_config=CONFIG)
    first.wait_healthy()
    rest = await kill_after_learning_past_a_checkpoint(kafka, names, first)
    # A corrupt entry in the log: the replay dead-letters it and goes on. Then an entry of the
    # shape older writers logged (one example per message): the replay learns it too.
    log_topic = f"{names.app_id}-learning-log"
    [(x, y)] = sea(1, seed=405)
    old = LabeledExample("old-0", x, y, Prediction(None, {}), None, 1763800000.0)
    await produce(kafka.bootstrap, log_topic, [(b"x", b"{not an example")])
    await produce(kafka.bootstrap, log_topic, [(b"old-0", encode_log_entry(old))])

    second = worker_factory(partitions=4, extra_config=CONFIG)
    second.wait_healthy(timeout=90)
    assert f"replayed {AFTER + 1} examples of the learning log" in second.log_text()
    await produce(kafka.bootstrap, names.topics["features"], rest)
    await finish(kafka, names, second)

    newest, estimator = await newest_after_stop(kafka, names)
    assert newest.examples_learned == TOTAL + 1
    examples, last = await log_examples(kafka, names)
    assert sorted(e.event_id for e in examples) == sorted(
        ["old-0", *(f"e-{i}" for i in range(TOTAL))]
    )
    assert newest.learned_through == last  # the last message
    assert last < len(examples) // 2  # a message per batch, not one per example
    assert_same_model(estimator, river_loop(examples))
    letters = [
        decode_dead_letter(r.value)
        for r in await read_all(kafka.bootstrap, names.topics["dead_letters"])
    ]
    corrupt = [d for d in letters if d["source"]["topic"] == log_topic]
    assert [d["reason"] for d in corrupt] == ["invalid_json"]
    assert corrupt[0]["original"] == b"{not an example"


async def test_the_follower_takes_over_from_a_killed_writer_and_loses_nothing(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    a = worker_factory(partitions=4, extra_config=CONFIG)
    a.wait_healthy()
    b = worker_factory(partitions=4, extra_config=CONFIG)

    async def split() -> bool:
        return bool(partitions(a)) and bool(partitions(b))

    await wait_for(split, timeout=90, what="two workers to share the partitions")
    writer, follower = (a, b) if a.wait_healthy()["writer"] else (b, a)
    rest = await kill_after_learning_past_a_checkpoint(kafka, names, writer)

    async def took_over() -> bool:
        return bool(follower.wait_healthy()["writer"])

    await wait_for(took_over, timeout=60, what="the follower to become the writer")
    assert f"replayed {AFTER} examples of the learning log" in follower.log_text()
    await produce(kafka.bootstrap, names.topics["features"], rest)
    await finish(kafka, names, follower)
    newest, estimator = await newest_after_stop(kafka, names)
    assert newest.examples_learned == TOTAL
    examples, _ = await log_examples(kafka, names)
    assert len(examples) == TOTAL
    assert_same_model(estimator, river_loop(examples))


async def test_models_rebuild_turns_an_older_version_back_into_itself(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(partitions=4, extra_config=CONFIG)
    worker.wait_healthy()
    messages = feature_messages(sea(4 * EVERY, seed=82), inline=True)
    for start in range(0, len(messages), EVERY):  # one checkpoint after each chunk
        await produce(kafka.bootstrap, names.topics["features"], messages[start:][:EVERY])
        await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    assert worker.stop() == 0
    registry = await read_registry(kafka.bootstrap, names.app_id)
    versions = registry.versions("default")
    assert len(versions) >= 4
    target = versions[2]  # it has a stored parent, and a child after it

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "stream_app", "models", *args],
            env=worker.env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    shown = orjson.loads(cli("show", str(target.version)).stdout)
    parent = registry.record("default", target.parent or 0)
    assert parent is not None and parent.learned_through is not None
    assert shown["log_offsets"] == [parent.learned_through + 1, target.learned_through]
    rebuilt, exported = tmp_path / "rebuilt.river", tmp_path / "exported.river"
    said = cli("rebuild", str(target.version), "--out", str(rebuilt)).stdout
    assert f"from v{parent.version} and the learning log" in said
    cli("export", str(target.version), "--out", str(exported))
    mine, stored = artifact.load(rebuilt), artifact.load(exported)
    for x, _ in PROBE:
        (p1, proba1), (p2, proba2) = mine.predict_one(x), stored.predict_one(x)
        assert p1 == p2 and abs(proba1["true"] - proba2["true"]) <= 1e-9
