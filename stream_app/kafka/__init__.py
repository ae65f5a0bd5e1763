"""Kafka plumbing that knows nothing of models: topics, client security and the emitter.

Nothing here imports :mod:`stream_app.core`: these modules move bytes, not examples.
"""
