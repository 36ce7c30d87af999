"""A transact token moves only the money its authorization details name, checked before its jti is spent."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from sqlalchemy import Engine, func, select

from keys import Verifier
from mcp_server import TOOL_SCOPES, Bank, McpSettings, create_app, create_schema, make_engine, seed
from mcp_server._auth._binding import MOVEMENT_TOOLS, BindingMismatch, Movement, check_call
from mcp_server._bank._models import Movement as MovementRow
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.lifespan import running
from tests.support.mcp import Mint, http_client, movement, post, rpc

METADATA = "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp"
REFUSED = f'Bearer error="insufficient_authorization_details", resource_metadata="{METADATA}"'


@pytest.fixture
def ids(bank: Bank) -> dict[str, str]:
    accounts = {
        a["type"]: a["account_id"] for a in bank.get_balance("alice")["accounts"] if a["status"] == "open"
    }
    payees = [p["payee_id"] for p in bank.list_payees("alice")["payees"]]
    return accounts | {"payee": payees[0], "other_payee": payees[1]}


@pytest.fixture
def payment(ids: dict[str, str]) -> dict[str, Any]:
    return {
        "from_account_id": ids["checking"],
        "payee_id": ids["payee"],
        "amount": "25.00",
        "idempotency_key": "b-1",
    }


@pytest.fixture
def transfer(ids: dict[str, str]) -> dict[str, Any]:
    return {
        "from_account_id": ids["savings"],
        "to_account_id": ids["checking"],
        "amount": "25.00",
        "idempotency_key": "b-2",
    }


def balances(bank: Bank) -> dict[str, str]:
    return {a["type"]: a["balance"] for a in bank.get_balance("alice")["accounts"]}


def movements(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(MovementRow)).scalar_one())


async def _refused_then_paid(
    http: httpx2.AsyncClient,
    token: str,
    tool: str,
    sent: dict[str, Any],
    authorized: dict[str, Any],
    bank: Bank,
) -> None:
    """`sent` is refused with 403 and moves nothing; the token then still pays `authorized` (jti unspent)."""
    before = balances(bank)
    response = await post(http, token, rpc(tool, sent))
    assert response.status_code == 403, response.text
    assert response.headers["www-authenticate"] == REFUSED
    assert response.json() == {"error": "insufficient_authorization_details"}
    assert balances(bank) == before
    paid = await post(http, token, rpc(tool, authorized))
    assert paid.status_code == 200, paid.text
    assert paid.json()["result"]["structuredContent"]["status"] == "completed"


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("from_account_id", "savings"),
        ("payee_id", "other_payee"),
        ("amount", "2500.00"),
        ("amount", "25.01"),
        ("idempotency_key", "b-other"),
    ],
)
async def test_each_payment_argument_must_equal_the_details(
    http: httpx2.AsyncClient,
    mint: Mint,
    bank: Bank,
    ids: dict[str, str],
    payment: dict[str, Any],
    member: str,
    value: str,
) -> None:
    token = mint(scope="transact", bound=("make_payment", payment))
    sent = payment | {member: ids.get(value, value)}
    await _refused_then_paid(http, token, "make_payment", sent, payment, bank)


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("from_account_id", "credit"),
        ("to_account_id", "credit"),
        ("amount", "250.00"),
        ("idempotency_key", "b-other"),
    ],
)
async def test_each_transfer_argument_must_equal_the_details(
    http: httpx2.AsyncClient,
    mint: Mint,
    bank: Bank,
    ids: dict[str, str],
    transfer: dict[str, Any],
    member: str,
    value: str,
) -> None:
    token = mint(scope="transact", bound=("transfer_between_accounts", transfer))
    sent = transfer | {member: ids.get(value, value)}
    await _refused_then_paid(http, token, "transfer_between_accounts", sent, transfer, bank)


async def test_the_currency_must_be_the_source_accounts(
    http: httpx2.AsyncClient, mint: Mint, bank: Bank, engine: Engine, payment: dict[str, Any]
) -> None:
    token = mint(scope="transact", claims={"authorization_details": movement("make_payment", payment, "EUR")})
    response = await post(http, token, rpc("make_payment", payment))
    assert (response.status_code, response.headers["www-authenticate"]) == (403, REFUSED)
    assert movements(engine) == 0


@pytest.mark.parametrize("amount", ["25", "25.0", "25.00"])
async def test_amounts_are_compared_as_decimals(
    http: httpx2.AsyncClient, mint: Mint, bank: Bank, payment: dict[str, Any], amount: str
) -> None:
    token = mint(scope="transact", bound=("make_payment", payment))
    response = await post(http, token, rpc("make_payment", payment | {"amount": amount}))
    assert response.status_code == 200, response.text
    assert balances(bank)["checking"] == "2425.13"


@pytest.mark.parametrize(
    "amount", ["25.001", "25.000", " 25.00", "25.00 ", "2.5e1", "+25", "25,00", "٢٥", 25]
)
async def test_an_amount_outside_the_amount_rule_is_refused_before_any_comparison(
    http: httpx2.AsyncClient, mint: Mint, bank: Bank, payment: dict[str, Any], amount: object
) -> None:
    token = mint(scope="transact", bound=("make_payment", payment))
    await _refused_then_paid(http, token, "make_payment", payment | {"amount": amount}, payment, bank)


async def test_a_payment_token_cannot_transfer_nor_a_transfer_token_pay(
    http: httpx2.AsyncClient, mint: Mint, bank: Bank, payment: dict[str, Any], transfer: dict[str, Any]
) -> None:
    pays = mint(scope="transact", bound=("make_payment", payment))
    response = await post(http, pays, rpc("transfer_between_accounts", transfer))
    assert (response.status_code, response.headers["www-authenticate"]) == (403, REFUSED)
    moves = mint(scope="transact", bound=("transfer_between_accounts", transfer))
    response = await post(http, moves, rpc("make_payment", payment))
    assert (response.status_code, response.headers["www-authenticate"]) == (403, REFUSED)
    assert balances(bank)["checking"] == "2450.13"


@pytest.mark.parametrize(
    "claim",
    [
        None,
        [],
        "payment",
        [{"type": "payment"}],
        [{"type": "wire", "from_account_id": "a", "payee_id": "b", "amount": "1", "currency": "USD"}],
    ],
)
async def test_a_transact_token_without_one_valid_movement_moves_nothing(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, payment: dict[str, Any], claim: Any
) -> None:
    token = mint(scope="transact", claims={} if claim is None else {"authorization_details": claim})
    response = await post(http, token, rpc("make_payment", payment))
    assert (response.status_code, response.headers["www-authenticate"]) == (403, REFUSED)
    assert movements(engine) == 0


async def test_two_copies_of_the_authorized_call_in_one_batch_are_refused(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, payment: dict[str, Any]
) -> None:
    token = mint(scope="transact", bound=("make_payment", payment))
    other_key = payment | {"idempotency_key": "b-batch"}
    response = await post(http, token, [rpc("make_payment", payment), rpc("make_payment", other_key)])
    assert response.status_code == 403
    assert movements(engine) == 0


async def test_a_refusal_is_audited_with_its_reason(
    http: httpx2.AsyncClient,
    mint: Mint,
    payment: dict[str, Any],
    ids: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    token = mint(scope="transact", bound=("make_payment", payment), jti="jti-bound-1")
    await post(http, token, rpc("make_payment", payment | {"payee_id": ids["other_payee"]}))
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "voicebank.audit"]
    assert (line["tool"], line["outcome"], line["reason"], line["jti"]) == (
        "make_payment",
        "denied",
        "details_payee_id",
        "jti-bound-1",
    )
    assert token not in caplog.text


def test_every_transact_tool_is_a_bound_movement() -> None:
    assert {tool for tool, scope in TOOL_SCOPES.items() if scope == "transact"} == set(MOVEMENT_TOOLS)


def test_check_call_names_what_differs() -> None:
    claim = movement(
        "make_payment", {"from_account_id": "a", "payee_id": "p", "amount": "5", "idempotency_key": "k"}
    )
    bound = Movement.from_claim(claim)
    call = {"from_account_id": "a", "payee_id": "p", "amount": "5.00", "idempotency_key": "k"}
    assert check_call(bound, "make_payment", call) == bound
    for arguments, reason in (
        (None, "details_no_arguments"),
        (call | {"amount": "5.001"}, "details_amount_rule"),
        (call | {"amount": "5.01"}, "details_amount"),
        (call | {"from_account_id": "b"}, "details_from_account_id"),
        (call | {"payee_id": "q"}, "details_payee_id"),
        (call | {"idempotency_key": "j"}, "details_idempotency_key"),
    ):
        with pytest.raises(BindingMismatch) as refused:
            check_call(bound, "make_payment", arguments)
        assert refused.value.reason == reason
    with pytest.raises(BindingMismatch, match="details_other_type"):
        check_call(bound, "transfer_between_accounts", call)


async def test_a_bank_that_cannot_tell_the_currency_is_an_outage_and_the_token_stays_usable(
    tmp_path: Path, postgres_url: str, verifier: Verifier, clock: FakeClock, mint: Mint
) -> None:
    # The equality check asks the bank for the source account's currency before the jti is spent: while
    # the database refuses connections that is a 503 to retry (issue 10), never a 403 or a spent token.
    engine = make_engine(postgres_url)
    create_schema(engine)
    seed(engine, clock=clock)
    bank = Bank(engine)
    checking = next(a for a in bank.get_balance("alice")["accounts"] if a["type"] == "checking")
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    payment = {
        "from_account_id": checking["account_id"],
        "payee_id": payee,
        "amount": "25.00",
        "idempotency_key": "outage-1",
    }
    database = postgres_url.rsplit("/", 1)[1]
    admin = postgres_url.rsplit("/", 1)[0].replace("postgresql+psycopg", "postgresql") + "/postgres"
    settings = McpSettings(mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, voicebank_state=tmp_path)
    app = create_app(settings, verifier=verifier, engine=engine, clock=clock)
    token = mint(scope="transact", bound=("make_payment", payment))
    try:
        async with running(app), http_client(app) as http:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")  # our hex name
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
                )
            try:
                response = await post(http, token, rpc("make_payment", payment))
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
            assert response.status_code == 503, response.text
            assert response.json() == {"error": "temporarily_unavailable"}
            assert response.headers["retry-after"] == "2"
            assert "www-authenticate" not in response.headers
            paid = await post(http, token, rpc("make_payment", payment))
            assert paid.status_code == 200, paid.text
            assert paid.json()["result"]["structuredContent"]["status"] == "completed"
    finally:
        engine.dispose()
