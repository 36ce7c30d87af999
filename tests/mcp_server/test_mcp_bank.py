"""The banking rules of `mcp_server.Bank` against real SQLite and real PostgreSQL databases.

Every test runs on both: the money path takes row locks differently on each (BEGIN IMMEDIATE on SQLite,
SELECT ... FOR UPDATE and conditional UPDATEs on PostgreSQL), and the concurrency tests must hold on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from mcp_server import (
    AccountClosed,
    AccountNotFound,
    Bank,
    BankError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidArgument,
    OverLimit,
    PayeeNotFound,
    SameAccount,
    create_schema,
    make_engine,
    seed,
    seed_bank,
)
from mcp_server._bank._models import Movement, Transaction


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, clock: Any) -> Iterator[Engine]:
    """A seeded bank on each real database engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bank.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    create_schema(engine)
    seed(engine, clock=clock)
    yield engine
    engine.dispose()


def account(bank: Bank, user: str, kind: str, status: str = "open") -> dict[str, Any]:
    accounts = bank.get_balance(user, kind)["accounts"]
    return next(a for a in accounts if a["status"] == status)


def payee(bank: Bank, user: str) -> str:
    payee_id: str = bank.list_payees(user)["payees"][0]["payee_id"]
    return payee_id


def balance(bank: Bank, account_id: str, user: str = "alice") -> str:
    return next(a["balance"] for a in bank.get_balance(user)["accounts"] if a["account_id"] == account_id)


def count(engine: Engine, model: type[Any]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def test_seed_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    assert seed_bank(url) is True
    assert seed_bank(url) is False


def test_get_balance_lists_every_account_with_the_contract_fields(bank: Bank) -> None:
    accounts = bank.get_balance("alice")["accounts"]
    assert {a["type"] for a in accounts} == {"checking", "savings", "credit"}
    assert {a["status"] for a in accounts} == {"open", "closed"}
    assert set(accounts[0]) == {"account_id", "type", "account_number", "balance", "currency", "status"}
    checking = account(bank, "alice", "checking")
    assert checking["balance"] == "2450.13"
    assert checking["account_number"].endswith("1234")
    assert [a["type"] for a in bank.get_balance("bob", "savings")["accounts"]] == ["savings"]


def test_unknown_account_type_is_refused(bank: Bank) -> None:
    with pytest.raises(InvalidArgument, match="checking, savings or credit"):
        bank.get_balance("alice", "brokerage")


def test_transactions_are_newest_first_and_limited(bank: Bank) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    rows = bank.list_transactions("alice", checking, limit=3)["transactions"]
    assert len(rows) == 3
    assert [r["posted_at"] for r in rows] == sorted((r["posted_at"] for r in rows), reverse=True)
    assert rows[0]["amount"] == "-42.50"
    assert rows[0]["posted_at"].endswith("+00:00")
    assert set(rows[0]) == {
        "transaction_id",
        "account_id",
        "posted_at",
        "amount",
        "currency",
        "description",
        "counterparty",
    }
    everything = bank.list_transactions("alice", limit=100)["transactions"]
    assert len(everything) == 8
    assert all(r["account_id"] != account(bank, "bob", "checking")["account_id"] for r in everything)


def test_an_own_account_without_transactions_lists_none_and_an_unknown_one_is_not_found(bank: Bank) -> None:
    # One query answers both: the account is the outer side of the join, so an account of the user's
    # with no transactions still answers a row, of NULLs, which must not become a transaction.
    closed = account(bank, "alice", "savings", status="closed")["account_id"]
    assert bank.list_transactions("alice", closed, limit=5) == {"transactions": []}
    with pytest.raises(AccountNotFound):
        bank.list_transactions("alice", "acc_nope", limit=5)


def test_one_accounts_transactions_stop_at_the_limit_and_stay_on_that_account(bank: Bank) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    everything = bank.list_transactions("alice", checking, limit=100)["transactions"]
    assert 1 < len(everything) < 8
    assert {r["account_id"] for r in everything} == {checking}
    assert bank.list_transactions("alice", checking, limit=1)["transactions"] == everything[:1]


def test_account_currency_only_of_the_users_own_account(bank: Bank) -> None:
    alices = account(bank, "alice", "checking")["account_id"]
    bobs = account(bank, "bob", "checking")["account_id"]
    assert bank.account_currency("alice", alices) == "USD"
    assert bank.account_currency("alice", bobs) is None
    assert bank.account_currency("alice", "acc_nope") is None


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_transaction_limit_out_of_range_is_refused(bank: Bank, limit: int) -> None:
    with pytest.raises(InvalidArgument, match="between 1 and 100"):
        bank.list_transactions("alice", limit=limit)


def test_loans_and_payees(bank: Bank) -> None:
    (loan,) = bank.list_loans("alice")["loans"]
    assert loan["balance"] == "12543.00"
    assert loan["rate"] == "5.49"
    assert loan["next_payment_amount"] == "389.00"
    assert bank.list_loans("bob") == {"loans": []}
    payees = bank.list_payees("alice")["payees"]
    assert len(payees) >= 2
    assert set(payees[0]) == {"payee_id", "name", "account_number"}


def test_payment_moves_money_and_records_it(bank: Bank, engine: Engine) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    to = payee(bank, "alice")
    result = bank.make_payment("alice", checking, to, "50.13", "k1", memo="Power bill")
    assert result["status"] == "completed"
    assert result["amount"] == "50.13"
    assert result["balance_after"] == "2400.00"
    assert result["currency"] == "USD"
    assert set(result) == {
        "payment_id",
        "status",
        "from_account_id",
        "payee_id",
        "amount",
        "currency",
        "balance_after",
    }
    assert balance(bank, checking) == "2400.00"
    newest = bank.list_transactions("alice", checking, limit=1)["transactions"][0]
    assert (newest["amount"], newest["description"]) == ("-50.13", "Power bill")


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("0", InvalidAmount),
        ("0.00", InvalidAmount),
        ("-5", InvalidAmount),
        ("1.234", InvalidAmount),
        ("abc", InvalidAmount),
        ("1e3", InvalidAmount),
        ("", InvalidAmount),
        ("NaN", InvalidAmount),
        ("1,00", InvalidAmount),
        ("5000.01", OverLimit),
        ("99999999", OverLimit),
    ],
)
def test_bad_amounts_are_refused_and_move_nothing(
    bank: Bank, engine: Engine, amount: str, error: type[BankError]
) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    with pytest.raises(error):
        bank.make_payment("alice", checking, payee(bank, "alice"), amount, "k")
    assert balance(bank, checking) == "2450.13"
    assert count(engine, Movement) == 0


