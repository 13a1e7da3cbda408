"""An outside call can take effect and still fail for the caller: the answer is lost (a timeout, a reset).
The handler's transaction rolls back, the event waits in a delay queue — and if the user's deregistration is
handled meanwhile, the copy the vendor already holds must still be erased. The same thing happens by chance
in the vendor-outage test (a Visma customer created just before the outage, its invoice call failing)."""

from __future__ import annotations

import pytest

from services.vendors.mailchimp import subscriber_hash
from services.vendors.rules import visma_customer_number
from tests.chaos.harness import poll, record_results
from tests.chaos.load import deregistration_of, people, purchase_of, seed_vault
from tests.chaos.stack import Stack

ATTEMPTS = 3  # every in-process try of the call (ERASURE_<SERVICE>_HTTP_ATTEMPTS) reaches the vendor
LOST = {
    "mailchimp member upsert": ("PUT", "/mailchimp/3.0/lists/"),
    "installer contact": ("POST", "/contacts"),
    "visma invoice lookup (after the customer was created)": ("GET", "/visma/v2/customerinvoices"),
}


@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_vendor_copies_made_by_an_attempt_whose_answer_was_lost_are_erased_with_the_user(make_stack) -> None:
    stack: Stack = make_stack(lossy=True, retry_delays=(5.0, 10.0))
    assert stack.gateway is not None
    [person] = people("lost", 1)
    purchase = purchase_of(person)
    for method, fragment in LOST.values():
        stack.gateway.lose_answers(method, fragment, ATTEMPTS)
    seed_vault(stack.sandbox.control, [person])
    stack.upstream.publish([purchase])
    poll(lambda: stack.gateway.pending() == 0, timeout=30, what="every attempt to reach the vendors")
    stack.upstream.publish([deregistration_of(person)])
    poll(lambda: stack.observer.completed() == 1, timeout=30, what="the erasure to complete")
    late = ("installer_sharing", "bookkeeping", "newsletter")
    poll(lambda: all(stack.observer.inbox_counts()[name] == 2 for name in late), timeout=40,
         what="the purchase, retried from its delay queue, to be handled after the erasure")

    state = stack.sandbox.control.state()
    member = state["mailchimp"]["members"].get(subscriber_hash(purchase.customer.email))
    contacts = [c for c in state["installers"]["contacts"] if c["purchase_id"] == purchase.purchase_id]
    number = visma_customer_number(person.user_id)
    customers = [c for c in state["visma"]["customers"].values() if c.get("CustomerNumber") == number]
    left = {
        "mailchimp member still subscribed": member is not None,
        "installer still holds the contact": bool(contacts),
        "visma customer still named": any(c.get("IsActive") or c.get("EmailAddress") for c in customers),
    }
    record_results("lost_answers", {"answers_lost": stack.gateway.lost, "erasure_completed": True,
                                    "left_at_vendors_after_erasure": left})
    assert not any(left.values()), f"personal data left at vendors after a completed erasure: {left}"
