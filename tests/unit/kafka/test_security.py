"""Kafka security settings reach every client, and no secret shows in a repr or a log."""

from __future__ import annotations

import logging
import ssl

import faust
import pytest

from stream_app.errors import ConfigError
from stream_app.kafka.security import broker_credentials, client_kwargs
from stream_app.settings import MASK, Settings, load_settings
from stream_app.worker.service import build_app

PASSWORD = "pw-0f9e8d7c6b"
TOKEN = "tk-5a4b3c2d1e"
SASL = {
    "STREAM_APP_SECURITY__PROTOCOL": "SASL_PLAINTEXT",
    "STREAM_APP_SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
    "STREAM_APP_SECURITY__SASL_USERNAME": "svc",
    "STREAM_APP_SECURITY__SASL_PASSWORD": PASSWORD,
    "STREAM_APP_WEB__TOKEN": TOKEN,
}


def test_plaintext_by_default() -> None:
    settings = load_settings(env={"STREAM_APP_BROKER": "kafka://127.0.0.1:19092"}, files=[])
    assert client_kwargs(settings) == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "PLAINTEXT",
    }
    assert broker_credentials(settings) is None


def test_sasl_settings_from_the_environment_reach_aiokafka_and_faust() -> None:
    settings = load_settings(env=SASL, files=[])
    kwargs = client_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc", PASSWORD)
    assert "ssl_context" not in kwargs
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("svc", PASSWORD)
    faust_credentials = build_app(settings).conf.broker_credentials
    assert isinstance(faust_credentials, faust.SASLCredentials)
    assert faust_credentials.password == PASSWORD


def test_sasl_ssl_and_ssl_build_a_verifying_tls_context() -> None:
    sasl_ssl = Settings().replace(
        security={"protocol": "SASL_SSL", "sasl_username": "svc", "sasl_password": PASSWORD}
    )
    context = client_kwargs(sasl_ssl)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = broker_credentials(sasl_ssl)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"

    tls = Settings().replace(security={"protocol": "SSL", "ssl_check_hostname": False})
    kwargs = client_kwargs(tls)
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert not kwargs["ssl_context"].check_hostname
    assert isinstance(broker_credentials(tls), faust.SSLCredentials)


def test_unreadable_tls_files_and_bad_security_settings_are_refused() -> None:
    missing = Settings().replace(security={"protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"})
    with pytest.raises(ConfigError, match="TLS files"):
        client_kwargs(missing)
    with pytest.raises(ConfigError, match=r"security\.protocol"):
        load_settings(env={"STREAM_APP_SECURITY__PROTOCOL": "SASL"}, files=[])
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        Settings().replace(security={"sasl_mechanism": "GSSAPI"})
    with pytest.raises(ConfigError, match="sasl_username"):
        Settings().replace(security={"protocol": "SASL_SSL"})


def test_secrets_are_masked_in_reprs() -> None:
    settings = load_settings(
        env={**SASL, "STREAM_APP_SECURITY__SSL_KEY_PASSWORD": PASSWORD + "k"}, files=[]
    )
    for text in (repr(settings), str(settings), repr(settings.security), repr(settings.web)):
        assert PASSWORD not in text and TOKEN not in text
    assert f"sasl_password={MASK}" in repr(settings.security)
    assert f"ssl_key_password={MASK}" in repr(settings.security)
    assert f"token={MASK}" in repr(settings.web)
    assert "sasl_username='svc'" in repr(settings.security)  # only secrets are masked
    assert "token=''" in repr(Settings().web)  # an empty secret shows that it is empty
    assert PASSWORD not in repr(broker_credentials(settings))


def test_building_the_app_logs_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(env=SASL, files=[])
    build_app(settings)
    logging.getLogger("stream_app").info("settings: %r", settings)
    assert caplog.records  # the check below saw something
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text


def test_the_web_server_binds_loopback_by_default() -> None:
    app = build_app(Settings())
    assert Settings().web.host == "127.0.0.1"
    assert (app.conf.web_bind, app.conf.web_host) == ("127.0.0.1", "127.0.0.1")
    exposed = build_app(Settings().replace(web={"host": "0.0.0.0"}))
    assert exposed.conf.web_bind == "0.0.0.0"
