"""End to end: a legal hold defers a user's erasure in every slice until it is released, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from schemas import SLICE_SERVICES
from schemas.examples import example_deregistration, example_purchase
from services.ledger import legal
from services.ledger.commands import receipt_command
from services.ledger.handlers import KEYS_LINK
from services.ledger.queries import receipt_entries, request_status, state_counts
from services.vendors.rules import paypal_customer_id
from shared.db import session_factory
from shared.hold import is_held, parked
from shared.testing import wait_until

FORWARDING = ("installer_sharing", "payment", "bookkeeping", "newsletter")


def _in_slices(stack, check) -> dict[str, object]:
    """`check(session, ...)` in each slice's database (a service session: it knows the runtime tables)."""
    found = {}
    for name in SLICE_SERVICES:
        running = stack.services[name]
        with session_factory(running.engine, running.service.metadata)() as session:
            found[name] = check(session)
    return found


def _decide(stack, decision, *args):
    """A hold decision written to the ledger, as `erasure hold` / `release` write it; the ledger relays it."""
    with Session(stack.services["ledger"].engine) as session, session.begin():
        return decision(session, *args, datetime.now(UTC), stack.pipeline.settings)


def test_a_held_users_erasure_waits_in_every_slice_until_the_release(stack) -> None:
    user_id = "u-held"
    purchase = example_purchase(user_id)
    tokens = list(purchase.payment.paypal.vault_token_ids)
    stack.sandbox.seed({"paypal": {"vault": {paypal_customer_id(user_id): tokens}}})
    [bought] = stack.pipeline.publish(purchase)
    for name in FORWARDING:
        stack.services[name].wait_handled(bought.event_id)

    number, chained = _decide(stack, legal.hold, user_id, "court order 2026-T-1234")
    assert (number, chained) == (1, []), "no open request yet: the hold waits for one"
    wait_until(lambda: all(_in_slices(stack, lambda s: is_held(s, user_id)).values()), timeout=30,
               what="every slice to hear of the hold")

    deregistration = example_deregistration(user_id, requested_at=datetime.now(UTC) - timedelta(days=40))
    [erased] = stack.pipeline.publish(deregistration)
    for name in ("ledger", *SLICE_SERVICES):
        stack.services[name].wait_handled(erased.event_id)
    request_id = str(deregistration.request_id)
    assert _in_slices(stack, lambda s: parked(s, user_id)) == {name: [request_id] for name in SLICE_SERVICES}

    state = stack.sandbox.state()
    assert state["mailchimp"]["members"], "the newsletter member is kept while the hold is in force"
    assert state["paypal"]["payment_tokens"], "so are the vault tokens"
    assert not [e for e in stack.sandbox.effects("installers") if e["effect"] == "erasure_notice_received"]
    with Session(stack.services["ledger"].engine) as session:
        status = request_status(session, request_id)
        assert status is not None and status.hold_reason == "court order 2026-T-1234"
        assert set(status.missing) == set(SLICE_SERVICES), "no slice erased under the hold"
        counts = state_counts(session, datetime.now(UTC), timedelta(days=1), timedelta(days=20))
        assert counts["held"] >= 1

    number, chained = _decide(stack, legal.release, user_id)
    assert (number, chained) == (1, [request_id])

    def complete():
        with Session(stack.services["ledger"].engine) as session:
            found = request_status(session, request_id)
            return found if found is not None and found.status == "complete" else None

    status = wait_until(complete, timeout=60, what="the released request to complete")
    assert {s.service: s.outcome for s in status.slices} == {
        "account": "nothing_held", "installer_sharing": "erased", "newsletter": "erased",
        "payment": "retained", "bookkeeping": "retained"}
    assert _in_slices(stack, lambda s: (is_held(s, user_id), parked(s, user_id))) == {
        name: (False, []) for name in SLICE_SERVICES}
    state = stack.sandbox.state()
    assert state["mailchimp"]["members"] == {} and state["paypal"]["payment_tokens"] == {}
    with Session(stack.services["ledger"].engine) as session:
        services = [e.service for e in receipt_entries(session, request_id)]
    assert services[:2] == ["hold 1", "release 1"] and sorted(services[2:-1]) == sorted(SLICE_SERVICES)
    assert services[-1] == KEYS_LINK, "the user's data keys are destroyed after the last slice, as the last link"
    ledger_url = stack.services["ledger"].engine.url.render_as_string(hide_password=False)
    text, code = receipt_command(ledger_url, request_id, verify=True)
    assert code == 0, text
