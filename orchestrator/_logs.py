"""The one log format of every voicebank process: client text escaped, no colours, no query strings.

Every handler of the root logger gets `TextFormatter`; libraries that bring handlers of their own
(fastmcp's rich console, uvicorn's coloured one, livekit-agents') are made to propagate to it instead.
A log line therefore never carries a raw control character from a client (a path like `/%00%1b[2J`,
a tool argument, a header), and an access-log line never carries a query string (a token sent as
`?access_token=...` stays out of the log).

`JsonFormatter` renders the same fields as one JSON object per line (`LOG_FORMAT=json`, the default
when `VOICEBANK_MODE=prod`); `configure_logging(formatter=...)` installs it the same way. A record
written while a trace is current carries its W3C `trace_id` in both formats.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from opentelemetry import trace
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ACCESS_LOGGER",
    "JsonFormatter",
    "LogSettings",
    "StripQueryString",
    "TextFormatter",
    "adopt_library_loggers",
    "configure_logging",
    "escape",
    "logging_configured",
    "open_private_log",
    "private_opener",
]

ACCESS_LOGGER = "uvicorn.access"
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CONTINUATION = "\n  "


def _escape_char(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code > 0xFFFF:  # as a UTF-16 surrogate pair, the form JSON strings use
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with every non-printable character (controls, format characters, lone surrogates,
    separators other than the space) written as a JSON-style escape: one pass, linear in its length.

    The escapes are valid inside a JSON string, so an audit line that is JSON stays JSON.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


class TextFormatter(logging.Formatter):
    """`time level logger message`, the message escaped; a traceback follows on indented lines.

    Only the first line of a record starts at column 0, so no client text can forge a record.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's default `2026-01-31 12:00:00,123`, the part up to the second made once per second."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        if not self.default_msec_format:
            return self._second[1]
        return self.default_msec_format % (self._second[1], record.msecs)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        """The record's fields, unescaped: what a renderer turns into one entry."""
        fields = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exception"] = record.exc_text
            # A record forwarded from another process (livekit-agents' job processes) may carry its
            # traceback in the message too: keep one copy.
            fields["message"] = fields["message"].removesuffix(record.exc_text).rstrip("\n")
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        # Formatting runs in the thread and context that logged (our handlers are synchronous).
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            fields["trace_id"] = format(context.trace_id, "032x")
        return fields

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        head = f"{fields['time']} {fields['level']} {fields['logger']}"
        if "trace_id" in fields:
            head += f" trace_id={fields['trace_id']}"
        line = f"{head} {escape(fields['message'])}"
        for name in ("exception", "stack"):
            if name in fields:
                lines = fields[name].split("\n")
                line += _CONTINUATION + _CONTINUATION.join(escape(part) for part in lines)
        return line


class JsonFormatter(TextFormatter):
    """One JSON object per line: `time, level, logger, message, trace_id` (null outside a trace), and
    `exception` or `stack` when the record has one. Every non-ASCII or control character is a JSON
    escape, so no client text can break a line or forge a record."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, str | None] = {**self.fields(record)}
        fields.setdefault("trace_id", None)
        return json.dumps(fields, ensure_ascii=True, separators=(",", ":"))


class LogSettings(BaseSettings):
    """`LOG_FORMAT=json|text`; unset, JSON when `VOICEBANK_MODE=prod` and text otherwise."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    log_format: Literal["json", "text"] | None = None
    """One JSON object per line, or `time level logger message` text, for every logger of the process;
    unset: JSON when `VOICEBANK_MODE=prod`, text otherwise."""
    voicebank_mode: Literal["dev", "prod"] = "dev"
    """`prod` makes JSON the default log format."""

    def formatter(self) -> TextFormatter:
        """The formatter these settings ask for."""
        chosen = self.log_format or ("json" if self.voicebank_mode == "prod" else "text")
        return JsonFormatter() if chosen == "json" else TextFormatter()


