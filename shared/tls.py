"""TLS to the broker (kombu and pika) and to PostgreSQL, from settings: one place decides how it is verified.

The broker's certificate is always checked against a CA and the host name in the URL: kombu's plain
`amqps://` default would verify the chain but not the host name, which lets any certificate from a trusted CA
stand in for the broker.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import pika
from sqlalchemy.engine import make_url

from shared.settings import DatabaseSettings, RuntimeSettings

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def amqp_uses_tls(settings: RuntimeSettings) -> bool:
    """Whether the broker URL asks for TLS; TLS files with a plain amqp:// URL are a configuration error."""
    tls = urlsplit(settings.amqp_url).scheme == "amqps"
    files = [settings.amqp_tls_ca, settings.amqp_tls_cert, settings.amqp_tls_key]
    if not tls and any(files):
        raise ValueError("ERASURE_AMQP_TLS_* is set but ERASURE_AMQP_URL is not amqps://; "
                         "use amqps://host:5671/vhost or unset the TLS files")
    if bool(settings.amqp_tls_cert) != bool(settings.amqp_tls_key):
        raise ValueError("ERASURE_AMQP_TLS_CERT and ERASURE_AMQP_TLS_KEY go together (mutual TLS)")
    return tls


def _broker_host(settings: RuntimeSettings) -> str:
    host = urlsplit(settings.amqp_url).hostname
    if not host:
        raise ValueError("ERASURE_AMQP_URL names no host to verify the broker's certificate against")
    return host


def amqp_ssl_context(settings: RuntimeSettings) -> ssl.SSLContext | None:
    """A client context that verifies the broker (CA from settings, else the system's) and its host name."""
    if not amqp_uses_tls(settings):
        return None
    context = ssl.create_default_context(cafile=settings.amqp_tls_ca)
    context.minimum_version = MINIMUM_VERSION
    if settings.amqp_tls_cert:
        context.load_cert_chain(settings.amqp_tls_cert, settings.amqp_tls_key)
    return context


def pika_ssl_options(settings: RuntimeSettings) -> pika.SSLOptions | None:
    """pika's `ssl_options` for the broker URL in settings; None for plain amqp://."""
    context = amqp_ssl_context(settings)
    if context is None:
        return None
    return pika.SSLOptions(context, server_hostname=_broker_host(settings))


def kombu_ssl(settings: RuntimeSettings) -> dict[str, Any] | None:
    """kombu's (py-amqp's) `ssl=` options for the broker URL in settings; None for plain amqp://."""
    if not amqp_uses_tls(settings):
        return None
    options: dict[str, Any] = {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": _broker_host(settings),  # py-amqp checks the host name only when given one
        "tls_minimum_version": MINIMUM_VERSION,
    }
    if settings.amqp_tls_ca:
        options["ca_certs"] = settings.amqp_tls_ca
    if settings.amqp_tls_cert:
        options["certfile"] = settings.amqp_tls_cert
        options["keyfile"] = settings.amqp_tls_key
    return options


def database_tls_args(url: str, settings: DatabaseSettings) -> dict[str, str]:
    """libpq TLS parameters from settings, for psycopg's connect(); a parameter already in the URL wins."""
    if not url.startswith("postgresql"):
        return {}
    in_url = make_url(url).query
    wanted = {"sslmode": settings.sslmode, "sslrootcert": settings.sslrootcert,
              "sslcert": settings.sslcert, "sslkey": settings.sslkey}
    return {key: value for key, value in wanted.items() if value and key not in in_url}
