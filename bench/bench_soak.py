"""Soak: 50 concurrent simulated voice calls for N minutes against a real `voicebank up`, memory and Redis.

Run: .venv/bin/python bench/bench_soak.py [--minutes N] [--calls C] [--generators G]
     [--store memory|redis|both] [--quick]
`voicebank dev-init` makes a state directory; `voicebank up --only issuer` and `--only mcp` run as
two processes (so each service's memory is its own), with `REDIS_URL` set for the Redis kind (a redis-server
of the bench's own). Each simulated call does what the agent does: the app backend creates the session
(`POST /sessions`), the orchestrator exchanges the grant (TokenManager over the real issuer client), then
one tool call per second through the real `McpBank` (balances, history, loans, payees), its read token
refreshed every 20 s, one payment of 0.01 half-way, and the refresh family revoked at the end; a call lasts
60 s, then a new one starts. Targets (issue 12): 0 failed calls; each service's RSS grows <= 10 % after
warm-up (the end of minute 2 against the end); p99 of the last minute <= 1.2x the second minute.
The calls run in G load generator processes (default 5, calls interleaved over them), so that the bench
measures the servers, not its load generator: one process running all 50 calls did 2-3 full collections a
minute over the live calls' objects and woke up to 244 ms late, and those pauses were the worst operations.
Each generator process freezes its startup heap as `voicebank up` does, and sends its records back to this
process, which merges them and only samples memory and CPU.
Writes bench/results/soak.json: every minute's p50/p99, overall and per operation; RSS and CPU seconds of
each service and of the generators (each, and all together) every 5 s; the 100 slowest operations; each
generator process's own stalls (its loop waking late, its full garbage collections) and each service's (the
stalls `voicebank up` logs, from its log file), so a tail can be pinned on a server or on a generator.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import multiprocessing
import os
import queue
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    ROOT,
    Args,
    Check,
    Report,
    free_port,
    percentile,
    print_table,
    quiet_logs,
    redis_server,
)
from _world import orchestrator_client, session_grant

import keys
from keys import load_client_key
from orchestrator._bank._mcp import McpBank
from orchestrator._bank._movement import Movement
from orchestrator._heap import freeze_startup_heap
from orchestrator._tokens._manager import TokenManager

CALL_SECONDS = 60.0
TURN_SECONDS = 1.0
REFRESH_EVERY = 20.0
RSS_GROWTH = 0.10
P99_GROWTH = 1.2
STARTUP_SECONDS = 120  # for every generator process to import and load its keys
VOICEBANK = Path(sys.executable).parent / "voicebank"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (fields 14 and 15 of stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def services(state: Path, redis_url: str | None, logs: Path) -> Iterator[tuple[str, str, dict[str, int]]]:
    """`voicebank up --only issuer` and `--only mcp` as two processes; their URLs and pids. Each logs to
    `logs/<name>.log` (warnings and up: errors, and the stalls of its event loop)."""
    issuer_port, mcp_port = free_port(), free_port()
    while mcp_port == issuer_port:
        mcp_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ISSUER_", "MCP_"))}
    env |= {"VOICEBANK_STATE": str(state), "PYTHONPATH": str(ROOT)}
    # No metrics listeners: their fixed default ports (8002, 8003) would clash with any other `voicebank up`.
    env |= {"ISSUER_METRICS_PORT": "0", "MCP_METRICS_PORT": "0"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    common = ["--state", str(state), "--issuer-port", str(issuer_port), "--mcp-port", str(mcp_port)]
    common += ["--log-level", "warning"]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as sinks:
        try:
            for name in ("issuer", "mcp"):
                sink = sinks.enter_context((logs / f"{name}.log").open("ab"))
                # The MCP server alone must be told where its issuer is.
                own = ["--issuer-url", f"http://127.0.0.1:{issuer_port}"] if name == "mcp" else []
                processes[name] = subprocess.Popen(
                    [str(VOICEBANK), "up", "--only", name, *common, *own],
                    env=env,
                    stdout=sink,
                    stderr=sink,
                    cwd=ROOT,
                )
                base = f"http://127.0.0.1:{issuer_port if name == 'issuer' else mcp_port}"
                wait_ready(base, processes[name])
            yield (
                f"http://127.0.0.1:{issuer_port}",
                f"http://127.0.0.1:{mcp_port}/mcp",
                {n: p.pid for n, p in processes.items()},
            )
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"voicebank up exited with {process.returncode}; see the soak log")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # a benchmark polling readiness, never a test
    raise SystemExit(f"{base} did not become ready")


class Soak:
    """One generator process's simulated calls: their outcomes, latencies, and the process's own stalls."""

    def __init__(self, issuer: str, mcp_url: str, ck: dict[str, keys.KeyPair], start: float) -> None:
        self.issuer, self.mcp_url, self.ck, self.start = issuer, mcp_url, ck, start
        self.ops: list[tuple[float, str, float]] = []  # (seconds since start, operation, latency)
        self.calls_ok = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self.stalls: list[tuple[float, str, float]] = []  # this process's own: (since start, kind, seconds)

    async def timed(self, name: str, operation: Any) -> Any:
        began = time.perf_counter()
        result = await operation
        self.ops.append((began - self.start, name, time.perf_counter() - began))
        return result

    async def call(self, http: httpx.AsyncClient, index: int, deadline: float) -> None:
        """One voice call, from the session to the revocation."""
        user = "alice" if index % 2 == 0 else "bob"
        ends = min(deadline, time.perf_counter() + CALL_SECONDS)
        grant = await self.timed("session", session_grant(http, self.issuer, self.ck, user=user))
        tokens = TokenManager(orchestrator_client(http, self.issuer, self.ck))
        await self.timed("exchange", tokens.start(grant, "read"))
        bank = McpBank(tokens, self.mcp_url)
        try:
            balance = await self.timed("get_balance", bank.get_balance("checking"))
            account = next(a for a in balance["accounts"] if a["status"] == "open")["account_id"]
            payee = (await self.timed("list_payees", bank.list_payees()))["payees"][0]["payee_id"]
            refresh_at = time.perf_counter() + REFRESH_EVERY
            paid = False
            turn = 0
            while time.perf_counter() < ends:
                await asyncio.sleep(TURN_SECONDS)
                if time.perf_counter() >= refresh_at:
                    tokens.invalidate("read")  # the next read refreshes: the refresh-token grant
                    refresh_at += REFRESH_EVERY
                turn += 1
                if not paid and time.perf_counter() >= ends - CALL_SECONDS / 2:
                    key = str(uuid.uuid4())
                    confirmed = Movement("payment", account, payee, "0.01", "USD", key)
                    payment = bank.make_payment(account, payee, "0.01", key, confirmed=confirmed)
                    await self.timed("make_payment", payment)
                    paid = True
                elif turn % 3 == 0:
                    await self.timed("list_transactions", bank.list_transactions(account, 5))
                elif turn % 3 == 1:
                    await self.timed("get_balance", bank.get_balance())
                else:
                    await self.timed("list_loans", bank.list_loans())
            if not await self.timed("revoke", tokens.revoke()):
                raise RuntimeError("revoke failed")
        finally:
            await bank.aclose()

    async def caller(self, http: httpx.AsyncClient, index: int, deadline: float) -> None:
        while time.perf_counter() < deadline - 5:
            try:
                await self.call(http, index, deadline)
                self.calls_ok += 1
            except Exception as exc:  # a failed call is counted, named, and the caller goes on
                self.failures[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1

    async def drive(self, indices: Sequence[int], calls: int, seconds: float) -> None:
        """This process's share of the calls, staggered over the whole run's `calls` (so that the calls of all
        processes together do not begin and end in lockstep), while recording the process's own stalls."""

        async def watch_loop() -> None:
            """How late a 50 ms sleep wakes up: a late loop delays every operation in flight."""
            while True:
                began = time.perf_counter()
                await asyncio.sleep(0.05)
                late = time.perf_counter() - began - 0.05
                if late > 0.01:
                    self.stalls.append((began - self.start, "loop_late", late))

        gc_began: list[float] = []

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_began[:] = [time.perf_counter()]
            elif gc_began:
                took = time.perf_counter() - gc_began[0]
                if info["generation"] == 2 or took > 0.005:
                    self.stalls.append((gc_began[0] - self.start, f"gc{info['generation']}", took))

        deadline = self.start + seconds
        limits = httpx.Limits(max_connections=len(indices) * 2, max_keepalive_connections=len(indices))
        gc.callbacks.append(on_gc)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            watcher = asyncio.create_task(watch_loop())
            try:

                async def staggered(index: int) -> None:
                    await asyncio.sleep(index * CALL_SECONDS / calls)
                    await self.caller(http, index, deadline)

                await asyncio.gather(*(staggered(i) for i in indices))
            finally:
                gc.callbacks.remove(on_gc)
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def generate(
    number: int,
    indices: list[int],
    calls: int,
    services_at: tuple[str, str, str],
    seconds: float,
    ready: Any,
    box: Any,
) -> None:
    """A generator process: imports, freezes that startup heap (its full collections walked ~175,000 objects,
    0.1-0.3 s with every call in flight waiting), waits for the others, runs its calls, and sends back its
    records as plain tuples (the parent merges them; times are seconds since this process's start, which
    the barrier puts within milliseconds of the parent's and the other processes')."""
    quiet_logs()
    issuer, mcp_url, state = services_at
    ck = {c: load_client_key(Path(state), c) for c in ("orchestrator", "backend", "admin")}
    freeze_startup_heap()
    ready.wait(timeout=STARTUP_SECONDS)
    run = Soak(issuer, mcp_url, ck, time.perf_counter())
    asyncio.run(run.drive(indices, calls, seconds))
    box.put(
        {
            "generator": number,
            "pid": os.getpid(),
            "ops": run.ops,
            "calls_ok": run.calls_ok,
            "failures": dict(run.failures),
            "stalls": [(at, kind, took, number) for at, kind, took in run.stalls],
        }
    )


