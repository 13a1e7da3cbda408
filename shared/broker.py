"""Connections to the broker, from settings, for everything that talks AMQP: one place, so every client honours
the same settings (URL or list of cluster nodes, heartbeat, TLS files) and fails over the same way.

A cluster is given as several URLs in `ERASURE_AMQP_URL`. kombu gets them as its own alternates
(`failover_strategy="round-robin"`); pika gets parameters that move to the next node after a failed or lost
connection (`FailoverParameters.advance`), or a list of one parameters object per node, which pika's
BlockingConnection tries in turn. Each new connection starts at the next node of the list: a client that
reconnects one attempt at a time (the service consumer does, under its own back-off) reaches every node in
turn instead of retrying a dead first one, and a fleet's connections spread over the cluster.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import kombu
import pika

from shared.settings import RuntimeSettings, broker_urls
from shared.tls import kombu_ssl, pika_ssl_options

if TYPE_CHECKING:
    from shared.producer import Producer

# Per list of nodes: where this process's next connection starts. The first is picked at random, so the
# connections of a fleet's processes spread over the cluster instead of all starting at the first node.
_turns: dict[tuple[str, ...], itertools.count[int]] = {}


def _next_start(urls: tuple[str, ...]) -> int:
    return next(_turns.setdefault(urls, itertools.count(random.randrange(len(urls))))) % len(urls)


def rotated(urls: Sequence[str], start: int) -> list[str]:
    """The nodes in list order, beginning at `start`."""
    return [*urls[start:], *urls[:start]]


def kombu_connection(settings: RuntimeSettings, *, name: str, **options: Any) -> kombu.Connection:
    """A kombu connection (not yet open) to the broker or cluster of the settings, named for
    `rabbitmqctl list_connections`. With several nodes, it starts at the next node of the list and keeps the
    others as round-robin alternates. Under TLS it has no alternates: the certificate of every node is checked
    against that node's own name, which py-amqp takes once per connection, so the next connection (starting at
    the next node) is the failover."""
    urls = rotated(settings.amqp_urls, _next_start(settings.amqp_urls))
    first = settings.model_copy(update={"amqp_url": urls[0]})
    ssl = kombu_ssl(first)
    transport = {"client_properties": {"connection_name": name}, **options.pop("transport_options", {})}
    return kombu.Connection(urls[0] if ssl else ";".join(urls), ssl=ssl, transport_options=transport,
                            failover_strategy="round-robin", **options)


class FailoverParameters(pika.URLParameters):
    """pika connection parameters for a list of broker nodes: everything but the address (heartbeat, timeouts,
    TLS options, client properties) is shared; `advance()` points them at the next node, and `each()` gives one
    copy per node for pika's BlockingConnection, which tries a list in turn. With one URL, plain URLParameters.
    """

    def __init__(self, urls: str | Sequence[str], start: int = 0) -> None:
        self.urls = broker_urls(urls) if isinstance(urls, str) else tuple(urls)
        self.index = start % len(self.urls)
        super().__init__(self.urls[self.index])

    def advance(self) -> None:
        """Point at the next node of the list (the first after the last); a no-op for a single broker."""
        if len(self.urls) == 1:
            return
        self.index = (self.index + 1) % len(self.urls)
        node = pika.URLParameters(self.urls[self.index])
        self.host, self.port, self.virtual_host, self.credentials = (
            node.host, node.port, node.virtual_host, node.credentials)
        self.ssl_options = self.ssl_options  # checked against the new node's name

    @property
    def ssl_options(self) -> pika.SSLOptions | None:
        return pika.URLParameters.ssl_options.fget(self)

    @ssl_options.setter
    def ssl_options(self, value: pika.SSLOptions | None) -> None:
        # Each node's certificate is checked against that node's own name, whoever set the options.
        if value is not None and value.server_hostname is not None and value.server_hostname != self.host:
            value = pika.SSLOptions(value.context, server_hostname=self.host)
        pika.URLParameters.ssl_options.fset(self, value)

    def each(self) -> list[FailoverParameters]:
        """One copy per node, from the current one on (shallow copies: an SSLContext cannot be deep-copied, and
        advance() replaces the address and TLS options rather than changing them in place)."""
        copies = [copy.copy(self)]
        for _ in self.urls[1:]:
            following = copy.copy(copies[-1])
            following.advance()
            copies.append(following)
        return copies


def failover_parameters(amqp_url: str) -> FailoverParameters:
    """Parameters for the broker URL or list of nodes, starting at the next node of the list for this process."""
    urls = broker_urls(amqp_url)
    return FailoverParameters(urls, _next_start(urls))


def pika_parameters(settings: RuntimeSettings, *, name: str, heartbeat: int | None = None) -> FailoverParameters:
    """pika connection parameters with the settings' TLS files and heartbeat, named for the broker's listing;
    `.each()` for a BlockingConnection that should try every node of a cluster."""
    params = failover_parameters(settings.amqp_url)
    params.heartbeat = settings.heartbeat if heartbeat is None else heartbeat
    params.client_properties = {"connection_name": name}
    ssl_options = pika_ssl_options(settings.model_copy(update={"amqp_url": params.urls[params.index]}))
    if ssl_options is not None:
        params.ssl_options = ssl_options
    return params


def producer(settings: RuntimeSettings, *, exchange: str, name: str, **options: Any) -> Producer:
    """A confirming producer (not yet started) with the settings' heartbeat and TLS files."""
    from shared.producer import Producer  # shared.producer takes its connection parameters from here

    return Producer(settings.amqp_url, exchange=exchange, heartbeat=settings.heartbeat, name=name,
                    ssl_options=pika_ssl_options(settings), **options)
