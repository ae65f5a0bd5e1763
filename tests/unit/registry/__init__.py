"""Unit tests of stream_app.registry."""
