"""What bookkeeping holds: the Visma customer per user, and each sale for as long as the law requires."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Integer, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import runtime_metadata
from shared.keys import seal_columns

metadata = runtime_metadata()
MIGRATIONS = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    metadata = metadata


class CustomerRecord(Base):
    """A user as a customer in Visma; anonymised (contact fields null, inactive) once the user is erased."""

    __tablename__ = "customers"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    visma_customer_id: Mapped[str | None] = mapped_column(String(64))
    customer_number: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))
    street: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    city: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    company_name: Mapped[str | None] = mapped_column(String(200))
    corporate_id: Mapped[str | None] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    anonymised_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Contact details are sealed under the user's data key; erasure nulls them here and destroys the key, which also
# reaches the copies in journals, dead tuples and backups. Sales carry no contact details and stay in clear,
# kept under the Bookkeeping Act until their retain-until date (`erasure retention purge`).
seal_columns(CustomerRecord, "bookkeeping", "visma_customer_id", "name", "email", "phone", "street", "postal_code",
             "city", "company_name", "corporate_id")


class Sale(Base):
    """One sales transaction: what the Bookkeeping Act requires, and no contact details."""

    __tablename__ = "sales"

    purchase_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    visma_invoice_id: Mapped[str | None] = mapped_column(String(64))
    sale_date: Mapped[date] = mapped_column(Date)
    fiscal_year_end: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    total_excl_vat: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    vat_amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    total_incl_vat: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    retain_until: Mapped[date] = mapped_column(Date, index=True)


class Purge(Base):
    """One run of the retention purge: when, and how many rows it erased (nothing else)."""

    __tablename__ = "purges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int] = mapped_column(Integer)


class VismaToken(Base):
    """The newest Visma refresh token (one row): Visma retires each one when it issues the next."""

    __tablename__ = "visma_tokens"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    refresh_token: Mapped[str] = mapped_column(Text)
    seeded_from: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the configured token it began from
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
