"""RFC 9396 authorization details on the refresh grant: one strictly checked payment or transfer per token."""

from __future__ import annotations

import json
from typing import Any

import pytest

from issuer._oauth._authorization_details import AuthorizationDetail, parse_authorization_details
from issuer._oauth._errors import InvalidAuthorizationDetails
from keys import StaticKeys, Verifier, VerifyPolicy
from tests.support.issuer import ISSUER, RESOURCE, Harness, payment, transfer


async def _claims(h: Harness, token: str) -> dict[str, Any]:
    jwks = (await h.http.get("/.well-known/jwks.json")).json()
    policy = VerifyPolicy(issuer=ISSUER, audience=RESOURCE, typ="at+jwt")
    return Verifier(StaticKeys(jwks), policy, clock=h.clock).verify(token)


async def _refused(h: Harness, details: str) -> str:
    """Asks for a transact token with `details`; the error code, after checking the token survived."""
    first = await h.login()
    response = await h.transact(first["refresh_token"], details)
    assert response.status_code == 400, response.text
    # Refused before the refresh token was spent: the client keeps it.
    assert (await h.refresh(first["refresh_token"], scope="read")).status_code == 200
    error: str = response.json()["error"]
    return error


async def test_a_payment_token_carries_exactly_the_details_with_a_canonical_amount(issuer: Harness) -> None:
    first = await issuer.login()
    response = await issuer.transact(first["refresh_token"], payment(amount="25"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["scope"], body["expires_in"]) == ("transact", 60)
    assert body["refresh_token"] != first["refresh_token"]
    claims = await _claims(issuer, body["access_token"])
    assert claims["scope"] == "transact"
    assert claims["authorization_details"] == [
        {
            "type": "payment",
            "from_account_id": "acc_checking",
            "payee_id": "pay_jane",
            "amount": "25.00",
            "currency": "USD",
            "idempotency_key": "key-1",
        }
    ]


async def test_a_transfer_token_carries_its_details(issuer: Harness) -> None:
    first = await issuer.login()
    response = await issuer.transact(first["refresh_token"], transfer(amount="0.5"))
    assert response.status_code == 200, response.text
    claims = await _claims(issuer, response.json()["access_token"])
    assert claims["authorization_details"][0]["to_account_id"] == "acc_savings"
    assert claims["authorization_details"][0]["amount"] == "0.50"


async def test_read_tokens_carry_no_authorization_details(issuer: Harness) -> None:
    body = await issuer.login()
    assert "authorization_details" not in await _claims(issuer, body["access_token"])


async def test_transact_without_authorization_details_is_invalid_request(issuer: Harness) -> None:
    first = await issuer.login()
    response = await issuer.refresh(first["refresh_token"], scope="transact")
    assert response.json()["error"] == "invalid_request"
    assert (await issuer.refresh(first["refresh_token"], scope="read")).status_code == 200


async def test_authorization_details_without_transact_is_invalid_request(issuer: Harness) -> None:
    first = await issuer.login()
    response = await issuer.refresh(first["refresh_token"], scope="read", authorization_details=payment())
    assert response.json()["error"] == "invalid_request"


async def test_transact_with_another_scope_is_invalid_request(issuer: Harness) -> None:
    first = await issuer.login()
    response = await issuer.refresh(
        first["refresh_token"], scope="read transact", authorization_details=payment()
    )
    assert response.json()["error"] == "invalid_request"


async def test_token_exchange_never_issues_a_transact_token(issuer: Harness) -> None:
    session = await issuer.session()
    response = await issuer.exchange(session["session_grant"], scope="transact")
    assert response.json()["error"] == "invalid_request"


async def test_a_refresh_without_scope_leaves_transact_out(issuer: Harness) -> None:
    first = await issuer.login()
    assert (await issuer.refresh(first["refresh_token"])).json()["scope"] == "configure read"


# -- every validation rule, each its own test ------------------------------------------------------


async def test_rule_parameter_longer_than_2048_characters(issuer: Harness) -> None:
    assert (
        await _refused(issuer, payment(idempotency_key="k") + " " * 2048) == "invalid_authorization_details"
    )


async def test_rule_not_json(issuer: Harness) -> None:
    assert await _refused(issuer, "[{type: payment}]") == "invalid_authorization_details"


async def test_rule_nan_and_infinity_are_not_json(issuer: Harness) -> None:
    assert await _refused(issuer, "[NaN]") == "invalid_authorization_details"


async def test_rule_not_an_array(issuer: Harness) -> None:
    details = json.dumps(json.loads(payment())[0])
    assert await _refused(issuer, details) == "invalid_authorization_details"


async def test_rule_empty_array(issuer: Harness) -> None:
    assert await _refused(issuer, "[]") == "invalid_authorization_details"


async def test_rule_two_entries(issuer: Harness) -> None:
    one = json.loads(payment())[0]
    two = json.dumps([one, {**one, "idempotency_key": "key-2"}])
    assert await _refused(issuer, two) == "invalid_authorization_details"


async def test_rule_entry_not_an_object(issuer: Harness) -> None:
    assert await _refused(issuer, '["payment"]') == "invalid_authorization_details"


async def test_rule_unknown_type(issuer: Harness) -> None:
    assert await _refused(issuer, payment(type="payment_initiation")) == "invalid_authorization_details"


async def test_rule_missing_type(issuer: Harness) -> None:
    entry = json.loads(payment())[0]
    del entry["type"]
    assert await _refused(issuer, json.dumps([entry])) == "invalid_authorization_details"


@pytest.mark.parametrize("member", ["from_account_id", "payee_id", "amount", "currency", "idempotency_key"])
async def test_rule_missing_member(issuer: Harness, member: str) -> None:
    details = payment(**{member: None})
    assert await _refused(issuer, details) == "invalid_authorization_details"


async def test_rule_unknown_member(issuer: Harness) -> None:
    # RFC 9396's common members (locations, actions...) are refused too: nothing but the movement.
    for extra in ({"memo": "x"}, {"locations": [RESOURCE]}, {"to_account_id": "acc_savings"}):
        entry = {**json.loads(payment())[0], **extra}
        assert await _refused(issuer, json.dumps([entry])) == "invalid_authorization_details"


async def test_rule_payee_in_a_transfer(issuer: Harness) -> None:
    entry = {**json.loads(transfer())[0], "payee_id": "pay_jane"}
    assert await _refused(issuer, json.dumps([entry])) == "invalid_authorization_details"


async def test_rule_duplicate_member(issuer: Harness) -> None:
    # Two parsers could read two different amounts out of this text; it is refused outright.
    text = payment().replace('"amount": "25.00"', '"amount": "1.00", "amount": "2500.00"')
    assert await _refused(issuer, text) == "invalid_authorization_details"


async def test_rule_members_are_strings(issuer: Harness) -> None:
    for member, value in (("amount", 25), ("amount", 25.0), ("payee_id", ["pay_jane"]), ("currency", None)):
        entry = {**json.loads(payment())[0], member: value}
        assert await _refused(issuer, json.dumps([entry])) == "invalid_authorization_details"


@pytest.mark.parametrize(
    "amount",
    ["", "25.001", " 25", "25 ", "25\n", "+25", "-25", "2.5e1", "1,000", "1234567890", "٢٥", ".5", "5."],
)
async def test_rule_amount_pattern(issuer: Harness, amount: str) -> None:
    assert await _refused(issuer, payment(amount=amount)) == "invalid_authorization_details"


@pytest.mark.parametrize("amount", ["0", "0.0", "0.00", "000"])
async def test_rule_amount_positive(issuer: Harness, amount: str) -> None:
    assert await _refused(issuer, payment(amount=amount)) == "invalid_authorization_details"


@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "", "U$D"])
async def test_rule_currency_code(issuer: Harness, currency: str) -> None:
    assert await _refused(issuer, payment(currency=currency)) == "invalid_authorization_details"


