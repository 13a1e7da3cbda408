"""TLS and pool settings reach the real clients: kombu, pika and psycopg.

No TLS-enabled RabbitMQ runs here, so a TLS terminator in front of the local broker stands in for its TLS
listener: it presents a certificate for `localhost` from a test CA, demands a client certificate from the
same CA, and forwards the decrypted AMQP to the broker. Every client below speaks real AMQP through it.
The local PostgreSQL has TLS off, which makes `sslmode=require` fail loudly: proof that it reached libpq.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import kombu
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from schemas import ErasureSliceReported
from schemas.examples import example_deregistration
from shared.db import make_engine
from shared.errors import PublishError
from shared.producer import Producer, RawMessage
from shared.settings import RuntimeSettings
from shared.testing import wait_until
from shared.testing.pipeline import Pipeline, RunningService
from shared.tls import amqp_uses_tls, kombu_ssl, pika_ssl_options
from tests.probe_service import Act, Probe, make_service


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path  # a CA nobody here trusts


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)


def _leaf(directory: Path, name: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA with a server certificate for `localhost` and a client certificate; another CA besides."""
    if not shutil.which("openssl"):
        pytest.skip("makes test certificates with the openssl command")
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "stranger")
    _leaf(d, "server", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "extendedKeyUsage=clientAuth\n")
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
               d / "stranger.crt")


class TlsTerminator:
    """A TLS listener on localhost that requires a client certificate and relays plain bytes to the broker."""

    def __init__(self, target: tuple[str, int], pki: Pki) -> None:
        self._target = target
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        self._context.load_cert_chain(pki.server_cert, pki.server_key)
        self._context.verify_mode = ssl.CERT_REQUIRED
        self.sessions = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda _loop, _context: None)  # failed handshakes are the point
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-terminator", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self._context))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1  # only reached after a complete handshake, client certificate included
        up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def terminator(amqp_url: str, pki: Pki) -> Iterator[TlsTerminator]:
    parsed = urlsplit(amqp_url)
    running = TlsTerminator((parsed.hostname or "127.0.0.1", parsed.port or 5672), pki)
    yield running
    running.close()


def _tls_settings(amqp_url: str, terminator: TlsTerminator, pki: Pki, *, host: str = "localhost",
                  ca: Path | None = None, client: bool = True, **extra: object) -> RuntimeSettings:
    parsed = urlsplit(amqp_url)
    url = f"amqps://{parsed.username}:{parsed.password}@{host}:{terminator.port}{parsed.path or '/%2F'}"
    files = {"amqp_tls_ca": str(ca or pki.ca)}
    if client:
        files |= {"amqp_tls_cert": str(pki.client_cert), "amqp_tls_key": str(pki.client_key)}
    return RuntimeSettings(amqp_url=url, **files, **extra)  # type: ignore[arg-type]


def _kombu_round_trip(settings: RuntimeSettings) -> bytes:
    with kombu.Connection(settings.amqp_url, ssl=kombu_ssl(settings), connect_timeout=5) as conn:
        channel = conn.channel()
        queue = channel.queue_declare("", exclusive=True).queue  # classic, server-named, gone with the connection
        channel.basic_publish(channel.prepare_message(b"over tls"), exchange="", routing_key=queue)
        message = wait_until(lambda: channel.basic_get(queue, no_ack=True), timeout=5, what="the message back")
        return bytes(message.body)


# ---- the rules ------------------------------------------------------------------------------------------
def test_plain_amqp_uses_no_tls_and_refuses_tls_files(pki: Pki) -> None:
    plain = RuntimeSettings(amqp_url="amqp://guest:guest@127.0.0.1:5672/%2F")
    assert (amqp_uses_tls(plain), kombu_ssl(plain), pika_ssl_options(plain)) == (False, None, None)
    with pytest.raises(ValueError, match="not amqps"):
        amqp_uses_tls(plain.model_copy(update={"amqp_tls_ca": str(pki.ca)}))
    secure = RuntimeSettings(amqp_url="amqps://u:p@broker.example:5671/erasure", amqp_tls_cert=str(pki.client_cert))
    with pytest.raises(ValueError, match="go together"):
        amqp_uses_tls(secure)


def test_tls_options_come_from_settings_and_check_the_broker_name(pki: Pki) -> None:
    settings = RuntimeSettings(amqp_url="amqps://u:p@broker.example:5671/erasure", amqp_tls_ca=str(pki.ca),
                               amqp_tls_cert=str(pki.client_cert), amqp_tls_key=str(pki.client_key))
    options = kombu_ssl(settings)
    assert options is not None
    assert (options["ca_certs"], options["certfile"], options["keyfile"]) == (
        str(pki.ca), str(pki.client_cert), str(pki.client_key))
    assert options["cert_reqs"] == ssl.CERT_REQUIRED and options["server_hostname"] == "broker.example"
    pika_options = pika_ssl_options(settings)
    assert pika_options is not None and pika_options.server_hostname == "broker.example"
    assert pika_options.context.check_hostname and pika_options.context.verify_mode == ssl.CERT_REQUIRED


# ---- real connections through the TLS listener ------------------------------------------------------------------
def test_kombu_speaks_amqp_over_tls_with_the_files_from_settings(
    amqp_url: str, terminator: TlsTerminator, pki: Pki
) -> None:
    before = terminator.sessions
    assert _kombu_round_trip(_tls_settings(amqp_url, terminator, pki)) == b"over tls"
    assert terminator.sessions == before + 1


