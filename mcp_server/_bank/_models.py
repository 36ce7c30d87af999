"""Database schema of the bank: SQLAlchemy 2 declarative models, money in integer cents."""

from __future__ import annotations

import datetime as dt
from typing import Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

AccountType = Literal["checking", "savings", "credit"]
Channel = Literal["sms", "email", "push"]
ACCOUNT_TYPES: tuple[str, ...] = get_args(AccountType)
CHANNELS: tuple[str, ...] = get_args(Channel)
# Lengths of what a caller may name or store; the tools' input schemas and the bank's checks both use these.
ID_MAX = 64
IDEMPOTENCY_KEY_MAX = 128
MEMO_MAX = 140


class Base(DeclarativeBase):
    """Declarative base of the bank schema."""


class User(Base):
    """A bank customer; `id` is the token's `sub`."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Account(Base):
    """A deposit or credit account; a balance may go down to `-credit_limit_cents`."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("type IN ('checking', 'savings', 'credit')", name="account_type"),
        CheckConstraint("status IN ('open', 'closed')", name="account_status"),
        CheckConstraint("credit_limit_cents >= 0", name="credit_limit_non_negative"),
        # The last line of defence: no code path can leave a balance below its floor.
        CheckConstraint("balance_cents >= -credit_limit_cents", name="balance_above_floor"),
    )

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    account_number: Mapped[str] = mapped_column(String(34), unique=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    balance_cents: Mapped[int] = mapped_column(BigInteger)
    credit_limit_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(8), default="open")


class Transaction(Base):
    """One posted entry on an account; negative amounts are debits."""

    __tablename__ = "transactions"
    __table_args__ = (Index("ix_transactions_account_posted", "account_id", "posted_at"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_MAX), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    posted_at: Mapped[dt.datetime] = mapped_column(DateTime())  # naive UTC
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(200))
    counterparty: Mapped[str] = mapped_column(String(200))


class Loan(Base):
    """A loan; `rate_bp` is the annual rate in basis points."""

    __tablename__ = "loans"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    balance_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    rate_bp: Mapped[int] = mapped_column(Integer)
    next_payment_due: Mapped[dt.date] = mapped_column(Date())
    next_payment_cents: Mapped[int] = mapped_column(BigInteger)


class Payee(Base):
    """Someone the user may pay."""

    __tablename__ = "payees"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    account_number: Mapped[str] = mapped_column(String(34))


class Movement(Base):
    """A payment (to a payee) or a transfer (between the user's accounts)."""

    __tablename__ = "movements"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    from_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    to_account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"))
    payee_id: Mapped[str | None] = mapped_column(ForeignKey("payees.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime())


class NotificationSettings(Base):
    """A user's alert preferences."""

    __tablename__ = "notification_settings"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    low_balance_alert: Mapped[bool] = mapped_column(Boolean, default=False)
    low_balance_threshold_cents: Mapped[int] = mapped_column(BigInteger, default=10000)
    large_payment_alert: Mapped[bool] = mapped_column(Boolean, default=True)
    channel: Mapped[str] = mapped_column(String(8), default="push")


class IdempotencyRecord(Base):
    """The first result of a money-moving request, keyed by (user, idempotency key)."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX))
    fingerprint: Mapped[str] = mapped_column(String(64))
    result_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime())
