"""The `htu` of a DPoP proof: the request URI without query and fragment, compared after normalisation.

RFC 9449 §4.3 asks for the syntax- and scheme-based normalisation of RFC 3986 §6.2.2 and §6.2.3: scheme
and host compare case-insensitively, a default port equals no port, an empty path is `/`, percent-encodings
compare in upper case and unreserved characters compare decoded, and dot segments are removed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_HTU = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _without_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path, in one pass over its segments."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def target_uri(uri: str) -> str:
    """`uri` without its query and fragment: what a client puts in a proof's `htu`."""
    return uri.split("#", 1)[0].split("?", 1)[0]


def normalize_htu(uri: str) -> str:
    """The normal form of an absolute http(s) URI without query or fragment; ValueError for anything else."""
    if len(uri) > MAX_HTU or not uri.isascii() or not uri.isprintable() or " " in uri:
        raise ValueError("not a printable ASCII URI of bounded length")
    if "?" in uri or "#" in uri:
        raise ValueError("the URI carries a query or fragment")
    parts = urlsplit(uri)  # ValueError for a malformed authority or port
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        raise ValueError("not an absolute http(s) URI with a host and no user information")
    host = parts.hostname  # lower-cased by urlsplit
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _without_dot_segments(_PERCENT.sub(_percent, parts.path or "/"))
    return f"{scheme}://{authority}{path}"
