"""MCP `get_balance` over loopback HTTP: the same server with auth on, with a pass-through verifier, and off.

Run: .venv/bin/python bench/bench_mcp_call.py [--quick] [--seconds N] [--rounds R] [--baseline DIR]
Four MCP server processes (auth `full` = production wiring with keys.JWKSCache and keys.Verifier, called
with a bearer token; `dpop` = the same wiring with MCP_REQUIRE_DPOP, called with a DPoP-bound token and a
fresh proof per request, signed by the client as the orchestrator does; `passthrough` = the auth middleware
with a verifier that accepts anything; `off` = no auth middleware) are driven in interleaved rounds,
sequentially and with 16 concurrent clients, three ways:
- `mcp reused`: the real FastMCP client, one session and one token per client (the read pattern);
- `raw reused`: raw JSON-RPC `tools/call` over one httpx pool, one token for every call;
- `raw fresh`: the same with a fresh token per call (the transact pattern: every signature is checked;
  the tokens are signed before each round, never in the timed loop).
Ratios are per-round ratios (median, min, max in the JSON). Targets (issues 12 and 14): auth, bearer or
DPoP, adds <= 10 % to median latency in both patterns. `--baseline DIR` adds the `full` server of another
checkout (its own .venv), to compare the server's CPU per call with the same client side by side (target
<= 0.75 of the baseline).
Writes bench/results/mcp_call.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import httpx2
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    Args,
    Check,
    Report,
    ServerProcess,
    latency_ms,
    print_table,
    quiet_logs,
    running,
    spread,
)
from _serve import BENCH_CLAIMS
from _world import seeded_bank

import keys

VARIANTS = ("off", "passthrough", "full", "dpop")
BASELINE = "baseline full"
MODES = ("mcp reused", "raw reused", "raw fresh")
CONCURRENCY = 16
TARGET_LATENCY = 1.10  # auth adds at most 10 % to median latency
TARGET_THROUGHPUT = 0.90  # auth takes at most 10 % of throughput
TARGET_CPU_VS_BASELINE = 0.75
_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
RPC_BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_balance", "arguments": {}, "_meta": _META},
    }
).encode()
RPC_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/call",
    "mcp-name": "get_balance",
}

Call = Callable[[], Awaitable[None]]


def access_token(key: keys.KeyPair, resource: str, jkt: str | None = None) -> str:
    now = int(time.time())
    jti = secrets.token_urlsafe(16)
    claims = {**BENCH_CLAIMS, "aud": resource, "iat": now, "nbf": now, "exp": now + 3000, "jti": jti}
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    return keys.sign(claims, key, typ="at+jwt")


class DPoPAuth(httpx2.Auth):
    """`Authorization: DPoP` and a fresh proof per request, signed by the call's key (as the agent does)."""

    def __init__(self, key: keys.KeyPair, token: str) -> None:
        self._key = key
        self._token = token

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = f"DPoP {self._token}"
        request.headers["DPoP"] = keys.dpop_proof(
            self._key, htm=request.method, htu=str(request.url), now=time.time(), access_token=self._token
        )
        yield request


async def sequential(call: Call, seconds: float) -> list[float]:
    """One caller, back to back, for `seconds`: each call's latency."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        await call()
        end = time.perf_counter()
        samples.append(end - start)
        if end >= deadline:
            return samples


async def concurrent(calls: list[Call], seconds: float) -> tuple[list[float], float]:
    """Every caller at once for `seconds`: latencies and completed calls per second."""
    samples: list[float] = []
    start_all = time.perf_counter()
    deadline = start_all + seconds

    async def worker(call: Call) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(call) for call in calls))
    return samples, len(samples) / (time.perf_counter() - start_all)


def mcp_call(client: Client[StreamableHttpTransport]) -> Call:
    async def call() -> None:
        result = await client.call_tool("get_balance", {})
        if not isinstance(result.structured_content, dict) or "accounts" not in result.structured_content:
            raise RuntimeError("get_balance answered without accounts")

    return call


def raw_call(
    http: httpx.AsyncClient, url: str, tokens: Iterator[str], dpop: keys.KeyPair | None = None
) -> Call:
    """One `tools/call`; each call takes the next token (one repeated token, or a fresh one each time),
    with a fresh DPoP proof when `dpop` is the call's key."""

    async def call() -> None:
        token = next(tokens)
        headers = RPC_HEADERS | {"authorization": f"{'DPoP' if dpop else 'Bearer'} {token}"}
        if dpop is not None:
            proof = keys.dpop_proof(dpop, htm="POST", htu=url, now=time.time(), access_token=token)
            headers |= {"dpop": proof}
        response = await http.post(url, content=RPC_BODY, headers=headers)
        if response.status_code != 200 or b'"accounts"' not in response.content:
            raise RuntimeError(f"tools/call answered HTTP {response.status_code}")

    return call


