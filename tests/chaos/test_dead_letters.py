"""Dead letters hold personal data, so they expire (docs/CONTRACT.md: 90 days) and operators see them masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from schemas.examples import example_purchase
from schemas.validators import luhn_check_digit
from services.registry import SERVICES
from shared.signing import sign
from tests.chaos.harness import ROOT, poll, record_results
from tests.chaos.stack import Stack

NINETY_DAYS_MS = 90 * 24 * 60 * 60 * 1000


def _arguments(queue: dict) -> dict:
    return {name: value for name, _type, value in queue["arguments"]}


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_every_dead_letter_queue_expires_its_messages_after_90_days(make_stack) -> None:
    stack: Stack = make_stack()
    dead = {name: _arguments(q) for name, q in stack.queues().items() if name.endswith(".dead")}
    ttls = {name: args.get("x-message-ttl") for name, args in dead.items()}
    record_results("dead_letter_ttl", {"queues": len(ttls), "x_message_ttl_ms": sorted(set(ttls.values()), key=str),
                                       "days": sorted({v / 86_400_000 for v in ttls.values() if v}, key=str)})
    assert set(dead) == {f"{stack.namespace}.{name}.dead" for name in SERVICES}
    assert set(ttls.values()) == {NINETY_DAYS_MS}, ttls


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_dead_letters_expire_after_a_short_ttl_set_through_the_settings(make_stack) -> None:
    """The production path (ERASURE_DEAD_LETTER_TTL_DAYS → topology → broker) with an eight-second TTL.

    Arrival and expiry are watched over AMQP (a passive declare takes milliseconds; `rabbitmqctl` can take
    longer than the TTL on a loaded machine)."""
    ttl_days = 8 / 86_400
    stack: Stack = make_stack(extra_env={"ERASURE_DEAD_LETTER_TTL_DAYS": repr(ttl_days)})
    queue = f"{stack.namespace}.newsletter.dead"
    assert _arguments(stack.queues()[queue])["x-message-ttl"] == 8000
    body = b"not json, dead on arrival"
    stack.upstream.publish_raw(body, routing_key="newsletter.consent_changed.v1",
                               headers={"x-signature": sign(body, "chaos", stack.upstream.settings.keyring)})
    poll(lambda: stack.rabbit.ready_count(queue) == 1, timeout=20, interval=0.1, what="the dead letter")
    arrived = time.monotonic()
    poll(lambda: stack.rabbit.ready_count(queue) == 0, timeout=20, interval=0.1, what="the dead letter to expire")
    record_results("dead_letter_expiry", {"ttl_s": 8, "expired_after_s": round(time.monotonic() - arrived, 1)})


def _pii() -> dict[str, str]:
    nine = "790321" + "417"
    personnummer = "19" + nine + luhn_check_digit(nine)
    return {"name": "Ingegerd Sjöholm", "email": "ingegerd.sjoholm@kund.loggamera.se", "phone": "+46701740631",
            "national phone": "070-174 06 31", "street": "Blåbärsvägen 12", "personnummer": personnummer,
            "personnummer (10 digits)": personnummer[2:]}


@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_dlq_show_and_list_mask_every_kind_of_personal_data(make_stack) -> None:
    stack: Stack = make_stack()
    pii = _pii()
    user_id = f"dlq-{uuid.uuid4().hex[:6]}"
    purchase = example_purchase(user_id, installer={"id": "inst-404", "name": "Not in the directory"}, customer={
        "name": pii["name"], "email": pii["email"], "phone": pii["national phone"],
        "address": {"street": pii["street"], "postal_code": "114 55", "city": "Stockholm", "country": "SE"},
        "company_name": "Sjöholms Fastighetsservice", "corporate_id": pii["personnummer"]})
    [sent] = stack.upstream.publish([purchase])
    poison = f"{pii['name']} {pii['email']} {pii['national phone']}".encode()
    stack.upstream.publish_raw(poison, routing_key="newsletter.consent_changed.v1", message_id=str(uuid.uuid4()),
                               headers={"x-signature": sign(poison, "chaos", stack.upstream.settings.keyring)})
    poll(lambda: int(stack.queues()[f"{stack.namespace}.installer_sharing.dead"]["messages"]) == 1
         and int(stack.queues()[f"{stack.namespace}.newsletter.dead"]["messages"]) == 1,
         timeout=60, what="the dead letters")
    env = {**os.environ, "ERASURE_AMQP_URL": stack.rabbit.url, "ERASURE_NAMESPACE": stack.namespace,
           "ERASURE_VAR_DIR": str(stack.workdir / "var"), "ERASURE_LOG_FORMAT": "json"}

    def erasure(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    outputs = {
        "show": erasure("dlq", "show", sent.event_id, "--service", "installer_sharing"),
        "show --json": erasure("dlq", "show", sent.event_id, "--service", "installer_sharing", "--json"),
        "list": erasure("dlq", "list", "--messages"),
        "list --json": erasure("dlq", "list", "--messages", "--json"),
    }
    leaks = sorted({f"{command}: {what}" for command, out in outputs.items() for what, value in pii.items()
                    if value.lower() in out.lower() or json.dumps(value)[1:-1].lower() in out.lower()})
    record_results("dlq_show_masking", {"commands": sorted(outputs), "personal_values": sorted(pii),
                                        "leaks": leaks})
    assert sent.event_id in outputs["show"] and "permanent" in outputs["show"]
    assert leaks == [], f"erasure dlq shows personal data: {leaks}"
