"""The route template a request matched (`/admin/keys/{kid}/revoke`): bounded labels and span names."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.routing import BaseRoute, Match


def route_template(routes: list[BaseRoute], scope: MutableMapping[str, Any]) -> str | None:
    """The path template of the first route matching `scope` fully, or None (an unknown path)."""
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            path = getattr(route, "path", None)
            return path if isinstance(path, str) else None
    return None
