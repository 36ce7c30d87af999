"""A log line sent straight to the process's one handler when nothing else could see the record: audit lines.

Both services write an audit line per request, synchronously, before the answer. Through `logging` a line
costs a `LogRecord`, a walk up the caller's frames and the handler chain: about half the line's cost. When
the record would reach exactly one handler, and that handler can write a line itself (`LineWriter`: the
handler `orchestrator._logs.configure_logging` installs), `log_line` hands it the line instead: the same
formatter, the same bytes, written before `log_line` returns. Any other set-up (a test's capture handler, a
filter, a second handler, a disabled logger) takes the ordinary `logging` path.
"""

from __future__ import annotations

import logging
from typing import Protocol, cast


class LineWriter(Protocol):
    """A handler that writes the line it would write for the record `logger.log(levelno, message)` makes."""

    def write_line(self, name: str, levelno: int, message: str) -> None: ...


def log_line(logger: logging.Logger, level: int, message: str) -> None:
    """`logger.log(level, message)`, without building a record when one handler alone would write it."""
    writer = _sole_writer(logger, level)
    if writer is None:
        logger.log(level, message)
    else:
        writer.write_line(logger.name, level, message)


def _sole_writer(logger: logging.Logger, level: int) -> LineWriter | None:
    """The handler `logging` would hand this record to, and only to, if it is a `LineWriter`; else None."""
    if logger.disabled or logger.filters or not logger.isEnabledFor(level):
        return None
    node = logger
    # As Logger.callHandlers walks: up through loggers without handlers while they propagate.
    while not node.handlers:
        if not node.propagate or node.parent is None:
            return None  # no handler at all: logging's last resort decides
        node = node.parent
    if len(node.handlers) != 1 or (node.propagate and node.parent is not None):
        return None  # a second handler, here or further up, would see the record too
    (handler,) = node.handlers
    if handler.filters or level < handler.level or not callable(getattr(handler, "write_line", None)):
        return None
    return cast(LineWriter, handler)
