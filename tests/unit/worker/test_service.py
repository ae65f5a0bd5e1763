"""The worker's start-up steps that need no broker: warming River up."""

from __future__ import annotations

import pytest

from stream_app.core.factory import warm_up
from stream_app.errors import ModelError


def test_warm_up_builds_from_the_factory_and_reports_a_factory_that_fails() -> None:
    warm_up("stream_app.models:hoeffding_tree", {})
    with pytest.raises(ModelError, match="cannot be imported"):
        warm_up("no_such_module:f", {})
