"""An end-to-end flow — registration, purchase, consent, failures, deregistration — for people with names,
e-mail addresses, phone numbers in every common format, street addresses and personnummer, through all six
services as processes: not one of those values appears in any service's log output, in any spelling."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.examples import example_consent_change, example_deregistration, example_purchase
from schemas.validators import luhn_check_digit
from services.vendors.rules import paypal_customer_id
from shared.signing import sign
from tests.chaos.harness import poll, record_results
from tests.chaos.load import observer_engine, queue_figures, register_in_account
from tests.chaos.stack import Stack

PEOPLE: list[dict[str, Any]] = [
    {"name": "Åsa Öberg-Lindqvist", "email": "Asa.Oberg-Lindqvist+chaos@kund.loggamera.se", "phone": "070-174 06 21",
     "street": "Vitsippsgatan 17", "postal_code": "114 55", "city": "Stockholm", "born": "19800417"},
    {"name": "Per-Erik Ärlig", "email": "per.erik.arlig@kund.loggamera.se", "phone": "+46 70 174 06 22",
     "street": "Kvarngränd 3 B", "postal_code": "411 19", "city": "Göteborg"},
    {"name": "Märta Nyström", "email": "marta_nystrom@post.kund.loggamera.se", "phone": "0046701740623",
     "street": "Lingonstigen 9", "postal_code": "903 26", "city": "Umeå", "born": "19561130"},
    {"name": "Jöns Bäckström", "email": "JONS.B@kund.loggamera.se", "phone": "0701740624",
     "street": "Skräddargatan 44", "postal_code": "753 10", "city": "Uppsala"},
    {"name": "Linnéa Ödegård", "email": "linnea.odegard@example.se", "phone": "+46(0)70-174 06 25",
     "street": "Hjortronvägen 2", "postal_code": "831 31", "city": "Östersund", "born": "20010704"},
    {"name": "Ebba Grönholm", "email": "ebba.gronholm@kund.loggamera.se", "phone": "070 174 06 26",
     "street": "Tallbacken 61", "postal_code": "702 10", "city": "Örebro"},
]


def _personnummer(born: str, serial: str = "238") -> str:
    nine = born[2:] + serial
    return born + serial + luhn_check_digit(nine)


def _phone_spellings(typed: str) -> set[str]:
    digits = re.sub(r"\D", "", typed.replace("(0)", ""))
    national = digits.removeprefix("0046").removeprefix("46").removeprefix("0")  # 701740621
    area, rest = national[:2], national[2:]
    return {typed, f"+46{national}", f"0046{national}", f"0{national}", f"0{area}-{rest}", f"0{area} {rest}",
            f"0{area}-{rest[:3]} {rest[3:5]} {rest[5:]}", f"0{area} {rest[:3]} {rest[3:5]} {rest[5:]}",
            f"+46 {area} {rest[:3]} {rest[3:5]} {rest[5:]}", f"+46 {area}-{rest[:3]} {rest[3:5]} {rest[5:]}"}


def _needles(person: dict[str, Any]) -> dict[str, str]:
    """Every spelling of the person's data a log line might carry, by what it is."""
    found = {f"name:{person['name']}": person["name"], f"email:{person['email']}": person["email"],
             f"email:{person['second_email']}": person["second_email"],
             f"street:{person['street']}": person["street"]}
    for part in person["name"].replace("-", " ").split():
        if len(part) >= 5:
            found[f"name part:{part}"] = part
    for spelling in _phone_spellings(person["phone"]):
        found[f"phone:{spelling}"] = spelling
    if "personnummer" in person:
        twelve = person["personnummer"]
        for spelling in (twelve, twelve[2:], f"{twelve[2:8]}-{twelve[8:]}", f"{twelve[:8]}-{twelve[8:]}"):
            found[f"personnummer:{spelling}"] = spelling
    return found


def _hits(logs: dict[str, str], needles: dict[str, str]) -> list[str]:
    """(service, what) for every needle in any log, raw or as JSON escapes it (non-ASCII as \\uXXXX)."""
    hits = []
    for service, text in logs.items():
        lowered = text.lower()
        for what, needle in needles.items():
            forms = {needle.lower(), json.dumps(needle)[1:-1].lower()}
            for form in forms:
                at = lowered.find(form)
                if at >= 0:
                    hits.append(f"{service}: {what} in …{text[max(0, at - 60):at + 60]!r}…")
                    break
    return hits


def _customer(person: dict[str, Any]) -> dict[str, Any]:
    customer = {"name": person["name"], "email": person["email"], "phone": person["phone"],
                "address": {"street": person["street"], "postal_code": person["postal_code"],
                            "city": person["city"], "country": "SE"}}
    if "personnummer" in person:
        customer |= {"company_name": f"{person['name']} Fastighetsservice", "corporate_id": person["personnummer"]}
    return customer


def _save_device(account_url: str, user_id: str, person: dict[str, Any]) -> None:
    from services.account.accounts import save_device
    from services.account.models import metadata
    from shared.db import session_factory

    engine = observer_engine(account_url)
    with session_factory(engine, metadata)() as session, session.begin():
        save_device(session, user_id, kind="device", name=f"Gateway hos {person['name']}",
                    description=f"Ring {person['phone']} eller mejla {person['email']}")
    engine.dispose()


