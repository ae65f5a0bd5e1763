"""Write the README tour's example files (seeded, so they are the same on every run).

    python scripts/make_examples.py

examples/sea.csv: 2,000 events of River's SEA stream with their labels (id,x1,x2,x3,label).
examples/unlabeled.jsonl: 20 more events without labels (ids u-0..u-19).
examples/labels.jsonl: their labels, for the labels topic (what arrives later in real life).
"""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
from river.datasets import synth

OUT = Path(__file__).resolve().parent.parent / "examples"


def main() -> None:
    """Write the three files."""
    OUT.mkdir(exist_ok=True)
    stream = list(synth.SEA(variant=0, seed=7).take(2020))
    with (OUT / "sea.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "x1", "x2", "x3", "label"])
        for i, (x, y) in enumerate(stream[:2000]):
            writer.writerow([f"sea-{i}", *(round(v, 4) for v in x.values()), int(y)])
    events, labels = [], []
    for i, (x, y) in enumerate(stream[2000:]):
        features = {f"x{k + 1}": round(v, 4) for k, v in x.items()}
        events.append(orjson.dumps({"id": f"u-{i}", "features": features}))
        labels.append(orjson.dumps({"id": f"u-{i}", "label": int(y)}))
    (OUT / "unlabeled.jsonl").write_bytes(b"\n".join(events) + b"\n")
    (OUT / "labels.jsonl").write_bytes(b"\n".join(labels) + b"\n")


if __name__ == "__main__":
    main()
