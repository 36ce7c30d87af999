"""Hostile tool arguments against the real MCP server: no input shape costs more than a benign one, no flood
slows another user down.

Run: .venv/bin/python bench/bench_hostile_input.py [--quick] [--seconds N] [--rounds R] [--attackers A]
One MCP server process (production wiring: keys.JWKSCache over a JWKS, keys.Verifier, a seeded SQLite bank)
on loopback HTTP, real ES256 access tokens (a fresh single-use one per `transact` call), raw JSON-RPC
`tools/call` on the 2026-07-28 path.
1. For every tool and string argument, the worst-shaped input (token fragments, `eyJ` repeated: the shape the
   old token regex was quadratic on) against a benign input of the same length (plausible text), at the
   argument's cap and at 10 times it, timed side by side in interleaved blocks: per block the median latency
   and the server's own CPU per call (/proc). Target: worst/benign <= 2 for every argument and size.
2. A victim (bob, `get_balance`) calls back to back, alone (calm) and while `--attackers` connections (one
   by default: one attacker's client) flood the server back to back with a hostile `account_type`: the
   ~150 KB one of issue 10 (over the 64 KiB body cap), and the largest the body cap lets through (refused
   by the input schema); calm and flood slices alternate. Target: victim p99 during each flood <= 2 x its
   calm p99 (median of the rounds' ratios). The server's CPU per call answered is recorded for each phase.
Every figure keeps the median of its rounds with their min and max. Writes bench/results/hostile_input.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    Args,
    Check,
    Report,
    ServerProcess,
    latency_ms,
    median_ratio,
    percentile,
    print_table,
    quiet_logs,
    running,
)
from _serve import BENCH_CLAIMS
from _world import seeded_bank

import keys
from mcp_server import Bank, make_engine

TARGET_RATIO = 2.0  # worst-shaped input / benign input of the same length
TARGET_VICTIM = 2.0  # victim p99 during the flood / calm p99
# The input of issue 10 (~150 KB), and the same shape as large as the default 64 KiB body cap lets through.
FLOODS = {"issue_150kb": "eyJ" * 50_000, "under_body_cap": "eyJ" * 21_000}
PROTOCOL = "2026-07-28"
_META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL,
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
SCOPES = {
    "make_payment": "transact",
    "transfer_between_accounts": "transact",
    "update_notification_settings": "configure",
}
# RFC 9396 authorization details a transact token carries for the one movement it may make.
DETAILS = {
    "make_payment": ("payment", ("from_account_id", "payee_id", "amount", "idempotency_key")),
    "transfer_between_accounts": (
        "transfer",
        ("from_account_id", "to_account_id", "amount", "idempotency_key"),
    ),
}
# A movement whose amount is no amount meets the auth layer first: no token's authorization details can name
# it, so the call is refused (403) before the input schema or the bank see it. That is its answer here.
DETAILS_REFUSED = b'{"error": "insufficient_authorization_details"}'
# Plausible text for each argument, repeated to the length under test.
BENIGN = {
    "account_type": "checking",
    "account_id": "acc_0123456789abcdef",
    "from_account_id": "acc_0123456789abcdef",
    "to_account_id": "acc_0123456789abcdef",
    "payee_id": "pye_0123456789abcdef",
    "amount": "123456789.12",
    "low_balance_threshold": "123456789.12",
    "idempotency_key": "pay-2026-05-01-0001-",
    "memo": "Rent for May, thanks! ",
    "channel": "email",
}


def shaped(sample: str, length: int) -> str:
    return (sample * (length // len(sample) + 1))[:length]


def worst(length: int) -> str:
    return shaped("eyJ", length)


@dataclass(frozen=True)
class Case:
    """One argument of one tool at one length; the other arguments are valid."""

    tool: str
    argument: str
    cap: int
    length: int
    base: dict[str, Any]

    @property
    def refusable(self) -> bool:
        """Whether the auth layer may refuse the call outright (a movement's amount)."""
        return self.tool in DETAILS and self.argument == "amount"

    @property
    def label(self) -> str:
        return f"{self.tool}.{self.argument} @{self.length // self.cap}x cap ({self.length})"

    def arguments(self, shape: str) -> dict[str, Any]:
        value = worst(self.length) if shape == "worst" else shaped(BENIGN[self.argument], self.length)
        # A fixed idempotency key per shape: the first payment runs, every later one is the same replay.
        extra = {"idempotency_key": f"bench-{shape}-{self.argument}-{self.length}"}
        return self.base | (extra if "idempotency_key" in self.base else {}) | {self.argument: value}


class Tokens:
    """Real ES256 access tokens: one reusable per (user, scope), a fresh one per transact call."""

    def __init__(self, key: keys.KeyPair, resource: str) -> None:
        self._key = key
        self._resource = resource
        self._reusable: dict[tuple[str, str], str] = {}

    def _sign(self, sub: str, scope: str, details: list[dict[str, Any]] | None = None) -> str:
        now = int(time.time())
        extra = {"authorization_details": details} if details else {}
        claims = (
            BENCH_CLAIMS
            | extra
            | {
                "sub": sub,
                "scope": scope,
                "aud": self._resource,
                "jti": secrets.token_urlsafe(16),
                "iat": now,
                "nbf": now,
                "exp": now + 60 if scope == "transact" else now + 3000,
            }
        )
        return keys.sign(claims, self._key, typ="at+jwt")

    def batch(
        self, sub: str, scope: str, count: int, call: tuple[str, dict[str, Any]] | None = None
    ) -> list[str]:
        """Tokens for `count` calls, signed before the timing; a transact one names `call`'s movement."""
        if scope == "transact":
            details = _details(*call) if call is not None else None
            return [self._sign(sub, scope, details) for _ in range(count)]
        token = self._reusable.setdefault((sub, scope), self._sign(sub, scope))
        return [token] * count


def _details(tool: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """The authorization details equal to a movement's arguments, so that only the arguments are judged."""
    kind, names = DETAILS[tool]
    return [{"type": kind, "currency": "USD"} | {name: arguments.get(name) for name in names}]


def body(tool: str, arguments: dict[str, Any]) -> bytes:
    params = {"name": tool, "arguments": arguments, "_meta": _META}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()


def headers(tool: str, token: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": PROTOCOL,
        "mcp-method": "tools/call",
        "mcp-name": tool,
        "authorization": f"Bearer {token}",
    }


async def post(
    http: httpx.AsyncClient, url: str, tool: str, payload: bytes, token: str, *, refusable: bool = False
) -> float:
    """One call's latency; any answer but a JSON-RPC result (a refusal is one) is a finding, but for the auth
    layer's refusal of a movement's amount when `refusable`."""
    start = time.perf_counter()
    response = await http.post(url, content=payload, headers=headers(tool, token))
    elapsed = time.perf_counter() - start
    if refusable and (response.status_code, response.content) == (403, DETAILS_REFUSED):
        return elapsed
    if response.status_code != 200 or b'"result"' not in response.content:
        raise RuntimeError(f"{tool} answered HTTP {response.status_code}: {response.text[:200]}")
    return elapsed


def cases(engine: Engine, caps: dict[str, dict[str, int]]) -> list[Case]:
    """Every string argument of every tool, at its cap and at 10 times it, with valid other arguments."""
    bank = Bank(engine)
    accounts = {a["type"]: a["account_id"] for a in bank.get_balance("alice")["accounts"]}
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    bases = {
        "get_balance": {"account_type": "checking"},
        "list_transactions": {"account_id": accounts["checking"]},
        "make_payment": {
            "from_account_id": accounts["checking"],
            "payee_id": payee,
            "amount": "1.00",
            "idempotency_key": "bench",
            "memo": "rent",
        },
        "transfer_between_accounts": {
            "from_account_id": accounts["savings"],
            "to_account_id": accounts["checking"],
            "amount": "1.00",
            "idempotency_key": "bench",
        },
        "update_notification_settings": {"low_balance_threshold": "50.00", "channel": "sms"},
    }
    return [
        Case(tool, argument, cap, cap * factor, base)
        for tool, base in bases.items()
        for argument, cap in caps[tool].items()
        for factor in (1, 10)
    ]


async def load_caps(http: httpx.AsyncClient, url: str, token: str) -> dict[str, dict[str, int]]:
    """Each tool's string arguments and their maxLength, from the server's own `tools/list`."""
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": _META}}
    sent = headers("", token) | {"mcp-method": "tools/list"}
    del sent["mcp-name"]
    answer = (await http.post(url, content=json.dumps(message).encode(), headers=sent)).json()
    caps: dict[str, dict[str, int]] = {}
    for tool in answer["result"]["tools"]:
        found: dict[str, int] = {}
        for name, prop in tool["inputSchema"]["properties"].items():
            for branch in prop.get("anyOf", [prop]):
                if branch.get("type") == "string":
                    found[name] = int(branch["maxLength"])
        if found:
            caps[tool["name"]] = found
    return caps


def spread(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """Median of per-round values with the min and max of the rounds."""
    return {
        "median": round(statistics.median(values) * scale, 4),
        "min": round(min(values) * scale, 4),
        "max": round(max(values) * scale, 4),
    }


async def measure_shapes(
    server: ServerProcess, tokens: Tokens, all_cases: list[Case], rounds: int, block: int
) -> dict[str, dict[str, list[float]]]:
    """Per case and round: median latency and server CPU per call of a worst block and a benign block."""
    url = f"{server.base}/mcp"
    got: dict[str, dict[str, list[float]]] = {
        c.label: {k: [] for k in ("worst_ms", "benign_ms", "ratio", "worst_cpu", "benign_cpu", "cpu_ratio")}
        for c in all_cases
    }
    async with httpx.AsyncClient(timeout=60) as http:
        for index in range(rounds):
            for case in all_cases:
                scope = SCOPES.get(case.tool, "read")
                shapes = ("worst", "benign") if index % 2 == 0 else ("benign", "worst")
                measured: dict[str, tuple[float, float]] = {}
                for shape in shapes:
                    arguments = case.arguments(shape)
                    payload = body(case.tool, arguments)
                    batch = tokens.batch("alice", scope, block + 1, (case.tool, arguments))
                    refusable = case.refusable
                    # warm: connection, first payment
                    await post(http, url, case.tool, payload, batch[0], refusable=refusable)
                    cpu_before = server.cpu_seconds()
                    latencies = [
                        await post(http, url, case.tool, payload, t, refusable=refusable) for t in batch[1:]
                    ]
                    cpu = (server.cpu_seconds() - cpu_before) / block
                    measured[shape] = (statistics.median(latencies), cpu)
                row = got[case.label]
                row["worst_ms"].append(measured["worst"][0] * 1000)
                row["benign_ms"].append(measured["benign"][0] * 1000)
                row["ratio"].append(measured["worst"][0] / measured["benign"][0])
                row["worst_cpu"].append(measured["worst"][1] * 1000)
                row["benign_cpu"].append(measured["benign"][1] * 1000)
                if measured["benign"][1] > 0:
                    row["cpu_ratio"].append(measured["worst"][1] / measured["benign"][1])
    return got


async def measure_flood(
    server: ServerProcess, tokens: Tokens, rounds: int, slice_s: float, attackers: int
) -> dict[str, Any]:
    """Victim latencies in calm slices and in each flood's slices, interleaved; the attackers' calls timed."""
    url = f"{server.base}/mcp"
    victim_payload = body("get_balance", {"account_type": "checking"})
    victim_token = tokens.batch("bob", "read", 1)[0]
    attacker_token = tokens.batch("alice", "read", 1)[0]
    phases = ("calm", *FLOODS)
    got: dict[str, dict[str, list[float]]] = {
        p: {"all": [], "p99": [], "attacks": [], "cpu_per_call": []} for p in phases
    }
    limits = httpx.Limits(max_connections=attackers + 1)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:

        async def victim(deadline: float) -> list[float]:
            samples = []
            while time.perf_counter() < deadline:
                samples.append(await post(http, url, "get_balance", victim_payload, victim_token))
            return samples

        attack_headers = headers("get_balance", attacker_token)

        async def attacker(payload: bytes, stop: asyncio.Event, attacks: list[float]) -> None:
            while not stop.is_set():
                start = time.perf_counter()
                response = await http.post(url, content=payload, headers=attack_headers)
                attacks.append(time.perf_counter() - start)
                if response.status_code not in (200, 413):
                    raise RuntimeError(f"the attack answered HTTP {response.status_code}")

        await victim(time.perf_counter() + min(0.2, slice_s))  # warm
        for index in range(rounds):
            for phase in phases[index % len(phases) :] + phases[: index % len(phases)]:
                stop = asyncio.Event()
                flood: list[asyncio.Task[None]] = []
                attacks_before = len(got[phase]["attacks"])
                cpu_before = server.cpu_seconds()
                if phase != "calm":
                    payload = body("get_balance", {"account_type": FLOODS[phase]})
                    flood = [
                        asyncio.create_task(attacker(payload, stop, got[phase]["attacks"]))
                        for _ in range(attackers)
                    ]
                    await asyncio.sleep(0.05)  # the flood is under way before the victim starts
                samples = await victim(time.perf_counter() + slice_s)
                stop.set()
                await asyncio.gather(*flood)
                # The server's own CPU per request it answered in this slice, victim's and attackers' alike.
                handled = len(samples) + len(got[phase]["attacks"]) - attacks_before
                got[phase]["cpu_per_call"].append((server.cpu_seconds() - cpu_before) / handled)
                got[phase]["all"] += samples
                got[phase]["p99"].append(percentile(samples, 99))
    return got


def run(args: Args, rounds: int, attackers: int) -> Report:
    block = 4 if args.quick else 40
    key = keys.generate_key("ES256")
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        state = Path(tmp)
        db = seeded_bank(state / "bank.db")
        jwks = state / "jwks.json"
        jwks.write_text(json.dumps({"keys": [key.public_jwk()]}))
        server = ServerProcess(
            "mcp", "--auth", "full", "--db", str(db), "--jwks-file", str(jwks), inline=args.quick
        )
        engine = make_engine(f"sqlite:///{db}")
        with running(server):
            tokens = Tokens(key, f"{server.base}/mcp")

            async def advertised() -> dict[str, dict[str, int]]:
                async with httpx.AsyncClient(timeout=30) as http:
                    return await load_caps(http, f"{server.base}/mcp", tokens.batch("alice", "read", 1)[0])

            all_cases = cases(engine, asyncio.run(advertised()))
            shapes = asyncio.run(measure_shapes(server, tokens, all_cases, rounds, block))
            # Twice as many (shorter) flood rounds: a p99 per slice is noisy, the median of their ratios less.
            slice_s = max(0.2, args.seconds / ((1 + len(FLOODS)) * 2 * rounds))
            flood = asyncio.run(measure_flood(server, tokens, 2 * rounds, slice_s, attackers))
        engine.dispose()
    return report(args, all_cases, shapes, flood, rounds, block, attackers)


def report(
    args: Args,
    all_cases: list[Case],
    shapes: dict[str, dict[str, list[float]]],
    flood: dict[str, Any],
    rounds: int,
    block: int,
    attackers: int,
) -> Report:
    result = Report("hostile_input", args)
    rows = []
    per_case: dict[str, Any] = {}
    for case in all_cases:
        got = shapes[case.label]
        figures: dict[str, Any] = {
            "worst_ms": spread(got["worst_ms"]),
            "benign_ms": spread(got["benign_ms"]),
            "ratio": spread(got["ratio"]),
            "server_cpu_ms_per_call": {
                "worst": spread(got["worst_cpu"]),
                "benign": spread(got["benign_cpu"]),
            },
            "server_cpu_ratio": spread(got["cpu_ratio"]) if got["cpu_ratio"] else None,
        }
        per_case[case.label] = figures
        rows.append(
            (
                case.label,
                figures["worst_ms"]["median"],
                figures["benign_ms"]["median"],
                figures["ratio"]["median"],
                f"{figures['ratio']['min']:.2f}-{figures['ratio']['max']:.2f}",
                figures["server_cpu_ratio"]["median"] if figures["server_cpu_ratio"] else float("nan"),
            )
        )
        result.checks.append(
            Check(f"{case.label}: worst/benign latency", figures["ratio"]["median"], TARGET_RATIO, "<=")
        )
    calm = latency_ms(flood["calm"]["all"])
    victim: dict[str, Any] = {
        "calm": calm
        | {
            "p99_ms_per_round": spread(flood["calm"]["p99"], 1000),
            "server_cpu_ms_per_call": _cpu(flood["calm"]["cpu_per_call"]),
        },
        "attackers": attackers,
    }
    table: list[tuple[Any, ...]] = [
        (
            "calm",
            calm["n"],
            calm["median_ms"],
            calm["p99_ms"],
            _range(flood["calm"]["p99"]),
            "-",
            "-",
            _median(victim["calm"]["server_cpu_ms_per_call"]),
        )
    ]
    for name, value in FLOODS.items():
        stormy = latency_ms(flood[name]["all"])
        # Rounds side by side: each flood slice's p99 against the calm slice of its own round, so that the
        # machine's noise, which moves both, cancels; the pooled p99s are kept beside it.
        ratio = median_ratio(flood[name]["p99"], flood["calm"]["p99"])
        pooled = stormy["p99_ms"] / calm["p99_ms"] if calm["p99_ms"] else float("nan")
        attack = latency_ms(flood[name]["attacks"])
        victim[name] = stormy | {
            "p99_ms_per_round": spread(flood[name]["p99"], 1000),
            "p99_ratio_to_calm": round(ratio, 4),
            "p99_ratio_to_calm_per_round": spread(
                [f / c for f, c in zip(flood[name]["p99"], flood["calm"]["p99"], strict=True)]
            ),
            "pooled_p99_ratio_to_calm": round(pooled, 4),
            "attack_body_bytes": len(body("get_balance", {"account_type": value})),
            "attacker_calls": attack,
            "server_cpu_ms_per_call": _cpu(flood[name]["cpu_per_call"]),
        }
        table.append(
            (
                f"flood: {name}",
                stormy["n"],
                stormy["median_ms"],
                stormy["p99_ms"],
                _range(flood[name]["p99"]),
                attack["n"],
                attack["median_ms"],
                _median(victim[name]["server_cpu_ms_per_call"]),
            )
        )
        result.checks.append(Check(f"victim p99, flood {name}/calm", ratio, TARGET_VICTIM, "<="))
    result.figures = {
        "cases": per_case,
        "victim": victim,
        "rounds": rounds,
        "flood_rounds": len(flood["calm"]["p99"]),
        "block": block,
    }
    print_table(
        "hostile_input: worst-shaped vs benign argument of the same length (median ms per call)",
        ("tool.argument @size", "worst ms", "benign ms", "ratio", "ratio min-max", "server CPU ×"),
        rows,
    )
    print_table(
        f"hostile_input: victim get_balance, alone and during floods by {attackers} attacker connection(s)",
        (
            "phase",
            "victim calls",
            "p50 ms",
            "p99 ms",
            "p99 per round min-max",
            "attacks",
            "attack p50 ms",
            "srv CPU ms/call",
        ),
        table,
    )
    return result


def _cpu(per_round: Sequence[float]) -> dict[str, float] | None:
    """Server CPU per call in ms over the rounds; None when /proc is not there (an inline server)."""
    finite = [value for value in per_round if value == value]  # NaN when inline
    return spread(finite, 1000) if finite else None


def _median(figure: dict[str, float] | None) -> float:
    return figure["median"] if figure else float("nan")


def _range(values: Sequence[float]) -> str:
    return f"{min(values) * 1000:.2f}-{max(values) * 1000:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    parser.add_argument("--seconds", type=float, default=None, help="flood phase time (default 20)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--attackers", type=int, default=1, help="attacker connections flooding back to back (default 1)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for <name>.json")
    ns = parser.parse_args(argv)
    seconds = ns.seconds if ns.seconds is not None else (0.6 if ns.quick else 20.0)
    rounds = ns.rounds or (1 if ns.quick else 5)
    args = Args(quick=ns.quick, seconds=seconds, results=ns.results)
    run(args, rounds, ns.attackers).write()


if __name__ == "__main__":
    quiet_logs()
    main()
