"""Flows that start an erasure: the e-mail intake, the three-year sweep, the replay after a backup restore.

Helpers shared by the flow tests: raw inbound mails, the operator CLI in-process, reading what reached the
broker, and the whole pipeline against one sandbox.
"""

from __future__ import annotations

import json
import re
import time
from email.message import EmailMessage
from typing import Any

import pika
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from schemas import PurchaseCompleted, UserDeregistered
from services.account.accounts import register_user
from services.account.models import metadata
from services.cli.main import cli
from services.ledger.queries import RequestStatus, request_status
from services.registry import SERVICES, load
from services.sandbox import Sandbox
from services.vendors.rules import paypal_customer_id
from shared.testing import Pipeline, RunningService, wait_until

FORWARDING = ("installer_sharing", "payment", "bookkeeping", "newsletter")
INTAKE_SECRET = "flows-intake-secret"  # noqa: S105 - a test value
CODE = re.compile(r"Confirmation code: (\S+)")


def raw_mail(sender: str, subject: str, *, headers: dict[str, str] | None = None) -> bytes:
    """An inbound RFC 5322 message, as the mail server would hand it over."""
    message = EmailMessage()
    for name, value in (headers or {}).items():
        message[name] = value
    message["From"] = sender
    message["To"] = "info@loggamera.se"
    message["Subject"] = subject
    message["Message-ID"] = "<req-1@mail.example.com>"
    message.set_content("Please delete my account.\n")
    return message.as_bytes()


def url_of(running: RunningService) -> str:
    """The database URL of a running service (for the CLI, which opens it itself)."""
    return running.engine.url.render_as_string(hide_password=False)


def run_cli(pipeline: Pipeline, *args: str, stdin: bytes | None = None, **env: str) -> Result:
    """`erasure ARGS` in-process against the pipeline's broker namespace; env adds variables."""
    base = {"ERASURE_AMQP_URL": pipeline.settings.amqp_url, "ERASURE_NAMESPACE": pipeline.namespace}
    return CliRunner().invoke(cli, list(args), env={**base, **env}, input=stdin, catch_exceptions=False)


def summary(result: Result) -> dict[str, Any]:
    """The JSON a `--json` command printed on stdout."""
    return json.loads(result.stdout.strip().splitlines()[-1])


def take_events(pipeline: Pipeline, queue: str, *, idle: float = 0.3, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every CloudEvent now in a queue (acked), read with a deep prefetch so thousands come quickly.

    It reads at least as many as the queue held when asked, so a slow broker cannot cut the list short.
    """
    conn = pika.BlockingConnection(pika.URLParameters(pipeline.settings.amqp_url))
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        channel = conn.channel()
        ready = channel.queue_declare(queue, passive=True).method.message_count
        channel.basic_qos(prefetch_count=2000)
        for method, _props, body in channel.consume(queue, inactivity_timeout=idle):
            if method is None:
                if len(events) >= ready or time.monotonic() > deadline:
                    break
                continue
            events.append(json.loads(body))
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    finally:
        conn.close()
    return events


def deregistrations(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The data of every UserDeregistered now on the ledger queue (which receives all of them)."""
    events = take_events(pipeline, f"{pipeline.namespace}.ledger")
    return [e["data"] for e in events if e["type"] == UserDeregistered.event_type]


def count_rows(engine: Engine, table: str) -> int:
    """Rows in one of the account's tables."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(metadata.tables[table])).scalar_one())


def register_customer(engine: Engine, purchase: PurchaseCompleted) -> None:
    """The buyer has an account, as every buyer does (the portal writes it; here it is written directly)."""
    c = purchase.customer
    with Session(engine) as session, session.begin():
        register_user(session, user_id=purchase.user_id, name=c.name, email=c.email, phone=c.phone,
                      street=c.address.street, postal_code=c.address.postal_code, city=c.address.city)


def traces(purchase: PurchaseCompleted) -> list[str]:
    """Every spelling in which the buyer's personal data may sit in a table."""
    c = purchase.customer
    phone = c.phone or ""
    return [c.email, c.name, c.address.street, phone, phone.replace("+46", "0")]


def point_at_sandbox(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every vendor (SMTP included) at the sandbox and switch the intake webhook on; before build()."""
    monkeypatch.setenv("ERASURE_SANDBOX_URL", sandbox.http_url)
    monkeypatch.setenv("ERASURE_ACCOUNT_SMTP_PORT", str(sandbox.smtp_port))
    monkeypatch.setenv("ERASURE_ACCOUNT_INTAKE_SECRET", INTAKE_SECRET)


def start_all(pipeline: Pipeline) -> dict[str, RunningService]:
    """All six services in-process; the account also serves its HTTP routes on a free port."""
    return {name: pipeline.start(load(name), http_port=0 if name == "account" else None) for name in SERVICES}


def buy(pipeline: Pipeline, sandbox: Sandbox, running: dict[str, RunningService], purchase: PurchaseCompleted) -> None:
    """The customer registers and buys; every forwarding slice has handled the purchase on return."""
    register_customer(running["account"].engine, purchase)
    if purchase.payment.paypal is not None:
        tokens = list(purchase.payment.paypal.vault_token_ids)
        sandbox.seed({"paypal": {"vault": {paypal_customer_id(purchase.user_id): tokens}}})
    [bought] = pipeline.publish(purchase)
    for name in FORWARDING:
        running[name].wait_handled(bought.event_id)


def completed(ledger: RunningService, request_id: str, timeout: float = 30.0) -> RequestStatus:
    """The ledger's status of a request once it is complete."""

    def check() -> RequestStatus | None:
        with Session(ledger.engine) as session:
            status = request_status(session, str(request_id))
        return status if status is not None and status.status == "complete" else None

    return wait_until(check, timeout=timeout, what=f"request {request_id} complete")


def mails_to(sandbox: Sandbox, address: str, subject: str) -> list[dict[str, Any]]:
    """Mails the sink received for an address with a subject."""
    return [m for m in sandbox.mails() if address in m["to"] and m["subject"] == subject]


def code_in(mail: dict[str, Any]) -> str:
    """The confirmation code printed in a confirmation mail."""
    match = CODE.search(mail["body"])
    assert match is not None, "the confirmation mail carries its code"
    return match.group(1)
