"""Demo data: users alice and bob with accounts, history, a loan and payees (idempotent)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mcp_server._bank._db import WRITE_OPTION, create_schema, make_engine
from mcp_server._bank._models import Account, Loan, NotificationSettings, Payee, Transaction, User
from mcp_server._bank._service import new_id

# (user, type, number, balance cents, credit limit cents, status)
_ACCOUNTS = [
    ("alice", "checking", "100200301234", 245_013, 0, "open"),
    ("alice", "savings", "100200305678", 1_200_000, 0, "open"),
    ("alice", "credit", "4000123498761111", -35_240, 500_000, "open"),
    ("alice", "savings", "100200309999", 0, 0, "closed"),
    ("bob", "checking", "100200404321", 98_077, 0, "open"),
    ("bob", "savings", "100200408765", 310_000, 0, "open"),
]
_PAYEES = [
    ("alice", "City Power and Light", "880011223344"),
    ("alice", "Greenfield Apartments", "880055667788"),
    ("alice", "Bob Martin", "100200404321"),
    ("bob", "Metro Water", "880099887766"),
    ("bob", "Northside Gym", "880012121212"),
]
# (account number, days ago, amount cents, description, counterparty)
_HISTORY = [
    ("100200301234", 1, -4_250, "Grocery store", "FreshMart"),
    ("100200301234", 3, -12_000, "Electricity bill", "City Power and Light"),
    ("100200301234", 5, 320_000, "Salary", "Acme Corp"),
    ("100200301234", 8, -1_875, "Coffee and bagel", "Corner Cafe"),
    ("100200301234", 12, -150_000, "Rent", "Greenfield Apartments"),
    ("100200305678", 30, 50_000, "Monthly savings", "Own checking account ending 1234"),
    ("4000123498761111", 2, -6_490, "Streaming subscription", "StreamCo"),
    ("4000123498761111", 6, -28_750, "Airline ticket", "SkyHigh Air"),
    ("100200404321", 2, -2_399, "Pharmacy", "HealthPlus"),
    ("100200404321", 4, 210_000, "Salary", "Initech"),
    ("100200404321", 9, -4_500, "Water bill", "Metro Water"),
    ("100200408765", 20, 25_000, "Monthly savings", "Own checking account ending 4321"),
]


def seed(engine: Engine, *, clock: Callable[[], float] = time.time) -> bool:
    """Insert the demo data unless it is there already; answers whether it inserted."""
    now = dt.datetime.fromtimestamp(clock(), dt.UTC).replace(tzinfo=None, microsecond=0)
    with Session(engine.execution_options(**{WRITE_OPTION: True})) as session, session.begin():
        if session.get(User, "alice") is not None:
            return False
        session.add_all([User(id="alice", name="Alice Smith"), User(id="bob", name="Bob Martin")])
        session.flush()
        ids: dict[str, str] = {}
        for user, kind, number, balance, limit, status in _ACCOUNTS:
            ids[number] = new_id("acc")
            session.add(
                Account(
                    id=ids[number],
                    user_id=user,
                    type=kind,
                    account_number=number,
                    currency="USD",
                    balance_cents=balance,
                    credit_limit_cents=limit,
                    status=status,
                )
            )
        for user, name, number in _PAYEES:
            session.add(Payee(id=new_id("pye"), user_id=user, name=name, account_number=number))
        session.flush()
        for number, days, amount, description, counterparty in _HISTORY:
            session.add(
                Transaction(
                    id=new_id("txn"),
                    account_id=ids[number],
                    posted_at=now - dt.timedelta(days=days),
                    amount_cents=amount,
                    currency="USD",
                    description=description,
                    counterparty=counterparty,
                )
            )
        session.add(
            Loan(
                id=new_id("loan"),
                user_id="alice",
                type="auto",
                balance_cents=1_254_300,
                currency="USD",
                rate_bp=549,
                next_payment_due=(now + dt.timedelta(days=14)).date(),
                next_payment_cents=38_900,
            )
        )
        for user in ("alice", "bob"):
            session.add(
                NotificationSettings(
                    user_id=user,
                    low_balance_alert=True,
                    low_balance_threshold_cents=10_000,
                    large_payment_alert=True,
                    channel="push",
                )
            )
    return True


def seed_bank(url_or_engine: str | Engine, *, clock: Callable[[], float] = time.time) -> bool:
    """Create the schema and seed the demo data (idempotent); for `voicebank dev-init`."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        create_schema(engine)
        return seed(engine, clock=clock)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
