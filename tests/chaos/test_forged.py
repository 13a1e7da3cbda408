"""Forged deregistrations sent to the real services — unsigned, signed with an unknown key or a guessed
secret, a signed body altered, a valid event replayed under a new id, a signature copied from another event —
erase nothing anywhere: every user's data stays in every service database and at every vendor, and each
forgery is dead-lettered by each service with kind `signature`. A genuine deregistration still works."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import column

from schemas import UserDeregistered
from services.registry import SERVICES
from services.vendors.rules import visma_customer_number
from shared.codec import Outbound
from tests.chaos.harness import poll, record_results
from tests.chaos.load import Person, deregistration_of, people, purchase_of, register_in_account, seed_vault
from tests.chaos.stack import Stack

KEY = UserDeregistered.routing_key()
DELETIONS = {"member_deleted_permanently", "erasure_notice_received", "payment_token_deleted"}


def _digest(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _forgeries(stack: Stack, victims: list[Person]) -> dict[str, tuple[str, bytes, str | None, str]]:
    """case → (victim user id, body, x-signature header, message id)."""
    encode: Callable[[Person], Outbound] = lambda p: stack.upstream.encode(deregistration_of(p))  # noqa: E731
    genuine = [encode(p) for p in victims]
    attacker = encode(Person("attacker-1", str(uuid.uuid4()), "inst-1", "tok-attacker"))
    altered = attacker.body.replace(b'"attacker-1"', json.dumps(victims[3].user_id).encode())
    new_id = str(uuid.uuid4())
    replayed = genuine[4].body.replace(genuine[4].event_id.encode(), new_id.encode())
    other = stack.upstream.encode(purchase_of(victims[5]))
    return {
        "unsigned": (victims[0].user_id, genuine[0].body, None, genuine[0].event_id),
        "unknown_key": (victims[1].user_id, genuine[1].body,
                        f"v1=rogue:{_digest(b'rogue-secret', genuine[1].body)}", genuine[1].event_id),
        "known_key_id_guessed_secret": (victims[2].user_id, genuine[2].body,
                                        f"v1=chaos:{_digest(b'guessed-secret', genuine[2].body)}",
                                        genuine[2].event_id),
        "signed_body_altered": (victims[3].user_id, altered, attacker.signature, attacker.event_id),
        "replayed_with_new_id": (victims[4].user_id, replayed, genuine[4].signature, new_id),
        "signature_of_another_event": (victims[5].user_id, genuine[5].body, other.signature, genuine[5].event_id),
    }


def _held(stack: Stack, ids: list[str]) -> dict[str, int]:
    """How much of these users each service still holds."""
    look = stack.observer.holding
    return {
        "account.users": look("account", "users", ids),
        "installer_sharing.shares": look("installer_sharing", "shares", ids),
        "payment.vault_tokens": look("payment", "vault_tokens", ids),
        "payment.payer_ids": look("payment", "payments", ids, column("payer_id").is_not(None)),
        "bookkeeping.customers_with_email": look("bookkeeping", "customers", ids, column("email").is_not(None)),
        "newsletter.subscribers": look("newsletter", "subscribers", ids),
        **{f"{name}.tombstones": look(name, "tombstones", ids) for name in SERVICES if name != "ledger"},
        "ledger.erasure_requests": look("ledger", "erasure_requests", ids),
    }


@pytest.mark.chaos
@pytest.mark.timeout(300)
def test_forged_deregistrations_erase_nothing_and_are_dead_lettered_as_signature(make_stack) -> None:
    stack: Stack = make_stack()
    victims = people("victim", 6)
    ids = [p.user_id for p in victims]
    register_in_account(stack.fleet.children["account"].env["ERASURE_ACCOUNT_DATABASE_URL"], {
        p.user_id: {"name": purchase_of(p).customer.name, "email": purchase_of(p).customer.email,
                    "phone": purchase_of(p).customer.phone} for p in victims})
    seed_vault(stack.sandbox.control, victims)
    stack.upstream.publish(purchase_of(p) for p in victims)
    poll(lambda: all(stack.observer.inbox_counts()[name] >= len(victims)
                     for name in ("installer_sharing", "payment", "bookkeeping", "newsletter")),
         timeout=60, what="every purchase handled")
    before = _held(stack, ids)

    forgeries = _forgeries(stack, victims)
    for case, (_user, body, signature, message_id) in forgeries.items():
        headers = {"x-chaos-case": case} | ({"x-signature": signature} if signature is not None else {})
        stack.upstream.publish_raw(body, routing_key=KEY, headers=headers, message_id=message_id)
    dead_queues = [f"{stack.namespace}.{name}.dead" for name in SERVICES]
    poll(lambda: all(int(stack.queues()[q]["messages"]) >= len(forgeries) for q in dead_queues), timeout=60,
         interval=1, what="every service to dead-letter every forgery")
    kinds = {name: sorted((str(m.headers.get("x-chaos-case")), m.headers.get("x-error-kind"))
                          for m in stack.dead_letters(name)) for name in SERVICES}
    after = _held(stack, ids)
    deletions = [e for e in stack.sandbox.control.effects() if e["effect"] in DELETIONS]
    visma_active = sum(1 for c in stack.sandbox.control.state()["visma"]["customers"].values()
                       if c.get("CustomerNumber") in {visma_customer_number(i) for i in ids} and c.get("IsActive"))

    genuine = stack.upstream.publish([deregistration_of(victims[0])])
    poll(lambda: stack.observer.completed() == 1, timeout=60, what="the genuine deregistration to complete")
    control = _held(stack, [victims[0].user_id])

    record_results("forged_events", {
        "forgeries_sent": len(forgeries), "cases": sorted(forgeries),
        "dead_letters_per_service": {name: len(v) for name, v in kinds.items()},
        "erasures_caused": after["ledger.erasure_requests"], "vendor_deletions_caused": len(deletions),
        "genuine_deregistration_completed": bool(genuine) and stack.observer.completed() == 1,
    })
    expected = sorted((case, "signature") for case in forgeries)
    assert all(found == expected for found in kinds.values()), kinds
    assert after == before, f"a forgery changed what the services hold: {before} -> {after}"
    assert before["account.users"] == before["newsletter.subscribers"] == before["payment.vault_tokens"] == 6
    assert all(before[f"{name}.tombstones"] == 0 for name in SERVICES if name != "ledger")
    assert deletions == [], f"a forgery reached a vendor: {deletions}"
    assert visma_active == len(victims)
    assert control["account.users"] == control["newsletter.subscribers"] == control["payment.vault_tokens"] == 0