class FreshTokens:
    """Tokens signed before a round, one per call; running out voids the round rather than reuse one."""

    def __init__(self, key: keys.KeyPair, resource: str, jkt: str | None = None) -> None:
        self._key, self._resource, self._jkt = key, resource, jkt
        self._tokens: list[str] = []
        self._used = 0

    def refill(self, count: int) -> None:
        self._tokens = [access_token(self._key, self._resource, self._jkt) for _ in range(count)]
        self._used = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._used >= len(self._tokens):
            raise RuntimeError("fresh tokens ran out: this round is void; prepare more")
        self._used += 1
        return self._tokens[self._used - 1]

    @property
    def used(self) -> int:
        return self._used


async def measure(
    urls: dict[str, str],
    key: keys.KeyPair,
    dpop: keys.KeyPair,
    rounds: int,
    slice_s: float,
    concurrency: int,
    cpu: dict[str, Callable[[], float]],
) -> dict[str, dict[str, dict[str, list[Any]]]]:
    """Interleaved rounds: every (mode, server) pair runs its sequential and concurrent slice per round."""
    variants = list(urls)
    samples: dict[str, dict[str, dict[str, list[Any]]]] = {
        m: {v: {"seq": [], "conc": [], "thr": [], "seq_med": [], "conc_med": [], "cpu": []} for v in variants}
        for m in MODES
    }
    jkt = {v: (dpop.kid if v == "dpop" else None) for v in variants}
    reused = {v: access_token(key, url, jkt[v]) for v, url in urls.items()}
    fresh = {v: FreshTokens(key, url, jkt[v]) for v, url in urls.items()}
    rate = dict.fromkeys(variants, 1500.0)  # calls/s guess for sizing fresh tokens; grows to what is seen
    async with contextlib.AsyncExitStack() as stack:
        calls: dict[str, dict[str, list[Call]]] = {m: {} for m in MODES}
        for variant in variants:
            sessions = []
            for _ in range(concurrency):
                auth: httpx2.Auth | str = reused[variant]
                if variant == "dpop":
                    auth = DPoPAuth(dpop, reused[variant])
                transport = StreamableHttpTransport(urls[variant], auth=auth)
                sessions.append(await stack.enter_async_context(Client(transport)))
            calls["mcp reused"][variant] = [mcp_call(s) for s in sessions]
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            http = await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=30))
            same = itertools.repeat(reused[variant])
            proofs = dpop if variant == "dpop" else None
            calls["raw reused"][variant] = [raw_call(http, urls[variant], same, proofs)] * concurrency
            calls["raw fresh"][variant] = [
                raw_call(http, urls[variant], fresh[variant], proofs)
            ] * concurrency
            fresh[variant].refill(int(rate[variant] * min(0.2, slice_s) * 3) + 100)
            for mode in MODES:  # warm up: connections open, code paths hot
                await concurrent(calls[mode][variant], min(0.2, slice_s))
        for index in range(rounds):
            for variant in variants:  # signed here, between the timed slices
                fresh[variant].refill(int(rate[variant] * 2 * slice_s * 1.5) + 200)
            for mode in MODES:
                order = variants[index % len(variants) :] + variants[: index % len(variants)]
                for variant in order:
                    cpu_before = cpu[variant]()
                    seq = await sequential(calls[mode][variant][0], slice_s)
                    conc, throughput = await concurrent(calls[mode][variant], slice_s)
                    bucket = samples[mode][variant]
                    # The server's own CPU per call: far steadier than latencies on a shared machine.
                    bucket["cpu"].append((cpu[variant]() - cpu_before) / (len(seq) + len(conc)))
                    bucket["seq"] += seq
                    bucket["conc"] += conc
                    bucket["thr"].append(throughput)
                    bucket["seq_med"].append(statistics.median(seq))
                    bucket["conc_med"].append(statistics.median(conc))
                    rate[variant] = max(rate[variant], throughput, len(seq) / slice_s)
    return samples


