"""The `/token` form reader: it reads exactly what `urllib.parse.parse_qsl` reads, in one pass."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl

import pytest

from issuer._http._body import parse_form
from issuer._oauth._errors import InvalidRequest

# Shapes that parse_qsl treats in its own way: empty fields, no "=", a second "=", "+", escapes of every kind.
CASES = [
    "",
    "a=1&b=2",
    "a",
    "a=",
    "=b",
    "&&a=1&&",
    "a=1=2",
    "a+b=c+d",
    "a%20b=%41%2B",
    "%3D=%26",
    "x=%C3%A9",
    "x=%zz",
    "x=%",
    "x=%4",
    "x=+%2b+",
    "grant_type=client_credentials&client_assertion=eyJh.eyJi.c2ln-_",
]


def reference(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")


def random_forms(count: int) -> list[str]:
    generator = random.Random(12)  # a fixed seed: the same forms every run
    alphabet = "ab=&+%0123456789ABCDEFz"
    return ["".join(generator.choices(alphabet, k=generator.randint(0, 14))) for _ in range(count)]


def check(text: str) -> None:
    try:
        expected = reference(text)
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            parse_form(text)
        return
    names = [name for name, _ in expected]
    if len(set(names)) != len(names) or any("\x00" in value for _, value in expected):
        with pytest.raises(InvalidRequest):
            parse_form(text)
    else:
        assert list(parse_form(text).items()) == expected, text


@pytest.mark.parametrize("text", CASES)
def test_parse_form_reads_what_parse_qsl_reads(text: str) -> None:
    check(text)


def test_parse_form_reads_what_parse_qsl_reads_on_random_forms() -> None:
    for text in random_forms(3000):
        check(text)


def test_parse_form_refuses_a_repeated_name_even_when_spelled_differently() -> None:
    with pytest.raises(InvalidRequest, match="parameter 'a b' is repeated"):
        parse_form("a+b=1&a%20b=2")


def test_parse_form_refuses_an_escaped_nul() -> None:
    with pytest.raises(InvalidRequest, match="parameter 'x' is malformed"):
        parse_form("x=1%002")


def test_parse_form_refuses_an_escape_that_is_not_utf8_every_time() -> None:
    # Short escaped values are decoded once and remembered; one that does not decode is never remembered.
    for _ in range(2):
        with pytest.raises(UnicodeDecodeError):
            parse_form("scope=%ff%fe")
    assert parse_form("scope=sessions%3Acreate") == parse_form("scope=sessions%3Acreate")
    assert parse_form("a=" + "%41" * 200) == {"a": "A" * 200}  # too long to remember: decoded each time
