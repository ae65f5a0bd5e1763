"""The module-level Faust app for ``faust -A stream_app.app worker -l info``; it only builds it."""

from __future__ import annotations

from stream_app.settings import load_settings
from stream_app.worker.service import build_app

app = build_app(load_settings())
