"""Unit tests of stream_app.core."""
