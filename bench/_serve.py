"""A benchmark server in its own process: the issuer (with a bare endpoint beside it) or the MCP server.

python bench/_serve.py issuer --state DIR --port P [--resource URL] [--access-lifetime S]
python bench/_serve.py mcp --port P --db FILE --auth full|passthrough|off (--jwks-file F | --issuer URL)
    [--dpop]
Either takes [--log-file F] [--log-level L]. The server logs as `voicebank up` does (orchestrator's one log
set-up: access lines, audit lines, library warnings through our formatter, at INFO by default), so the
figures include what production spends on its logs; without --log-file the lines go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from _no_auth import without_auth  # bench/ is on sys.path: this runs as a script or from a bench
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.applications import Starlette

from issuer import IssuerSettings
from issuer import create_app as create_issuer
from keys import JWKSCache, Verifier, VerifyKey, generate_key
from mcp_server import McpSettings, access_token_policy, build_app_from_settings
from mcp_server import create_app as create_mcp
from orchestrator._commands._serve import run_all
from orchestrator._logs import configure_logging

# What the bare endpoint answers: about the size of a /token answer, built once.
BARE_BODY = {
    "access_token": "x" * 560,
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "read",
    "refresh_token": "y" * 43,
}
# The physical floor of a grant, as a route beside /bare: its unavoidable signature work alone, with the keys
# package's own ES256 primitives (r||s to DER and back included), on a signing input of a client assertion's
# size: `checks` signature checks (the client assertion; for the token exchange the session grant too) and
# one signature (the access token). It reads nothing and answers what bare answers.
FLOOR_CHECKS = (1, 2)
FLOOR_SIGNING_INPUT = 450
# The caller the auth-less MCP variants run as (the claims a real access token carries).
BENCH_CLAIMS: dict[str, Any] = {
    "iss": "http://127.0.0.1:8000",
    "sub": "alice",
    "aud": "http://127.0.0.1:8001/mcp",
    "iat": 1_700_000_000,
    "nbf": 1_700_000_000,
    "exp": 4_000_000_000,
    "jti": "bench-jti",
    "client_id": "orchestrator",
    "scope": "read",
    "sid": "room-bench",
    "act": {"sub": "orchestrator"},
}


class PassThroughVerifier:
    """Accepts any token as the bench caller: the auth middleware runs in full, the signature check not."""

    async def verify_async(self, token: str) -> dict[str, Any]:
        return dict(BENCH_CLAIMS)


def issuer_settings(
    state: Path,
    url: str,
    resource: str,
    access_lifetime: int,
    redis_url: str | None = None,
    file_keys: bool = False,
) -> IssuerSettings:
    """A dev issuer over the bench's state directory: file keys (or Redis), no LiveKit."""
    return IssuerSettings(
        issuer_url=url,
        mcp_resource_url=resource,
        voicebank_state=state,
        issuer_clients_file=state / "clients.json",
        keys_store="redis" if redis_url and not file_keys else "file",
        redis_url=redis_url,
        keys_passphrase=None,
        voicebank_mode="dev",
        access_token_lifetime=access_lifetime,
        livekit_url=None,
        livekit_api_key=None,
        livekit_api_secret=None,
    )


def floor_endpoint(checks: int) -> Callable[[Request], Awaitable[Response]]:
    """A route doing a grant's signature work and nothing else: `checks` ES256 checks and one signature."""
    signer = generate_key("ES256")
    checker = VerifyKey.from_public_key(signer.public_key(), "ES256", signer.kid)
    signing_input = secrets.token_urlsafe(FLOOR_SIGNING_INPUT)[:FLOOR_SIGNING_INPUT].encode("ascii")
    signature = signer.sign(signing_input)

    async def endpoint(_request: Request) -> Response:
        for _ in range(checks):
            checker.check_signature(signing_input, signature)
        signer.sign(signing_input)
        return Response(orjson.dumps(BARE_BODY), media_type="application/json")

    return endpoint


def issuer_app(
    state: Path,
    port: int,
    resource: str,
    access_lifetime: int,
    redis_url: str | None = None,
    file_keys: bool = False,
) -> Any:
    url = f"http://127.0.0.1:{port}"
    settings = issuer_settings(state, url, resource, access_lifetime, redis_url, file_keys)
    app = create_issuer(settings)

    async def bare_endpoint(_request: Request) -> Response:
        # Rendered per request as /token renders its answers (orjson), with the same kind of response.
        return Response(orjson.dumps(BARE_BODY), media_type="application/json")

    async def preload_families(request: Request) -> JSONResponse:
        """Bench state: `count` live refresh families made through the store's own `create`."""
        count = min(int(request.query_params["count"]), 1_000_000)
        store = request.app.state.issuer.refresh
        now = time.time()
        for start in range(0, count, 50):  # batches: Redis serves many creates at once
            await asyncio.gather(
                *(
                    store.create(
                        client_id="orchestrator", sub="alice", sid=f"vb-pre-{i}", scope="read", now=now
                    )
                    for i in range(start, min(count, start + 50))
                )
            )
        return JSONResponse({"families": count})

    # The baseline: same FastAPI app, same server, the same kind of route as /token (a plain Starlette
    # route), a handler doing nothing but answer fixed JSON.
    app.add_route("/bare", bare_endpoint, methods=["POST"])
    for checks in FLOOR_CHECKS:
        app.add_route(f"/floor/{checks}", floor_endpoint(checks), methods=["POST"])
    app.add_route("/bench/families", preload_families, methods=["POST"])
    return app


