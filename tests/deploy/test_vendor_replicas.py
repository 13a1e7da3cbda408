"""Two replicas of each vendor-calling service race on the same events (every event delivered twice, the
copies free to land on different replicas at once): the vendors receive each outside change once, judged
from the sandbox's raw request log, and nothing is dead-lettered."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from schemas.examples import example_deregistration, example_purchase
from services.bookkeeping.main import build as build_bookkeeping
from services.installer_sharing.main import build as build_installer_sharing
from services.newsletter.main import build as build_newsletter
from services.payment.main import build as build_payment
from services.sandbox import Sandbox
from services.vendors.rules import paypal_customer_id
from shared.service import Service
from shared.testing import wait_until
from shared.testing.pipeline import Pipeline, RunningService
from tests.chaos.load import raw_effects

USERS = 12
BUILDS: dict[str, Callable[[], Service]] = {
    "installer_sharing": build_installer_sharing,
    "newsletter": build_newsletter,
    "payment": build_payment,
    "bookkeeping": build_bookkeeping,
}
VENDOR = {"installer_sharing": "installers", "newsletter": "mailchimp", "payment": "paypal",
          "bookkeeping": "visma"}


def _race(pipeline: Pipeline, replicas: list[RunningService], events: list) -> None:
    messages = [pipeline.encode(event) for event in events]
    # Each event twice in a row: the broker hands consecutive deliveries to alternate consumers, so the two
    # copies reach the two replicas at about the same moment.
    pipeline.producer.publish_many([m for message in messages for m in (message, message)])
    for message in messages:
        wait_until(lambda m=message: any(r.handled(m.event_id) for r in replicas), timeout=60,
                   what=f"{message.event_id} handled")


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgresql"])
@pytest.mark.parametrize("service", list(BUILDS))
def test_two_replicas_racing_on_the_same_events_change_each_thing_at_the_vendor_once(
    erasure_pipeline: Pipeline, sandbox: Sandbox, db_backend: str, service: str
) -> None:
    users = [f"race-{service[:4]}-{i:02d}" for i in range(USERS)]
    purchases = [example_purchase(u, purchase_id=f"P-{u}", payment={"method": "paypal", "paypal": {
        "payer_id": "7XKQZ3LMN8P2A", "order_id": f"O-{u}", "vault_token_ids": [f"tok-{u}"]}}) for u in users]
    sandbox.seed({"paypal": {"vault": {paypal_customer_id(p.user_id): list(p.payment.paypal.vault_token_ids)
                                       for p in purchases if p.payment.paypal}}})
    url = erasure_pipeline.database_url(service)
    erasure_pipeline.declare(BUILDS[service]())
    settings = erasure_pipeline.settings.model_copy(update={"prefetch": 4, "batch_size": 2})
    replicas = [RunningService(BUILDS[service](), settings, url).start() for _ in range(2)]
    queue = f"{erasure_pipeline.namespace}.{service}"
    try:
        _race(erasure_pipeline, replicas, purchases)
        _race(erasure_pipeline, replicas, [example_deregistration(u) for u in users])
        wait_until(lambda: erasure_pipeline.depth(queue) == 0, timeout=60, what="both copies of every event taken")
    finally:
        for running in replicas:
            running.stop()
    changes, duplicated = raw_effects(sandbox.requests())
    assert sum(n for kind, n in changes.items() if kind.startswith(VENDOR[service])) >= USERS, changes
    assert duplicated == {}, f"changed twice at the vendor: {duplicated}"
    assert erasure_pipeline.depth(f"{queue}.dead") == 0
