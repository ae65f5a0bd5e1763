"""Settings layering: defaults < config/default.toml < $STREAM_APP_CONFIG < environment."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from stream_app.errors import ConfigError
from stream_app.settings import (
    DEFAULT_CONFIG_FILE,
    SHORT_ENV,
    TOOL_SECTIONS,
    GuardSettings,
    Settings,
    load_settings,
)
from stream_app.tools.settings import ToolSettings, load_tool_settings


def test_default_toml_equals_code_defaults() -> None:
    on_disk = tomllib.loads(DEFAULT_CONFIG_FILE.read_text())
    assert on_disk == ToolSettings().as_dict()


def test_the_worker_passes_over_the_tool_sections_that_the_tools_check(tmp_path: Path) -> None:
    worker, tools = dataclasses.fields(Settings), dataclasses.fields(ToolSettings)
    assert [f.name for f in tools[: len(worker)]] == [f.name for f in worker]
    assert tuple(f.name for f in tools[len(worker) :]) == TOOL_SECTIONS
    env = {"STREAM_APP_BROKER__KAFKA_VERSION": "3.9.1", "STREAM_APP_DEMO__RATE": "5"}
    assert not hasattr(load_settings(env=env), "broker")  # config/default.toml has [broker] too
    assert load_tool_settings(env=env).broker.kafka_version == "3.9.1"
    assert load_tool_settings(env=env).demo.rate == 5.0
    with pytest.raises(ConfigError, match=r"unknown setting broker\.nope"):
        load_tool_settings(env={"STREAM_APP_BROKER__NOPE": "1"}, files=[])
    typo = tmp_path / "typo.toml"
    typo.write_text("[brokers]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown settings section \[brokers\]"):
        load_settings(env={}, files=[typo])


def test_a_section_checks_its_own_fields_wherever_it_is_built() -> None:
    with pytest.raises(ConfigError, match=r"guard\.cap_share"):
        GuardSettings(cap_share=1.5)
    with pytest.raises(ConfigError, match=r"guard\.witness_lead"):
        dataclasses.replace(GuardSettings(), witness_lead=1.0)
    with pytest.raises(ConfigError, match=r"rollout\.steps"):
        Settings().replace(rollout={"steps": [0.5, 0.25, 1.0]})
    with pytest.raises(ConfigError, match=r"retrain\.policy = schedule needs"):
        load_settings(
            env={"STREAM_APP_RETRAIN__POLICY": "schedule", "STREAM_APP_RETRAIN__EVERY_S": "0"},
            files=[],
        )


def test_file_overrides_defaults_and_env_overrides_file(tmp_path: Path) -> None:
    extra = tmp_path / "extra.toml"
    extra.write_text(
        '[app]\nid = "from-file"\n[web]\nport = 7001\n[serve]\ncommit_interval_s = 2\n'
    )
    env = {"STREAM_APP_CONFIG": str(extra), "STREAM_APP_WEB_PORT": "7002"}
    s = load_settings(env=env)
    assert s.app.id == "from-file"  # file beats default
    assert s.web.port == 7002  # env beats file
    assert s.serve.commit_interval_s == 2.0  # an int in TOML is accepted for a float
    assert s.topics.features == "features"  # untouched keys keep the defaults


def test_short_environment_names() -> None:
    env = {
        "STREAM_APP_BROKER": "kafka://127.0.0.1:19092",
        "STREAM_APP_ID": "t-1",
        "STREAM_APP_DATA_DIR": "/tmp/x",
        "STREAM_APP_WEB_PORT": "6100",
        "STREAM_APP_PARTITIONS": "2",
    }
    s = load_settings(env=env, files=[])
    assert set(env) == set(SHORT_ENV)
    assert (s.app.broker, s.app.id, s.app.data_dir, s.web.port, s.topics.partitions) == (
        "kafka://127.0.0.1:19092", "t-1", "/tmp/x", 6100, 2,
    )  # fmt: skip


def test_generic_environment_names_and_types() -> None:
    env = {
        "STREAM_APP_SERVE__IDEMPOTENCE": "false",
        "STREAM_APP_SERVE__ACKS": "1",
        "STREAM_APP_TOPICS__FEATURES": "in",
        "STREAM_APP_LIMITS__MAX_FEATURES": "7",
        "UNRELATED": "1",
    }
    s = load_settings(env=env, files=[])
    assert (s.serve.idempotence, s.serve.acks, s.topics.features, s.limits.max_features) == (
        False, "1", "in", 7,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAM_APP_WEB_PORT": "eighty"}, "expected int"),
        ({"STREAM_APP_NOPE__X": "1"}, "unknown settings section"),
        ({"STREAM_APP_SERVE__NOPE": "1"}, "unknown setting serve.nope"),
        ({"STREAM_APP_SERVE__IDEMPOTENCE": "maybe"}, "expected a boolean"),
        ({"STREAM_APP_PARTITIONS": "0"}, "partitions must be at least 1"),
        ({"STREAM_APP_BROKER": "127.0.0.1:9092"}, "kafka://"),
        ({"STREAM_APP_SERVE__ACKS": "1"}, "idempotence needs"),
        ({"STREAM_APP_MODEL__TASK": "ranking"}, "model.task"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(env: dict[str, str], message: str) -> None:
    env = {"STREAM_APP_SERVE__IDEMPOTENCE": "false", **env} if "idempotence" not in message else env
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env, files=[])


def test_bad_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[app\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(env={"STREAM_APP_CONFIG": str(broken)})
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('[web]\nport = "6066"\n')
    with pytest.raises(ConfigError, match=r"web\.port"):
        load_settings(env={}, files=[wrong_type])


def test_replace_validates_like_a_file() -> None:
    assert Settings().replace(topics={"partitions": 2}).topics.partitions == 2
    with pytest.raises(ConfigError):
        Settings().replace(topics={"partitions": "two"})


def test_the_settings_reference_page_is_current() -> None:
    """docs/settings.md is what stream_app.tools.reference renders: every setting, env var and
    why."""
    from stream_app.tools.reference import render

    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    assert page == render(), "run: python -m stream_app.tools.reference > docs/settings.md"
    for section in dataclasses.fields(ToolSettings):
        for field in dataclasses.fields(type(getattr(ToolSettings(), section.name))):
            row = next(
                r for r in page.splitlines() if r.startswith(f"| `{section.name}.{field.name}`")
            )
            assert not row.endswith("|  |"), f"{section.name}.{field.name} has no description"


def test_a_learning_log_message_fits_in_an_output_batch() -> None:
    assert Settings().serve.log_message_max_bytes <= Settings().serve.max_batch_bytes
    with pytest.raises(ConfigError, match=r"serve\.log_message_max_bytes"):
        Settings().replace(serve={"max_batch_bytes": 1000, "log_message_max_bytes": 1001})
    with pytest.raises(ConfigError, match=r"serve\.log_message_max_bytes"):
        Settings().replace(serve={"log_message_max_bytes": 0})