class StripQueryString(logging.Filter):
    """Cuts the query string off the request target of uvicorn's access-log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs (client, method, path?query, http version, status) as arguments; any argument
        # holding a "?" is the request target, and a query string may hold a token.
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.split("?", 1)[0] if isinstance(arg, str) and "?" in arg else arg for arg in record.args
            )
        return True


def private_opener(path: str, flags: int) -> int:
    """An `open(..., opener=)` that creates the file with mode 0600, or tightens it to 0600."""
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_log(path: Path) -> IO[str]:
    """`path` opened for appending at mode 0600: logs name users and clients."""
    return open(path, "a", encoding="utf-8", errors="backslashreplace", opener=private_opener)


class _LogLine:
    """What a formatter reads of a `LogRecord` (no exception, no stack), without the rest a record costs:
    its caller's frame, thread, process and task names."""

    __slots__ = (
        "args",
        "created",
        "exc_info",
        "exc_text",
        "levelname",
        "levelno",
        "msecs",
        "msg",
        "name",
        "stack_info",
    )

    def __init__(self, name: str, levelno: int, message: str, created: float) -> None:
        self.name, self.levelno, self.msg, self.created = name, levelno, message, created
        self.levelname = logging.getLevelName(levelno)
        self.msecs = int((created - int(created)) * 1000) + 0.0  # as LogRecord computes it
        self.args = ()
        self.exc_info = self.exc_text = self.stack_info = None

    def getMessage(self) -> str:
        return self.msg


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our one handler: each line is one `os.write` on the stream's descriptor, so a line is in the kernel
    (and survives a crash of this process) when `emit` returns, as a flushed stream write would be.

    `write_line` (`keys.LineWriter`) writes the line a record would give, formatted by the same formatter,
    without building the record: `keys.log_line` uses it for the audit lines when this handler alone would
    see them.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None  # a stream without a descriptor (a test's capture): written as a stream
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._errors = getattr(stream, "errors", None) or "strict"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_line(self, name: str, levelno: int, message: str) -> None:
        line = _LogLine(name, levelno, message, time.time())
        try:
            self._write(self.format(line))  # type: ignore[arg-type]
        except RecursionError:
            raise
        except Exception:
            self.handleError(line)  # type: ignore[arg-type]

    def _write(self, text: str) -> None:
        line = text + self.terminator
        self.acquire()
        try:
            if self._fd is None:
                self.stream.write(line)
                self.stream.flush()
                return
            self.stream.flush()  # whatever went through the stream object itself comes first
            data = memoryview(line.encode(self._encoding, self._errors))
            while data:
                data = data[os.write(self._fd, data) :]
        finally:
            self.release()


class _LogFileHandler(_LineHandler):
    """A handler on a private log file, which it closes with itself."""

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.flush()
            self.stream.close()
        super().close()


def adopt_library_loggers(handler: logging.Handler) -> None:
    """Make `handler` the only one: every logger that brought its own handlers propagates to root."""
    root = logging.getLogger()
    for other in root.handlers[:]:
        if other is not handler:
            root.removeHandler(other)
            if isinstance(other, _LogFileHandler):
                other.close()
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            for other in logger.handlers[:]:
                logger.removeHandler(other)
            logger.propagate = True
    if handler not in root.handlers:
        root.addHandler(handler)
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, StripQueryString) for f in access.filters):
        access.addFilter(StripQueryString())


def configure_logging(
    level: str | int, *, log_file: Path | None = None, formatter: logging.Formatter | None = None
) -> logging.Handler:
    """One handler on the root logger (stderr, or `log_file` at mode 0600) with our formatter."""
    handler: logging.Handler
    if log_file is not None:
        handler = _LogFileHandler(open_private_log(log_file))
    else:
        handler = _LineHandler(sys.stderr)
    handler.setFormatter(formatter or TextFormatter())
    logging.getLogger().setLevel(level.upper() if isinstance(level, str) else level)
    adopt_library_loggers(handler)
    return handler


@contextlib.contextmanager
def logging_configured(
    level: str | int, *, log_file: Path | None = None, formatter: logging.Formatter | None = None
) -> Iterator[logging.Handler]:
    """`configure_logging` for the length of a block (the demo, tests); the previous set-up comes back."""
    root = logging.getLogger()
    saved_level, saved_root = root.level, root.handlers[:]
    saved = {
        logger: (logger.handlers[:], logger.propagate)
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger) and logger.handlers
    }
    handler = configure_logging(level, log_file=log_file, formatter=formatter)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved_level)
        for other in saved_root:
            root.addHandler(other)
        for logger, (handlers, propagate) in saved.items():
            logger.handlers[:] = handlers
            logger.propagate = propagate
