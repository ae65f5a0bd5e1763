"""``stream-app train``: offline training on a file equals River's progressive validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from river import compat, datasets, evaluate, metrics

from stream_app import cli
from stream_app.artifact import load
from stream_app.models import logistic_regression
from stream_app.settings import Settings
from stream_app.tools.train import TrainSummary, train_file

SKLEARN_FACTORY = "tests.unit.tools.test_train:sgd_classifier"


def sgd_classifier() -> Any:
    """Make a scikit-learn ``partial_fit`` estimator a River classifier (``river.compat``)."""
    from sklearn.linear_model import SGDClassifier

    return compat.convert_sklearn_to_river(
        SGDClassifier(loss="log_loss", random_state=0), classes=[False, True]
    )


def phishing_jsonl(path: Path) -> Path:
    """Write River's Phishing set as JSONL events, one row a line, in its order."""
    with path.open("wb") as out:
        for i, (x, y) in enumerate(datasets.Phishing()):
            out.write(orjson.dumps({"id": f"p{i}", "features": x, "label": y}) + b"\n")
    return path


def test_train_equals_progressive_val_score_on_phishing(tmp_path: Path) -> None:
    source = phishing_jsonl(tmp_path / "phishing.jsonl")
    out = tmp_path / "model.river"
    model, summary = train_file(Settings(), source, out, "stream_app.models:logistic_regression")
    expected = evaluate.progressive_val_score(
        datasets.Phishing(), logistic_regression(), metrics.Accuracy()
    )
    assert summary.trained == datasets.Phishing().n_samples == model.examples_learned
    assert summary.score == pytest.approx(expected.get(), abs=0.0)
    assert not summary.rejected
    artifact = load(out)
    assert artifact.header["examples_learned"] == summary.trained
    x, _ = next(iter(datasets.Phishing()))
    river_model = logistic_regression()
    for row, y in datasets.Phishing():
        river_model.learn_one(row, y)
    assert artifact.estimator.predict_proba_one(x) == river_model.predict_proba_one(x)


def test_train_cli_reports_left_out_lines_by_reason_and_signs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_bytes(
        b'{"id": "a", "features": {"x": 1}, "label": true}\n'
        b"{not json\n"
        b'{"id": "b", "features": {"x": 2}}\n'
        b'{"id": "c", "features": {"x": "nan"}, "label": "maybe"}\n'
        b'{"id": "d", "features": {"x": -1}, "label": false}\n'
    )
    monkeypatch.setenv("STREAM_APP_REGISTRY__SIGNING_KEY", "k3y")
    out = tmp_path / "m.river"
    code = cli.main(
        [
            "train",
            str(source),
            "--factory",
            "stream_app.models:logistic_regression",
            "--out",
            str(out),
        ]
    )
    line = capsys.readouterr().out
    assert code == 0
    assert "trained default on 2 rows" in line
    assert "left out 3: " in line
    assert "unreadable line (invalid JSON) 1" in line
    assert "invalid_label 1" in line and "unknown_label 1" in line
    assert load(out, signing_key="k3y").header["examples_learned"] == 2


def test_train_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    code = cli.main(
        ["train", str(tmp_path / "missing.csv"), "--factory", "a:b", "--out", str(tmp_path / "m")]
    )
    assert code == 1


def test_train_from_a_scikit_learn_partial_fit_estimator(tmp_path: Path) -> None:
    source = phishing_jsonl(tmp_path / "phishing.jsonl")
    out = tmp_path / "sgd.river"
    _, summary = train_file(Settings(), source, out, SKLEARN_FACTORY)
    expected = evaluate.progressive_val_score(
        datasets.Phishing(), sgd_classifier(), metrics.Accuracy()
    )
    assert summary.score == expected.get()
    assert summary.score is not None and summary.score > 0.8
    artifact = load(out, trusted_modules=("sklearn",))
    x, _ = next(iter(datasets.Phishing()))
    assert artifact.predict_one(x)[0] in (False, True)


def test_summary_without_rows_says_so() -> None:
    assert TrainSummary().score is None
