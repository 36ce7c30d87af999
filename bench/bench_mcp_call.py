"""MCP `get_balance` over loopback HTTP: the same server with auth on, with a pass-through verifier, and off.

Run: .venv/bin/python bench/bench_mcp_call.py [--quick] [--seconds N] [--rounds R]
Four MCP server processes (auth `full` = production wiring with keys.JWKSCache and keys.Verifier, called
with a bearer token; `dpop` = the same wiring with MCP_REQUIRE_DPOP, called with a DPoP-bound token and a
fresh proof per request, signed by the client as the orchestrator does; `passthrough` = the auth middleware
with a verifier that accepts anything; `off` = no auth middleware) are driven in interleaved rounds by the
real FastMCP client (one session per client) and by raw JSON-RPC `tools/call` over one reused httpx pool,
sequentially and with 16 concurrent clients. Ratios are medians of per-round ratios (per-round min and max
in the JSON). Target (issues 7 and 14): auth, bearer or DPoP, adds <= 10 % to median latency and takes
<= 10 % of throughput. Writes bench/results/mcp_call.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import httpx
import httpx2
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Check,
    Report,
    ServerProcess,
    latency_ms,
    median_ratio,
    parse_args,
    print_table,
    quiet_logs,
    running,
)
from _serve import BENCH_CLAIMS
from _world import seeded_bank

import keys

VARIANTS = ("off", "passthrough", "full", "dpop")
CLIENTS = ("mcp", "raw")
CONCURRENCY = 16
TARGET_LATENCY = 1.10  # auth adds at most 10 % to median latency
TARGET_THROUGHPUT = 0.90  # auth takes at most 10 % of throughput
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
    claims = {**BENCH_CLAIMS, "aud": resource, "iat": now, "nbf": now, "exp": now + 3000}
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


def raw_call(http: httpx.AsyncClient, url: str, token: str, dpop: keys.KeyPair | None = None) -> Call:
    headers = RPC_HEADERS | {"authorization": f"{'DPoP' if dpop else 'Bearer'} {token}"}

    def proved() -> dict[str, str]:
        if dpop is None:
            return headers
        proof = keys.dpop_proof(dpop, htm="POST", htu=url, now=time.time(), access_token=token)
        return headers | {"dpop": proof}

    async def call() -> None:
        response = await http.post(url, content=RPC_BODY, headers=proved())
        if response.status_code != 200 or b'"accounts"' not in response.content:
            raise RuntimeError(f"tools/call answered HTTP {response.status_code}")

    return call


async def measure(
    urls: dict[str, str],
    tokens: dict[str, str],
    dpop: keys.KeyPair,
    rounds: int,
    slice_s: float,
    concurrency: int,
    cpu: dict[str, Callable[[], float]],
) -> dict[str, Any]:
    """Interleaved rounds: every (client, variant) pair runs its sequential and concurrent slice per round."""
    samples: dict[str, dict[str, dict[str, list[Any]]]] = {
        c: {v: {"seq": [], "conc": [], "thr": [], "seq_med": [], "conc_med": [], "cpu": []} for v in VARIANTS}
        for c in CLIENTS
    }
    async with contextlib.AsyncExitStack() as stack:
        calls: dict[str, dict[str, list[Call]]] = {c: {} for c in CLIENTS}
        for variant in VARIANTS:
            sessions = []
            for _ in range(concurrency):
                auth: httpx2.Auth | str = tokens[variant]
                if variant == "dpop":
                    auth = DPoPAuth(dpop, tokens[variant])
                transport = StreamableHttpTransport(urls[variant], auth=auth)
                sessions.append(await stack.enter_async_context(Client(transport)))
            calls["mcp"][variant] = [mcp_call(s) for s in sessions]
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            http = await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=30))
            key = dpop if variant == "dpop" else None
            calls["raw"][variant] = [raw_call(http, urls[variant], tokens[variant], key)] * concurrency
            for client in CLIENTS:  # warm up: connections open, code paths hot
                await concurrent(calls[client][variant], min(0.2, slice_s))
        for index in range(rounds):
            for client in CLIENTS:
                turn = index % len(VARIANTS)
                order = VARIANTS[turn:] + VARIANTS[:turn]
                for variant in order:
                    cpu_before = cpu[variant]()
                    seq = await sequential(calls[client][variant][0], slice_s)
                    conc, throughput = await concurrent(calls[client][variant], slice_s)
                    bucket = samples[client][variant]
                    # The server's own CPU per call: far steadier than latencies on a shared machine.
                    bucket["cpu"].append((cpu[variant]() - cpu_before) / (len(seq) + len(conc)))
                    bucket["seq"] += seq
                    bucket["conc"] += conc
                    bucket["thr"].append(throughput)
                    bucket["seq_med"].append(statistics.median(seq))
                    bucket["conc_med"].append(statistics.median(conc))
    return samples


def ratios_to(
    got: dict[str, list[Any]], base: dict[str, list[Any]], *, spread: bool = False
) -> dict[str, Any]:
    """Per-round ratios of `got` to `base`: their medians, or (`spread`) their minimum and maximum."""

    def one(a: str, b: str) -> Any:
        if not spread:
            return round(median_ratio(got[a], base[b]), 4)
        ratios = [x / y for x, y in zip(got[a], base[b], strict=True) if y > 0]
        return [round(min(ratios), 4), round(max(ratios), 4)] if ratios else None

    return {
        "sequential_median_latency": one("seq_med", "seq_med"),
        "concurrent_median_latency": one("conc_med", "conc_med"),
        "concurrent_throughput": one("thr", "thr"),
        "server_cpu_per_call": one("cpu", "cpu"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, seconds=60, quick_seconds=1.2, argv=argv)
    rounds = 1 if args.quick else 10
    slice_s = args.seconds / (rounds * len(CLIENTS) * len(VARIANTS) * 2)
    key = keys.generate_key("ES256")
    call_key = keys.generate_key("ES256")  # the client's DPoP key, as one voice call's
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        state = Path(tmp)
        jwks = state / "jwks.json"
        jwks.write_text(json.dumps({"keys": [key.public_jwk()]}))
        servers = {
            v: ServerProcess(
                "mcp",
                "--auth",
                "full" if v == "dpop" else v,
                "--db",
                str(seeded_bank(state / f"{v}.db")),
                "--jwks-file",
                str(jwks),
                *(["--dpop"] if v == "dpop" else []),
                inline=args.quick,
            )
            for v in VARIANTS
        }
        with running(*servers.values()):
            urls = {v: f"{s.base}/mcp" for v, s in servers.items()}
            tokens = {
                v: access_token(key, url, call_key.kid if v == "dpop" else None) for v, url in urls.items()
            }
            # --quick keeps the smoke run short: 4 clients stand in for 16.
            concurrency = 4 if args.quick else CONCURRENCY
            cpu = {v: s.cpu_seconds for v, s in servers.items()}
            samples = asyncio.run(measure(urls, tokens, call_key, rounds, slice_s, concurrency, cpu))

    report = Report("mcp_call", args)
    rows = []
    for client in CLIENTS:
        off = samples[client]["off"]
        figures: dict[str, Any] = {}
        for variant in VARIANTS:
            got = samples[client][variant]
            seq, conc = latency_ms(got["seq"]), latency_ms(got["conc"])
            figures[variant] = {
                "sequential": seq,
                "concurrent": conc | {"throughput_per_s": round(statistics.median(got["thr"]), 1)},
                "ratio_to_off": ratios_to(got, off),
                "ratio_to_off_rounds_min_max": ratios_to(got, off, spread=True),
                "server_cpu_ms_per_call": round(statistics.median(got["cpu"]) * 1000, 3),
            }
            if variant == "dpop":
                # DPoP against bearer auth on the same wiring: what the proof itself costs.
                bearer = samples[client]["full"]
                figures[variant]["ratio_to_bearer"] = ratios_to(got, bearer)
                figures[variant]["ratio_to_bearer_rounds_min_max"] = ratios_to(got, bearer, spread=True)
            ratios = figures[variant]["ratio_to_off"]
            rows.append(
                (
                    f"{client} / auth {variant}",
                    seq["median_ms"],
                    seq["p99_ms"],
                    conc["median_ms"],
                    conc["p99_ms"],
                    statistics.median(got["thr"]),
                    ratios["sequential_median_latency"],
                    ratios["concurrent_median_latency"],
                    ratios["concurrent_throughput"],
                    figures[variant]["server_cpu_ms_per_call"],
                    ratios["server_cpu_per_call"],
                )
            )
        report.figures[client] = figures
        label = "FastMCP client" if client == "mcp" else "raw JSON-RPC"
        for variant, name in (("full", "auth"), ("dpop", "DPoP auth")):
            got_ratios = figures[variant]["ratio_to_off"]
            report.checks += [
                Check(
                    f"{label}: seq median latency, {name}/off",
                    got_ratios["sequential_median_latency"],
                    TARGET_LATENCY,
                    "<=",
                ),
                Check(
                    f"{label}: 16 conc median latency, {name}/off",
                    got_ratios["concurrent_median_latency"],
                    TARGET_LATENCY,
                    "<=",
                ),
                Check(
                    f"{label}: 16 conc throughput, {name}/off",
                    got_ratios["concurrent_throughput"],
                    TARGET_THROUGHPUT,
                    ">=",
                ),
            ]
    report.figures["rounds"] = rounds
    report.figures["concurrency"] = 4 if args.quick else CONCURRENCY
    report.figures["slice_seconds"] = round(slice_s, 3)
    print_table(
        "mcp_call: get_balance over loopback HTTP (latency in ms; ratios to auth off, medians of rounds)",
        (
            "client / server",
            "seq p50",
            "seq p99",
            "16c p50",
            "16c p99",
            "16c calls/s",
            "seq ×",
            "16c ×",
            "thr ×",
            "srv CPU ms/call",
            "CPU ×",
        ),
        rows,
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
