"""Unit tests of stream_app.worker."""
