"""Every dead-letter reason is a named, unique constant that some test produces."""

from __future__ import annotations

import re

from stream_app import reasons


def test_reasons_are_unique_snake_case_constants() -> None:
    assert len(set(reasons.ALL)) == len(reasons.ALL)
    for code in reasons.ALL:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code)
        assert getattr(reasons, code.upper()) == code


def test_contract_reasons_are_all_present() -> None:
    contract = {
        "invalid_utf8", "invalid_json", "not_an_object", "missing_id", "invalid_id",
        "missing_features", "invalid_features", "non_finite_feature", "too_many_features",
        "oversized", "label_without_event", "duplicate_label", "unknown_label", "invalid_label",
        "feature_outlier", "noisy_label",
    }  # fmt: skip
    assert contract <= set(reasons.ALL)


def test_decoder_reasons_are_each_crafted_in_test_decode() -> None:
    from tests.unit.core.test_decode import BAD

    decoder_reasons = set(reasons.ALL[: reasons.ALL.index(reasons.INVALID_TS) + 1])
    assert decoder_reasons == set(BAD)
