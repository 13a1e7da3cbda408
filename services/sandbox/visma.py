"""Fake Visma eAccounting API v2: bearer tokens with one-time refresh tokens, customers, invoices."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.sandbox.wire import Reply, Request, dispatch, new_id, route
from services.vendors.rules import visma_customer_problems, visma_invoice_problems

if TYPE_CHECKING:
    from services.sandbox.state import SandboxState

RESOURCE_NOT_FOUND, CONFLICT, CAN_NOT_BE_DELETED, NOT_AUTHORIZED = 3000, 4000, 4001, 4005
VALIDATION = 2000
FILTER = re.compile(r"\s*(?P<field>\w+)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class VismaState:
    """Customers and invoices by Id, indexed by the fields our client filters on, and the valid tokens.

    The indexes keep every lookup a dict access however many records pile up (a bench's 100,000 erasures):
    customer by CustomerNumber, invoices by YourReference, and how many invoices each customer has.
    """

    access_tokens: set[str]
    refresh_tokens: set[str]
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    customer_by_number: dict[str, str] = field(default_factory=dict)
    invoices_by_reference: dict[str, list[str]] = field(default_factory=dict)
    invoice_count: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {"customers": dict(self.customers), "invoices": dict(self.invoices)}

    def seed(self, data: dict[str, Any], terms_of_payment_id: str) -> dict[str, Any]:
        """Add `customers` (Visma customer dicts, Id optional) and `invoices` (by CustomerId or CustomerNumber).

        A customer gets IsActive, IsPrivatePerson and the company's TermsOfPaymentId unless given, and must
        then be one Visma could hold (ValueError otherwise)."""
        customer_ids = []
        for item in data.get("customers", []):
            customer = {"IsActive": True, "IsPrivatePerson": True, "TermsOfPaymentId": terms_of_payment_id, **item}
            problems = visma_customer_problems(customer)
            if problems:
                raise ValueError(f"Visma would not hold this customer: {'; '.join(problems)}")
            customer.setdefault("Id", new_id())
            self.put_customer(customer)
            customer_ids.append(customer["Id"])
        invoice_ids = []
        for item in data.get("invoices", []):
            invoice = dict(item)
            number = invoice.pop("CustomerNumber", None)
            if "CustomerId" not in invoice:
                invoice["CustomerId"] = self.customer_by_number[str(number)]
            invoice_ids.append(self.add_invoice(invoice))
        return {"customers": customer_ids, "invoices": invoice_ids}

    def put_customer(self, customer: dict[str, Any]) -> None:
        """Create or replace a customer by its Id, keeping the CustomerNumber index right."""
        before = self.customers.get(customer["Id"])
        if before is not None and before.get("CustomerNumber") is not None:
            self.customer_by_number.pop(str(before["CustomerNumber"]), None)
        self.customers[customer["Id"]] = customer
        if customer.get("CustomerNumber") is not None:
            self.customer_by_number[str(customer["CustomerNumber"])] = customer["Id"]

    def drop_customer(self, customer_id: str) -> None:
        """Forget a customer (one without invoices)."""
        customer = self.customers.pop(customer_id)
        if customer.get("CustomerNumber") is not None:
            self.customer_by_number.pop(str(customer["CustomerNumber"]), None)

    def add_invoice(self, body: dict[str, Any]) -> str:
        """Book an invoice; returns its Id."""
        invoice_id = new_id()
        invoice = self.invoices[invoice_id] = {
            "Rows": [],
            "YourReference": None,
            **body,
            "Id": invoice_id,
            "InvoiceNumber": len(self.invoices) + 1,
            "CreatedUtc": _now(),
        }
        self.invoices_by_reference.setdefault(str(invoice["YourReference"]), []).append(invoice_id)
        self.invoice_count[invoice["CustomerId"]] = self.invoice_count.get(invoice["CustomerId"], 0) + 1
        return invoice_id

    def matching(self, collection: str, field_name: str, wanted: str) -> list[dict[str, Any]]:
        """The records of `customers` or `invoices` whose field equals `wanted` (as text), by index when one
        exists for that field."""
        if collection == "customers" and field_name == "CustomerNumber":
            found = self.customer_by_number.get(wanted)
            return [] if found is None else [self.customers[found]]
        if collection == "invoices" and field_name == "YourReference":
            return [self.invoices[i] for i in self.invoices_by_reference.get(wanted, [])]
        records = self.customers if collection == "customers" else self.invoices
        return [r for r in records.values() if str(r.get(field_name)) == wanted]

    def expire_tokens(self) -> None:
        """Every access token (the configured one too) stops working; refresh tokens still do."""
        self.access_tokens.clear()


def error(status: int, code: int, message: str) -> Reply:
    """An error as Visma eAccounting sends it."""
    return Reply(status, {"ErrorCode": code, "DeveloperErrorMessage": message, "ErrorId": new_id()})


def _customer_not_found() -> Reply:
    return error(404, RESOURCE_NOT_FOUND, "ResourceNotFoundException - Customer not found.")


def _page(req: Request, state: VismaState, collection: str) -> Reply:
    match = FILTER.fullmatch(req.query.get("$filter", "")) if "$filter" in req.query else None
    if "$filter" in req.query and match is None:
        return error(400, VALIDATION, "DataModelValidationException - unsupported $filter.")
    if match:
        records = state.matching(collection, match["field"], match["value"].replace("''", "'"))
    else:
        records = list((state.customers if collection == "customers" else state.invoices).values())
    size = max(1, int(req.query.get("$pagesize", 50)))
    page = max(1, int(req.query.get("$page", 1)))
    meta = {
        "CurrentPage": page,
        "PageSize": size,
        "TotalNumberOfPages": -(-len(records) // size),
        "TotalNumberOfResults": len(records),
        "ServerTimeUtc": _now(),
    }
    return Reply(200, {"Meta": meta, "Data": records[(page - 1) * size : page * size]})


def _valid_customer(sb: SandboxState, req: Request, customer_id: str | None) -> dict[str, Any] | Reply:
    try:
        body = req.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return error(400, VALIDATION, "DataModelValidationException - the body must be a customer object.")
    problems = visma_customer_problems(body)
    if problems:
        return error(400, VALIDATION, f"DataModelValidationException - {'; '.join(problems)}.")
    if not body.get("CustomerNumber"):  # Visma numbers a customer sent without one
        body = {**body, "CustomerNumber": str(len(sb.visma.customers) + 1)}
    holder = sb.visma.customer_by_number.get(str(body["CustomerNumber"]))
    if holder is not None and holder != customer_id:
        return error(400, CONFLICT, "ConflictException - the customer number is already in use.")
    return body


def token(sb: SandboxState, req: Request) -> Reply:
    if not req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return Reply(400, {"error": "invalid_request"})
    form = req.form()
    config = sb.config
    client = req.basic_auth() or (form.get("client_id", ""), form.get("client_secret", ""))
    if client != (config.visma_client_id, config.visma_client_secret):
        return Reply(401, {"error": "invalid_client"})
    state = sb.visma
    presented = form.get("refresh_token", "")
    if form.get("grant_type") != "refresh_token" or presented not in state.refresh_tokens:
        return Reply(400, {"error": "invalid_grant"})
    access = secrets.token_urlsafe(32)
    state.access_tokens.add(access)
    refresh = presented
    if not config.visma_refresh_token_reuse:  # Visma's default: a refresh token works once
        state.refresh_tokens.discard(presented)
        refresh = secrets.token_urlsafe(32)
        state.refresh_tokens.add(refresh)
    body = {
        "access_token": access,
        "expires_in": 3600,
        "token_type": "Bearer",
        "refresh_token": refresh,
        "scope": "ea:api ea:sales offline_access",
    }
    return Reply(200, body)


def list_customers(sb: SandboxState, req: Request) -> Reply:
    return _page(req, sb.visma, "customers")


def get_customer(sb: SandboxState, req: Request, customer_id: str) -> Reply:
    customer = sb.visma.customers.get(customer_id)
    return Reply(200, customer) if customer else _customer_not_found()


def create_customer(sb: SandboxState, req: Request) -> Reply:
    body = _valid_customer(sb, req, None)
    if isinstance(body, Reply):
        return body
    customer = {"IsActive": True, **body, "Id": new_id(), "ChangedUtc": _now()}
    sb.visma.put_customer(customer)
    sb.effect("visma", "customer_created", customer_id=customer["Id"])
    return Reply(201, customer)


def replace_customer(sb: SandboxState, req: Request, customer_id: str) -> Reply:
    if customer_id not in sb.visma.customers:
        return _customer_not_found()
    body = _valid_customer(sb, req, customer_id)
    if isinstance(body, Reply):
        return body
    # Full replace: whatever the body leaves out is gone.
    customer = {**body, "Id": customer_id, "ChangedUtc": _now()}
    sb.visma.put_customer(customer)
    sb.effect("visma", "customer_replaced", customer_id=customer_id)
    return Reply(200, customer)


def delete_customer(sb: SandboxState, req: Request, customer_id: str) -> Reply:
    state = sb.visma
    if customer_id not in state.customers:
        return _customer_not_found()
    if state.invoice_count.get(customer_id):
        return error(400, CAN_NOT_BE_DELETED, "CanNotBeDeletedException - the customer is used on invoices.")
    state.drop_customer(customer_id)
    sb.effect("visma", "customer_deleted", customer_id=customer_id)
    return Reply(204)


def list_invoices(sb: SandboxState, req: Request) -> Reply:
    return _page(req, sb.visma, "invoices")


def create_invoice(sb: SandboxState, req: Request) -> Reply:
    try:
        body = req.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return error(400, VALIDATION, "DataModelValidationException - the body must be an invoice object.")
    problems = visma_invoice_problems(body)
    if not body.get("Rows"):
        problems.append("an invoice needs at least one row")
    if problems:
        return error(400, VALIDATION, f"DataModelValidationException - {'; '.join(problems)}.")
    if body.get("CustomerId") not in sb.visma.customers:
        return error(400, RESOURCE_NOT_FOUND, "ResourceNotFoundException - Customer not found.")
    invoice_id = sb.visma.add_invoice(body)
    sb.effect("visma", "invoice_created", invoice_id=invoice_id, your_reference=body.get("YourReference"))
    return Reply(201, sb.visma.invoices[invoice_id])


CUSTOMER = r"/v2/customers/(?P<customer_id>[^/]+)"
ROUTES = [
    route("GET", r"/v2/customers", list_customers),
    route("POST", r"/v2/customers", create_customer),
    route("GET", CUSTOMER, get_customer),
    route("PUT", CUSTOMER, replace_customer),
    route("DELETE", CUSTOMER, delete_customer),
    route("GET", r"/v2/customerinvoices", list_invoices),
    route("POST", r"/v2/customerinvoices", create_invoice),
]


def handle(sb: SandboxState, req: Request) -> Reply:
    """Answer one request as Visma eAccounting (and its identity server) would."""
    if req.method == "POST" and req.path == "/connect/token":
        return token(sb, req)
    if req.bearer() not in sb.visma.access_tokens:
        return error(401, NOT_AUTHORIZED, "AuthorizationException - Authorization has been denied for this request.")
    reply = dispatch(ROUTES, sb, req)
    return reply or error(404, RESOURCE_NOT_FOUND, "ResourceNotFoundException - no such resource.")
