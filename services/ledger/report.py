"""How ledger answers look to an operator: text tables, or plain dicts for `--json`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.ledger.queries import OverdueRequest, RequestStatus, SliceFailure, SliceState
from services.ledger.receipt import Entry, VerifyResult

Cell = str | list[str]
NOTICES = {"mailed": "mailed", "no_address": "not mailed (no address known)", "mail_failed": "mail failed"}
NOT_REPORTED = "(not reported)"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "-"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A plain-text table; a cell given as a list of lines spans that many lines."""
    grid = [[[c] if isinstance(c, str) else (c or ["-"]) for c in row] for row in rows]
    widths = [max([len(h)] + [len(line) for row in grid for line in row[i]]) for i, h in enumerate(headers)]
    out = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in grid:
        for n in range(max(len(cell) for cell in row)):
            parts = [(cell[n] if n < len(cell) else "").ljust(w) for cell, w in zip(row, widths, strict=True)]
            out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def _retained_lines(state: SliceState) -> list[str]:
    lines = []
    for item in state.retained:
        lines.append(f"{item['category']} (held by {item['held_by']})")
        lines.append(f"  basis: {item['legal_basis']}; until {item['retain_until']}")
    return lines


def status_text(status: RequestStatus) -> str:
    """A request, one table row per expected slice, and its receipt hash."""
    head = [
        f"Erasure request {status.request_id}",
        f"  user:         {status.user_id}",
        f"  status:       {status.status}" + (f" at {_when(status.completed_at)}" if status.completed_at else ""),
        f"  reason:       {status.reason or '(awaiting its deregistration event)'}",
        f"  requested at: {_when(status.requested_at)}",
        f"  opened at:    {_when(status.opened_at)} by {status.opened_by}",
        f"  due at:       {_when(status.due_at)}",
    ]
    if status.internal_due_at is not None and status.status == "open":
        head.append(f"  internal due: {_when(status.internal_due_at)}")
    if status.extension_months:
        head.append(f"  extended:     by {status.extension_months} month(s) at {_when(status.extended_at)}: "
                    f"{status.extension_reason}; data subject {NOTICES.get(status.extension_notice or '', '-')}")
    if status.hold_reason is not None:
        head.append(f"  legal hold:   {status.hold_reason} (held: not counted as overdue)")
    if status.replay:
        head.append(f"  replay of:    {status.original_request_id}")
    rows = [[s.service, s.outcome or NOT_REPORTED, _retained_lines(s), s.recipients, _when(s.reported_at)]
            for s in status.slices]
    body = table(["slice", "outcome", "retained (basis, retain until)", "recipients", "reported at"], rows)
    failing = [f"  {s.service}: {s.failure.summary()}\n    last error at {_when(s.failure.failed_at)}: "
               f"{s.failure.error}" for s in status.slices if s.failure is not None]
    if failing:
        failing = ["Failing slices (erasure retry ID --slice NAME re-runs one):", *failing, ""]
    tail = f"Receipt hash: {status.receipt_hash or '(none until every slice has reported)'}"
    return "\n".join([*head, "", body, "", *failing, tail])


def _failure_dict(failure: SliceFailure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {"system": failure.system, "attempts": failure.attempts, "error": failure.error,
            "failed_at": _iso(failure.failed_at), "next_retry_at": _iso(failure.next_retry_at),
            "dead_lettered": failure.dead_lettered}


def status_dict(status: RequestStatus) -> dict[str, Any]:
    """A request's status as JSON-ready data."""
    return {
        "request_id": status.request_id,
        "user_id": status.user_id,
        "status": status.status,
        "reason": status.reason,
        "requested_at": _iso(status.requested_at),
        "opened_at": _iso(status.opened_at),
        "opened_by": status.opened_by,
        "due_at": _iso(status.due_at),
        "replay": status.replay,
        "original_request_id": status.original_request_id,
        "completed_at": _iso(status.completed_at),
        "receipt_hash": status.receipt_hash,
        "missing": list(status.missing),
        "internal_due_at": _iso(status.internal_due_at),
        "extension": {"months": status.extension_months, "reason": status.extension_reason,
                      "extended_at": _iso(status.extended_at), "notice": status.extension_notice}
        if status.extension_months else None,
        "legal_hold": status.hold_reason,
        "slices": [
            {
                "service": s.service,
                "outcome": s.outcome,
                "reported_at": _iso(s.reported_at),
                "erased": list((s.report or {}).get("erased", [])),
                "retained": s.retained,
                "recipients_notified": s.recipients,
                "failure": _failure_dict(s.failure),
            }
            for s in status.slices
        ],
    }


NONE_OVERDUE = "No overdue or stuck erasure requests."
NONE_DUE_SOON = "No open erasure requests past their internal due date."


def _waiting_for(item: OverdueRequest) -> list[str]:
    """Each missing slice, with its failing system and next retry when it has failed."""
    failures = dict(item.failures)
    return [f"{name}: {failures[name].summary()}" if name in failures else name for name in item.missing]


def overdue_text(items: Sequence[OverdueRequest], none: str = NONE_OVERDUE) -> str:
    """Overdue, stuck or due-soon requests with the slices each still waits for; `none` when there are none."""
    if not items:
        return none
    rows = [[o.request_id, o.kind, o.user_id, o.why, _when(o.due_at),
             [*_waiting_for(o), *(["(deregistration event)"] if o.awaiting_deregistration else [])]]
            for o in items]
    return table(["request", "kind", "user", "why", "due at", "waiting for"], rows)


def overdue_dict(items: Sequence[OverdueRequest]) -> list[dict[str, Any]]:
    """Overdue and stuck requests as JSON-ready data."""
    return [
        {"request_id": o.request_id, "kind": o.kind, "user_id": o.user_id, "why": o.why, "due_at": _iso(o.due_at),
         "opened_at": _iso(o.opened_at), "missing": list(o.missing),
         "awaiting_deregistration": o.awaiting_deregistration,
         "failures": {name: _failure_dict(failure) for name, failure in o.failures}}
        for o in items
    ]


def receipt_text(request_id: str, entries: Sequence[Entry], receipt_hash: str | None,
                 result: VerifyResult | None) -> str:
    """A request's receipt chain, its hash and, when checked, the verdict."""
    rows = [[str(e.seq), e.service, e.prev_hash, e.entry_hash] for e in entries]
    lines = [f"Receipt of erasure request {request_id}", ""]
    lines.append(table(["seq", "slice", "prev hash", "entry hash"], rows) if rows else "(no entries yet)")
    lines += ["", f"Receipt hash: {receipt_hash or '(none: the request is not complete)'}"]
    if result is not None:
        if result.ok:
            lines.append(f"Verified: {result.reason}")
        else:
            where = f" at entry {result.broken_at_seq}" if result.broken_at_seq is not None else ""
            lines.append(f"VERIFICATION FAILED{where}: {result.reason}")
    return "\n".join(lines)


def receipt_dict(request_id: str, entries: Sequence[Entry], receipt_hash: str | None,
                 result: VerifyResult | None) -> dict[str, Any]:
    """A request's receipt chain and verdict as JSON-ready data."""
    data: dict[str, Any] = {
        "request_id": request_id,
        "receipt_hash": receipt_hash,
        "entries": [{"seq": e.seq, "service": e.service, "payload": e.payload, "prev_hash": e.prev_hash,
                     "entry_hash": e.entry_hash} for e in entries],
    }
    if result is not None:
        data["verification"] = {"ok": result.ok, "broken_at_seq": result.broken_at_seq, "reason": result.reason}
    return data
