"""Regressions: hostile tool arguments (issue 10).

Found in review: a `get_balance` whose `account_type` was ~150 KB of repeated token fragments made every
other user's calls wait for seconds, because the token-in-arguments regex backtracked quadratically on the
event loop before any length or enum check. Every string argument now has a cap in the tool's input schema,
checked first; the token scan reads each character once. Amounts and memos bound for the ledger are exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette

from mcp_server import Bank, InvalidAmount, InvalidArgument
from mcp_server._token_scan import looks_like_token
from tests.support.mcp import PROTOCOLS, Mint, audit_lines, call_raw, mcp_client, movements, tool_error

HOSTILE = "eyJ" * 50_000  # ~150 KB of token fragments: the shape the old regex was quadratic on
UNDER_BODY_CAP = "eyJ" * 21_000  # the same shape, as large as the 64 KiB body cap lets through
AMOUNT_SENTENCE = "The amount must be a number with at most two decimal places, like 12.50."
DETAILS_REFUSED = (403, {"error": "insufficient_authorization_details"})
SCHEMA_REASONS = {"argument_too_long", "argument_not_allowed"}
# The rule the scan implements, as the regex it replaced (fine on short strings, quadratic on long ones).
OLD_RULE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class CountingStr(str):
    """A string that counts the characters read from it by iteration."""

    reads = 0

    def __iter__(self) -> Iterator[str]:
        for ch in str.__str__(self):
            CountingStr.reads += 1
            yield ch


def shaped(length: int) -> str:
    return (HOSTILE * (length // len(HOSTILE) + 1))[:length]


def valid_arguments(bank: Bank) -> dict[str, dict[str, Any]]:
    accounts = {a["type"]: a["account_id"] for a in bank.get_balance("alice")["accounts"]}
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    return {
        "get_balance": {"account_type": "checking"},
        "list_transactions": {"account_id": accounts["checking"]},
        "list_loans": {},
        "list_payees": {},
        "make_payment": {
            "from_account_id": accounts["checking"],
            "payee_id": payee,
            "amount": "1.00",
            "idempotency_key": "hostile-1",
            "memo": "rent",
        },
        "transfer_between_accounts": {
            "from_account_id": accounts["savings"],
            "to_account_id": accounts["checking"],
            "amount": "1.00",
            "idempotency_key": "hostile-2",
        },
        "update_notification_settings": {"low_balance_threshold": "50", "channel": "sms"},
    }


def string_caps(schema: dict[str, Any]) -> dict[str, int]:
    """Each string property of an input schema and its maxLength (0 when it has none)."""
    caps: dict[str, int] = {}
    for name, prop in schema["properties"].items():
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") == "string":
                caps[name] = int(branch.get("maxLength", 0))
    return caps


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_regression_hostile_account_type_is_refused_before_any_check_and_blocks_nobody(
    http: httpx2.AsyncClient, mint: Mint, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    attacks = [
        call_raw(http, mint("alice"), "get_balance", {"account_type": hostile}, protocol=protocol)
        for hostile in [HOSTILE, UNDER_BODY_CAP] * 3
    ]
    victim = call_raw(http, mint("bob"), "get_balance", {"account_type": "checking"}, protocol=protocol)
    *refusals, answer = await asyncio.gather(*attacks, victim)
    for too_large, under_cap in zip(refusals[::2], refusals[1::2], strict=True):
        # The 150 KB body is refused unread; the largest body allowed is refused by the input schema.
        assert (too_large.status_code, too_large.json()) == (413, {"error": "invalid_request"})
        assert tool_error(under_cap) == "The account type must be checking, savings or credit."
    accounts = answer.json()["result"]["structuredContent"]["accounts"]
    assert [a["type"] for a in accounts] == ["checking"]
    refused = [line for line in audit_lines(caplog) if line["sub"] == "alice"]
    # Neither reached the token scan (reason token_in_arguments) or the bank.
    assert sorted((str(r["tool"]), r["outcome"], r["reason"]) for r in refused) == sorted(
        [("None", "denied", "body_too_large"), ("get_balance", "refused", "argument_not_allowed")] * 3
    )
    assert HOSTILE[:300] not in caplog.text


async def test_regression_every_string_argument_has_a_cap_enforced_first(
    app: Starlette, http: httpx2.AsyncClient, mint: Mint, bank: Bank, engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    async with mcp_client(app, mint()) as client:
        tools = {t.name: t.input_schema for t in await client.list_tools()}
    base = valid_arguments(bank)
    assert set(base) == set(tools)
    tried = 0
    for tool, schema in tools.items():
        scope = {"make_payment": "transact", "transfer_between_accounts": "transact"}.get(tool, "read")
        scope = "configure" if tool == "update_notification_settings" else scope
        for name, cap in string_caps(schema).items():
            assert 0 < cap <= 140, (tool, name)
            for protocol in PROTOCOLS:
                caplog.clear()
                arguments = base[tool] | {name: shaped(10 * cap)}
                # A transact token names its one movement (issue 15): bound to this very call, so that only
                # the argument is judged; an amount the issuer would never sign is judged against a real one.
                bound = (tool, base[tool] if name == "amount" else arguments) if scope == "transact" else None
                token = mint(scope=scope, bound=bound)
                response = await call_raw(http, token, tool, arguments, protocol=protocol)
                (line,) = audit_lines(caplog)
                if bound is not None and name == "amount":
                    # The auth layer meets a transact amount first (the amount rule, before the jti is spent).
                    assert (response.status_code, response.json()) == DETAILS_REFUSED
                    assert (line["tool"], line["outcome"], line["reason"]) == (
                        tool,
                        "denied",
                        "details_amount_rule",
                    )
                else:
                    assert tool_error(response)
                    assert (line["tool"], line["outcome"]) == (tool, "refused")
                    assert line["reason"] in SCHEMA_REASONS
                tried += 1
    assert tried == 2 * 13  # every string argument of the seven tools, on both paths
    assert movements(engine) == 0


def test_regression_token_scan_reads_each_character_once() -> None:
    for text in (HOSTILE, "eyJ" + "a" * 100_000, "eyJaaa." * 20_000, "." * 100_000):
        CountingStr.reads = 0
        assert looks_like_token(CountingStr(text)) is False
        assert CountingStr.reads == len(text)


def test_regression_token_scan_is_the_same_rule_as_the_regex_it_replaced() -> None:
    rng = random.Random(10)
    pieces = ["eyJ", "eyJhbGci", "a", "Zz9", "-_", ".", ".", " ", "e", "J", "y", "+"]
    positives = 0
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        expected = OLD_RULE.search(text) is not None
        positives += expected
        assert looks_like_token(text) is expected, text
    assert positives > 300  # both answers were exercised


@pytest.mark.parametrize(
    "amount",
    [" 5", "5 ", "5\n", "\n5", "\u00a05", "5\u00a0", "\u0665", "\uff15", "5.\u0665", "+5", "5.", ".5",
     "1" * 10, "1.0\n", "5\x00"],
)  # fmt: skip
async def test_regression_amount_is_ascii_digits_exactly(
    http: httpx2.AsyncClient, mint: Mint, bank: Bank, engine: Engine, amount: str
) -> None:
    arguments = valid_arguments(bank)["make_payment"] | {"amount": amount}
    with pytest.raises(InvalidAmount):
        bank.make_payment("alice", **arguments)
    valid = valid_arguments(bank)
    for protocol in PROTOCOLS:
        # A transact token bound to the payment as the user confirmed it: the amount rule refuses the call in
        # the auth layer, before the token is spent (issue 15).
        token = mint(scope="transact", bound=("make_payment", valid["make_payment"]))
        response = await call_raw(http, token, "make_payment", arguments, protocol=protocol)
        assert (response.status_code, response.json()) == DETAILS_REFUSED
        # The input schema holds the same rule on every amount argument (here, one no token binds).
        threshold = {"low_balance_threshold": amount}
        response = await call_raw(
            http, mint(scope="configure"), "update_notification_settings", threshold, protocol=protocol
        )
        assert tool_error(response) == AMOUNT_SENTENCE
    assert movements(engine) == 0


@pytest.mark.parametrize(
    "memo",
    ["a\x00b", "\x1b[2Jrent", "ren\bt", "\u202erent", "re\u200dnt", "line\nbreak", "a\u2028b", "\ud800",
     "\x7f", "x" * 141],
)  # fmt: skip
def test_regression_memo_refuses_control_and_format_characters(bank: Bank, engine: Engine, memo: str) -> None:
    arguments = valid_arguments(bank)["make_payment"] | {"memo": memo}
    with pytest.raises(InvalidArgument, match="memo"):
        bank.make_payment("alice", **arguments)
    assert movements(engine) == 0


async def test_regression_memo_over_the_cap_is_refused_on_every_path(
    http: httpx2.AsyncClient, mint: Mint, bank: Bank, engine: Engine
) -> None:
    arguments = valid_arguments(bank)["make_payment"]
    for protocol in PROTOCOLS:
        for memo, sentence in (
            ("x" * 141, "The memo must be at most 140 characters."),
            ("\u202erent", "The memo must not contain control or formatting characters."),
        ):
            token = mint(scope="transact", bound=("make_payment", arguments))
            response = await call_raw(
                http, token, "make_payment", arguments | {"memo": memo}, protocol=protocol
            )
            assert tool_error(response) == sentence
    assert movements(engine) == 0


def test_plain_memos_in_any_script_are_kept(bank: Bank) -> None:
    arguments = valid_arguments(bank)["make_payment"]
    for n, memo in enumerate(["Miete für Mai", "家賃 🏠", "x" * 140, "", "O'Brien & co. (50%)"]):
        bank.make_payment("alice", **(arguments | {"memo": memo, "idempotency_key": f"memo-{n}"}))
    history = bank.list_transactions("alice", arguments["from_account_id"], limit=5)["transactions"]
    assert {t["description"] for t in history} >= {"Miete für Mai", "家賃 🏠", "x" * 140}
    assert json.dumps(history)  # all of it serialises
