"""The message path, pure and broker-free: decode, predict, emit; label, join, guard, learn.

Nothing here imports Kafka, Faust, :mod:`stream_app.worker` or :mod:`stream_app.tools` (the import
contracts in ``pyproject.toml`` fail ``make lint`` otherwise), so every step is unit-tested alone.
"""