def ratios(got: dict[str, list[Any]], ref: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """Per-round ratios of one server to another (median, min, max, the rounds)."""

    def per_round(field: str) -> dict[str, Any]:
        return spread([a / b for a, b in zip(got[field], ref[field], strict=True)])

    return {
        "sequential_median_latency": per_round("seq_med"),
        "concurrent_median_latency": per_round("conc_med"),
        "concurrent_throughput": per_round("thr"),
        "server_cpu_per_call": per_round("cpu"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    parser.add_argument("--seconds", type=float, default=None, help="total measuring time (default 90)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10)")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout with its .venv: its `full` server too"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)
    seconds = ns.seconds if ns.seconds is not None else (1.5 if ns.quick else 90.0)
    rounds = ns.rounds if ns.rounds is not None else (1 if ns.quick else 10)
    args = Args(quick=ns.quick, seconds=seconds, results=ns.results)
    names = list(VARIANTS) + ([BASELINE] if ns.baseline else [])
    slice_s = seconds / (rounds * len(MODES) * len(names) * 2)
    key = keys.generate_key("ES256")
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        state = Path(tmp)
        jwks = state / "jwks.json"
        jwks.write_text(json.dumps({"keys": [key.public_jwk()]}))

        def server(name: str) -> ServerProcess:
            auth = "full" if name in (BASELINE, "dpop") else name
            db = str(seeded_bank(state / f"{name.replace(' ', '-')}.db"))
            argv: tuple[str, ...] = ("mcp", "--auth", auth, "--db", db, "--jwks-file", str(jwks))
            if name == "dpop":
                argv += ("--dpop",)
            if name == BASELINE:
                return ServerProcess(*argv, checkout=ns.baseline.resolve())
            return ServerProcess(*argv, inline=ns.quick)

        servers = {name: server(name) for name in names}
        with running(*servers.values()):
            urls = {v: f"{s.base}/mcp" for v, s in servers.items()}
            # --quick keeps the smoke run short: 4 clients stand in for 16.
            concurrency = 4 if ns.quick else CONCURRENCY
            cpu = {v: s.cpu_seconds for v, s in servers.items()}
            call_key = keys.generate_key("ES256")  # the client's DPoP key, as one voice call's
            samples = asyncio.run(measure(urls, key, call_key, rounds, slice_s, concurrency, cpu))

    report = Report("mcp_call", args)
    rows = []
    for mode in MODES:
        off = samples[mode]["off"]
        figures: dict[str, Any] = {}
        for variant in names:
            got = samples[mode][variant]
            seq, conc = latency_ms(got["seq"]), latency_ms(got["conc"])
            figures[variant] = {
                "sequential": seq,
                "concurrent": conc | {"throughput_per_s": spread(got["thr"])},
                "ratio_to_off": ratios(got, off),
                "server_cpu_ms_per_call": spread([c * 1000 for c in got["cpu"]]),
            }
            r = figures[variant]["ratio_to_off"]
            rows.append(
                (
                    f"{mode} / {variant}",
                    seq["median_ms"],
                    seq["p99_ms"],
                    conc["median_ms"],
                    conc["p99_ms"],
                    statistics.median(got["thr"]),
                    r["sequential_median_latency"]["median"],
                    f"{r['sequential_median_latency']['min']:.2f}-{r['sequential_median_latency']['max']:.2f}",
                    r["concurrent_median_latency"]["median"],
                    r["concurrent_throughput"]["median"],
                    figures[variant]["server_cpu_ms_per_call"]["median"],
                )
            )
        if ns.baseline:
            figures["full_vs_baseline"] = ratios(samples[mode]["full"], samples[mode][BASELINE])
        # DPoP against bearer auth on the same wiring: what the proof itself costs.
        figures["dpop"]["ratio_to_bearer"] = ratios(samples[mode]["dpop"], samples[mode]["full"])
        report.figures[mode] = figures
        for variant, name in (("full", "auth"), ("dpop", "DPoP auth")):
            got_ratios = figures[variant]["ratio_to_off"]
            report.checks += [
                Check(
                    f"{mode}: seq median latency, {name}/off",
                    got_ratios["sequential_median_latency"]["median"],
                    TARGET_LATENCY,
                    "<=",
                ),
                Check(
                    f"{mode}: 16 conc median latency, {name}/off",
                    got_ratios["concurrent_median_latency"]["median"],
                    TARGET_LATENCY,
                    "<=",
                ),
                Check(
                    f"{mode}: 16 conc throughput, {name}/off",
                    got_ratios["concurrent_throughput"]["median"],
                    TARGET_THROUGHPUT,
                    ">=",
                ),
            ]
        if ns.baseline and mode != "raw fresh":
            cpu_ratio = figures["full_vs_baseline"]["server_cpu_per_call"]["median"]
            report.checks.append(
                Check(f"{mode}: server CPU per call, now/baseline", cpu_ratio, TARGET_CPU_VS_BASELINE, "<=")
            )
    report.figures |= {"rounds": rounds, "concurrency": concurrency, "slice_seconds": round(slice_s, 3)}
    if ns.baseline:
        report.notes.append(f"baseline: the `full` server of {ns.baseline} with its own .venv")
    print_table(
        "mcp_call: get_balance over loopback HTTP (latency in ms; ratios to auth off per round)",
        (
            "mode / server",
            "seq p50",
            "seq p99",
            "16c p50",
            "16c p99",
            "16c calls/s",
            "seq ×",
            "seq × min-max",
            "16c ×",
            "thr ×",
            "srv CPU ms/call",
        ),
        rows,
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
