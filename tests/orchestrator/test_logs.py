"""The one log format: client text escaped, tracebacks that cannot forge a record, query strings cut."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from orchestrator._call._settings import AgentSettings
from orchestrator._call._voice_call import AgentWiring
from orchestrator._call._worker import build_server, use_our_logging
from orchestrator._commands._cli import main
from orchestrator._logs import (
    ACCESS_LOGGER,
    JsonFormatter,
    LogSettings,
    StripQueryString,
    TextFormatter,
    escape,
    logging_configured,
    open_private_log,
)

HOSTILE = "\x00\x1b[2J\x08\x7f\x85\u200b\u202e\u2028\ud800\U000e0001 tail"


def record(message: str, *args: object, name: str = "issuer.errors", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, message, args or None, None)
    made.__dict__.update(extra)
    return made


def test_printable_text_is_left_alone() -> None:
    for text in ("", "GET /token refused", "Zoë pays 12,50 € — 你好 🙂", '{"a":"b\\"c"}'):
        assert escape(text) == text


def test_every_control_and_format_character_is_escaped() -> None:
    escaped = escape(HOSTILE)
    assert escaped.isprintable()
    assert escaped == (
        "\\u0000\\u001b[2J\\u0008\\u007f\\u0085\\u200b\\u202e\\u2028\\ud800\\udb40\\udc01 tail"
    )
    assert escape("a\nb\rc\td") == "a\\nb\\rc\\td"


def test_escapes_are_valid_inside_a_json_string() -> None:
    # An audit line is JSON; escaping the characters JSON encoders leave raw keeps it JSON.
    text = "".join(ch for ch in HOSTILE if ch != "\ud800")  # a lone surrogate has no JSON value
    assert json.loads('"' + escape(text) + '"') == text


def test_a_message_cannot_forge_a_second_record() -> None:
    line = TextFormatter().format(record("refused %s", "/x\n2030-01-01 00:00:00,000 INFO issuer forged"))
    assert "\n" not in line
    assert line.endswith("INFO issuer.errors refused /x\\n2030-01-01 00:00:00,000 INFO issuer forged")


def test_a_traceback_keeps_its_lines_indented_and_escaped() -> None:
    try:
        raise ValueError("bad input\n2030-01-01 INFO forged \x1b[2J")
    except ValueError:
        made = record("tool failed", exc_info=sys.exc_info())
    lines = TextFormatter().format(made).split("\n")
    assert lines[0].endswith("INFO issuer.errors tool failed")
    assert lines[1] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in lines[1:])
    assert lines[-2:] == ["  ValueError: bad input", "  2030-01-01 INFO forged \\u001b[2J"]


def test_a_record_forwarded_with_its_traceback_in_the_message_shows_it_once() -> None:
    # livekit-agents' job processes send records whose message already ends with the traceback.
    trace = "Traceback (most recent call last):\nValueError: x"
    lines = TextFormatter().format(record(f"job failed\n{trace}", exc_text=trace)).split("\n")
    assert lines[0].endswith(" job failed")
    assert lines[1:] == ["  Traceback (most recent call last):", "  ValueError: x"]


def test_the_access_log_filter_cuts_every_query_string() -> None:
    # The arguments uvicorn's access logger passes: client, method, target, HTTP version, status.
    made = record(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000", "POST", "/mcp?access_token=abc", "1.1", 401,
        name=ACCESS_LOGGER,
    )  # fmt: skip
    assert StripQueryString().filter(made)
    assert made.getMessage() == '127.0.0.1:5000 - "POST /mcp HTTP/1.1" 401'
    plain = record("no arguments")
    assert StripQueryString().filter(plain)
    assert plain.getMessage() == "no arguments"


def test_log_files_are_private_even_when_they_existed(tmp_path: Path) -> None:
    fresh, old = tmp_path / "fresh.log", tmp_path / "old.log"
    old.write_text("before\n")
    old.chmod(0o644)
    for path in (fresh, old):
        with open_private_log(path) as stream:
            stream.write("line\n")
        assert path.stat().st_mode & 0o777 == 0o600
    assert old.read_text() == "before\nline\n"


def test_library_loggers_use_our_handler_and_come_back_after(tmp_path: Path) -> None:
    import fastmcp  # noqa: F401 - importing it installs fastmcp's own console handlers

    fastmcp_logger = logging.getLogger("fastmcp")
    before = fastmcp_logger.handlers[:]
    assert before
    assert not fastmcp_logger.propagate
    log = tmp_path / "all.log"
    with logging_configured("INFO", log_file=log) as handler:
        assert logging.getLogger().handlers == [handler]
        assert fastmcp_logger.handlers == []
        assert fastmcp_logger.propagate
        assert any(isinstance(f, StripQueryString) for f in logging.getLogger(ACCESS_LOGGER).filters)
        fastmcp_logger.warning("tool said %s", HOSTILE)
    assert fastmcp_logger.handlers == before
    assert not fastmcp_logger.propagate
    text = log.read_text()
    assert text.endswith(f"WARNING fastmcp tool said {escape(HOSTILE)}\n")
    assert log.stat().st_mode & 0o777 == 0o600


def test_the_worker_leaves_our_handler_the_only_one_once_it_runs(tmp_path: Path) -> None:
    settings = AgentSettings(
        livekit_url="ws://127.0.0.1:9",
        livekit_api_key="key",
        livekit_api_secret=SecretStr("secret"),
        stt="deepgram/nova-3",
        llm="openai/gpt-4.1-mini",
        tts="cartesia/sonic-2",
    )
    server = build_server(settings, AgentWiring(bank_factory=print))
    with logging_configured("INFO", log_file=tmp_path / "worker.log") as ours:
        livekit = logging.StreamHandler(sys.stdout)  # what livekit-agents adds before it starts
        logging.getLogger().addHandler(livekit)
        use_our_logging(server, ours)
        server.emit("worker_started")
        assert logging.getLogger().handlers == [ours]


@pytest.mark.parametrize("level", ["debug", "INFO", logging.WARNING])
def test_levels_by_name_or_number(level: str | int, tmp_path: Path) -> None:
    with logging_configured(level, log_file=tmp_path / "x.log"):
        expected = level if isinstance(level, int) else logging.getLevelName(level.upper())
        assert logging.getLogger().level == expected


def test_every_uvicorn_server_we_build_leaves_logging_to_us() -> None:
    # uvicorn's own log config installs coloured handlers that print the query string; every server of
    # ours passes log_config=None, so `configure_logging` decides (found by reading the source).
    import ast

    root = Path(__file__).resolve().parents[2]
    calls = []
    for package in ("keys", "issuer", "mcp_server", "orchestrator"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and ast.unparse(node.func) in ("uvicorn.Config", "uvicorn.run"):
                    given = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    calls.append((path.relative_to(root).as_posix(), given.get("log_config")))
    assert calls
    assert all(log_config == "None" for _, log_config in calls), calls


def _record(message: str, *, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("bad input\n2030-01-01 INFO forged")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("issuer.errors", logging.WARNING, __file__, 1, message, None, info)


def test_json_lines_escape_everything_and_carry_null_trace_ids_outside_a_trace() -> None:
    line = JsonFormatter().format(_record(HOSTILE, exc=True))
    assert "\n" not in line
    assert line.isascii()
    assert line.isprintable()
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == ("WARNING", "issuer.errors", HOSTILE)
    assert parsed["trace_id"] is None
    assert parsed["exception"].endswith("ValueError: bad input\n2030-01-01 INFO forged")


def test_both_formats_name_the_trace_a_record_was_written_in() -> None:
    with TracerProvider().get_tracer("test").start_as_current_span("request") as span:
        text = TextFormatter().format(_record("inside"))
        structured = json.loads(JsonFormatter().format(_record("inside")))
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert text.endswith(f"WARNING issuer.errors trace_id={trace_id} inside")
    assert structured["trace_id"] == trace_id


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, TextFormatter),
        ({"VOICEBANK_MODE": "prod"}, JsonFormatter),
        ({"LOG_FORMAT": "json"}, JsonFormatter),
        ({"VOICEBANK_MODE": "prod", "LOG_FORMAT": "text"}, TextFormatter),
    ],
)
def test_log_format_follows_the_setting_and_the_mode(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: type[logging.Formatter]
) -> None:
    for name in ("LOG_FORMAT", "VOICEBANK_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert type(LogSettings().formatter()) is expected


def test_an_unknown_log_format_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    assert main(["up", "--only", "issuer"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("voicebank: invalid setting LOG_FORMAT")
    assert err.count("\n") == 1
