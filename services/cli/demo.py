"""`erasure demo`: one purchase and one deregistration through a running pipeline, narrated step by step."""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click

SLICES = ("account", "installer_sharing", "payment", "bookkeeping", "newsletter")


def _say(step: str, text: str) -> None:
    click.echo(f"{click.style(step, bold=True)} {text}")


def _observe(conn: Any, events_exchange: str) -> Any:
    """A private, temporary queue that sees every event on the exchange (classic: it lives only for the demo)."""
    import kombu

    queue = kombu.Queue(f"demo-{uuid.uuid4().hex[:8]}", kombu.Exchange(events_exchange, "topic", passive=True),
                        routing_key="#", exclusive=True, auto_delete=True)
    bound = queue(conn.default_channel)
    bound.declare()
    return bound


def _next_event(queue: Any, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = queue.get(no_ack=True)
        if message is not None:
            return json.loads(message.body)
        time.sleep(0.05)
    return None


def _follow(queue: Any, request_id: str, timeout: float) -> bool:
    """Narrate the slice reports of a request until the ledger completes it; False if it did not in time."""
    reported: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = _next_event(queue, max(0.1, deadline - time.monotonic()))
        if event is None:
            break
        data = event.get("data", {})
        if data.get("request_id") != request_id:
            continue
        if event["type"].endswith("slice_reported.v1"):
            reported.add(data["service"])
            kept = "; ".join(f"kept {r['category']} until {r['retain_until']} ({r['legal_basis']})"
                             for r in data.get("retained", []))
            told = f" told {', '.join(data['recipients_notified'])}." if data.get("recipients_notified") else ""
            click.echo(f"     {data['service']:<17} {data['outcome']}.{told} {kept}".rstrip())
        elif event["type"].endswith("erasure.completed.v1"):
            _say("4.", f"The ledger closed the request: receipt hash {data['receipt_hash']}")
            return True
    missing = sorted(set(SLICES) - reported)
    click.echo(f"erasure demo: the erasure did not complete within {timeout:.0f} s (no report yet from "
               f"{', '.join(missing) or 'the ledger'}); is `erasure run all` running in this namespace? "
               f"`erasure status {request_id}` shows where it stands", err=True)
    return False


@click.command()
@click.option("--user", "user_id", default=None, help="Sample user id (default: a new one).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the erasure to complete.")
def demo(user_id: str | None, timeout: float) -> None:
    """Against a running pipeline (`make run`): buy, deregister, and show what each service did.

    \b
    Example:
      make run            # in one terminal
      erasure demo        # in another
    """
    from schemas.examples import example_deregistration, example_purchase
    from services.account.accounts import register_user
    from services.ledger.commands import receipt_command, status_command
    from shared.broker import kombu_connection
    from shared.broker import producer as make_producer
    from shared.codec import encode, encode_own
    from shared.db import make_engine, session_factory
    from shared.settings import RuntimeSettings, database_url_for
    from shared.topology import Names

    settings = RuntimeSettings()
    names = Names(settings.namespace)
    user_id = user_id or f"u-demo-{uuid.uuid4().hex[:6]}"
    purchase = example_purchase(user_id)
    deregistration = example_deregistration(user_id, request_id=uuid.uuid4(), requested_at=datetime.now(UTC))

    sign = {"source": "urn:loggamera:demo", "keyring": settings.keyring, "key_id": settings.signing_key_id}
    # Connect (and declare the observer) before anything is written: with the broker away the demo stops here
    # and leaves no sample account, with personal data, behind.
    with kombu_connection(settings, name="erasure-demo", connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        queue = _observe(conn, names.events_exchange)
        with make_producer(settings, exchange=names.events_exchange, name="erasure-demo") as producer:
            c = purchase.customer
            engine = make_engine(database_url_for("account"))
            try:
                with session_factory(engine)() as session, session.begin():
                    register_user(session, user_id=user_id, name=c.name, email=c.email, phone=c.phone,
                                  street=c.address.street, postal_code=c.address.postal_code,
                                  city=c.address.city)
            finally:
                engine.dispose()
            _say("1.", f"{c.name} ({user_id}) has an account: name, e-mail, phone and address in the account "
                       "database.")
            producer.publish(encode_own(purchase, **sign))  # its contact details sealed, as we send them
            _say("2.", f"PurchaseCompleted {purchase.purchase_id} published (signed, confirmed). Forwarding, as "
                       "the policy names it:")
            for line in ("installer_sharing → contact and address to installer " + purchase.installer.id,
                         "payment           → PayPal references recorded (order, capture, vault token)",
                         "bookkeeping       → customer and invoice created in Visma eAccounting",
                         "newsletter        → e-mail subscribed in Mailchimp (the buyer consented)"):
                click.echo(f"     {line}")
            time.sleep(2)
            producer.publish(encode(deregistration, **sign))
        _say("3.", f"UserDeregistered published (request {deregistration.request_id}). Each slice reports:")
        if not _follow(queue, str(deregistration.request_id), timeout):
            sys.exit(1)
    text, _ = status_command(None, request_id=str(deregistration.request_id))
    click.echo("\n" + text)
    verdict, code = receipt_command(None, str(deregistration.request_id), verify=True)
    click.echo(verdict.splitlines()[-1] if verdict else "")
    sys.exit(code)
