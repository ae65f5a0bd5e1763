"""Unit tests of stream_app.tools."""