def test_payment_limit_is_a_setting(engine: Engine) -> None:
    bank = Bank(engine, payment_limit_cents=1000)
    checking = account(bank, "alice", "checking")["account_id"]
    with pytest.raises(OverLimit, match=r"limit of 10\.00"):
        bank.make_payment("alice", checking, payee(bank, "alice"), "10.01", "k")


def test_insufficient_funds_is_one_speakable_sentence(bank: Bank) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    with pytest.raises(InsufficientFunds) as raised:
        bank.make_payment("alice", checking, payee(bank, "alice"), "2450.14", "k")
    assert str(raised.value) == "Insufficient funds in account ending 1234."
    assert raised.value.code == "insufficient_funds"
    bank.make_payment("alice", checking, payee(bank, "alice"), "2450.13", "k2")
    assert balance(bank, checking) == "0.00"


def test_credit_account_may_go_down_to_its_limit(bank: Bank) -> None:
    credit = account(bank, "alice", "credit")["account_id"]
    to = payee(bank, "alice")
    # -352.40 now, limit 5000.00: 4647.60 more is allowed, one cent more is not.
    with pytest.raises(InsufficientFunds):
        bank.make_payment("alice", credit, to, "4647.61", "k1")
    assert bank.make_payment("alice", credit, to, "4647.60", "k2")["balance_after"] == "-5000.00"


def test_closed_account_refuses_payments_and_transfers(bank: Bank) -> None:
    closed = account(bank, "alice", "savings", status="closed")["account_id"]
    checking = account(bank, "alice", "checking")["account_id"]
    with pytest.raises(AccountClosed, match=r"^Account ending 9999 is closed\.$"):
        bank.make_payment("alice", closed, payee(bank, "alice"), "1.00", "k1")
    with pytest.raises(AccountClosed):
        bank.transfer_between_accounts("alice", checking, closed, "1.00", "k2")
    assert balance(bank, checking) == "2450.13"


def test_unknown_payee_and_another_users_payee_are_not_found(bank: Bank) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    for payee_id in ("pye_nope", payee(bank, "bob")):
        with pytest.raises(PayeeNotFound, match=r"^Payee not found\.$"):
            bank.make_payment("alice", checking, payee_id, "1.00", f"k-{payee_id}")


def test_another_users_account_is_not_found_everywhere(bank: Bank, engine: Engine) -> None:
    bobs = account(bank, "bob", "checking")["account_id"]
    alices = account(bank, "alice", "checking")["account_id"]
    with pytest.raises(AccountNotFound, match=r"^Account not found\.$"):
        bank.list_transactions("alice", bobs)
    with pytest.raises(AccountNotFound):
        bank.make_payment("alice", bobs, payee(bank, "alice"), "1.00", "k1")
    with pytest.raises(AccountNotFound):
        bank.transfer_between_accounts("alice", bobs, alices, "1.00", "k2")
    with pytest.raises(AccountNotFound):
        bank.transfer_between_accounts("alice", alices, bobs, "1.00", "k3")
    assert balance(bank, bobs, "bob") == "980.77"
    assert balance(bank, alices) == "2450.13"
    assert count(engine, Movement) == 0


