"""The PII masking functions, case by case."""

from __future__ import annotations

import pytest

from orchestrator._agent._pii import (
    REDACTED,
    collect_names,
    mask_data,
    mask_names,
    mask_numbers,
    mask_text,
    name_was_said,
    remove_tokens,
    short_name,
    split_speakable,
)

JWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJhbGljZSIsInNjb3BlIjoicmVhZCJ9.MEUCIQDx-abc_123"
REFRESH = "dGhpcyBpcyBhIHJlZnJlc2ggdG9rZW4gb2YgMjU2IGJpdHM"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("4000123412341234", "****1234"),
        ("card 4111 1111 1111 1234 declined", "card ****1234 declined"),
        ("acct 12-3456-7890", "acct ****7890"),
        ("12345678", "****5678"),
        ("1234567", "1234567"),  # seven digits: too short to be an account number
        ("DE89 3704 0044 0532 0130 00", "DE****3000"),
        ("POS4111111111111111GROCERY", "POS****1111GROCERY"),
        ("posted 2026-11-24T10:00:00Z", "posted 2026-11-24T10:00:00Z"),
        ("due 2026-12-01 and 2027-01-01", "due 2026-12-01 and 2027-01-01"),
        ("balance 12345678.90", "balance 12345678.90"),
        ("amount -42.10, fee 1.5", "amount -42.10, fee 1.5"),
        ("two 11112222 and 33334444.", "two ****2222 and ****4444."),
        ("1234  5678", "1234  5678"),  # a double space separates two short numbers
        ("", ""),
    ],
)
def test_long_digit_runs_keep_only_their_last_four(text: str, masked: str) -> None:
    assert mask_numbers(text) == masked


def test_spoken_style_reads_naturally() -> None:
    assert mask_numbers("to 9876543210 now", spoken=True) == "to ending in 3210 now"


@pytest.mark.parametrize(
    "text",
    [
        f"token {JWT} here",
        f"Authorization: Bearer {REFRESH}",
        f"refresh_token={REFRESH}",
        f'{{"access_token": "{JWT}", "refresh_token": "{REFRESH}"}}',
        "bearer abcdefghijklmnop1234",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.",  # unsigned JWT, empty signature
    ],
)
def test_tokens_are_removed_entirely(text: str) -> None:
    cleaned = remove_tokens(text)
    assert REDACTED in cleaned
    assert JWT not in cleaned
    assert REFRESH not in cleaned
    assert "eyJ" not in cleaned
    assert "abcdefghijklmnop1234" not in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "the bearer of this card",
        "Supercalifragilisticexpialidocious",
        "account-1 payee-2 confirm-3",
        "2026-11-24T10:00:00Z",
        "Insufficient funds in account ending 1234.",
    ],
)
def test_ordinary_text_is_not_taken_for_a_token(text: str) -> None:
    assert remove_tokens(text) == text


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("Jane Smith", "Jane S."),
        ("Jane Mary smith", "Jane S."),
        ("  Robert   Brown ", "Robert B."),
        ("Netflix", "Netflix"),
        ("", ""),
    ],
)
def test_short_name(name: str, short: str) -> None:
    assert short_name(name) == short


def test_names_are_shortened_in_free_text_unless_the_user_said_them() -> None:
    text = "Refund to Jane Smith; JANE  SMITH again; Jane Smithson is someone else"
    assert (
        mask_names(text, ["Jane Smith"]) == "Refund to Jane S.; Jane S. again; Jane Smithson is someone else"
    )
    assert mask_names(text, ["Jane Smith"], said="please pay jane smith") == text
    assert name_was_said("Jane Smith", "pay Jane\nSmith")
    assert not name_was_said("Jane Smith", "pay Jane")
    assert not name_was_said("", "anything")


def test_longest_names_are_masked_first() -> None:
    assert mask_names("to Jane Mary Smith", ["Mary Smith", "Jane Mary Smith"]) == "to Jane S."


def test_mask_text_applies_every_mask() -> None:
    text = f"Jane Smith paid 4111 1111 1111 1111 with {JWT}"
    assert mask_text(text, names={"Jane Smith"}) == f"Jane S. paid ****1111 with {REDACTED}"


def test_mask_data_masks_every_string_and_keeps_structure() -> None:
    data = {
        "transactions": [
            {
                "counterparty": "Jane Smith",
                "description": "Transfer to Jane Smith card 4111111111111111",
                "amount": "-42.10",
                "posted_at": "2026-11-24T10:00:00Z",
                "pending": False,
                "count": 12345678,
            }
        ],
        "note": None,
    }
    assert mask_data(data) == {
        "transactions": [
            {
                "counterparty": "Jane S.",
                "description": "Transfer to Jane S. card ****1111",
                "amount": "-42.10",
                "posted_at": "2026-11-24T10:00:00Z",
                "pending": False,
                "count": 12345678,  # numbers are not strings: the bank's ids and numbers come as strings
            }
        ],
        "note": None,
    }
    assert collect_names(data) == {"Jane Smith"}
    assert mask_data(data, said="jane smith")["transactions"][0]["counterparty"] == "Jane Smith"


def test_names_from_an_earlier_result_are_masked_in_a_later_one() -> None:
    assert mask_data({"text": "sent to Robert Brown"}, names={"Robert Brown"}) == {
        "text": "sent to Robert B."
    }


def test_masking_is_idempotent() -> None:
    text = f"Jane Smith 4111 1111 1111 1111 {JWT}"
    once = mask_text(text, names={"Jane Smith"}, spoken=True)
    assert mask_text(once, names={"Jane Smith"}, spoken=True) == once


@pytest.mark.parametrize(
    ("buffer", "ready", "rest"),
    [
        ("Your card 4111 1111", "", "Your card 4111 1111"),
        ("Done. Your card 4111", "Done. ", "Your card 4111"),
        ("One. Two! Three", "One. Two! ", "Three"),
        ("Line\nnext", "Line\n", "next"),
        ("12.50 is the amount", "", "12.50 is the amount"),
    ],
)
def test_split_speakable_holds_back_the_unfinished_sentence(buffer: str, ready: str, rest: str) -> None:
    assert split_speakable(buffer) == (ready, rest)
