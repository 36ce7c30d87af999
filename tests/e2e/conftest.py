"""Fixtures of the end-to-end tests: one running system for the whole e2e session, healed before each test."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.support.e2e import Stack, log_sections, start_stack


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, two issuer replicas and two MCP replicas as real processes (started once: ~10 s of imports)."""
    stack = start_stack(tmp_path_factory.mktemp("e2e"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stack(e2e_stack: Stack) -> Stack:
    """The running system, with anything a previous test killed started again."""
    e2e_stack.heal()
    return e2e_stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    report = yield
    assert isinstance(report, pytest.TestReport)
    running = getattr(item, "funcargs", {}).get("e2e_stack")
    if report.failed and isinstance(running, Stack):
        # The children's own words: why a process refused, crashed or never became ready.
        for title, text in log_sections(running):
            report.sections.append((title, text))
    return report