class Outcome:
    """Every generator process's records, merged."""

    def __init__(self, records: Sequence[dict[str, Any]], started_at: float) -> None:
        self.started_at = started_at  # wall clock at the generators' start (their times count from it)
        self.ops: list[tuple[float, str, float]] = [op for r in records for op in r["ops"]]
        self.calls_ok = sum(r["calls_ok"] for r in records)
        self.failures: collections.Counter[str] = sum(
            (collections.Counter(r["failures"]) for r in records), collections.Counter()
        )
        self.stalls: list[tuple[float, str, float, int]] = sorted(s for r in records for s in r["stalls"])


# A stall line of `voicebank up` (orchestrator/_stalls.py) in the text format: `time level logger message`.
_STALL_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) WARNING \S+ event loop stalled (\d+) ms"
    r"(?: \(garbage collection (\d+) ms)?"
)


def logged_stalls(log: Path, started_at: float) -> list[dict[str, Any]]:
    """The event-loop stalls a service logged, timed from the soak's start (the servers' own pauses)."""
    stalls = []
    for line in log.read_text(errors="replace").splitlines():
        match = _STALL_LINE.match(line)
        if match is None:
            continue
        at = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
        stalls.append({"t": round(at - started_at, 2), "ms": int(match[3]), "gc_ms": int(match[4] or 0)})
    return stalls


