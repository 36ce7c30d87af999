"""The load generator of the server-bound benchmarks: wrk with pre-signed bodies, or Python processes.

Every body is prepared before the timed phase (single-use assertions and refresh tokens are sent once each),
so the timed phase costs the generator only HTTP. Its own CPU is read from the kernel (`wait4`), which gives
the honesty check: the generator's capacity (requests per CPU second) against the server's rate.

Fallback when wrk is missing: `python bench/_load.py worker URL BODIES CONNECTIONS SECONDS` in several
processes, each a lean asyncio HTTP/1.1 client over raw streams (no httpx in the timed loop).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
LUA = BENCH_DIR / "wrk_bodies.lua"


@dataclass(frozen=True)
class Load:
    """One timed run: what the server did and what the generator spent."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    generator_cpu_s: float
    server_cpu_s: float
    out_of_bodies: bool

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.requests if self.requests else math.nan

    @property
    def generator_capacity(self) -> float:
        """Requests per second the generator could send on one core (its requests per CPU second)."""
        return self.requests / self.generator_cpu_s if self.generator_cpu_s > 0 else math.inf


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _wait_cpu(process: subprocess.Popen[bytes]) -> float:
    """Wait for a child and return its user + system CPU seconds (the kernel's own accounting)."""
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0  # reaped here; Popen must not wait again
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str,
    bodies: Sequence[str],
    seconds: float,
    *,
    connections: int,
    threads: int = 1,
    server_cpu: Callable[[], float] = lambda: math.nan,
    capture: Path | None = None,
) -> Load:
    """POST each body once to `url` with wrk for `seconds`, rounded up to whole seconds.

    A wrk thread out of bodies stops sending, but wrk still runs the whole duration: such a run's rate is
    void (`out_of_bodies`), and the caller prepares more bodies.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".bodies", delete=False) as file:
        file.write("\n".join(bodies) + "\n")
        path = file.name
    env = dict(os.environ)
    if capture is not None:
        env["WRK_CAPTURE"] = str(capture)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, math.ceil(seconds - 0.01))}s",  # wrk takes whole seconds only
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        url,
        "--",
        path,
        str(threads),
    ]
    try:
        before = server_cpu()
        with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: wrk never blocks on what it says
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)
            assert process.stdout is not None
            with process.stdout:
                out = process.stdout.read()
            generator_cpu = _wait_cpu(process)
            after = server_cpu()
            stderr.seek(0)
            err = stderr.read(2000)
    finally:
        os.unlink(path)
    match = re.search(rb"WRK_JSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"wrk gave no summary: {err.decode(errors='replace')[:300]}")
    summary = json.loads(match.group(1))
    errors = sum(
        summary[key] for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return Load(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        errors=errors,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        generator_cpu_s=generator_cpu,
        server_cpu_s=after - before,
        out_of_bodies=summary["threads_out_of_bodies"] > 0,
    )


def run_python(
    url: str,
    bodies: Sequence[str],
    seconds: float,
    *,
    connections: int,
    processes: int = 2,
    server_cpu: Callable[[], float] = lambda: math.nan,
) -> Load:
    """The same run with `processes` Python workers (raw asyncio streams), for a machine without wrk."""
    shares = [bodies[i::processes] for i in range(processes)]
    per_process = max(1, connections // processes)
    paths = []
    for share in shares:
        with tempfile.NamedTemporaryFile("w", suffix=".bodies", delete=False) as file:
            file.write("\n".join(share) + "\n")
            paths.append(file.name)
    try:
        before = server_cpu()
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "worker", url, path, str(per_process), repr(seconds)],
                stdout=subprocess.PIPE,
            )
            for path in paths
        ]
        outputs = []
        for worker in workers:
            assert worker.stdout is not None
            with worker.stdout:
                outputs.append(worker.stdout.read())
        generator_cpu = sum(_wait_cpu(worker) for worker in workers)
        after = server_cpu()
    finally:
        for path in paths:
            os.unlink(path)
    results = [json.loads(output) for output in outputs]
    latencies = sorted(lat for result in results for lat in result["latencies"])
    return Load(
        requests=len(latencies),
        seconds=max(result["seconds"] for result in results),
        errors=sum(result["errors"] for result in results),
        p50_ms=_pick(latencies, 50) * 1000,
        p99_ms=_pick(latencies, 99) * 1000,
        generator_cpu_s=generator_cpu,
        server_cpu_s=after - before,
        out_of_bodies=any(result["out_of_bodies"] for result in results),
    )


def _pick(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] if ordered else math.nan


async def _worker(url: str, bodies: list[bytes], connections: int, seconds: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    latencies: list[float] = []
    errors = 0
    cursor = 0
    out_of_bodies = False
    start = time.perf_counter()
    deadline = start + seconds

    async def connection() -> None:
        nonlocal cursor, errors, out_of_bodies
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < deadline:
            if cursor >= len(bodies):
                out_of_bodies = True
                break
            body = bodies[cursor]
            cursor += 1
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            sent = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent)
            if not status_line.split(b" ", 2)[1].startswith(b"2"):
                errors += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return {
        "latencies": latencies,
        "errors": errors,
        "seconds": time.perf_counter() - start,
        "out_of_bodies": out_of_bodies,
    }


def _worker_main(argv: Sequence[str]) -> None:
    url, path, connections, seconds = argv
    bodies = [line.encode() for line in Path(path).read_text().splitlines() if line]
    result = asyncio.run(_worker(url, bodies, int(connections), float(seconds)))
    sys.stdout.write(json.dumps(result))


def run_python_requests(
    url: str,
    header_lines: Sequence[str],
    body: bytes,
    seconds: float,
    *,
    connections: int,
    cycle: bool,
    marker: bytes,
) -> tuple[dict[str, object], float]:
    """wrk_requests.lua's job for a machine without wrk: one Python process over raw sockets (no httpx).

    Each request POSTs `body` with the next line's headers (`name<TAB>value...`; `cycle` repeats them); an
    answer without `marker` is an error. Returns the worker's result and its own CPU seconds.
    """
    with tempfile.TemporaryDirectory(prefix="bench-requests-") as tmp:
        headers_file, body_file = Path(tmp) / "headers", Path(tmp) / "body"
        headers_file.write_text("\n".join(header_lines) + "\n")
        body_file.write_bytes(body)
        argv = [sys.executable, __file__, "requests", url, str(headers_file), str(body_file)]
        argv += [str(connections), repr(seconds), "1" if cycle else "0", marker.decode()]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert process.stdout is not None
        with process.stdout:
            output = process.stdout.read()
        cpu = _wait_cpu(process)
    result: dict[str, object] = json.loads(output)
    return result, cpu


async def _requests_worker(
    url: str,
    lines: list[list[str]],
    body: bytes,
    connections: int,
    seconds: float,
    cycle: bool,
    marker: bytes,
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    heads = []
    for fields in lines:
        extra = "".join(f"{name}: {value}\r\n" for name, value in zip(fields[::2], fields[1::2], strict=True))
        heads.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    latencies: list[float] = []
    errors = 0
    cursor = 0
    out_of_bodies = False
    start = time.perf_counter()
    deadline = start + seconds

    async def connection() -> None:
        nonlocal cursor, errors, out_of_bodies
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < deadline:
            if cursor >= len(heads):
                if not cycle:
                    out_of_bodies = True
                    break
                cursor = 0
            request = heads[cursor]
            cursor += 1
            sent = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length, chunked = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                answer = b""
                while size := int((await reader.readline()).strip(), 16):
                    answer += await reader.readexactly(size + 2)
                await reader.readline()
            else:
                answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent)
            if status_line.split(b" ", 2)[1] != b"200" or marker not in answer:
                errors += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return {
        "latencies": latencies,
        "errors": errors,
        "seconds": time.perf_counter() - start,
        "out_of_bodies": out_of_bodies,
    }


def _requests_main(argv: Sequence[str]) -> None:
    url, headers_path, body_path, connections, seconds, cycle, marker = argv
    lines = [line.split("\t") for line in Path(headers_path).read_text().splitlines() if line]
    body = Path(body_path).read_bytes()
    result = asyncio.run(
        _requests_worker(url, lines, body, int(connections), float(seconds), cycle == "1", marker.encode())
    )
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "worker":
        _worker_main(sys.argv[2:])
    elif len(sys.argv) == 9 and sys.argv[1] == "requests":
        _requests_main(sys.argv[2:])
    else:
        raise SystemExit(
            "usage: python bench/_load.py worker URL BODIES CONNECTIONS SECONDS\n"
            "       python bench/_load.py requests URL HEADERS BODY CONNECTIONS SECONDS CYCLE MARKER"
        )
