"""The agent's real tool call (`McpBank` + `TokenManager`) against one raw `tools/call` on the same server.

Run: .venv/bin/python bench/bench_agent_call.py [--quick] [--seconds N]
The issuer and the MCP server (production wiring: JWKS fetched from the issuer, every token verified) run in
their own processes on loopback. This process runs one voice call's token manager over the real issuer
client and the real `McpBank`, calling `get_balance` back to back, exactly what the agent does for a read;
beside it, in interleaved slices, raw JSON-RPC `tools/call` of `get_balance` over one httpx connection with
a `read` token from the same issuer (one request per call, the least an MCP call can cost). Both sides are
sequential (one voice call). The server's CPU per call is read from /proc around each slice.
Target (issue 12): agent p50 <= 1.25x raw p50. Writes bench/results/agent_call.json.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Check,
    Report,
    ServerProcess,
    free_port,
    latency_ms,
    parse_args,
    print_table,
    quiet_logs,
    running,
    spread,
)
from _world import client_keys, orchestrator_client, seeded_bank, session_grant, write_issuer_state
from bench_mcp_call import RPC_BODY, RPC_HEADERS

from orchestrator._bank._mcp import McpBank
from orchestrator._tokens._manager import TokenManager

TARGET = 1.25
SIDES = ("agent", "raw")

Call = Callable[[], Awaitable[None]]


async def timed(call: Call, seconds: float) -> list[float]:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        await call()
        end = time.perf_counter()
        samples.append(end - start)
        if end >= deadline:
            return samples


async def measure(
    issuer: str, mcp_url: str, ck: Any, rounds: int, slice_s: float, cpu: Callable[[], float]
) -> dict[str, dict[str, list[Any]]]:
    samples: dict[str, dict[str, list[Any]]] = {s: {"lat": [], "p50": [], "cpu": []} for s in SIDES}
    async with httpx.AsyncClient(timeout=30) as http, httpx.AsyncClient(timeout=30) as raw_http:
        tokens = TokenManager(orchestrator_client(http, issuer, ck))
        await tokens.start(await session_grant(http, issuer, ck), "read")
        bank = McpBank(tokens, mcp_url)
        raw_tokens = TokenManager(orchestrator_client(http, issuer, ck))
        await raw_tokens.start(await session_grant(http, issuer, ck), "read")

        async def agent() -> None:
            result = await bank.get_balance()
            if "accounts" not in result:
                raise RuntimeError("get_balance answered without accounts")

        async def raw() -> None:
            token = await raw_tokens.get_token("read")  # cached, as the agent's read token is
            headers = RPC_HEADERS | {"authorization": f"Bearer {token}"}
            response = await raw_http.post(mcp_url, content=RPC_BODY, headers=headers)
            if response.status_code != 200 or b'"accounts"' not in response.content:
                raise RuntimeError(f"tools/call answered HTTP {response.status_code}")

        calls = {"agent": agent, "raw": raw}
        try:
            for side in SIDES:  # warm up
                await timed(calls[side], min(0.3, slice_s))
            for index in range(rounds):
                order = SIDES if index % 2 == 0 else SIDES[::-1]
                for side in order:
                    before = cpu()
                    lat = await timed(calls[side], slice_s)
                    samples[side]["cpu"].append((cpu() - before) / len(lat))
                    samples[side]["lat"] += lat
                    samples[side]["p50"].append(statistics.median(lat))
        finally:
            await tokens.revoke()
            await raw_tokens.revoke()
            await bank.aclose()
    return samples


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, seconds=30, quick_seconds=1, argv=argv)
    rounds = 1 if args.quick else 10
    slice_s = args.seconds / (rounds * len(SIDES))
    ck = client_keys()
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        state = write_issuer_state(Path(tmp) / "issuer", ck)
        mcp_port = free_port()
        # The issuer's tokens name the MCP server's resource URL as their audience.
        resource = f"http://127.0.0.1:{mcp_port}/mcp"
        # --quick runs both servers in threads of this process (no interpreter start-up; figures not counted).
        issuer = ServerProcess("issuer", "--state", str(state), "--resource", resource, inline=args.quick)
        db = seeded_bank(Path(tmp) / "bank.db")
        mcp = ServerProcess("mcp", "--db", str(db), "--issuer", issuer.base, port=mcp_port, inline=args.quick)
        with running(issuer, mcp):
            samples = asyncio.run(
                measure(issuer.base, f"{mcp.base}/mcp", ck, rounds, slice_s, mcp.cpu_seconds)
            )

    report = Report("agent_call", args)
    ratio = spread([a / r for a, r in zip(samples["agent"]["p50"], samples["raw"]["p50"], strict=True)])
    cpu_ratio = spread([a / r for a, r in zip(samples["agent"]["cpu"], samples["raw"]["cpu"], strict=True)])
    rows = []
    for side in SIDES:
        lat = latency_ms(samples[side]["lat"])
        cpu_ms = spread([c * 1000 for c in samples[side]["cpu"]])
        report.figures[side] = lat | {"p50_ms_per_round": spread([p * 1000 for p in samples[side]["p50"]])}
        report.figures[side]["server_cpu_ms_per_call"] = cpu_ms
        rows.append((side, lat["median_ms"], lat["p99_ms"], lat["n"], cpu_ms["median"]))
    report.figures |= {"p50_agent_over_raw": ratio, "server_cpu_agent_over_raw": cpu_ratio, "rounds": rounds}
    report.checks = [Check("agent tool call p50 / raw tools/call p50", ratio["median"], TARGET, "<=")]
    print_table(
        f"agent_call: get_balance, one voice call, {rounds} interleaved rounds "
        f"(p50 ratio per round {ratio['min']:.2f}-{ratio['max']:.2f}; "
        f"server CPU ratio {cpu_ratio['median']:.2f})",
        ("side", "p50 ms", "p99 ms", "calls", "srv CPU ms/call"),
        rows,
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
