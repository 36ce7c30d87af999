"""PII masking for everything that reaches the LLM or the TTS: pure functions over text and JSON data."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "NAME_FIELDS",
    "REDACTED",
    "collect_names",
    "mask_data",
    "mask_names",
    "mask_numbers",
    "mask_text",
    "name_was_said",
    "remove_tokens",
    "short_name",
    "split_speakable",
]

REDACTED = "[redacted]"
"""What a removed token becomes: the LLM learns that something was there, never what."""

NAME_FIELDS = frozenset({"counterparty", "name"})
"""Fields of tool results that hold a counterparty's full name."""

# An ISO date (2026-11-24) has eight digits joined by dashes; it is matched first so it is never taken
# for an account number. A decimal amount (12345678.90) is left alone for the same reason.
_NUMBER = re.compile(
    r"(?P<date>(?<!\d)\d{4}-\d{2}-\d{2}(?!\d))"
    r"|(?P<amount>(?<![\d.])\d+\.\d{1,2}(?![\d.]))"
    r"|(?P<run>(?<!\d)\d(?:[ \-]?\d){7,}(?!\d))"
)
# Compact JWS/JWE (a JWT's header always starts with base64url "{", which is "eyJ").
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){2,4}")
# Only a credential-shaped word after "bearer", so "the bearer of this card" stays readable.
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9_\-.~+/]{16,}=*")
# Opaque secrets such as refresh tokens: long runs of the base64/base64url alphabet.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_\-+/])[A-Za-z0-9_\-+/]{20,}={0,2}(?![A-Za-z0-9_\-+/=])")
_SPACES = re.compile(r"\s+")


def _last_four(run: str) -> str:
    digits = re.sub(r"\D", "", run)
    return digits[-4:]


def mask_numbers(text: str, *, spoken: bool = False) -> str:
    """Reduce every run of 8 or more digits (spaces or dashes allowed between them) to its last four."""

    def replace(match: re.Match[str]) -> str:
        if match.group("run") is None:
            return match.group(0)
        last = _last_four(match.group("run"))
        return f"ending in {last}" if spoken else f"****{last}"

    return _NUMBER.sub(replace, text)


def _looks_opaque(candidate: str) -> bool:
    # Random secrets mix letters and digits; long plain words and pure digit runs (handled by
    # mask_numbers, which keeps the last four) do not.
    letters = sum(c.isalpha() for c in candidate)
    digits = sum(c.isdigit() for c in candidate)
    upper = sum(c.isupper() for c in candidate)
    mixed_case = upper >= 3 and letters - upper >= 3
    return letters >= 3 and (digits >= 1 or (mixed_case and len(candidate) >= 32))


def remove_tokens(text: str) -> str:
    """Remove anything that looks like a JWT, a bearer credential or an opaque refresh token."""
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(REDACTED, text)
    return _OPAQUE.sub(lambda m: REDACTED if _looks_opaque(m.group(0)) else m.group(0), text)


def short_name(name: str) -> str:
    """ "Jane Smith" -> "Jane S.": the first word and the last word's initial."""
    words = name.split()
    if len(words) < 2:
        return name.strip()
    return f"{words[0]} {words[-1][0].upper()}."


def _name_pattern(name: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in name.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def name_was_said(name: str, said: str) -> bool:
    """Whether the user's own words contain this full name (case and spacing ignored)."""
    return bool(name.split()) and _name_pattern(name).search(said) is not None


def mask_names(text: str, names: Iterable[str], *, said: str = "") -> str:
    """Shorten every full name from `names` found in `text`, except those the user said."""
    # Longest first, so "Jane Mary Smith" is not half-masked by a shorter "Mary Smith".
    for name in sorted({_SPACES.sub(" ", n.strip()) for n in names}, key=len, reverse=True):
        if len(name.split()) < 2 or name_was_said(name, said):
            continue
        text = _name_pattern(name).sub(short_name(name), text)
    return text


# A cut is safe after a sentence end followed by whitespace: no number, name or token spans one.
_SAFE_CUT = re.compile(r"[.!?;:]\s+|\n")


def split_speakable(buffer: str) -> tuple[str, str]:
    """Split streamed text into a prefix that can be masked and spoken now, and the rest to hold back."""
    cut = 0
    for match in _SAFE_CUT.finditer(buffer):
        cut = match.end()
    return buffer[:cut], buffer[cut:]


def mask_text(text: str, *, names: Iterable[str] = (), said: str = "", spoken: bool = False) -> str:
    """Apply every mask to free text: tokens removed, known full names shortened, long numbers cut."""
    return mask_numbers(mask_names(remove_tokens(text), names, said=said), spoken=spoken)


def collect_names(data: Any) -> set[str]:
    """Every counterparty or payee name held in the name fields of a JSON value."""
    found: set[str] = set()
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key in NAME_FIELDS and isinstance(value, str):
                found.add(_SPACES.sub(" ", value.strip()))
            else:
                found |= collect_names(value)
    elif isinstance(data, list | tuple):
        for item in data:
            found |= collect_names(item)
    return found


def mask_data(data: Any, *, names: Iterable[str] = (), said: str = "") -> Any:
    """A masked copy of a JSON value: every string goes through `mask_text`, keys are kept."""
    known = collect_names(data) | set(names)
    return _mask_value(data, known, said)


def _mask_value(value: Any, names: set[str], said: str) -> Any:
    if isinstance(value, str):
        return mask_text(value, names=names, said=said)
    if isinstance(value, Mapping):
        return {key: _mask_value(item, names, said) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(item, names, said) for item in value]
    return value
