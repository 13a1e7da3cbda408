"""What payment holds: the references of each PayPal payment, the vault tokens saved with it, each user's
PayPal customer id."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Date, DateTime, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import runtime_metadata
from shared.keys import seal_columns

metadata = runtime_metadata()
MIGRATIONS = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    metadata = metadata


class PaymentRecord(Base):
    """One online payment: the PayPal references; `payer_id` is erased with the user, the rest kept by law."""

    __tablename__ = "payments"

    purchase_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    payer_id: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(64))
    capture_id: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retain_until: Mapped[date] = mapped_column(Date, index=True)
    event_id: Mapped[str] = mapped_column(String(36))


# The payer id names a person at PayPal: sealed under the user's data key. The transaction references the law
# requires us to keep (order, capture) name a payment, not a person, and stay in clear until their retain-until date.
seal_columns(PaymentRecord, "payment", "payer_id")


class VaultToken(Base):
    """A payment method the payer saved at PayPal (Vault v3); deleted there when the user is erased."""

    __tablename__ = "vault_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    purchase_id: Mapped[str] = mapped_column(String(64))


class PayPalCustomer(Base):
    """The PayPal vault customer id a user's payment methods are saved under; deleted when the user is erased.

    Our user ids do not fit PayPal's `customer.id` rule (`^[0-9a-zA-Z_-]+$`, 7-36 characters), so each user
    gets a derived one (services.vendors.rules.paypal_customer_id); the pair is kept so that the id in use
    stays the one PayPal knows even if the derivation ever changes.
    """

    __tablename__ = "paypal_customers"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), unique=True)
