"""Kafka lines in ``make test``: every test on the default, the files issue 17 names on the other.

The Makefile names the other line (``KAFKA_OTHER_LINE``) and the files (``OTHER_LINE_TESTS``); the
default is ``broker.kafka_version``, which the compose image follows (tests/unit/test_compose.py).
"""

from __future__ import annotations

import re

from stream_app.tools.settings import BrokerSettings
from tests.deployment import REPO

MAKEFILE = REPO / "Makefile"
# Issue 17: the files that must also pass on the other Kafka line.
OTHER_LINE_FILES = {"test_serve.py", "test_versions.py", "test_reliability.py"}
OTHER_LINE_FILES |= {"test_broker_restart.py", "test_kafka_version.py"}


def make_variable(name: str) -> str:
    """The value of ``NAME ?= value`` or ``NAME := value`` in the Makefile, lines joined."""
    text = MAKEFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(rf"^{name}\s*[?:]?=\s*(.*)$", text, flags=re.MULTILINE)
    assert match, f"the Makefile sets no {name}"
    return match.group(1).strip()


def test_the_other_line_is_another_major_kafka_version() -> None:
    other = make_variable("KAFKA_OTHER_LINE")
    default = BrokerSettings().kafka_version
    assert re.fullmatch(r"\d+\.\d+\.\d+", other), other
    assert other.split(".")[0] != default.split(".")[0], (default, other)


def test_the_other_line_runs_the_files_the_issue_names_and_make_test_runs_it() -> None:
    files = set(re.findall(r"test_\w+\.py", make_variable("OTHER_LINE_TESTS")))
    assert files == OTHER_LINE_FILES
    for name in files:
        assert (REPO / "tests" / "integration" / name).exists(), name
    test_recipe = MAKEFILE.read_text(encoding="utf-8").split("\ntest:")[1].split("\n\n")[0]
    assert "other-line" in test_recipe and "prometheus" in test_recipe
