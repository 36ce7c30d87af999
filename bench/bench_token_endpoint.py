"""Issuer `/token`, server-bound: pre-signed bodies driven by wrk, against a bare endpoint of the same server.

Run: .venv/bin/python bench/bench_token_endpoint.py [--quick] [--seconds N] [--rounds R] [--baseline DIR]
One issuer process (uvicorn, file key store, in-memory refresh store) also serves `POST /bare`, a route of the
same kind as /token answering a fixed JSON body of a token answer's size. Before each round every request body
is prepared: client assertions signed (single-use jtis, one per request), session grants signed with the
issuer's own key, refresh tokens obtained by untimed token exchanges. The timed phase is wrk posting those
bodies (bench/wrk_bodies.lua) over 16 connections; the generator's own CPU (from the kernel) gives its
capacity, which must be >= 3x the server's rate on the bare endpoint, or the figures measure the generator.
Rounds interleave bare, client_credentials, refresh and token exchange (and node-oidc-provider's
client_credentials when node and bench/node/node_modules are present: `cd bench/node && npm ci`).
Targets (issue 12): each grant >= 0.5 of bare; ours >= 1.0x node's throughput at <= 1.0x its CPU per token.
Beside them, evidence: each grant's physical floor, a route of the same app doing only that grant's signature
work (one ES256 check and one signature; two checks for the token exchange) and answering what bare answers,
interleaved like the rest: grant / floor says how far the issuer is from what any ES256 issuer must spend.
`--baseline DIR` adds the issuer of another checkout (its own .venv, its own state) with the same four
variants interleaved with ours in every round: ours / baseline per round, for before/after figures.
Without wrk (Debian: apt-get install wrk) the generator is Python processes over raw sockets.
Writes bench/results/token_endpoint.json with every round's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    Args,
    Check,
    Report,
    ServerProcess,
    free_port,
    print_table,
    quiet_logs,
    running,
    spread,
)
from _load import Load, have_wrk, run_python, run_wrk
from _world import JWT_TYPE, TOKEN_EXCHANGE, auth, client_keys, write_issuer_state

import keys

CONNECTIONS = 16
TARGET = 0.5
HEADROOM = 3.0
NODE_DIR = BENCH_DIR / "node"
NODE = "node client_credentials"
OURS = ("bare", "client_credentials", "refresh", "exchange")
BASELINE_PREFIX = "baseline "
# Each grant's physical floor (bench/_serve.py): its signature checks and its one signature, nothing else.
FLOORS = {"floor 1 check + 1 sign": "/floor/1", "floor 2 checks + 1 sign": "/floor/2"}
GRANT_FLOOR = {
    "client_credentials": "floor 1 check + 1 sign",  # the client assertion; the access token
    "refresh": "floor 1 check + 1 sign",
    "exchange": "floor 2 checks + 1 sign",  # the client assertion and the session grant; the access token
}
ROUTES = {"bare": "/bare", **FLOORS}


def node_missing() -> str | None:
    """Why the node peer cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
        return "bench/node/node_modules is missing (cd bench/node && npm ci)"
    return None


