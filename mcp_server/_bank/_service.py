"""The bank service: each method runs for the `user_id` its caller authenticated, never an argument."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mcp_server._bank._db import WRITE_OPTION
from mcp_server._bank._errors import (
    AccountClosed,
    AccountNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidArgument,
    PayeeNotFound,
    SameAccount,
)
from mcp_server._bank._models import (
    ACCOUNT_TYPES,
    CHANNELS,
    IDEMPOTENCY_KEY_MAX,
    MEMO_MAX,
    Account,
    IdempotencyRecord,
    Loan,
    Movement,
    NotificationSettings,
    Payee,
    Transaction,
    User,
)
from mcp_server._bank._money import format_cents, parse_amount, parse_cents
from mcp_server._bank._text import check_text

DEFAULT_PAYMENT_LIMIT_CENTS = 500_000
MAX_TRANSACTIONS = 100


def new_id(prefix: str) -> str:
    """An opaque, unguessable id."""
    return f"{prefix}_{secrets.token_hex(8)}"


def _ending(account: Account) -> str:
    return account.account_number[-4:]


def _iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat()


class Bank:
    """Banking rules over one database; thread-safe, one database transaction per call."""

    def __init__(
        self,
        engine: Engine,
        *,
        payment_limit_cents: int = DEFAULT_PAYMENT_LIMIT_CENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
        self._limit = payment_limit_cents
        self._clock = clock

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC).replace(tzinfo=None)

    # -- reads ----------------------------------------------------------------------------------

    def get_balance(self, user_id: str, account_type: str | None = None) -> dict[str, Any]:
        """The user's accounts, optionally of one type."""
        query = (
            select(Account).where(Account.user_id == user_id).order_by(Account.type, Account.account_number)
        )
        if account_type is not None:
            if account_type not in ACCOUNT_TYPES:
                raise InvalidArgument("The account type must be checking, savings or credit.")
            query = query.where(Account.type == account_type)
        with self._read() as session, session.begin():
            accounts = session.scalars(query).all()
        return {
            "accounts": [
                {
                    "account_id": a.id,
                    "type": a.type,
                    "account_number": a.account_number,
                    "balance": format_cents(a.balance_cents),
                    "currency": a.currency,
                    "status": a.status,
                }
                for a in accounts
            ]
        }

    def list_transactions(
        self, user_id: str, account_id: str | None = None, limit: int = 10
    ) -> dict[str, Any]:
        """The user's transactions, newest first, on one account or all of them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TRANSACTIONS:
            raise InvalidArgument(f"The limit must be between 1 and {MAX_TRANSACTIONS}.")
        query = (
            select(Transaction)
            .join(Account, Transaction.account_id == Account.id)
            .where(Account.user_id == user_id)
            .order_by(Transaction.posted_at.desc(), Transaction.seq.desc())
            .limit(limit)
        )
        with self._read() as session, session.begin():
            if account_id is not None:
                self._own_account(session, user_id, account_id)
                query = query.where(Transaction.account_id == account_id)
            rows = session.scalars(query).all()
        return {
            "transactions": [
                {
                    "transaction_id": t.id,
                    "account_id": t.account_id,
                    "posted_at": _iso(t.posted_at),
                    "amount": format_cents(t.amount_cents),
                    "currency": t.currency,
                    "description": t.description,
                    "counterparty": t.counterparty,
                }
                for t in rows
            ]
        }

    def list_loans(self, user_id: str) -> dict[str, Any]:
        """The user's loans."""
        with self._read() as session, session.begin():
            loans = session.scalars(select(Loan).where(Loan.user_id == user_id).order_by(Loan.id)).all()
        return {
            "loans": [
                {
                    "loan_id": loan.id,
                    "type": loan.type,
                    "balance": format_cents(loan.balance_cents),
                    "currency": loan.currency,
                    "rate": format_cents(loan.rate_bp),
                    "next_payment_due": loan.next_payment_due.isoformat(),
                    "next_payment_amount": format_cents(loan.next_payment_cents),
                }
                for loan in loans
            ]
        }

    def list_payees(self, user_id: str) -> dict[str, Any]:
        """The user's payees."""
        with self._read() as session, session.begin():
            payees = session.scalars(select(Payee).where(Payee.user_id == user_id).order_by(Payee.name)).all()
        return {
            "payees": [{"payee_id": p.id, "name": p.name, "account_number": p.account_number} for p in payees]
        }

    def account_currency(self, user_id: str, account_id: str) -> str | None:
        """The currency of one of the user's accounts, or None when the user has no such account."""
        with self._read() as session, session.begin():
            currency = session.scalar(
                select(Account.currency).where(Account.id == account_id, Account.user_id == user_id)
            )
        return currency

    # -- money movements ----------------------------------------------------------------------

    def make_payment(
        self,
        user_id: str,
        from_account_id: str,
        payee_id: str,
        amount: str,
        idempotency_key: str,
        memo: str | None = None,
    ) -> dict[str, Any]:
        """Pay a payee from one of the user's accounts, once per idempotency key."""
        cents = parse_amount(amount, limit_cents=self._limit)
        key = _check_key(idempotency_key)
        if memo is not None:
            check_text(memo, what="memo", max_length=MEMO_MAX)
        fingerprint = _fingerprint("payment", from_account_id, payee_id, cents, memo)

        def run(session: Session) -> dict[str, Any]:
            source = self._own_account(session, user_id, from_account_id, lock=True)
            payee = session.scalar(select(Payee).where(Payee.id == payee_id, Payee.user_id == user_id))
            if payee is None:
                raise PayeeNotFound()
            balance = self._debit(session, source, cents)
            now = self._now()
            payment_id = new_id("pay")
            session.add(
                Movement(
                    id=payment_id,
                    user_id=user_id,
                    kind="payment",
                    from_account_id=source.id,
                    to_account_id=None,
                    payee_id=payee.id,
                    amount_cents=cents,
                    memo=memo,
                    created_at=now,
                )
            )
            session.add(
                Transaction(
                    id=new_id("txn"),
                    account_id=source.id,
                    posted_at=now,
                    amount_cents=-cents,
                    currency=source.currency,
                    description=memo or f"Payment to {payee.name}",
                    counterparty=payee.name,
                )
            )
            return {
                "payment_id": payment_id,
                "status": "completed",
                "from_account_id": source.id,
                "payee_id": payee.id,
                "amount": format_cents(cents),
                "currency": source.currency,
                "balance_after": format_cents(balance),
            }

        return self._once(user_id, key, fingerprint, run)

    def transfer_between_accounts(
        self, user_id: str, from_account_id: str, to_account_id: str, amount: str, idempotency_key: str
    ) -> dict[str, Any]:
        """Move money between two of the user's accounts, once per idempotency key."""
        cents = parse_amount(amount, limit_cents=self._limit)
        key = _check_key(idempotency_key)
        if from_account_id == to_account_id:
            raise SameAccount()
        fingerprint = _fingerprint("transfer", from_account_id, to_account_id, cents, None)

        def run(session: Session) -> dict[str, Any]:
            # Lock both rows in id order so opposite transfers cannot deadlock (PostgreSQL).
            ids = sorted((from_account_id, to_account_id))
            locked = {
                a.id: a
                for a in session.scalars(
                    select(Account)
                    .where(Account.id.in_(ids), Account.user_id == user_id)
                    .order_by(Account.id)
                    .with_for_update()
                )
            }
            source, target = locked.get(from_account_id), locked.get(to_account_id)
            if source is None or target is None:
                raise AccountNotFound()
            if target.status != "open":
                raise AccountClosed(f"Account ending {_ending(target)} is closed.")
            if source.currency != target.currency:
                raise InvalidArgument("Transfers between different currencies are not supported.")
            balance = self._debit(session, source, cents)
            session.execute(
                update(Account)
                .where(Account.id == target.id)
                .values(balance_cents=Account.balance_cents + cents)
                .execution_options(synchronize_session=False)
            )
            now = self._now()
            transfer_id = new_id("trf")
            session.add(
                Movement(
                    id=transfer_id,
                    user_id=user_id,
                    kind="transfer",
                    from_account_id=source.id,
                    to_account_id=target.id,
                    payee_id=None,
                    amount_cents=cents,
                    memo=None,
                    created_at=now,
                )
            )
            for account, other, signed, verb in (
                (source, target, -cents, "to"),
                (target, source, cents, "from"),
            ):
                session.add(
                    Transaction(
                        id=new_id("txn"),
                        account_id=account.id,
                        posted_at=now,
                        amount_cents=signed,
                        currency=account.currency,
                        description=f"Transfer {verb} {other.type} ending {_ending(other)}",
                        counterparty=f"Own {other.type} account ending {_ending(other)}",
                    )
                )
            return {
                "transfer_id": transfer_id,
                "status": "completed",
                "from_account_id": source.id,
                "to_account_id": target.id,
                "amount": format_cents(cents),
                "currency": source.currency,
                "balance_after": format_cents(balance),
            }

        return self._once(user_id, key, fingerprint, run)

    # -- settings -----------------------------------------------------------------------------

    def update_notification_settings(
        self,
        user_id: str,
        low_balance_alert: bool | None = None,
        low_balance_threshold: str | None = None,
        large_payment_alert: bool | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        """Change the fields given and answer the resulting settings."""
        threshold = None if low_balance_threshold is None else parse_cents(low_balance_threshold)
        if channel is not None and channel not in CHANNELS:
            raise InvalidArgument("The channel must be sms, email or push.")
        with self._write() as session, session.begin():
            if session.get(User, user_id) is None:
                raise InvalidArgument("No bank profile exists for this user.")
            settings = session.get(NotificationSettings, user_id)
            if settings is None:
                settings = _default_settings(user_id)
                session.add(settings)
            if low_balance_alert is not None:
                settings.low_balance_alert = low_balance_alert
            if threshold is not None:
                settings.low_balance_threshold_cents = threshold
            if large_payment_alert is not None:
                settings.large_payment_alert = large_payment_alert
            if channel is not None:
                settings.channel = channel
        return {
            "settings": {
                "low_balance_alert": settings.low_balance_alert,
                "low_balance_threshold": format_cents(settings.low_balance_threshold_cents),
                "large_payment_alert": settings.large_payment_alert,
                "channel": settings.channel,
            }
        }

    # -- internals ----------------------------------------------------------------------------

    def _once(
        self, user_id: str, key: str, fingerprint: str, run: Callable[[Session], dict[str, Any]]
    ) -> dict[str, Any]:
        """Run `run` in one write transaction unless this key already has a result."""
        for attempt in range(2):
            try:
                with self._write() as session, session.begin():
                    prior = session.scalar(
                        select(IdempotencyRecord).where(
                            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
                        )
                    )
                    if prior is not None:
                        if prior.fingerprint != fingerprint:
                            raise IdempotencyConflict()
                        result: dict[str, Any] = json.loads(prior.result_json)
                        return result
                    result = run(session)
                    session.add(
                        IdempotencyRecord(
                            user_id=user_id,
                            key=key,
                            fingerprint=fingerprint,
                            result_json=json.dumps(result),
                            created_at=self._now(),
                        )
                    )
                    session.flush()
                    return result
            except IntegrityError:
                # A concurrent request with the same key committed first (PostgreSQL without
                # a table lock): this transaction rolled back, so read the winner's result.
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _own_account(self, session: Session, user_id: str, account_id: str, *, lock: bool = False) -> Account:
        query = select(Account).where(Account.id == account_id, Account.user_id == user_id)
        account = session.scalar(query.with_for_update() if lock else query)
        if account is None:
            raise AccountNotFound()
        return account

    def _debit(self, session: Session, account: Account, cents: int) -> int:
        """Take `cents` out of an open account without crossing its floor; answers the new balance."""
        if account.status != "open":
            raise AccountClosed(f"Account ending {_ending(account)} is closed.")
        # The floor is enforced by the UPDATE itself, so it holds whatever the isolation level.
        new_balance = session.execute(
            update(Account)
            .where(
                Account.id == account.id,
                Account.status == "open",
                Account.balance_cents - cents >= -Account.credit_limit_cents,
            )
            .values(balance_cents=Account.balance_cents - cents)
            .returning(Account.balance_cents)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if new_balance is None:
            raise InsufficientFunds(f"Insufficient funds in account ending {_ending(account)}.")
        return int(new_balance)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise InvalidArgument(f"The request id must be 1 to {IDEMPOTENCY_KEY_MAX} printable characters.")
    return key


def _fingerprint(kind: str, source: str, target: str, cents: int, memo: str | None) -> str:
    canonical = json.dumps([kind, source, target, cents, memo], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _default_settings(user_id: str) -> NotificationSettings:
    return NotificationSettings(
        user_id=user_id,
        low_balance_alert=False,
        low_balance_threshold_cents=10_000,
        large_payment_alert=True,
        channel="push",
    )