@pytest.mark.parametrize("account", ["", "a" * 65, "acc checking", "acc\x00", "accé"])
async def test_rule_ids_at_most_64_safe_characters(issuer: Harness, account: str) -> None:
    assert await _refused(issuer, payment(from_account_id=account)) == "invalid_authorization_details"
    assert await _refused(issuer, payment(payee_id=account)) == "invalid_authorization_details"
    assert await _refused(issuer, transfer(to_account_id=account)) == "invalid_authorization_details"


@pytest.mark.parametrize("key", ["", "k" * 129, "with space", "tab\t", "ключ"])
async def test_rule_idempotency_key_at_most_128_printable_ascii(issuer: Harness, key: str) -> None:
    assert await _refused(issuer, payment(idempotency_key=key)) == "invalid_authorization_details"


async def test_rule_limits_are_inclusive(issuer: Harness) -> None:
    first = await issuer.login()
    details = payment(from_account_id="a" * 64, payee_id="p" * 64, idempotency_key="k" * 128, amount="499.99")
    assert (await issuer.transact(first["refresh_token"], details)).status_code == 200


async def test_rule_transfer_to_the_same_account(issuer: Harness) -> None:
    details = transfer(to_account_id="acc_checking")
    assert await _refused(issuer, details) == "invalid_authorization_details"


def test_rule_deep_nesting_is_refused_without_a_traceback() -> None:
    with pytest.raises(InvalidAuthorizationDetails):
        parse_authorization_details("[" * 1000 + "]" * 1000)


def test_a_stored_claim_reads_back_as_the_same_detail() -> None:
    detail = parse_authorization_details(payment(amount="7.5"))
    assert AuthorizationDetail.from_claim(detail.claim()) == detail
    assert detail.cents == 750


async def test_metadata_names_the_types_and_the_ciba_endpoint(issuer: Harness) -> None:
    meta = (await issuer.http.get("/.well-known/oauth-authorization-server")).json()
    assert meta["authorization_details_types_supported"] == ["payment", "transfer"]
    assert meta["backchannel_authentication_endpoint"] == ISSUER + "/bc-authorize"
    assert meta["backchannel_token_delivery_modes_supported"] == ["poll"]
    assert "urn:openid:params:grant-type:ciba" in meta["grant_types_supported"]
    assert "approvals:decide" in meta["scopes_supported"]


async def test_a_refresh_without_scope_of_a_transact_only_family_is_refused_before_spending(
    issuer: Harness,
) -> None:
    # No exchange makes such a family (the exchange never issues transact); a store can still hold one.
    state = issuer.app.state.issuer
    token = await state.refresh.create(
        client_id="orchestrator", sub="alice", sid="vb-only-transact", scope="transact", now=issuer.clock()
    )
    assert (await issuer.refresh(token)).json()["error"] == "invalid_request"
    assert (await issuer.transact(token, payment())).status_code == 200  # the token was not spent