class NodePeer(ServerProcess):
    """node-oidc-provider (bench/node/peer.mjs) as a child process, ready once `/healthz` answers."""

    def __init__(self, config: Path, port: int) -> None:
        super().__init__("node", port=port)
        self._config = config

    def start(self) -> NodePeer:
        env = {**os.environ, "NODE_ENV": "production"}
        self._process = subprocess.Popen(
            ["node", str(NODE_DIR / "peer.mjs"), str(self._config), str(self.port)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        return self


def private_jwk(pair: keys.KeyPair) -> dict[str, str]:
    """The ES256 private JWK node-oidc-provider signs with."""
    d = pair.private_key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    return {**pair.public_jwk(), "d": base64.urlsafe_b64encode(d).rstrip(b"=").decode(), "use": "sig"}


class Bodies:
    """Request bodies as the product's clients send them, each signed before the timed phase."""

    def __init__(self, base: str, ck: dict[str, keys.KeyPair], grant_key: keys.KeyPair) -> None:
        self.base = base
        self._ck = ck
        self._grant_key = grant_key

    def _form(self, client_id: str, audience_base: str, form: dict[str, str]) -> str:
        return urlencode(form | auth(self._ck, client_id, audience_base, time.time()))

    def client_credentials(self, count: int, base: str | None = None) -> list[str]:
        form = {"grant_type": "client_credentials", "scope": "sessions:create"}
        return [self._form("backend", base or self.base, form) for _ in range(count)]

    def bare(self, count: int) -> list[str]:
        # The bare handler reads nothing: one signed body of the same size, repeated.
        return self.client_credentials(1) * count

    def grant(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.base,
            "sub": "alice",
            "aud": self.base,
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_urlsafe(16),
            "sid": f"vb-{secrets.token_urlsafe(12)}",
            "scope": "read transact configure",
            "may_act": {"sub": "orchestrator"},
        }
        return keys.sign(claims, self._grant_key, typ="session-grant+jwt")

    def exchange(self, count: int) -> list[str]:
        form = {"grant_type": TOKEN_EXCHANGE, "subject_token_type": JWT_TYPE, "scope": "read"}
        return [
            self._form("orchestrator", self.base, form | {"subject_token": self.grant()})
            for _ in range(count)
        ]

    def refresh(self, tokens: Sequence[str]) -> list[str]:
        form = {"grant_type": "refresh_token", "scope": "read"}
        return [self._form("orchestrator", self.base, form | {"refresh_token": t}) for t in tokens]


async def issuer_key(state: Path) -> keys.KeyPair:
    store = keys.FileKeyStore(
        state / "keys", passphrase=None, policy=keys.RotationPolicy(max_token_lifetime=600)
    )
    ring = await store.load(time.time())
    return ring.signing_key("ES256")


class Driver:
    """Runs one timed load with wrk, or the Python fallback."""

    def __init__(self, use_wrk: bool) -> None:
        self.use_wrk = use_wrk
        self.name = "wrk -t1 -c16" if use_wrk else "2 Python processes (raw sockets)"

    def run(self, url: str, bodies: Sequence[str], seconds: float, cpu: Callable[[], float]) -> Load:
        if self.use_wrk:
            return run_wrk(url, bodies, seconds, connections=CONNECTIONS, server_cpu=cpu)
        return run_python(url, bodies, seconds, connections=CONNECTIONS, server_cpu=cpu)

    @staticmethod
    def refresh_tokens(base: str, bodies: Bodies, count: int) -> list[str]:
        """`count` live refresh tokens, by untimed token exchanges (16 httpx clients; nothing timed here)."""
        exchanges = bodies.exchange(count)

        async def obtain() -> list[str]:
            tokens: list[str] = []
            headers = {"content-type": "application/x-www-form-urlencoded"}
            async with httpx.AsyncClient(timeout=30) as http:

                async def worker(share: Sequence[str]) -> None:
                    for body in share:
                        answer = await http.post(f"{base}/token", content=body, headers=headers)
                        if answer.status_code != 200:
                            raise RuntimeError(f"exchange: HTTP {answer.status_code} {answer.text[:200]}")
                        tokens.append(answer.json()["refresh_token"])

                await asyncio.gather(*(worker(exchanges[i::CONNECTIONS]) for i in range(CONNECTIONS)))
            return tokens

        return asyncio.run(obtain())


def measure(
    servers: dict[str, ServerProcess],
    bodies: dict[str, Bodies],
    node_bodies: Callable[[int], list[str]] | None,
    driver: Driver,
    rounds: int,
    slice_s: float,
) -> dict[str, list[Load]]:
    """Interleaved rounds; each round prepares every body first, then times each variant once.

    `bodies` has one entry per issuer: "" for ours, BASELINE_PREFIX for a baseline checkout's (its variants
    are named with that prefix and interleaved with ours).
    """
    prefixes = list(bodies)
    # The floors are harness routes, the same on either side: measured on ours only.
    ours = [*OURS, *FLOORS]
    variants = ours + [p + v for p in prefixes if p for v in OURS] + ([NODE] if node_bodies else [])

    def issuer_of(variant: str) -> tuple[ServerProcess, Bodies, str]:
        prefix = BASELINE_PREFIX if variant.startswith(BASELINE_PREFIX) else ""
        return servers[prefix + "issuer"], bodies[prefix], variant.removeprefix(prefix)

    urls = {
        v: f"{issuer_of(v)[0].base}{ROUTES.get(issuer_of(v)[2], '/token')}" for v in variants if v != NODE
    }
    if node_bodies:
        urls[NODE] = f"{servers['node'].base}/token"
    cpu = {v: (servers["node"] if v == NODE else issuer_of(v)[0]).cpu_seconds for v in variants}
    # Generous first guesses; later rounds size from the fastest rate seen (with headroom).
    rate = {v: {"bare": 3000.0, "exchange": 500.0}.get(issuer_of(v)[2], 1000.0) for v in variants}

    def prepare(variant: str, seconds: float) -> list[str]:
        count = math.ceil(rate[variant] * seconds * 1.6) + 200
        if variant == NODE:
            assert node_bodies is not None
            return node_bodies(count)
        issuer, own, kind = issuer_of(variant)
        if kind in ROUTES:  # bare and the floors read nothing
            return own.bare(count)
        if kind == "client_credentials":
            return own.client_credentials(count)
        if kind == "exchange":
            return own.exchange(count)
        return own.refresh(driver.refresh_tokens(issuer.base, own, count))

    def timed(variant: str, seconds: float, prepared: list[str] | None = None) -> Load:
        """One run; a run that ran out of bodies is void: sized up from what it saw and run again."""
        bodies_now = prepared if prepared is not None else prepare(variant, seconds)
        while True:
            load = driver.run(urls[variant], bodies_now, seconds, cpu[variant])
            if not load.out_of_bodies:
                rate[variant] = max(rate[variant], load.rate)
                return load
            rate[variant] *= 2
            bodies_now = prepare(variant, seconds)

    for variant in variants:  # warm up: code paths hot, first rate estimates
        timed(variant, min(1.0, slice_s))
    samples: dict[str, list[Load]] = {v: [] for v in variants}
    for index in range(rounds):
        prepared = {v: prepare(v, slice_s) for v in variants}
        order = variants[index % len(variants) :] + variants[: index % len(variants)]
        for variant in order:
            samples[variant].append(timed(variant, slice_s, prepared[variant]))
    return samples


def per_round(
    loads: Sequence[Load], others: Sequence[Load], figure: Callable[[Load], float]
) -> dict[str, Any]:
    """`figure` of each round's load over the same round's other load: median, min and max."""
    return spread([figure(a) / figure(b) for a, b in zip(loads, others, strict=True)])


def report_floors(report: Report, samples: dict[str, list[Load]]) -> None:
    """How far each grant is from its physical floor, and the floor from bare: evidence beside the targets."""

    def cpu(load: Load) -> float:
        return load.server_cpu_ms_per_request

    def rate(load: Load) -> float:
        return load.rate

    figures: dict[str, dict[str, Any]] = {}
    for grant, floor in GRANT_FLOOR.items():
        figures[grant] = {
            "floor": floor,
            "throughput_grant_over_floor": per_round(samples[grant], samples[floor], rate),
            "cpu_grant_over_floor": per_round(samples[grant], samples[floor], cpu),
            "throughput_floor_over_bare": per_round(samples[floor], samples["bare"], rate),
            "cpu_floor_over_bare": per_round(samples[floor], samples["bare"], cpu),
        }
    report.figures["floors"] = figures
    print_table(
        "token_endpoint: each grant against its physical floor (its signature work alone), per round",
        ("grant", "floor", "thr grant/floor", "min-max", "CPU grant/floor", "thr floor/bare", "min-max"),
        [
            (
                grant,
                f["floor"],
                f["throughput_grant_over_floor"]["median"],
                f"{f['throughput_grant_over_floor']['min']:.3f}-{f['throughput_grant_over_floor']['max']:.3f}",
                f["cpu_grant_over_floor"]["median"],
                f["throughput_floor_over_bare"]["median"],
                f"{f['throughput_floor_over_bare']['min']:.3f}-{f['throughput_floor_over_bare']['max']:.3f}",
            )
            for grant, f in figures.items()
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    parser.add_argument("--seconds", type=float, default=None, help="total measuring time (default 60)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 6)")
    parser.add_argument("--no-node", action="store_true", help="leave node-oidc-provider out")
    parser.add_argument(
        "--issuer-checkout", type=Path, help="serve the issuer of another checkout (its .venv): a before run"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (its .venv): its issuer too, interleaved with ours round by round",
    )
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    ns = parser.parse_args(argv)
    seconds = ns.seconds if ns.seconds is not None else (2.0 if ns.quick else 60.0)
    rounds = ns.rounds if ns.rounds is not None else (1 if ns.quick else 6)
    args = Args(quick=ns.quick, seconds=seconds, results=ns.results)
    report = Report("token_endpoint", args)

    use_wrk = have_wrk()
    if not use_wrk:
        report.notes.append(
            "wrk is not installed (Debian: apt-get install wrk); Python generator processes instead"
        )
    driver = Driver(use_wrk)
    why_no_node = "left out (--no-node)" if ns.no_node else node_missing()
    if why_no_node:
        report.notes.append(f"node-oidc-provider peer skipped: {why_no_node}")
    variants = len(OURS) * (2 if ns.baseline else 1) + len(FLOORS) + (0 if why_no_node else 1)
    slice_s = float(max(1, round(seconds / (rounds * variants))))  # wrk counts whole seconds

    ck = client_keys()
    with tempfile.TemporaryDirectory(prefix="bench-token-") as tmp:
        state = write_issuer_state(Path(tmp), ck)
        checkout = ns.issuer_checkout.resolve() if ns.issuer_checkout else None
        servers: dict[str, ServerProcess] = {
            "issuer": ServerProcess("issuer", "--state", str(state), checkout=checkout)
        }
        if ns.baseline:
            base_state = write_issuer_state(Path(tmp) / "baseline", ck)
            servers[BASELINE_PREFIX + "issuer"] = ServerProcess(
                "issuer", "--state", str(base_state), checkout=ns.baseline.resolve()
            )
        node_bodies = None
        if not why_no_node:
            peer_port = free_port()
            while peer_port == servers["issuer"].port:  # the kernel may hand out a just-freed port again
                peer_port = free_port()
            peer_base = f"http://127.0.0.1:{peer_port}"
            config = Path(tmp) / "peer.json"
            config.write_text(
                json.dumps(
                    {
                        "issuer": peer_base,
                        "issuer_jwk": private_jwk(keys.generate_key("ES256")),
                        "client_id": "backend",
                        "client_jwk": ck["backend"].public_jwk(),
                        "resource": servers["issuer"].base,
                        "scope": "sessions:create",
                    }
                )
            )
            servers["node"] = NodePeer(config, peer_port)
        with running(*servers.values()):
            bodies = Bodies(servers["issuer"].base, ck, asyncio.run(issuer_key(state)))
            issuers = {"": bodies}
            if ns.baseline:
                base = servers[BASELINE_PREFIX + "issuer"].base
                issuers[BASELINE_PREFIX] = Bodies(base, ck, asyncio.run(issuer_key(base_state)))
            if "node" in servers:
                node_base = servers["node"].base

                def node_bodies(count: int) -> list[str]:
                    return bodies.client_credentials(count, base=node_base)

            samples = measure(servers, issuers, node_bodies, driver, rounds, slice_s)

    bare = samples["bare"]
    rows = []
    for variant, loads in samples.items():
        own_bare = samples[BASELINE_PREFIX + "bare"] if variant.startswith(BASELINE_PREFIX) else bare
        ratios = [load.rate / b.rate for load, b in zip(loads, own_bare, strict=True)]
        figures: dict[str, Any] = {
            "throughput_per_s": spread([load.rate for load in loads]),
            "ratio_to_bare": spread(ratios),
            "p50_ms": spread([load.p50_ms for load in loads]),
            "p99_ms": spread([load.p99_ms for load in loads]),
            "server_cpu_ms_per_request": spread([load.server_cpu_ms_per_request for load in loads]),
            "failed_requests": sum(load.errors for load in loads),
            "rounds": [asdict(load) | {"rate": load.rate} for load in loads],
        }
        report.figures[variant] = figures
        rows.append(
            (
                variant,
                figures["throughput_per_s"]["median"],
                figures["p50_ms"]["median"],
                figures["p99_ms"]["median"],
                figures["server_cpu_ms_per_request"]["median"],
                figures["ratio_to_bare"]["median"],
                f"{figures['ratio_to_bare']['min']:.3f}-{figures['ratio_to_bare']['max']:.3f}",
                figures["failed_requests"],
            )
        )
    headroom = spread([b.generator_capacity / b.rate for b in bare])
    report.figures |= {
        "generator": driver.name,
        "generator_headroom_on_bare": headroom,
        "connections": CONNECTIONS,
        "rounds": rounds,
        "slice_seconds": slice_s,
    }
    report.checks = [
        Check("generator capacity / server rate on bare (min of rounds)", headroom["min"], HEADROOM, ">="),
        *(
            Check(f"{v} throughput / bare", report.figures[v]["ratio_to_bare"]["median"], TARGET, ">=")
            for v in ("client_credentials", "refresh", "exchange")
        ),
        Check(
            "failed /token requests",
            sum(report.figures[v]["failed_requests"] for v in samples if not v.endswith("bare")),
            0,
            "==",
            unit="count",
        ),
    ]
    if NODE in samples:
        ours, theirs = samples["client_credentials"], samples[NODE]
        thr = spread([a.rate / b.rate for a, b in zip(ours, theirs, strict=True)])
        cpu = spread(
            [
                a.server_cpu_ms_per_request / b.server_cpu_ms_per_request
                for a, b in zip(ours, theirs, strict=True)
            ]
        )
        report.figures["ours_vs_node"] = {"throughput": thr, "cpu_per_token": cpu}
        report.checks += [
            Check("client_credentials throughput, ours / node-oidc-provider", thr["median"], 1.0, ">="),
            Check("CPU per token, ours / node-oidc-provider", cpu["median"], 1.0, "<="),
        ]
    print_table(
        f"token_endpoint: {driver.name}, pre-signed bodies, {rounds} interleaved rounds of {slice_s:.1f} s "
        f"(generator headroom on bare: median {headroom['median']:.1f}x, min {headroom['min']:.1f}x)",
        ("endpoint", "req/s", "p50 ms", "p99 ms", "srv CPU ms/req", "x bare", "x bare min-max", "failed"),
        rows,
    )
    report_floors(report, samples)
    if ns.issuer_checkout:
        report.notes.append(f"the issuer of {ns.issuer_checkout} (its own .venv)")
    if ns.baseline:
        # Side by side: ours over the baseline's, per round, for the server's CPU per request.
        report.figures["vs_baseline"] = {
            v: {
                "server_cpu_per_request": spread(
                    [
                        a.server_cpu_ms_per_request / b.server_cpu_ms_per_request
                        for a, b in zip(samples[v], samples[BASELINE_PREFIX + v], strict=True)
                    ]
                ),
                "throughput": spread(
                    [a.rate / b.rate for a, b in zip(samples[v], samples[BASELINE_PREFIX + v], strict=True)]
                ),
            }
            for v in OURS
        }
        report.notes.append(f"baseline: the issuer of {ns.baseline} (its own .venv), interleaved with ours")
        print_table(
            "token_endpoint: ours / baseline, per round (median, min-max)",
            ("endpoint", "srv CPU per request", "min-max", "throughput", "min-max"),
            [
                (
                    v,
                    r["server_cpu_per_request"]["median"],
                    f"{r['server_cpu_per_request']['min']:.3f}-{r['server_cpu_per_request']['max']:.3f}",
                    r["throughput"]["median"],
                    f"{r['throughput']['min']:.3f}-{r['throughput']['max']:.3f}",
                )
                for v, r in report.figures["vs_baseline"].items()
            ],
        )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
