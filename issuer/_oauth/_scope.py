"""Scope strings (RFC 6749 §3.3): parsing, validation and the scopes each audience knows."""

from __future__ import annotations

import re

from issuer._oauth._errors import InvalidScope

RESOURCE_SCOPES = frozenset({"read", "transact", "configure"})
ISSUER_SCOPES = frozenset({"sessions:create", "approvals:decide", "keys:admin", "sessions:revoke"})
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def parse_scope(value: str) -> frozenset[str]:
    """The set of scope tokens in a space-delimited string; malformed tokens are invalid_scope."""
    tokens = value.split(" ")
    if any(_SCOPE_TOKEN.fullmatch(token) is None for token in tokens):
        raise InvalidScope("scope is not a space-delimited list of scope tokens")
    return frozenset(tokens)


def format_scope(scopes: frozenset[str] | set[str]) -> str:
    """A canonical scope string: sorted so equal sets give equal strings."""
    return " ".join(sorted(scopes))