def soak(
    issuer: str, mcp_url: str, state: Path, pids: dict[str, int], seconds: float, calls: int, generators: int
) -> tuple[Outcome, list[dict[str, Any]]]:
    """`calls` simulated calls spread over `generators` processes (so that no generator's own pauses are
    the servers' tail); this process only samples each service's RSS and every process's CPU every 5 s."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of this process's heap
    ready = context.Barrier(generators + 1)
    box = context.Queue()
    services_at = (issuer, mcp_url, str(state))
    workers = [
        context.Process(
            target=generate,
            args=(n, list(range(n, calls, generators)), calls, services_at, seconds, ready, box),
            name=f"soak-generator-{n}",
        )
        for n in range(generators)
    ]
    for worker in workers:
        worker.start()
    records: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    try:
        ready.wait(timeout=STARTUP_SECONDS)
        start = time.perf_counter()
        started_at = time.time()  # the services' log lines carry wall-clock times
        generator_pids = {f"generator{n}": w.pid for n, w in enumerate(workers) if w.pid}

        cpu_seen: dict[str, float] = {}

        def sample() -> dict[str, Any]:
            """RSS of each service; CPU seconds of each service, of each generator and of all generators."""
            for name, pid in (pids | generator_pids).items():
                # A generator that has finished and been reaped keeps its last reading.
                with contextlib.suppress(FileNotFoundError):
                    cpu_seen[name] = cpu_seconds(pid)
            cpu = dict(cpu_seen)
            cpu["generator"] = sum(v for n, v in cpu.items() if n.startswith("generator"))
            return (
                {"t": round(time.perf_counter() - start, 1)}
                | {n: rss_kib(p) for n, p in pids.items()}
                | {f"{n}_cpu_s": round(v, 2) for n, v in cpu.items()}
            )

        next_sample = start
        while len(records) < generators:
            if time.perf_counter() >= next_sample:
                memory.append(sample())
                next_sample += 5
            try:
                records.append(box.get(timeout=max(0.0, next_sample - time.perf_counter())))
            except queue.Empty:
                if any(w.exitcode not in (None, 0) for w in workers):
                    raise SystemExit("a soak generator process failed; see its traceback above") from None
        memory.append(sample())
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
                worker.join()
        box.close()
        box.join_thread()
    return Outcome(records, started_at), memory


def rss_at(memory: list[dict[str, Any]], t: float, name: str) -> int:
    """The sample nearest to `t` seconds."""
    return int(min(memory, key=lambda m: abs(m["t"] - t))[name])


def cpu_share(memory: list[dict[str, Any]], minute: int) -> dict[str, float]:
    """Each process's CPU seconds per second over minute `minute` (from the samples nearest its ends)."""
    first = min(memory, key=lambda m: abs(m["t"] - minute * 60))
    last = min(memory, key=lambda m: abs(m["t"] - (minute + 1) * 60))
    span = last["t"] - first["t"]
    if span <= 0:
        return {}
    return {
        key.removesuffix("_s"): round((last[key] - first[key]) / span, 3)
        for key in first
        if key.endswith("_cpu_s")
    }


