"""A publisher nobody on the Python side wrote (Node.js, amqplib, its own HMAC) drives the Python pipeline.

The client in tests/contract/node/ knows only schemas/asyncapi.yaml and docs/CONTRACT.md. It publishes a purchase
and a deregistration into this test's namespace with every service running; the erasure completes in every slice
and its receipt verifies. Its tampered signature and its unknown type are dead-lettered with their reasons.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from schemas import UserDeregistered
from schemas.catalog import SUBSCRIPTIONS
from services.account.accounts import register_user
from services.ledger.queries import request_status, verify_receipt
from shared.testing import wait_until
from shared.testing.scan import personal_data_hits
from tests.contract.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"
ASYNCAPI = ROOT / "schemas" / "asyncapi.yaml"
FORWARDING = ("installer_sharing", "payment", "bookkeeping", "newsletter")


@pytest.fixture(scope="session")
def node_client() -> Path:
    """The Node.js publisher, its packages installed from package-lock.json (`npm ci`) when missing."""
    if shutil.which("node") is None:
        pytest.skip("`node` is not installed, so the Node.js contract client cannot run (CI installs Node.js 20)")
    if not (NODE_DIR / "node_modules" / "amqplib").is_dir():
        npm = shutil.which("npm")
        assert npm, "node is installed without npm: cannot install the client's packages"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600)
    return NODE_DIR / "publish.mjs"


def _node(stack: Stack, client: Path, command: str, user_id: str) -> dict[str, Any]:
    settings = stack.pipeline.settings
    key_id = settings.signing_key_id
    env = {**os.environ, "AMQP_URL": settings.amqp_url, "ERASURE_NAMESPACE": stack.pipeline.namespace,
           "ERASURE_SIGNING_KEY": f"{key_id}:{settings.keyring[key_id].decode()}"}
    done = subprocess.run(["node", str(client), str(ASYNCAPI), command, user_id], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    sent["event"] = json.loads(sent["body"])
    return sent


def _register(stack: Stack, purchase: dict[str, Any]) -> None:
    """The buyer has an account, as every buyer does (the portal writes it; we do it directly)."""
    customer = purchase["customer"]
    address = customer["address"]
    with Session(stack.services["account"].engine) as session, session.begin():
        register_user(session, user_id=purchase["user_id"], name=customer["name"], email=customer["email"],
                      phone=customer["phone"], street=address["street"], postal_code=address["postal_code"],
                      city=address["city"])


@pytest.mark.slow
def test_a_node_publisher_purchase_and_deregistration_are_erased_everywhere_with_a_verified_receipt(
    stack: Stack, node_client: Path
) -> None:
    user_id = "u-node-1"
    bought = _node(stack, node_client, "purchase", user_id)
    purchase = bought["event"]["data"]
    stack.sandbox.seed({"paypal": {"vault": {user_id: list(purchase["payment"]["paypal"]["vault_token_ids"])}}})
    _register(stack, purchase)
    for name in FORWARDING:
        stack.services[name].wait_handled(bought["event_id"])

    erased = _node(stack, node_client, "deregistration", user_id)
    request_id = erased["request_id"]

    def completed() -> Any:
        with Session(stack.services["ledger"].engine) as session:
            status = request_status(session, request_id)
            return status if status is not None and status.status == "complete" else None

    status = wait_until(completed, timeout=60, what=f"request {request_id} complete")
    assert {s.service for s in status.slices} == {"account", *FORWARDING}
    with Session(stack.services["ledger"].engine) as session:
        verified = verify_receipt(session, request_id)
    assert verified is not None and verified.ok, verified
    customer = purchase["customer"]
    needles = [customer["email"], customer["phone"], customer["name"], customer["address"]["street"]]
    for name, running in stack.services.items():
        assert personal_data_hits(running.engine, needles) == [], f"{name} still holds personal data"

    # A tampered signature and an unknown type: dead-lettered with their reasons by every service that hears
    # deregistrations, executed by none.
    tampered = _node(stack, node_client, "tampered-deregistration", "u-node-2")
    unknown = _node(stack, node_client, "unknown-type", "u-node-3")
    hearing = sorted(name for name, models in SUBSCRIPTIONS.items() if UserDeregistered in models)
    letters: dict[str, dict[str, str]] = {name: {} for name in hearing}

    def all_dead_lettered() -> bool:
        for name in hearing:
            for letter in stack.pipeline.take(f"{stack.pipeline.namespace}.{name}.dead"):
                letters[name][letter.properties.get("message_id")] = letter.headers["x-error-kind"]
        return all(len(found) == 2 for found in letters.values())

    wait_until(all_dead_lettered, timeout=30, what="both bad messages dead-lettered by every subscriber")
    for name in hearing:
        assert letters[name] == {tampered["event_id"]: "signature", unknown["event_id"]: "unknown_type"}, name
        assert not stack.services[name].handled(tampered["event_id"])
        assert not stack.services[name].handled(unknown["event_id"])
