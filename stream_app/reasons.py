"""Dead-letter reason codes: the machine-readable answer to every message we refuse.

Each code is a plain string constant, so it can be a Prometheus label and a JSON value, and a user
can grep for it. ``ALL`` lists them in the order the contract gives them.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALL",
    "DUPLICATE_LABEL",
    "FEATURE_OUTLIER",
    "INVALID_FEATURES",
    "INVALID_ID",
    "INVALID_JSON",
    "INVALID_LABEL",
    "INVALID_TS",
    "INVALID_UTF8",
    "LABEL_WITHOUT_EVENT",
    "MISSING_FEATURES",
    "MISSING_ID",
    "MODEL_ERROR",
    "NOISY_LABEL",
    "NON_FINITE_FEATURE",
    "NOT_AN_OBJECT",
    "OVERSIZED",
    "TOO_MANY_FEATURES",
    "UNKNOWN_LABEL",
]

# Decoding a message (any input topic).
OVERSIZED: Final = "oversized"
INVALID_UTF8: Final = "invalid_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_ID: Final = "missing_id"
INVALID_ID: Final = "invalid_id"
# Validating a feature event.
MISSING_FEATURES: Final = "missing_features"
INVALID_FEATURES: Final = "invalid_features"
NON_FINITE_FEATURE: Final = "non_finite_feature"
TOO_MANY_FEATURES: Final = "too_many_features"
INVALID_TS: Final = "invalid_ts"
# Keyed models (model.key_field): the event's model key is missing or not a short string.
INVALID_MODEL_KEY: Final = "invalid_model_key"
# Labels: joining and validating.
LABEL_WITHOUT_EVENT: Final = "label_without_event"
DUPLICATE_LABEL: Final = "duplicate_label"
UNKNOWN_LABEL: Final = "unknown_label"
INVALID_LABEL: Final = "invalid_label"
# The noise guard.
FEATURE_OUTLIER: Final = "feature_outlier"
NOISY_LABEL: Final = "noisy_label"
# The estimator raised on an event that passed validation (a user factory's bug, usually).
MODEL_ERROR: Final = "model_error"

ALL: Final = (
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_ID,
    INVALID_ID,
    MISSING_FEATURES,
    INVALID_FEATURES,
    NON_FINITE_FEATURE,
    TOO_MANY_FEATURES,
    OVERSIZED,
    INVALID_TS,
    LABEL_WITHOUT_EVENT,
    DUPLICATE_LABEL,
    UNKNOWN_LABEL,
    INVALID_LABEL,
    FEATURE_OUTLIER,
    NOISY_LABEL,
    MODEL_ERROR,
    INVALID_MODEL_KEY,
)
