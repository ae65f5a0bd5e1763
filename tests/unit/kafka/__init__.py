"""Unit tests of stream_app.kafka."""