@pytest.mark.chaos
@pytest.mark.timeout(300)
def test_no_personal_data_reaches_any_service_log(make_stack) -> None:
    stack: Stack = make_stack()
    control = stack.sandbox.control
    tag = uuid.uuid4().hex[:6]
    for index, person in enumerate(PEOPLE):
        person["user_id"] = f"pii-{tag}-{index}"
        person["second_email"] = f"second.{index}.{tag}@kund.loggamera.se"
        if "born" in person:
            person["personnummer"] = _personnummer(person["born"])
    account_url = stack.fleet.children["account"].env["ERASURE_ACCOUNT_DATABASE_URL"]
    register_in_account(account_url, {p["user_id"]: {
        "name": p["name"], "email": p["email"], "phone": p["phone"], "street": p["street"],
        "postal_code": p["postal_code"], "city": p["city"], "corporate_id": p.get("personnummer"),
        "company_name": f"{p['name']} Fastighetsservice" if "personnummer" in p else None} for p in PEOPLE})
    for person in PEOPLE:
        _save_device(account_url, person["user_id"], person)
    control.seed({"paypal": {"vault": {paypal_customer_id(p["user_id"]): [f"tok-{p['user_id']}"] for p in PEOPLE}}})
    # Failures on the way, so error and retry paths log too.
    control.set_outage("mailchimp", "503", count=4)
    control.set_outage("visma", "429", count=3, retry_after=1)
    purchases = [example_purchase(
        p["user_id"], customer=_customer(p), installer={"id": f"inst-{i % 3 + 1}", "name": "Installer"},
        payment={"method": "paypal", "paypal": {"payer_id": "PAYER1", "order_id": f"O-{p['user_id']}",
                                                "vault_token_ids": [f"tok-{p['user_id']}"]}})
        for i, p in enumerate(PEOPLE)]
    unlisted_installer = example_purchase(PEOPLE[0]["user_id"], purchase_id=f"P-{tag}-unlisted",
                                          customer=_customer(PEOPLE[0]), installer={"id": "inst-404", "name": "X"})
    stack.upstream.publish([*purchases, unlisted_installer,
                            *(example_consent_change(p["user_id"], email=p["second_email"]) for p in PEOPLE)])
    poison = f"{PEOPLE[1]['name']} <{PEOPLE[1]['email']}> {PEOPLE[1]['phone']} {PEOPLE[0]['personnummer']}".encode()
    stack.upstream.publish_raw(poison, routing_key="user.deregistered.v1",
                               headers={"x-signature": sign(poison, "chaos", stack.upstream.settings.keyring)})
    invalid = stack.upstream.encode(example_consent_change(PEOPLE[2]["user_id"])).body.replace(
        b'"consented":true', json.dumps({"consented": f"ask {PEOPLE[2]['name']}"})[1:-1].encode())
    stack.upstream.publish_raw(invalid, routing_key="newsletter.consent_changed.v1",
                               headers={"x-signature": sign(invalid, "chaos", stack.upstream.settings.keyring)},
                               message_id=json.loads(invalid)["id"])
    stack.upstream.publish(example_deregistration(p["user_id"], request_id=str(uuid.uuid4()),
                                                  requested_at=datetime.now(UTC) - timedelta(minutes=1))
                           for p in PEOPLE)
    poll(lambda: stack.observer.completed() == len(PEOPLE), timeout=120, what="every erasure to complete")
    poll(lambda: queue_figures(stack.queues())["left_in_queues"] == 0, timeout=60, what="queues to drain")
    stack.fleet.stop()

    logs = {name: child.log() for name, child in stack.fleet.children.items()}
    needles = {what: n for person in PEOPLE for what, n in _needles(person).items()}
    assert _hits({"self-test": json.dumps({"who": PEOPLE[0]["name"]})}, needles), "the scanner finds nothing"
    hits = _hits(logs, needles)
    text = "\n".join(logs.values())
    exercised = {path: path in text for path in ("dead-lettered", "outside_call_retry", "retry scheduled",
                                                  "erasure request complete", "account erased")}
    # A Mailchimp subscriber hash is the MD5 of the e-mail: a pseudonym, counted here, not held against the logs.
    hashes = {p["email"]: hashlib.md5(p["email"].lower().encode(), usedforsecurity=False).hexdigest()
              for p in PEOPLE}
    record_results("personal_data_in_logs", {
        "people": len(PEOPLE), "needles_searched": len(needles), "log_lines_scanned": text.count("\n"),
        "paths_exercised": exercised, "hits": len(hits), "examples": hits[:10],
        "lines_with_a_subscriber_hash": sum(1 for line in text.splitlines() if any(h in line for h in hashes.values())),
    })
    assert all(exercised.values()), f"the flow did not exercise every logging path: {exercised}"
    assert hits == [], "personal data in the logs:\n" + "\n".join(hits[:40])
