"""The route template a request matched (`/admin/keys/{kid}/revoke`): bounded labels and span names."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.routing import BaseRoute, Match

# Where a request's template is kept once found: its span and its latency metric both ask for it.
_KEPT = "voicebank.route_template"


def route_template(routes: list[BaseRoute], scope: MutableMapping[str, Any]) -> str | None:
    """The path template of the first route matching `scope` fully, or None (an unknown path)."""
    if _KEPT in scope:
        kept: str | None = scope[_KEPT]
        return kept
    template = None
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            path = getattr(route, "path", None)
            template = path if isinstance(path, str) else None
            break
    scope[_KEPT] = template
    return template
