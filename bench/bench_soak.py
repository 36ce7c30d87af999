"""Soak: 50 concurrent simulated voice calls for N minutes against a real `voicebank up`, memory and Redis.

Run: .venv/bin/python bench/bench_soak.py [--minutes N] [--calls C] [--store memory|redis|both] [--quick]
`voicebank dev-init` makes a state directory; `voicebank up --only issuer` and `--only mcp` run as
two processes (so each service's memory is its own), with `REDIS_URL` set for the Redis kind (a redis-server
of the bench's own). Each simulated call does what the agent does: the app backend creates the session
(`POST /sessions`), the orchestrator exchanges the grant (TokenManager over the real issuer client), then
one tool call per second through the real `McpBank` (balances, history, loans, payees), its read token
refreshed every 20 s, one payment of 0.01 half-way, and the refresh family revoked at the end; a call lasts
60 s, then a new one starts. Targets (issue 12): 0 failed calls; each service's RSS grows <= 10 % after
warm-up (the end of minute 2 against the end); p99 of the last minute <= 1.2x the second minute.
Writes bench/results/soak.json: every minute's p50/p99, overall and per operation; RSS and CPU seconds of
each service and of the generator every 5 s; the 100 slowest operations; the generator's own stalls (its
loop waking late, its full garbage collections), so a tail can be told apart from the generator's.
The generator freezes its startup heap as `voicebank up` does: a full collection walking it stalled
every operation in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import os
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
def services(state: Path, redis_url: str | None, log: Path) -> Iterator[tuple[str, str, dict[str, int]]]:
    """`voicebank up --only issuer` and `--only mcp` as two processes; their URLs and pids."""
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
    with log.open("ab") as sink:  # the services' own logs, for a failed run
        try:
            for name in ("issuer", "mcp"):
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
    """Simulated calls, their outcomes and latencies, and the services' memory over time."""

    def __init__(self, issuer: str, mcp_url: str, ck: dict[str, keys.KeyPair], start: float) -> None:
        self.issuer, self.mcp_url, self.ck, self.start = issuer, mcp_url, ck, start
        self.ops: list[tuple[float, str, float]] = []  # (seconds since start, operation, latency)
        self.calls_ok = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self.stalls: list[tuple[float, str, float]] = []  # the generator's own: (since start, kind, seconds)

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


async def soak(
    issuer: str, mcp_url: str, ck: dict[str, keys.KeyPair], pids: dict[str, int], seconds: float, calls: int
) -> tuple[Soak, list[dict[str, Any]]]:
    start = time.perf_counter()
    run = Soak(issuer, mcp_url, ck, start)
    memory: list[dict[str, Any]] = []
    deadline = start + seconds

    def sample() -> dict[str, Any]:
        """RSS of each service, and CPU seconds of each service and of this load generator."""
        return (
            {"t": round(time.perf_counter() - start, 1)}
            | {n: rss_kib(p) for n, p in pids.items()}
            | {f"{n}_cpu_s": round(cpu_seconds(p), 2) for n, p in (pids | {"generator": os.getpid()}).items()}
        )

    async def sample_memory() -> None:
        while True:
            memory.append(sample())
            await asyncio.sleep(5)

    async def watch_loop() -> None:
        """The generator's own stalls: how late a 50 ms sleep wakes up."""
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.05)
            late = time.perf_counter() - began - 0.05
            if late > 0.01:
                run.stalls.append((began - start, "loop_late", late))

    gc_began: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_began[:] = [time.perf_counter()]
        elif gc_began:
            took = time.perf_counter() - gc_began[0]
            if info["generation"] == 2 or took > 0.005:
                run.stalls.append((gc_began[0] - start, f"gc{info['generation']}", took))

    limits = httpx.Limits(max_connections=calls * 2, max_keepalive_connections=calls)
    # The generator's own full garbage collections walked its ~175,000 import-time objects, 0.1-0.3 s
    # with every operation in flight waiting: its stalls, not the servers', made the p99. Unfrozen after
    # the run (a test runs the bench in its own process).
    freeze_startup_heap()
    gc.callbacks.append(on_gc)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        sampler = asyncio.create_task(sample_memory())
        watcher = asyncio.create_task(watch_loop())
        try:
            # Staggered starts, so calls do not begin and end in lockstep.
            async def staggered(index: int) -> None:
                await asyncio.sleep(index * CALL_SECONDS / calls)
                await run.caller(http, index, deadline)

            await asyncio.gather(*(staggered(i) for i in range(calls)))
        finally:
            gc.callbacks.remove(on_gc)
            gc.unfreeze()
            for task in (sampler, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    memory.append(sample())
    return run, memory


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


def run_store(kind: str, minutes: float, calls: int, tmp: Path, report: Report) -> list[tuple[Any, ...]]:
    state = tmp / kind / "state"
    state.parent.mkdir(parents=True)
    subprocess.run(
        [str(VOICEBANK), "dev-init", "--state", str(state)], check=True, capture_output=True, cwd=ROOT
    )
    ck = {c: load_client_key(state, c) for c in ("orchestrator", "backend", "admin")}
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp / kind)) if kind == "redis" else None
        issuer, mcp_url, pids = stack.enter_context(services(state, redis_url, tmp / kind / "up.log"))
        run, memory = asyncio.run(soak(issuer, mcp_url, ck, pids, minutes * 60, calls))
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
    for at, kind_, took in run.stalls:
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
        "generator_stalls": [
            {"t": round(at, 2), "kind": kind, "ms": round(took * 1000, 1)} for at, kind, took in run.stalls
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
        ("minute", *names, "issuer CPU", "MCP CPU", "generator CPU", "generator late max ms"),
        [
            (
                m + 1,
                *(percentile(by_minute_op[m].get(n, []), 99) * 1000 for n in names),
                *(cpu[m].get(f"{p}_cpu", float("nan")) for p in ("issuer", "mcp", "generator")),
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
    parser.add_argument("--store", choices=["memory", "redis", "both"], default="both")  # --quick: memory
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    parser.add_argument("--results", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)
    minutes = ns.minutes if ns.minutes is not None else (0.25 if ns.quick else 10.0)
    calls = 5 if ns.quick and ns.calls == 50 else ns.calls
    if ns.quick and ns.store == "both":
        ns.store = "memory"  # the smoke run proves the bench works; one store does
    report = Report("soak", Args(quick=ns.quick, seconds=minutes * 60, results=ns.results))
    kinds = ("memory", "redis") if ns.store == "both" else (ns.store,)
    rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        for kind in kinds:
            rows += run_store(kind, minutes, calls, Path(tmp), report)
    report.figures |= {"minutes": minutes, "concurrent_calls": calls, "call_seconds": CALL_SECONDS}
    print_table(
        f"soak: {calls} concurrent calls, {minutes:g} min per store (latency of every operation, ms)",
        ("store / minute", "operations", "p50", "p99", "issuer RSS MiB", "MCP RSS MiB"),
        rows,
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
