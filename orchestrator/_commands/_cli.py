"""The `voicebank` command line: thin argparse wiring; each command's logic lives in its package."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from issuer import IssuerSettings, IssuerStartupError
from keys import ALGORITHMS
from orchestrator._commands._dev_init import dev_init
from orchestrator._commands._keys_admin import keys_command, revoke_sessions
from orchestrator._commands._token import TOKEN_SCOPES, TokenSettings, mint_token
from orchestrator._errors import OrchestratorError

DEFAULT_ISSUER = "http://127.0.0.1:8000"
_KID = re.compile(r"-[A-Za-z0-9_-]{1,127}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's usage errors: one line, exit 2
        self.exit(2, f"voicebank: {message}\n")


def _http_url(value: str) -> str:
    """An http(s) URL with a host, as the services' URLs must be."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="voicebank", description="voicebank: a LiveKit voice agent with asymmetric tokens")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    init = commands.add_parser("dev-init", help="create a development state directory")
    init.add_argument("--state", type=Path, help="state directory (default $VOICEBANK_STATE or ./var)")
    part = init.add_mutually_exclusive_group()
    part.add_argument("--force", action="store_true", help="replace existing keys")
    part.add_argument(
        "--bank-only",
        action="store_true",
        help="only seed the bank (BANK_DB_URL); make no key (compose's init)",
    )
    init.add_argument(
        "--dpop-bound",
        action="append",
        default=[],
        metavar="CLIENT",
        help="register CLIENT with dpop_bound_access_tokens: true (repeatable; default: none)",
    )

    serve = commands.add_parser(
        "up", help="serve the issuer and the MCP server (and the agent when configured)"
    )
    serve.add_argument("--state", type=Path, help="state directory (default $VOICEBANK_STATE or ./var)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--issuer-port", "--port", dest="issuer_port", type=int, default=8000)
    serve.add_argument("--mcp-port", type=int, default=8001)
    serve.add_argument("--only", choices=("issuer", "mcp", "agent"), help="serve one part only")
    serve.add_argument(
        "--issuer-url",
        type=_http_url,
        metavar="URL",
        help="the issuer's URL (default $MCP_ISSUER_URL or $ISSUER_URL; required with --only mcp)",
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--log-file", type=Path, help="write logs (and the audit log) to this file")

    # --issuer and --state are accepted before or after the action (`keys list --issuer URL`).
    where = _Parser(add_help=False)
    where.add_argument(
        "--issuer", default=argparse.SUPPRESS, help=f"issuer URL (default $ISSUER_URL or {DEFAULT_ISSUER})"
    )
    where.add_argument(
        "--state", type=Path, default=argparse.SUPPRESS, help="state directory with clients/admin.pem"
    )
    keys = commands.add_parser(
        "keys", help="list, rotate, retire or revoke issuer keys (admin client)", parents=[where]
    )
    actions = keys.add_subparsers(dest="action", required=True, parser_class=_Parser)
    actions.add_parser("list", help="show every key and its state", parents=[where])
    rotate = actions.add_parser("rotate", help="rotate now", parents=[where])
    rotate.add_argument("--alg", choices=ALGORITHMS)
    rotate.add_argument("--force", action="store_true", help="rotate even if the next key is too young")
    retire = actions.add_parser(
        "retire", help="end an algorithm after a migration (its keys retire on schedule)", parents=[where]
    )
    retire.add_argument("--alg", choices=ALGORITHMS, required=True)
    revoke = actions.add_parser("revoke", help="remove a key from the JWKS at once", parents=[where])
    revoke.add_argument("kid", nargs="?", help="the key's kid (it may start with '-')")

    sessions = commands.add_parser(
        "sessions", help="revoke the refresh tokens of a call, a user or a client (admin)", parents=[where]
    )
    session_actions = sessions.add_subparsers(dest="action", required=True, parser_class=_Parser)
    end = session_actions.add_parser(
        "revoke", help="end every refresh-token family of one call, user or client", parents=[where]
    )
    target = end.add_mutually_exclusive_group(required=True)
    target.add_argument("--sid", help="the voice session (LiveKit room) id")
    target.add_argument("--user", help="the user id (every session of that user)")
    target.add_argument("--client", help="the client id (every family the client holds)")

    doctor = commands.add_parser(
        "doctor",
        help="check this configuration: URLs, JWKS, clients, keys, Redis, database, file modes",
    )
    doctor.add_argument("--state", type=Path, help="state directory (default $VOICEBANK_STATE or ./var)")

    token = commands.add_parser(
        "token", help="print an access token for trying a generic MCP client (development mode only)"
    )
    token.add_argument("--user", required=True, help="the user the token acts for (alice, bob)")
    token.add_argument("--scope", required=True, choices=TOKEN_SCOPES, help="the one scope of the token")
    token.add_argument("--issuer", help=f"issuer URL (default $ISSUER_URL or {DEFAULT_ISSUER})")
    token.add_argument("--state", type=Path, help="state directory with the dev-init clients' keys")

    demo = commands.add_parser("demo", help="run a scripted banking call against the real services")
    demo.add_argument(
        "--state", type=Path, help="state directory to use and keep (default: a fresh temporary one)"
    )
    demo.add_argument("--redis", metavar="URL", help="use Redis for keys, refresh tokens and replay caches")
    demo.add_argument("--issuer-port", type=int, default=8000, help="preferred issuer port (default 8000)")
    demo.add_argument("--mcp-port", type=int, default=8001, help="preferred MCP server port (default 8001)")
    bench = commands.add_parser("bench", help="run the benchmarks of bench/ (from a source checkout)")
    bench.add_argument("--quick", action="store_true", help="every benchmark in its tiny smoke mode")
    bench.add_argument("--only", nargs="+", metavar="NAME", help="verify sign mcp_call token_endpoint ...")
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> IssuerSettings:
    """Settings from the environment; command-line options win (init values outrank the environment)."""
    if getattr(args, "state", None) is not None:
        overrides["voicebank_state"] = args.state
    return IssuerSettings(**overrides)


def _run(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None) -> int:
    """Run one of the simple commands; the exit status."""
    if args.command == "dev-init":
        dev_init(
            _settings(args),
            force=args.force,
            bank_only=args.bank_only,
            dpop_bound=frozenset(args.dpop_bound),
        )
    elif args.command == "up":
        from orchestrator._commands._up import (  # the services' imports are heavy: load what runs
            UpOptions,
            up,
        )

        options = UpOptions(
            host=args.host,
            issuer_port=args.issuer_port,
            mcp_port=args.mcp_port,
            state=args.state,
            only=args.only,
            log_level=args.log_level,
            log_file=args.log_file,
            issuer_url=args.issuer_url,
        )
        return up(options)
    elif args.command == "token":
        overrides = {"voicebank_state": args.state} if args.state is not None else {}
        issued = asyncio.run(
            mint_token(
                TokenSettings(**overrides),
                user=args.user,
                scope=args.scope,
                issuer_url=args.issuer,
                transport=transport,
            )
        )
        print(issued.access_token)
        print(
            f"voicebank token: {issued.scope} token for {issued.user} (session {issued.session_id}), "
            f"expires in {issued.expires_in:.0f} s; send it as `Authorization: Bearer <token>`",
            file=sys.stderr,
        )
    elif args.command == "keys":
        settings = _settings(args)
        issuer_url = getattr(args, "issuer", None) or settings.issuer_url
        table = asyncio.run(
            keys_command(
                args.action,
                issuer_url=issuer_url,
                state=settings.voicebank_state,
                kid=getattr(args, "kid", None),
                alg=getattr(args, "alg", None),
                force=getattr(args, "force", False),
                transport=transport,
            )
        )
        print(table)
    elif args.command == "sessions":
        settings = _settings(args)
        named = {"sid": args.sid, "sub": args.user, "client_id": args.client}
        print(
            asyncio.run(
                revoke_sessions(
                    {name: value for name, value in named.items() if value is not None},
                    issuer_url=getattr(args, "issuer", None) or settings.issuer_url,
                    state=settings.voicebank_state,
                    transport=transport,
                )
            )
        )
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Run bench/run_all.py, which starts every benchmark in a process of its own."""
    script = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"
    if not script.is_file():
        print("voicebank bench: bench/ is not here; run it from a source checkout", file=sys.stderr)
        return 2
    argv = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
    argv += ["--only", *args.only] if args.only else []
    return subprocess.run(argv, cwd=script.parents[1], check=False).returncode  # noqa: S603 - our own script


def _doctor(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None) -> int:
    """Print one line per check; the exit status is 1 when one failed."""
    from orchestrator._commands._doctor._run import (  # FastMCP's settings load only for this command
        DoctorSettings,
        doctor,
    )

    lines, status = asyncio.run(doctor(DoctorSettings.from_environment(args.state), transport=transport))
    print(lines)
    return status


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    revoking_a_key = args.command == "keys" and args.action == "revoke"
    # A kid is base64url and may start with "-", which argparse takes for an unknown option.
    if revoking_a_key and args.kid is None and len(extra) == 1 and _KID.fullmatch(extra[0]):
        args.kid, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if revoking_a_key and args.kid is None:
        parser.error("the following arguments are required: kid")
    return args


def main(argv: Sequence[str] | None = None, *, transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Entry point of the `voicebank` console script; the exit status."""
    # Whatever the command writes (state, logs, SQLite's journals, its children's files) is its owner's only.
    previous = os.umask(0o077)
    try:
        return _main(argv, transport)
    finally:
        os.umask(previous)


def _main(argv: Sequence[str] | None, transport: httpx.AsyncBaseTransport | None) -> int:
    args = _parse(argv)
    try:
        if args.command == "demo":
            from orchestrator._commands._demo._run import (  # livekit-agents loads only for the demo
                DemoOptions,
                run_demo,
            )

            options = DemoOptions(
                state=args.state, redis_url=args.redis, issuer_port=args.issuer_port, mcp_port=args.mcp_port
            )
            return run_demo(options)
        if args.command == "bench":
            return _bench(args)
        if args.command == "doctor":
            return _doctor(args, transport)
        return _run(args, transport)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).upper() or "settings"
        print(f"voicebank: invalid setting {where}: {first['msg']}", file=sys.stderr)
        return 1
    except (IssuerStartupError, OrchestratorError) as exc:  # each says what to do in one line
        print(f"voicebank: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
