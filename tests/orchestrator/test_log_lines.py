"""Audit lines written straight to our one handler (`keys.log_line`) are the lines logging would write."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from freezegun import freeze_time
from opentelemetry.sdk.trace import TracerProvider

from issuer._audit import Decision, IssuerAudit
from keys import log_line
from mcp_server._audit import AuditLog
from orchestrator._logs import JsonFormatter, TextFormatter, logging_configured

HOSTILE = 'Zoë "\x00\x1b[2J\u202e\ud800 tail'


@contextmanager
def counted_records() -> Iterator[list[logging.LogRecord]]:
    """Every LogRecord made while the block runs (logging's public record factory hook)."""
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: object, **kwargs: object) -> logging.LogRecord:
        made.append(factory(*args, **kwargs))
        return made[-1]

    logging.setLogRecordFactory(counting)
    try:
        yield made
    finally:
        logging.setLogRecordFactory(factory)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("formatter", [TextFormatter, JsonFormatter])
@pytest.mark.parametrize("in_trace", [False, True])
@pytest.mark.parametrize("message", ['{"outcome":"ok","sub":"alice"}', HOSTILE])
def test_a_line_written_directly_is_byte_for_byte_the_line_logging_writes(
    formatter: Callable[[], logging.Formatter], in_trace: bool, message: str, tmp_path: Path
) -> None:
    log = tmp_path / "voicebank.log"
    logger = logging.getLogger("voicebank.audit")
    span = TracerProvider().get_tracer("test").start_as_current_span("request") if in_trace else nullcontext()
    with logging_configured("info", log_file=log, formatter=formatter()), counted_records() as made:
        with freeze_time("2026-03-01 09:00:00.123456"), span:
            logger.info(message)  # the logging path: one record
            assert len(made) == 1
            log_line(logger, logging.INFO, message)  # the direct path: no record
            assert len(made) == 1
        with freeze_time("2026-03-01 09:00:00.999"):
            logger.warning(message)
            log_line(logger, logging.WARNING, message)
    first, second, third, fourth = lines(log)
    assert first == second
    assert third == fourth
    assert first != third  # a later time and another level: the time cache and the level are per line
    assert ("trace_id=" in first or '"trace_id":"' in first) is in_trace


def test_another_handler_or_a_filter_gets_every_line_through_logging(tmp_path: Path) -> None:
    log = tmp_path / "voicebank.log"
    logger = logging.getLogger("voicebank.audit")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    with logging_configured("info", log_file=log) as handler, counted_records() as made:
        other = Keep()
        logging.getLogger().addHandler(other)
        try:
            log_line(logger, logging.INFO, "second handler")
        finally:
            logging.getLogger().removeHandler(other)
        handler.addFilter(lambda record: "drop" not in record.getMessage())
        try:
            log_line(logger, logging.INFO, "filtered: drop")
            log_line(logger, logging.INFO, "filtered: keep")
        finally:
            handler.filters.clear()
        logger.setLevel(logging.WARNING)
        try:
            log_line(logger, logging.INFO, "below the level")
        finally:
            logger.setLevel(logging.NOTSET)
    assert seen == ["second handler"]
    assert [r.getMessage() for r in made] == ["second handler", "filtered: drop", "filtered: keep"]
    written = lines(log)
    assert len(written) == 2
    assert written[0].endswith(" second handler")
    assert written[1].endswith(" filtered: keep")


def test_both_services_audit_lines_reach_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "voicebank.log"
    with logging_configured("info", log_file=log, formatter=JsonFormatter()), counted_records() as made:
        IssuerAudit(clock=lambda: 1_700_000_000).decided(Decision("token.client_credentials", sub="alice"))
        AuditLog(clock=lambda: 1_700_000_000).record(
            principal=None, tool="get_balance", outcome="refused", reason="no_token", latency_ms=0.5
        )
    assert made == []
    issuer, mcp = (json.loads(json.loads(line)["message"]) for line in lines(log))
    assert (issuer["service"], issuer["event"], issuer["sub"], issuer["time"]) == (
        "issuer",
        "token.client_credentials",
        "alice",
        "2023-11-14T22:13:20+00:00",
    )
    assert (mcp["service"], mcp["tool"], mcp["reason"], mcp["latency_ms"]) == (
        "mcp",
        "get_balance",
        "no_token",
        0.5,
    )
