"""Shared by the benchmarks: arguments, percentiles, checks against targets, JSON results, servers."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
ROOT = BENCH_DIR.parent

# Wide enough for the tables when output goes to a file or a pipe.
console = Console(highlight=False, width=max(140, Console().width))


@dataclass(frozen=True)
class Args:
    """What every benchmark takes: `--quick` (a smoke run of a few seconds), `--seconds`, `--results`."""

    quick: bool
    seconds: float
    results: Path


def parse_args(
    doc: str | None, *, seconds: float, quick_seconds: float, argv: Sequence[str] | None = None
) -> Args:
    """Parse the common command line; `--seconds` defaults to `seconds`, or `quick_seconds` with `--quick`."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    parser.add_argument("--seconds", type=float, default=None, help=f"measuring time (default {seconds:g})")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for <name>.json")
    ns = parser.parse_args(argv)
    chosen = ns.seconds if ns.seconds is not None else (quick_seconds if ns.quick else seconds)
    return Args(quick=ns.quick, seconds=float(chosen), results=ns.results)


def quiet_logs() -> None:
    """For a bench run from the command line: warnings expected under load are counted, not printed."""
    logging.basicConfig(level=logging.ERROR)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(samples: Sequence[float]) -> dict[str, float]:
    """Median, p99 and count of latencies given in seconds, in milliseconds."""
    return {
        "n": len(samples),
        "median_ms": round(percentile(samples, 50) * 1000, 3),
        "p99_ms": round(percentile(samples, 99) * 1000, 3),
    }


def median_ratio(numerators: Iterable[float], denominators: Iterable[float]) -> float:
    """The median of per-round ratios: rounds measured side by side, so machine noise cancels per round."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True) if d > 0]
    return statistics.median(ratios) if ratios else math.nan


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of per-round figures, with the rounds: a ratio is never a bare median."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "rounds": list(values)}
    return {
        "median": round(statistics.median(finite), 4),
        "min": round(min(finite), 4),
        "max": round(max(finite), 4),
        "rounds": [round(v, 4) for v in values],
    }


@dataclass(frozen=True)
class Check:
    """One figure against its target from issue 7."""

    name: str
    value: float
    target: float
    op: Literal["<=", ">=", "=="]
    unit: str = "ratio"

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        if self.op == "<=":
            return self.value <= self.target
        if self.op == ">=":
            return self.value >= self.target
        return self.value == self.target

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value": _rounded(self.value), "passed": self.passed}


def _finite(value: Any) -> Any:
    """The value with every NaN replaced by None, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


@dataclass
class Report:
    """What a benchmark found: figures (free-form, JSON-able), checks against targets, notes."""

    name: str
    args: Args
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def write(self) -> Path:
        """Write `<results>/<name>.json` and print the checks."""
        document = {
            "benchmark": self.name,
            "quick": self.args.quick,
            "seconds": self.args.seconds,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "figures": _finite(self.figures),
            "checks": [check.as_dict() for check in self.checks],
            "notes": self.notes,
        }
        self.args.results.mkdir(parents=True, exist_ok=True)
        path = self.args.results / f"{self.name}.json"
        path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        print_checks(self.name, self.checks)
        for note in self.notes:
            console.print(f"note: {note}")
        console.print(f"wrote {path}")
        return path


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, left: int = 1) -> None:
    """A rich table; the first `left` columns (names) left-aligned, the figures right-aligned."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < left else "right")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_checks(name: str, checks: Sequence[Check]) -> None:
    rows = [
        (c.name, c.value, f"{c.op} {c.target:g}", "[green]pass[/]" if c.passed else "[red]short[/]")
        for c in checks
    ]
    print_table(f"{name}: against the targets of issue 12", ("check", "value", "target", "result"), rows)


def free_port() -> int:
    """A loopback port free right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`bench/_serve.py` in a child process (its own interpreter and core), ready once `/healthz` answers.

    With `inline=True` the same server runs in a thread of this process instead: no interpreter start-up,
    for `--quick` smoke runs where the figures do not matter.
    """

    def __init__(
        self, *argv: str, port: int | None = None, inline: bool = False, checkout: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._argv = [*argv, "--port", str(self.port)]
        self._inline = inline
        # Another checkout (a baseline commit with its own .venv) serves the same bench server side by side:
        # its product code under this bench's `_serve.py`, so the server harness (the bare route, the startup
        # heap frozen as `voicebank up` does) is the same on both sides and only the product differs.
        self._root = checkout or ROOT
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._logs: tempfile.TemporaryDirectory[str] | None = None
        self.log_file: Path | None = None

    def start(self) -> ServerProcess:
        if self._inline:
            from _serve import server  # the bench directory is on sys.path when a bench runs

            self._server = server(self._argv, inline=True)
            self._thread = threading.Thread(
                target=self._server.run, name=f"bench-{self._argv[0]}", daemon=True
            )
            self._thread.start()
            return self
        env = {**os.environ, "PYTHONPATH": str(self._root)}
        python = sys.executable if self._root == ROOT else str(self._root / ".venv" / "bin" / "python")
        # The server logs as production does (access and audit lines), to a file of its own.
        self._logs = tempfile.TemporaryDirectory(prefix="bench-server-log-")
        self.log_file = Path(self._logs.name) / f"{self._argv[0]}.log"
        self._process = subprocess.Popen(
            [python, str(BENCH_DIR / "_serve.py"), *self._argv, "--log-file", str(self.log_file)],
            env=env,
            cwd=self._root,
        )
        return self

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for an error message."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far; NaN when inline or not on Linux."""
        if self._process is None:
            return math.nan
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        # utime and stime are fields 14 and 15 of proc(5), counted after the ")" closing the name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"server {self._argv} exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError(f"server {self._argv} stopped")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)  # polling a server's readiness; benchmarks only, never tests
        raise RuntimeError(f"server {self._argv} did not become ready")

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._logs is not None:
            self._logs.cleanup()
            self._logs = None


@contextlib.contextmanager
def running(*servers: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """Start every server at once (they boot in parallel), wait until all answer, stop them all at the end."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A redis-server of the bench's own on a free loopback port."""
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise SystemExit("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
