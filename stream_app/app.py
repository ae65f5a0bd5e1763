"""The module-level Faust app for ``faust -A stream_app.app worker -l info``; it only builds it."""

from __future__ import annotations

from stream_app.service import build_app
from stream_app.settings import load_settings

app = build_app(load_settings())
