"""stream_app: serve and keep training a River model from Kafka.

Importing the package loads no Kafka code; the worker lives in :mod:`stream_app.worker.service`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