def test_pika_producer_publishes_over_tls_with_the_files_from_settings(
    amqp_url: str, terminator: TlsTerminator, pki: Pki
) -> None:
    settings = _tls_settings(amqp_url, terminator, pki)
    with kombu.Connection(settings.amqp_url, ssl=kombu_ssl(settings)) as conn:
        channel = conn.channel()
        queue = channel.queue_declare("", exclusive=True).queue
        with Producer(settings.amqp_url, exchange="", ssl_options=pika_ssl_options(settings), timeout=10) as producer:
            producer.publish_raw([RawMessage("", queue, b"confirmed over tls", {"delivery_mode": 2})])
        message = wait_until(lambda: channel.basic_get(queue, no_ack=True), timeout=5, what="the published message")
        assert bytes(message.body) == b"confirmed over tls"


@pytest.mark.parametrize("wrong", ["stranger CA", "host name", "no client certificate"])
def test_tls_refuses_an_unverified_broker_and_sends_the_client_certificate(
    amqp_url: str, terminator: TlsTerminator, pki: Pki, wrong: str
) -> None:
    settings = {
        "stranger CA": _tls_settings(amqp_url, terminator, pki, ca=pki.stranger_ca),
        "host name": _tls_settings(amqp_url, terminator, pki, host="127.0.0.1"),  # the certificate says localhost
        "no client certificate": _tls_settings(amqp_url, terminator, pki, client=False),
    }[wrong]
    before = terminator.sessions
    with pytest.raises((ssl.SSLError, OSError, ConnectionError)):
        _kombu_round_trip(settings)
    with pytest.raises(PublishError), Producer(settings.amqp_url, exchange="", timeout=1.5,
                                                ssl_options=pika_ssl_options(settings)):
        pass
    assert terminator.sessions == before, "no AMQP session was relayed"


def test_a_service_consumes_and_relays_its_outbox_over_tls(
    erasure_pipeline: Pipeline, terminator: TlsTerminator, pki: Pki, tmp_path: Path
) -> None:
    probe = make_service("probe", Probe({"emit-tls": Act(emit=True)}))
    erasure_pipeline.declare(probe)
    tls = _tls_settings(erasure_pipeline.settings.amqp_url, terminator, pki,
                        namespace=erasure_pipeline.namespace, retry_delays=(0.2, 0.4, 0.8), delivery_limit=5)
    before = terminator.sessions
    running = RunningService(probe, tls, f"sqlite:///{tmp_path}/probe.db").start()
    try:
        [sent] = erasure_pipeline.publish(example_deregistration("emit-tls", request_id=str(uuid.uuid4())))
        running.wait_handled(sent.event_id)
        reports = wait_until(lambda: [m for m in erasure_pipeline.take(f"{erasure_pipeline.namespace}.ledger")
                                      if m.properties.get("type") == ErasureSliceReported.event_type],
                             what="the slice report, relayed by the outbox producer over TLS")
        assert len(reports) == 1
    finally:
        running.stop()
    assert terminator.sessions >= before + 2, "the consumer (kombu) and the outbox producer (pika) both used TLS"


def test_operator_commands_use_the_tls_files_from_settings(
    erasure_pipeline: Pipeline, terminator: TlsTerminator, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from services.cli.main import cli

    ours = erasure_pipeline.settings
    tls = _tls_settings(ours.amqp_url, terminator, pki)
    env = {"AMQP_URL": tls.amqp_url, "AMQP_TLS_CA": str(pki.ca), "AMQP_TLS_CERT": str(pki.client_cert),
           "AMQP_TLS_KEY": str(pki.client_key), "NAMESPACE": erasure_pipeline.namespace,
           # the namespace's queues exist with the test settings' arguments; a declare must match them
           "RETRY_DELAYS": ",".join(str(d) for d in ours.retry_delays), "DELIVERY_LIMIT": str(ours.delivery_limit),
           "DEAD_LETTER_TTL_DAYS": str(ours.dead_letter_ttl_days)}
    for name, value in env.items():
        monkeypatch.setenv(f"ERASURE_{name}", value)
    monkeypatch.delenv("AMQP_URL", raising=False)
    runner = CliRunner()
    for command in (["doctor", "--broker"], ["topology", "declare"], ["publish", "deregistration", "--user", "u-tls"],
                    ["dlq", "list", "--json"]):
        before = terminator.sessions
        result = runner.invoke(cli, command, catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)
        assert terminator.sessions > before, f"erasure {' '.join(command)} did not connect over TLS"
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.ledger") == 1, "the published event arrived"


# ---- PostgreSQL ---------------------------------------------------------------------------------------------
def test_database_tls_settings_reach_libpq(postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_DB_SSLMODE", "require")
    engine = make_engine(postgres_admin_url)
    with pytest.raises(OperationalError, match="SSL"):  # the local server has TLS off: require must fail
        engine.connect()
    engine.dispose()
    separator = "&" if "?" in postgres_admin_url else "?"
    engine = make_engine(f"{postgres_admin_url}{separator}sslmode=disable")  # the URL's own choice wins
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar_one() == 1
    engine.dispose()


def test_database_pool_size_comes_from_settings(postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_DB_POOL_SIZE", "1")
    monkeypatch.setenv("ERASURE_DB_MAX_OVERFLOW", "1")
    engine = make_engine(postgres_admin_url, pool_timeout=0.5)
    held = [engine.connect(), engine.connect()]  # the pool and its one overflow connection
    with pytest.raises(PoolTimeout):
        engine.connect()
    for conn in held:
        conn.close()
    engine.dispose()
