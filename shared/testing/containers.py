"""`ErasurePipelineContainer`: the whole pipeline in containers for another team's integration tests.

RabbitMQ, PostgreSQL (one database per service) and the project's image running `erasure run all` (the six
services and the sandbox, supervised) on a private Docker network, started and stopped with testcontainers:

    from shared.testing.containers import ErasurePipelineContainer

    def test_our_deregistration_is_erased_everywhere():
        with ErasurePipelineContainer() as pipeline:
            request_id = pipeline.deregister("u-1001")
            completed = pipeline.await_completed(request_id)
            assert completed["data"]["receipt_hash"]
            assert pipeline.verify_receipt(request_id)
            assert pipeline.status(request_id)["status"] == "complete"

Images: ERASURE_IMAGE (loggamera-erasure:dev, `make images` builds it), ERASURE_TEST_RABBITMQ_IMAGE and
ERASURE_TEST_POSTGRES_IMAGE (the public names by default), or the constructor's arguments. Events are
published the way an upstream service does, signed with the development keyring unless `env` names another.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from shared.settings import HTTP_PORTS, RuntimeSettings
from shared.testing.infra import create_database, postgres_image, prepare_testcontainers, rabbitmq_image

ERASURE_IMAGE = "loggamera-erasure:dev"
SERVICE_NAMES = tuple(HTTP_PORTS)
_PG_USER = _PG_PASSWORD = "erasure"  # noqa: S105 - a throwaway database on a private network



def _fresh_keys() -> dict[str, str]:
    """Key-encryption and blind-index keys of this pipeline's own, as settings (the services refuse to start
    without them)."""
    import base64

    from shared.keys import new_material

    material = new_material()
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return {"ERASURE_KEYS_KEK": ",".join(f"{k}:{encode(v)}" for k, v in material.keks.items()),
            "ERASURE_KEYS_KEK_ID": material.kek_id, "ERASURE_KEYS_INDEX_KEY": encode(material.index_key)}

class ErasurePipelineContainer:
    """Broker, databases, services and sandbox from the project's image; events in, receipts out."""

    def __init__(
        self,
        image: str | None = None,
        *,
        rabbitmq: str | None = None,
        postgres: str | None = None,
        namespace: str = "erasure",
        env: dict[str, str] | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.image = image or os.environ.get("ERASURE_IMAGE") or ERASURE_IMAGE
        self.rabbitmq_image = rabbitmq or rabbitmq_image()
        self.postgres_image = postgres or postgres_image()
        self.namespace = namespace
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.amqp_url = ""  # reachable from the test process once started
        self._started: list[Any] = []
        self._network: Any = None
        self._observer = f"{namespace}.it-observer-{uuid.uuid4().hex[:8]}"
        self._seen: dict[str, dict[str, Any]] = {}

    # ---- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> Self:
        """Start everything and return once every service reports ready; stops what started on failure."""
        prepare_testcontainers()
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network

        try:
            from testcontainers.community.postgres import PostgresContainer
            from testcontainers.community.rabbitmq import RabbitMqContainer
        except ImportError:  # testcontainers before the community modules moved
            from testcontainers.postgres import PostgresContainer
            from testcontainers.rabbitmq import RabbitMqContainer

        try:
            self._network = Network().create()
            broker = self._keep(RabbitMqContainer(self.rabbitmq_image).with_network(self._network)
                                .with_network_aliases("rabbitmq").start())
            self.amqp_url = (f"amqp://guest:guest@{broker.get_container_host_ip()}:"
                             f"{broker.get_exposed_port(5672)}/%2F")
            database = self._keep(PostgresContainer(self.postgres_image, username=_PG_USER, password=_PG_PASSWORD,
                                                    dbname="postgres", driver="psycopg")
                                  .with_network(self._network).with_network_aliases("postgres").start())
            admin = database.get_connection_url()
            env = {"ERASURE_AMQP_URL": "amqp://guest:guest@rabbitmq:5672/%2F", "ERASURE_NAMESPACE": self.namespace,
                   "ERASURE_LOG_FORMAT": "json"}
            for service in (*SERVICE_NAMES, "keys"):
                name = f"erasure_{service}"
                create_database(admin, name)
                env[f"ERASURE_{service.upper()}_DATABASE_URL"] = (
                    f"postgresql+psycopg://{_PG_USER}:{_PG_PASSWORD}@postgres:5432/{name}")
            env.update(_fresh_keys())
            env.update(self.env)
            app = DockerContainer(self.image).with_network(self._network).with_network_aliases("erasure")
            app = app.with_command(["run", "all"]).with_envs(**env).with_exposed_ports(*HTTP_PORTS.values())
            self.app = self._keep(app.start())
            self._declare_observer()
            self._await_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every container (the app first, so services drain) and remove the network."""
        for container in reversed(self._started):
            with contextlib.suppress(Exception):  # one container already gone must not keep the others running
                container.stop()
        self._started.clear()
        if self._network is not None:
            self._network.remove()
            self._network = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _keep(self, container: Any) -> Any:
        self._started.append(container)
        return container

    def _await_ready(self) -> None:
        host = self.app.get_container_host_ip()
        pending = {s: f"http://{host}:{self.app.get_exposed_port(p)}/readyz" for s, p in HTTP_PORTS.items()}
        deadline = time.monotonic() + self.ready_timeout
        while pending:
            for service, url in list(pending.items()):
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        del pending[service]
                except httpx.HTTPError:
                    pass
            if not pending:
                return
            if time.monotonic() > deadline:
                out, err = self.app.get_logs()
                tail = (out + err).decode(errors="replace")[-3000:]
                raise TimeoutError(f"not ready after {self.ready_timeout:.0f}s: {sorted(pending)}\n{tail}")
            time.sleep(1)

    # ---- events ----------------------------------------------------------------------------------------------
    @property
    def settings(self) -> RuntimeSettings:
        """Settings of a client in the test process (the broker's host port, this pipeline's namespace)."""
        return RuntimeSettings(amqp_url=self.amqp_url, namespace=self.namespace)

    def _declare_observer(self) -> None:
        """A queue seeing every event, declared before anything is published so no event passes unseen."""
        import kombu

        from shared.broker import kombu_connection
        from shared.consumer import full_topology
        from shared.topology import Names, declare

        settings = self.settings
        with kombu_connection(settings, name="erasure-it-observer") as conn:
            declare(conn.default_channel, full_topology(settings))  # services declare the same: idempotent
            exchange = kombu.Exchange(Names(self.namespace).events_exchange, "topic", passive=True)
            kombu.Queue(self._observer, exchange, routing_key="#", durable=False,
                        queue_arguments={"x-expires": 3_600_000})(conn.default_channel).declare()

    def publish(self, *events: Any) -> list[str]:
        """Publish event data (schemas models) as an upstream service would: signed, confirmed; event ids."""
        from shared.broker import producer
        from shared.codec import encode
        from shared.topology import Names

        settings = self.settings
        sign = {"source": "urn:loggamera:integration-test", "keyring": settings.keyring,
                "key_id": settings.signing_key_id}
        outbound = [encode(event, **sign) for event in events]
        with producer(settings, exchange=Names(self.namespace).events_exchange, name="erasure-it") as out:
            for message in outbound:
                out.publish(message)
        return [message.event_id for message in outbound]

    def deregister(self, user_id: str, *, request_id: uuid.UUID | None = None) -> str:
        """Publish UserDeregistered for `user_id`; its request id."""
        from schemas.examples import example_deregistration

        request = request_id or uuid.uuid4()
        self.publish(example_deregistration(user_id, request_id=request, requested_at=datetime.now(UTC)))
        return str(request)

    def await_completed(self, request_id: str, *, timeout: float = 120.0) -> dict[str, Any]:
        """The ErasureCompleted event (CloudEvents JSON) of a request; TimeoutError naming what did arrive."""
        from shared.broker import kombu_connection

        deadline = time.monotonic() + timeout
        with kombu_connection(self.settings, name="erasure-it-observer") as conn:
            channel = conn.default_channel
            while time.monotonic() < deadline:
                if (found := self._seen.get(request_id)) is not None:
                    return found
                message = channel.basic_get(self._observer, no_ack=True)
                if message is None:
                    time.sleep(0.1)
                    continue
                event = json.loads(message.body)
                if event["type"].endswith("erasure.completed.v1"):
                    self._seen[str(event.get("data", {}).get("request_id"))] = event
        raise TimeoutError(f"no ErasureCompleted for request {request_id} within {timeout:.0f}s; "
                           f"`erasure status {request_id}` in the app container says:\n{self.status(request_id)}")

    # ---- the ledger, asked inside the app container ----------------------------------------------------------
    def _erasure(self, *argv: str) -> tuple[int, str]:
        result = self.app.exec(["erasure", *argv])
        return result.exit_code, result.output.decode(errors="replace")

    def status(self, request_id: str) -> dict[str, Any]:
        """`erasure status REQUEST_ID --json`: the request and each slice's outcome as the ledger holds them."""
        code, out = self._erasure("status", request_id, "--json")
        return json.loads(out) if code == 0 else {"request_id": request_id, "error": out.strip()}

    def verify_receipt(self, request_id: str) -> bool:
        """`erasure receipt REQUEST_ID --verify`: whether the receipt's hash chain holds."""
        return self._erasure("receipt", request_id, "--verify")[0] == 0
