"""The signing step: HMAC-SHA256 over stored blobs and exported artifacts, under a secret key.

A SHA-256 checksum tells a torn write from a whole one; it does not tell who wrote the bytes.
With a signing key, the writer signs every blob and artifact and every reader checks: an unsigned
version is refused as ``unsigned``, a wrongly signed one as ``bad_signature``. Without a key
nothing is signed or checked, as before. Standard library only (:mod:`stream_app.artifact` uses it).

>>> sig = sign(b"blob", "k3y")
>>> verify(b"blob", sig, "k3y"), verify(b"blob", "", "k3y"), verify(b"blob!", sig, "k3y")
(None, 'unsigned', 'bad_signature')
>>> sign(b"blob", ""), verify(b"blob", "", "")
('', None)
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["BAD_SIGNATURE", "UNSIGNED", "sign", "verify"]

UNSIGNED: Final = "unsigned"
"""Refusal reason: a key is set and the bytes carry no signature."""
BAD_SIGNATURE: Final = "bad_signature"
"""Refusal reason: the signature is not the key's HMAC of the bytes."""


def sign(data: bytes, key: str) -> str:
    """Return the hex HMAC-SHA256 of ``data`` under ``key``; empty without a key."""
    if not key:
        return ""
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str, key: str) -> str | None:
    """Say why ``data`` may not be trusted under ``key`` (a refusal reason), or None if it may."""
    if not key:
        return None
    if not signature:
        return UNSIGNED
    if not hmac.compare_digest(sign(data, key), signature):
        return BAD_SIGNATURE
    return None