def mcp_app(
    port: int,
    db: Path,
    auth: str,
    jwks_file: Path | None,
    issuer: str | None,
    refetch: float | None = None,
    redis_url: str | None = None,
    dpop: bool = False,
) -> Starlette:
    resource = f"http://127.0.0.1:{port}/mcp"
    settings = McpSettings(
        mcp_issuer_url=issuer or BENCH_CLAIMS["iss"],
        mcp_resource_url=resource,
        bank_db_url=f"sqlite:///{db}",
        redis_url=redis_url,
        mcp_require_dpop=dpop,
    )
    if auth == "off":
        claims = {**BENCH_CLAIMS, "aud": resource}
        return without_auth(create_mcp(settings, verifier=PassThroughVerifier()), resource, claims)
    if auth == "passthrough":
        return create_mcp(settings, verifier=PassThroughVerifier())
    client = None
    if jwks_file is not None:
        body = jwks_file.read_bytes()
        headers = {"content-type": "application/json", "cache-control": "public, max-age=300"}
        jwks = httpx.MockTransport(lambda _: httpx.Response(200, content=body, headers=headers))
        client = httpx.AsyncClient(transport=jwks)
    if refetch is not None:
        return refetch_variant(settings, refetch)
    # The production wiring: keys.JWKSCache (over HTTP to the issuer, or the JWKS file) and keys.Verifier.
    return build_app_from_settings(settings, http_client=client)


def refetch_variant(settings: McpSettings, refetch: float) -> Starlette:
    """Diagnosis only: the production wiring, but a JWKSCache with another unknown-kid refetch interval."""
    client = httpx.AsyncClient(timeout=5.0)
    cache = JWKSCache(settings.jwks_url, client, refetch_interval=refetch)
    verifier = Verifier(cache, access_token_policy(settings))

    @contextlib.asynccontextmanager
    async def jwks() -> AsyncIterator[None]:
        await cache.refresh()
        yield
        await cache.aclose()
        await client.aclose()

    return create_mcp(settings, verifier=verifier, key_cache=cache, lifespan_hook=jwks)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["issuer", "mcp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path)
    parser.add_argument("--access-lifetime", type=int, default=300)
    parser.add_argument("--resource", default="http://127.0.0.1:8001/mcp")
    parser.add_argument("--db", type=Path)
    parser.add_argument("--auth", choices=["full", "passthrough", "off"], default="full")
    parser.add_argument("--jwks-file", type=Path)
    parser.add_argument("--issuer")
    parser.add_argument(
        "--refetch-interval", type=float, help="diagnosis: JWKSCache unknown-kid refetch interval"
    )
    parser.add_argument("--redis", help="Redis URL: the issuer's key store and the MCP server's key events")
    parser.add_argument("--file-keys", action="store_true", help="issuer: file key store even with --redis")
    parser.add_argument("--dpop", action="store_true", help="MCP: MCP_REQUIRE_DPOP=true (bearer refused)")
    parser.add_argument("--log-file", type=Path, help="the server's log (default: stderr)")
    parser.add_argument("--log-level", default="info", help="as `voicebank up --log-level` (default info)")
    return parser


def server(argv: list[str], *, inline: bool = False) -> uvicorn.Server:
    """The uvicorn server the command line `argv` describes (not started).

    As its own process it logs as `voicebank up` does; `inline` (a thread of a bench process, for
    `--quick` smoke runs) leaves that process's logging alone and writes only warnings.
    """
    args = parser().parse_args(argv)
    if args.kind == "issuer":
        app = issuer_app(
            args.state, args.port, args.resource, args.access_lifetime, args.redis, args.file_keys
        )
    else:
        app = mcp_app(
            args.port,
            args.db,
            args.auth,
            args.jwks_file,
            args.issuer,
            args.refetch_interval,
            args.redis,
            args.dpop,
        )
    # Keep-alive past uvicorn's 5 s: between interleaved slices a client's connection idles longer than that,
    # and a server closing it just as the client reuses it is a ReadError the bench would count as a failure.
    # log_config=None, as `voicebank up`: uvicorn installs no handlers of its own (see `configure_logging`).
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        lifespan="on",
        log_level="warning" if inline else args.log_level,
        log_config=None,
        timeout_keep_alive=120,
    )
    if not inline:
        # After the app is built, as `voicebank up` does: fastmcp installs console handlers when imported.
        configure_logging(args.log_level, log_file=args.log_file)
    return uvicorn.Server(config)


if __name__ == "__main__":
    # Served as `voicebank up` serves: its event loop, its signals, and its startup heap frozen once the
    # server listens (without that, the full collections a grant's long-lived state triggers walk the whole
    # startup heap: 0.25 s pauses measured here that production does not have).
    run_all([server(sys.argv[1:])])
