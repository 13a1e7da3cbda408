"""The sandbox's indexes agree with its records through creates, replaces and deletes, at bench-like sizes."""

from __future__ import annotations

import time

from services.sandbox.state import SandboxConfig, SandboxState
from services.sandbox.visma import VismaState
from services.sandbox.wire import Request

CUSTOMERS = 20_000


def test_paypal_lists_one_customers_tokens_among_many_and_forgets_deleted_ones() -> None:
    state = SandboxState(SandboxConfig())
    state.seed({"paypal": {"vault": {f"CUST{i:05d}": 2 for i in range(CUSTOMERS)}}})
    mine = [t["id"] for t in state.paypal.tokens_of("CUST00042")]
    assert len(mine) == 2 and all(state.paypal.payment_tokens[t]["customer"]["id"] == "CUST00042" for t in mine)
    assert state.paypal.remove_token(mine[0]) is not None
    assert [t["id"] for t in state.paypal.tokens_of("CUST00042")] == mine[1:]
    state.paypal.remove_token(mine[1])
    assert state.paypal.tokens_of("CUST00042") == [] and "CUST00042" not in state.paypal.by_customer
    started = time.perf_counter()
    for i in range(1000):
        state.paypal.tokens_of(f"CUST{i:05d}")
    assert time.perf_counter() - started < 1.0, "a thousand lookups among 40,000 tokens are dict accesses"


def test_visma_finds_by_customer_number_and_reference_after_replaces_and_deletes() -> None:
    state = VismaState(set(), set())
    terms = "8f9a8f7b-5ea9-44c6-9725-9b8a1c7e2b01"
    customers = [{"Name": f"Kund {i}", "CustomerNumber": str(i), "InvoiceCity": "Lund", "InvoicePostalCode": "22100"}
                 for i in range(500)]
    ids = state.seed({"customers": customers}, terms)["customers"]
    state.seed({"invoices": [{"CustomerNumber": "7", "YourReference": "order-7"}]}, terms)
    assert [c["Id"] for c in state.matching("customers", "CustomerNumber", "7")] == [ids[7]]
    assert [i["CustomerId"] for i in state.matching("invoices", "YourReference", "order-7")] == [ids[7]]
    state.put_customer({**state.customers[ids[8]], "CustomerNumber": "8000"})  # a replace renumbers it
    assert state.matching("customers", "CustomerNumber", "8") == []
    assert state.matching("customers", "CustomerNumber", "8000")[0]["Id"] == ids[8]
    state.drop_customer(ids[9])
    assert state.matching("customers", "CustomerNumber", "9") == []
    assert state.invoice_count == {ids[7]: 1}
    assert [c["Id"] for c in state.matching("customers", "Name", "Kund 3")] == [ids[3]]  # unindexed field: scanned


def test_an_erasure_notice_erases_only_its_purchases_contacts() -> None:
    from services.sandbox import installers

    state = SandboxState(SandboxConfig())
    token = state.config.installers["inst-1"]
    for purchase in ("p1", "p2", "p3"):
        body = f'{{"purchase_id": "{purchase}", "contact": {{"name": "Anna"}}}}'.encode()
        req = Request("POST", "/inst-1/contacts", {}, {"authorization": f"Bearer {token}",
                                                       "idempotency-key": f"k-{purchase}"}, body)
        assert installers.handle(state, req).status == 201
    notice = b'{"type": "gdpr-art-19-erasure", "user_ref": "u-1", "purchase_ids": ["p1", "p3"]}'
    req = Request("POST", "/inst-1/erasure-notices", {}, {"authorization": f"Bearer {token}",
                                                          "idempotency-key": "k-n"}, notice)
    assert installers.handle(state, req).status == 202
    assert [c["purchase_id"] for c in state.installers.snapshot()["contacts"]] == ["p2"]


def test_a_token_vaulted_again_for_another_customer_moves_with_its_index() -> None:
    from services.sandbox.paypal import PayPalState

    state = PayPalState()
    for customer in ("cust-a", "cust-b"):
        state.add_token({"id": "8kk8451t", "customer": {"id": customer}})
    assert state.tokens_of("cust-a") == []
    assert [t["customer"]["id"] for t in state.tokens_of("cust-b")] == ["cust-b"]
    assert state.remove_token("8kk8451t") is not None and state.tokens_of("cust-b") == []
