"""Connections to the broker for everything that is not a service's own consumer: operator commands, the demo,
the sweep. One place, so each of them honours the same settings (URL, heartbeat, TLS files) as the services."""

from __future__ import annotations

from typing import Any

import kombu
import pika

from shared.producer import Producer
from shared.settings import RuntimeSettings
from shared.tls import kombu_ssl, pika_ssl_options


def kombu_connection(settings: RuntimeSettings, *, name: str, **options: Any) -> kombu.Connection:
    """A kombu connection (not yet open) with the settings' TLS files, named for `rabbitmqctl list_connections`."""
    transport = {"client_properties": {"connection_name": name}, **options.pop("transport_options", {})}
    return kombu.Connection(settings.amqp_url, ssl=kombu_ssl(settings), transport_options=transport, **options)


def pika_parameters(settings: RuntimeSettings, *, name: str, heartbeat: int | None = None) -> pika.URLParameters:
    """pika connection parameters with the settings' TLS files and heartbeat, named for the broker's listing."""
    params = pika.URLParameters(settings.amqp_url)
    params.heartbeat = settings.heartbeat if heartbeat is None else heartbeat
    params.client_properties = {"connection_name": name}
    ssl_options = pika_ssl_options(settings)
    if ssl_options is not None:
        params.ssl_options = ssl_options
    return params


def producer(settings: RuntimeSettings, *, exchange: str, name: str, **options: Any) -> Producer:
    """A confirming producer (not yet started) with the settings' heartbeat and TLS files."""
    return Producer(settings.amqp_url, exchange=exchange, heartbeat=settings.heartbeat, name=name,
                    ssl_options=pika_ssl_options(settings), **options)