def run_store(
    kind: str, minutes: float, calls: int, generators: int, tmp: Path, report: Report
) -> list[tuple[Any, ...]]:
    state = tmp / kind / "state"
    state.parent.mkdir(parents=True)
    subprocess.run(
        [str(VOICEBANK), "dev-init", "--state", str(state)], check=True, capture_output=True, cwd=ROOT
    )
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp / kind)) if kind == "redis" else None
        issuer, mcp_url, pids = stack.enter_context(services(state, redis_url, tmp / kind / "logs"))
        run, memory = soak(issuer, mcp_url, state, pids, minutes * 60, calls, generators)
    server_stalls = [
        stall | {"service": name}
        for name in ("issuer", "mcp")
        for stall in logged_stalls(tmp / kind / "logs" / f"{name}.log", run.started_at)
    ]
    per_minute = collections.defaultdict(list)
    for at, _, latency in run.ops:
        per_minute[int(at // 60)].append(latency)
    minutes_seen = sorted(per_minute)
    table = {
        m: {"n": len(v), "p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000}
        for m, v in per_minute.items()
    }
    second = table.get(1, {"p99_ms": float("nan")})["p99_ms"]
    # The last whole minute: the calls still running at the deadline make a short tail after it.
    whole = [m for m in minutes_seen if m < int(minutes)] or minutes_seen
    last = table[whole[-1]]["p99_ms"] if whole else float("nan")
    warm = min(120.0, minutes * 60 / 2)
    growth = {
        name: rss_at(memory, memory[-1]["t"], name) / rss_at(memory, warm, name) - 1
        for name in ("issuer", "mcp")
    }
    ops_count = collections.Counter(name for _, name, _ in run.ops)
    by_op = collections.defaultdict(list)
    for _, name, latency in run.ops:
        by_op[name].append(latency)
    per_operation = {
        name: {
            "n": len(v),
            "p50_ms": round(percentile(v, 50) * 1000, 2),
            "p99_ms": round(percentile(v, 99) * 1000, 2),
        }
        for name, v in sorted(by_op.items())
    }
    by_minute_op: dict[int, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for at, name, latency in run.ops:
        by_minute_op[int(at // 60)][name].append(latency)
    per_minute_operation = {
        str(m): {
            name: {
                "n": len(v),
                "p50_ms": round(percentile(v, 50) * 1000, 2),
                "p99_ms": round(percentile(v, 99) * 1000, 2),
            }
            for name, v in sorted(ops.items())
        }
        for m, ops in sorted(by_minute_op.items())
    }
    cpu = {m: cpu_share(memory, m) for m in minutes_seen}
    # How late the generator's own loop woke, per minute: a late loop delays every operation in flight, so
    # a tail that matches it is the generator's, not the servers'.
    late: dict[int, list[float]] = collections.defaultdict(list)
    stalled: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    for stall in server_stalls:
        stalled[stall["service"], int(stall["t"] // 60)].append(stall["ms"])
    for at, kind_, took, _ in run.stalls:
        if kind_ == "loop_late":
            late[int(at // 60)].append(took)
    report.figures[kind] = {
        "calls_ok": run.calls_ok,
        "calls_failed": sum(run.failures.values()),
        "failures": dict(run.failures.most_common(10)),
        "operations": dict(ops_count),
        "per_operation": per_operation,
        "per_minute": {str(m): {k: round(v, 3) for k, v in row.items()} for m, row in sorted(table.items())},
        "per_minute_operation": per_minute_operation,
        "slowest_operations": [
            {"t": round(at, 2), "operation": name, "ms": round(latency * 1000, 1)}
            for at, name, latency in sorted(run.ops, key=lambda op: -op[2])[:100]
        ],
        "server_stalls": server_stalls,
        "generator_stalls": [
            {"t": round(at, 2), "generator": number, "kind": kind, "ms": round(took * 1000, 1)}
            for at, kind, took, number in run.stalls
        ],
        "cpu_share_per_minute": {str(m): row for m, row in cpu.items()},
        "p99_last_over_second_minute": last / second if second else float("nan"),
        "rss_kib": memory,
        "rss_growth_after_warmup": {k: round(v, 4) for k, v in growth.items()},
        "warmup_seconds": warm,
    }
    report.checks += [
        Check(f"{kind}: failed calls", sum(run.failures.values()), 0, "==", unit="count"),
        Check(f"{kind}: issuer RSS growth after warm-up", growth["issuer"], RSS_GROWTH, "<="),
        Check(f"{kind}: MCP server RSS growth after warm-up", growth["mcp"], RSS_GROWTH, "<="),
        Check(
            f"{kind}: p99 last minute / second minute",
            last / second if second else float("nan"),
            P99_GROWTH,
            "<=",
        ),
    ]
    for reason, count in run.failures.most_common(5):
        print(f"  {kind}: {count} x {reason}")
    names = sorted({name for ops in by_minute_op.values() for name in ops})
    print_table(
        f"{kind}: p99 ms per operation and CPU share (1.0 = one core) per minute",
        (
            "minute",
            *names,
            "issuer CPU",
            "MCP CPU",
            "generator CPU",
            "issuer stall max ms",
            "MCP stall max ms",
            "generator late max ms",
        ),
        [
            (
                m + 1,
                *(percentile(by_minute_op[m].get(n, []), 99) * 1000 for n in names),
                *(cpu[m].get(f"{p}_cpu", float("nan")) for p in ("issuer", "mcp", "generator")),
                *(max(stalled.get((service, m), [0.0])) for service in ("issuer", "mcp")),
                max(late.get(m, [0.0])) * 1000,
            )
            for m in minutes_seen
        ],
    )
    return [
        (
            f"{kind} minute {m + 1}",
            row["n"],
            row["p50_ms"],
            row["p99_ms"],
            rss_at(memory, (m + 1) * 60, "issuer") / 1024,
            rss_at(memory, (m + 1) * 60, "mcp") / 1024,
        )
        for m, row in sorted(table.items())
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="per store (default 10)")
    parser.add_argument("--calls", type=int, default=50, help="concurrent simulated calls (default 50)")
    parser.add_argument("--generators", type=int, default=5, help="load generator processes (default 5)")
    parser.add_argument("--store", choices=["memory", "redis", "both"], default="both")  # --quick: memory
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    parser.add_argument("--results", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)
    minutes = ns.minutes if ns.minutes is not None else (0.25 if ns.quick else 10.0)
    calls = 5 if ns.quick and ns.calls == 50 else ns.calls
    generators = max(1, min(calls, 2 if ns.quick and ns.generators == 5 else ns.generators))
    if ns.quick and ns.store == "both":
        ns.store = "memory"  # the smoke run proves the bench works; one store does
    report = Report("soak", Args(quick=ns.quick, seconds=minutes * 60, results=ns.results))
    kinds = ("memory", "redis") if ns.store == "both" else (ns.store,)
    rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        for kind in kinds:
            rows += run_store(kind, minutes, calls, generators, Path(tmp), report)
    report.figures |= {
        "minutes": minutes,
        "concurrent_calls": calls,
        "generator_processes": generators,
        "call_seconds": CALL_SECONDS,
    }
    print_table(
        f"soak: {calls} concurrent calls, {minutes:g} min per store (latency of every operation, ms)",
        ("store / minute", "operations", "p50", "p99", "issuer RSS MiB", "MCP RSS MiB"),
        rows,
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