def test_transfer_moves_money_both_ways_in_one_transaction(bank: Bank) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    savings = account(bank, "alice", "savings")["account_id"]
    result = bank.transfer_between_accounts("alice", savings, checking, "100.00", "t1")
    assert result["balance_after"] == "11900.00"
    assert set(result) == {
        "transfer_id",
        "status",
        "from_account_id",
        "to_account_id",
        "amount",
        "currency",
        "balance_after",
    }
    assert balance(bank, checking) == "2550.13"
    assert bank.list_transactions("alice", checking, limit=1)["transactions"][0]["amount"] == "100.00"
    with pytest.raises(InsufficientFunds):
        bank.transfer_between_accounts("alice", checking, savings, "2550.14", "t2")
    assert balance(bank, savings) == "11900.00"


def test_same_account_transfer_is_refused(bank: Bank) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    with pytest.raises(SameAccount, match="same account"):
        bank.transfer_between_accounts("alice", checking, checking, "1.00", "t")


def test_same_idempotency_key_pays_once(bank: Bank, engine: Engine) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    to = payee(bank, "alice")
    first = bank.make_payment("alice", checking, to, "10.00", "same")
    assert bank.make_payment("alice", checking, to, "10.00", "same") == first
    assert balance(bank, checking) == "2440.13"
    with pytest.raises(IdempotencyConflict):
        bank.make_payment("alice", checking, to, "11.00", "same")
    # Keys are per user: bob's "same" is a different request.
    bob_checking = account(bank, "bob", "checking")["account_id"]
    bank.make_payment("bob", bob_checking, payee(bank, "bob"), "10.00", "same")
    assert count(engine, Movement) == 2


@pytest.mark.parametrize("key", ["", "x" * 129, "bad\nkey"])
def test_bad_idempotency_key_is_refused(bank: Bank, key: str) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    with pytest.raises(InvalidArgument, match="request id"):
        bank.make_payment("alice", checking, payee(bank, "alice"), "1.00", key)


def test_fifty_concurrent_payments_never_overdraw(bank: Bank, engine: Engine) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    to = payee(bank, "alice")

    def pay(i: int) -> str:
        try:
            bank.make_payment("alice", checking, to, "100.00", f"c{i}")
        except InsufficientFunds:
            return "refused"
        return "paid"

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(pay, range(50)))
    assert outcomes.count("paid") == 24
    assert balance(bank, checking) == "50.13"
    with engine.connect() as conn:
        debits = conn.execute(
            select(func.sum(Transaction.amount_cents)).where(
                Transaction.account_id == checking, Transaction.amount_cents == -10_000
            )
        ).scalar_one()
    assert debits == -240_000


def test_twenty_concurrent_calls_with_one_key_pay_once(bank: Bank, engine: Engine) -> None:
    checking = account(bank, "alice", "checking")["account_id"]
    to = payee(bank, "alice")
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(
            pool.map(lambda _: bank.make_payment("alice", checking, to, "25.00", "once"), range(20))
        )
    assert len({r["payment_id"] for r in results}) == 1
    assert balance(bank, checking) == "2425.13"
    assert count(engine, Movement) == 1


def test_notification_settings_update_only_given_fields(bank: Bank) -> None:
    result = bank.update_notification_settings("alice", low_balance_threshold="250", channel="sms")
    assert result == {
        "settings": {
            "low_balance_alert": True,
            "low_balance_threshold": "250.00",
            "large_payment_alert": True,
            "channel": "sms",
        }
    }
    assert (
        bank.update_notification_settings("alice", large_payment_alert=False)["settings"]["channel"] == "sms"
    )


def test_notification_settings_are_validated(bank: Bank) -> None:
    with pytest.raises(InvalidArgument, match="sms, email or push"):
        bank.update_notification_settings("alice", channel="pigeon")
    with pytest.raises(InvalidAmount):
        bank.update_notification_settings("alice", low_balance_threshold="-1")
    with pytest.raises(InvalidArgument, match="No bank profile"):
        bank.update_notification_settings("mallory", channel="sms")


def test_sqlite_runs_one_bank_call_at_a_time_on_a_pool_that_never_churns(tmp_path: Path) -> None:
    from sqlalchemy.pool import QueuePool

    from mcp_server._bank._db import bank_threads

    sqlite = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    server = make_engine("postgresql+psycopg://u:p@127.0.0.1:1/db")  # never connects here
    try:
        assert bank_threads(sqlite) == 1
        assert bank_threads(server) is None
        assert isinstance(sqlite.pool, QueuePool)
        assert sqlite.pool.size() >= bank_threads(sqlite)
    finally:
        sqlite.dispose()
        server.dispose()
