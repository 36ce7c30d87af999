"""Free text the bank stores (memos): bounded, one line, nothing a terminal or a reader would act on."""

from __future__ import annotations

import unicodedata

from mcp_server._bank._errors import InvalidArgument

# Control (NUL, ESC, backspace, newline), format (the right-to-left override, zero-width joiners) and
# surrogate code points; line and paragraph separators too, since a stored memo is one line.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_text(value: str, *, what: str, max_length: int) -> str:
    """`value` when it has at most `max_length` characters and none of the refused categories."""
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidArgument(f"The {what} must be at most {max_length} characters.")
    # One pass, a table lookup per character; the length is checked first, so the work is bounded.
    plain = value.isascii() and value.isprintable()
    if not plain and any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in value):
        raise InvalidArgument(f"The {what} must not contain control or formatting characters.")
    return value
