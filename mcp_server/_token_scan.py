"""Spots a compact JWS (a bearer token) inside a tool argument, in one pass over the text.

The rule is the regex `eyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*` searched anywhere in the
text: a base64url run that holds `eyJ` (a JSON header) with at least four characters after it, a dot, a
non-empty run, a dot. Searched with a backtracking engine that regex is quadratic (every `eyJ` restarts a
scan to the end of its run), so it is written here as a finite automaton: constant work per character.
"""

from __future__ import annotations

_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_HEADER_START = "eyJ"
_HEADER_MIN_AFTER = 4


def looks_like_token(text: str) -> bool:
    """True when `text` contains something shaped like a compact JWS; reads each character once."""
    seg_len = 0  # length of the current base64url run
    recent = ""  # its last (up to) two characters, to spot "eyJ"
    after_header = -1  # characters of the run after its first "eyJ"; -1 while it has none
    header_then_dot = False  # the previous run qualified as a header and ended with "."
    for ch in text:
        if ch in _B64URL:
            seg_len += 1
            if after_header >= 0:
                after_header += 1
            elif recent + ch == _HEADER_START:
                after_header = 0
            recent = (recent + ch)[-2:]
            continue
        if ch == "." and header_then_dot and seg_len > 0:
            return True  # header "." payload "." : the signature may be empty
        header_then_dot = ch == "." and after_header >= _HEADER_MIN_AFTER
        seg_len, recent, after_header = 0, "", -1
    return False
