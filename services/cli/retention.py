"""`erasure retention purge`: erase what the law no longer makes us keep."""

from __future__ import annotations

import json
from datetime import date

import click


@click.group()
def retention() -> None:
    """Records kept by law (Bokföringslagen 7 kap. 2 §) until their retain-until date."""


@retention.command("purge")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="Purge as of this date (default: today, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def purge(today: object, as_json: bool) -> None:
    """Erase retained sales and payment records whose retain-until date has passed (run it daily).

    \b
    Examples:
      erasure retention purge
      erasure retention purge --today 2034-01-01 --json
    """
    from services.bookkeeping.purge import run_purge as purge_bookkeeping
    from services.payment.purge import run_purge as purge_payment
    from shared.logging import configure, get_logger

    configure("INFO")
    as_of: date | None = today.date() if today is not None else None  # type: ignore[attr-defined]
    erased = {"bookkeeping": purge_bookkeeping(today=as_of), "payment": purge_payment(today=as_of)}
    get_logger("retention").info("retention purge done", **erased)
    if as_json:
        click.echo(json.dumps({"erased_rows": erased, "as_of": str(as_of or "today")}))
    else:
        for service, rows in erased.items():
            click.echo(f"{service}: erased {rows} records past their retention period")
