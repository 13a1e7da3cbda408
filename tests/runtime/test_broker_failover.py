"""ERASURE_AMQP_URL as a list of cluster nodes: how it is read, and that kombu and pika get every node and fail
over to a node that answers (against the real broker, behind a node that refuses connections)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import kombu
import pika
import pytest
from pydantic import ValidationError

from shared.broker import FailoverParameters, kombu_connection, pika_parameters
from shared.producer import Producer, RawMessage
from shared.settings import RuntimeSettings
from shared.testing.ports import free_port

NODES = ("amqp://app:pw@rabbit-0.example:5672/erasure", "amqp://app:pw@rabbit-1.example:5673/erasure",
         "amqp://app:pw@rabbit-2.example:5674/erasure")


# ---- reading the list -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [",".join(NODES), ";".join(NODES), f" {NODES[0]} ,{NODES[1]};  {NODES[2]}, "])
def test_a_list_of_nodes_is_read_with_commas_or_semicolons(value: str) -> None:
    assert RuntimeSettings(amqp_url=value).amqp_urls == NODES


def test_a_single_url_is_a_list_of_one() -> None:
    assert RuntimeSettings(amqp_url=NODES[0]).amqp_urls == (NODES[0],)


@pytest.mark.parametrize(("value", "reason"), [
    ("", "is empty"),
    (" , ; ", "is empty"),
    ("http://app:secret@rabbit-0.example:15672/", "is not an amqp:// or amqps:// URL"),
    (f"{NODES[0]},amqps://app:pw@rabbit-1.example:5671/erasure", "mixes amqp:// and amqps://"),
    ("amqp://app:pw@:5672/erasure", "names no host"),
    ("amqp://app:secret@rabbit-0.example:99999/erasure", "Port out of range"),
])
def test_an_unusable_list_stops_at_start_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as error:
        RuntimeSettings(amqp_url=value)
    assert "secret" not in str(error.value)  # neither our message nor pydantic's repeats a password


def test_the_list_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_AMQP_URL", ",".join(NODES))
    assert RuntimeSettings().amqp_urls == NODES


# ---- kombu and pika get every node ----------------------------------------------------------------------------
def _starts(urls: list[str]) -> list[str]:
    return urls[urls.index(NODES[0]):] + urls[:urls.index(NODES[0])]


def test_each_kombu_connection_starts_at_the_next_node_and_keeps_the_others_as_alternates() -> None:
    settings = RuntimeSettings(amqp_url=",".join(NODES))
    connections = [kombu_connection(settings, name="t") for _ in range(6)]
    for conn in connections:
        assert _starts(conn.alt) == list(NODES)  # every node, in list order from where it starts
        assert conn.failover_strategy is kombu.connection.roundrobin_failover
    firsts = [conn.alt[0] for conn in connections]
    assert set(firsts[:3]) == set(NODES) and firsts[3:] == firsts[:3]  # round the list, then again
    assert {conn.as_uri(include_password=True) for conn in connections[:3]} == {
        kombu.Connection(url).as_uri(include_password=True) for url in NODES}


def test_pika_parameters_name_every_node_and_share_everything_else() -> None:
    settings = RuntimeSettings(amqp_url=";".join(NODES), heartbeat=7)
    params = pika_parameters(settings, name="erasure-dlq")
    each = params.each()
    assert sorted((p.host, p.port) for p in each) == [("rabbit-0.example", 5672), ("rabbit-1.example", 5673),
                                                      ("rabbit-2.example", 5674)]
    assert {(p.heartbeat, p.virtual_host, p.credentials.username, p.client_properties["connection_name"])
            for p in each} == {(7, "erasure", "app", "erasure-dlq")}
    seen = []
    for _ in range(4):
        seen.append(params.port)
        params.advance()
    assert seen[3] == seen[0] and sorted(seen[:3]) == [5672, 5673, 5674]


def test_pika_checks_each_nodes_certificate_against_that_nodes_name() -> None:
    nodes = [url.replace("amqp://", "amqps://") for url in NODES]
    params = FailoverParameters(nodes)
    params.ssl_options = pika.SSLOptions(ssl.create_default_context(), server_hostname="rabbit-0.example")
    names = []
    for _ in range(3):
        names.append((params.host, params.ssl_options.server_hostname))
        params.advance()
    assert names == [("rabbit-0.example", "rabbit-0.example"), ("rabbit-1.example", "rabbit-1.example"),
                     ("rabbit-2.example", "rabbit-2.example")]
    assert [(p.host, p.ssl_options.server_hostname) for p in params.each()] == names  # for BlockingConnection
    tls = RuntimeSettings(amqp_url=",".join(nodes))
    assert all(kombu_connection(tls, name="t").alt == [] for _ in range(3))  # TLS: one node per connection
    assert {kombu_connection(tls, name="t").ssl["server_hostname"] for _ in range(3)} == {
        "rabbit-0.example", "rabbit-1.example", "rabbit-2.example"}


def test_a_single_broker_behaves_as_before() -> None:
    params = FailoverParameters(NODES[0])
    params.advance()
    assert (params.host, params.port, len(params.each())) == ("rabbit-0.example", 5672, 1)


# ---- against the real broker, behind a node that refuses connections ------------------------------------------
@pytest.fixture
def dead_and_live(amqp_url: str) -> str:
    """A two-node list: a port nobody listens on (a node that is down), then the test's broker."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F,{amqp_url}"


def test_kombu_fails_over_past_a_node_that_is_down(dead_and_live: str) -> None:
    settings = RuntimeSettings(amqp_url=dead_and_live)
    # As the service consumer connects: one attempt per connection; within one round of the list, one answers.
    answered = 0
    for _ in range(2):
        with kombu_connection(settings, name="t", connect_timeout=2) as conn:
            try:
                conn.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            except OSError:
                continue
            answered += 1
    assert answered == 1
    # kombu's own failover inside one connection: the alternates are tried round-robin.
    for _ in range(2):
        with kombu_connection(settings, name="t", connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=2, interval_start=0, interval_step=0)
            assert conn.connected


def test_pika_blocking_connection_fails_over_past_a_node_that_is_down(dead_and_live: str) -> None:
    settings = RuntimeSettings(amqp_url=dead_and_live)
    for _ in range(2):  # whichever node the list starts at
        conn = pika.BlockingConnection(pika_parameters(settings, name="t").each())
        assert conn.is_open
        conn.close()


def test_the_producer_fails_over_past_a_node_that_is_down(dead_and_live: str, amqp_url: str) -> None:
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        queue = channel.queue_declare("", exclusive=True).queue
        for _ in range(2):  # whichever node the list starts at
            with Producer(dead_and_live, exchange="", timeout=20) as producer:
                producer.publish_raw([RawMessage("", queue, b"through the live node", {"delivery_mode": 2})])
        assert channel.queue_declare(queue, passive=True).message_count == 2


def test_an_operator_gets_the_reason_without_a_traceback_or_the_password() -> None:
    env = {**os.environ, "ERASURE_AMQP_URL": f"{NODES[0].replace(':pw@', ':s3cret@')},amqps://app:s3cret@h/erasure"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "doctor", "--broker"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "ERASURE_AMQP_URL mixes amqp:// and amqps:// nodes; use one scheme for every node" in line
    assert "s3cret" not in line and "Traceback" not in line
