"""Tools a person runs beside the worker: produce, tail, score, train, report, demo, broker.

Nothing in the worker, the core, the registry or the Kafka plumbing imports this package, so the
worker installs without the ``tools`` extra (matplotlib, rich).
"""
