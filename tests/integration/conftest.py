"""Fixtures of the integration tests: the whole stack in-process, started fresh for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.stack import Stack, running_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The real issuer and MCP server with file keys and no Redis."""
    async with running_stack(tmp_path) as running:
        yield running
