"""Kafka client security from settings: one function builds what every aiokafka client needs.

Every client the service creates (the serve loop's consumer and producer, the registry follower,
the restore reader, the topic admin, the model-operation tools, the demo) takes its connection
keyword arguments from :func:`client_kwargs`, and the Faust app takes the same settings as
:func:`broker_credentials`, so one ``[security]`` section reaches them all.

>>> client_kwargs(Settings())
{'bootstrap_servers': '127.0.0.1:9092', 'security_protocol': 'PLAINTEXT'}
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from stream_app.errors import ConfigError
from stream_app.settings import SecuritySettings, Settings, bootstrap_servers

__all__ = ["broker_credentials", "client_kwargs", "ssl_context"]


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Return ``bootstrap_servers`` and the security arguments for any aiokafka client.

    >>> s = Settings().replace(security={"protocol": "SASL_PLAINTEXT", "sasl_username": "app"})
    >>> sorted(client_kwargs(s))  # doctest: +NORMALIZE_WHITESPACE
    ['bootstrap_servers', 'sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username',
     'security_protocol']
    """
    sec = settings.security
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings.app.broker),
        "security_protocol": sec.protocol,
    }
    if sec.protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(sec)
    if sec.protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = sec.sasl_mechanism
        kwargs["sasl_plain_username"] = sec.sasl_username
        kwargs["sasl_plain_password"] = sec.sasl_password
    return kwargs


def ssl_context(sec: SecuritySettings) -> ssl.SSLContext:
    """Build the TLS context: the CA bundle (or the system's), an optional client certificate."""
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=sec.ssl_cafile or None,
            certfile=sec.ssl_certfile or None,
            keyfile=sec.ssl_keyfile or None,
            password=sec.ssl_key_password or None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"security: cannot load the TLS files: {exc}") from exc
    context.check_hostname = sec.ssl_check_hostname
    return context


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Return the same security as Faust's ``broker_credentials`` (None for PLAINTEXT).

    >>> broker_credentials(Settings()) is None
    True
    >>> s = Settings().replace(security={"protocol": "SASL_PLAINTEXT", "sasl_username": "app"})
    >>> broker_credentials(s)
    <SASLCredentials: username=app>
    """
    sec = settings.security
    if sec.protocol == "PLAINTEXT":
        return None
    context = ssl_context(sec) if sec.protocol in ("SSL", "SASL_SSL") else None
    if sec.protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=sec.sasl_username,
        password=sec.sasl_password,
        ssl_context=context,
        mechanism=sec.sasl_mechanism,
    )
