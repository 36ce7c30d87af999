"""Settings of the MCP server, read from the environment once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mcp_server._bank._db import sqlite_url
from mcp_server._bank._errors import InvalidAmount
from mcp_server._bank._money import parse_cents


class McpSettings(BaseSettings):
    """Environment of the MCP server (`MCP_ISSUER_URL`, `MCP_RESOURCE_URL`, `BANK_DB_URL`, ...)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, extra="ignore", frozen=True)

    mcp_issuer_url: str = "http://127.0.0.1:8000"
    """The issuer the MCP server trusts: tokens must carry exactly this `iss`. `voicebank up` defaults it
    to `ISSUER_URL`."""
    mcp_resource_url: str = "http://127.0.0.1:8001/mcp"
    """This server's resource URL: every token must carry it in `aud`."""
    mcp_jwks_url: str | None = None
    """Where to fetch the issuer's public keys; unset: `$MCP_ISSUER_URL/.well-known/jwks.json`."""
    bank_db_url: str | None = None
    """The bank database, any SQLAlchemy URL (PostgreSQL: `postgresql+psycopg://...`); unset: SQLite at
    `$VOICEBANK_STATE/bank.db`."""
    voicebank_state: Path = Path("./var")
    """The state directory (the default SQLite bank lives there)."""
    redis_url: str | None = None
    """Redis for the single-use `jti` cache and key events; unset: in-process memory, one replica only."""
    mcp_payment_limit: str = "5000.00"
    """The largest single payment or transfer, a decimal amount."""
    mcp_max_body_bytes: int = Field(default=64 * 1024, gt=0)
    """The largest request body the MCP server reads, in bytes. A `tools/call` with every argument at its cap
    is about 1 KiB: 64 KiB leaves room for any MCP request and bounds the JSON parsing a client can ask for
    before its arguments are checked."""
    voicebank_mode: Literal["dev", "prod"] = "dev"
    """`prod` makes DPoP-bound tokens the default requirement (`MCP_REQUIRE_DPOP`)."""
    mcp_require_dpop: bool | None = None
    """`true`: tokens without a DPoP binding are refused; unset: required exactly when
    `VOICEBANK_MODE=prod`."""
    dpop_nonce: Literal["off", "required"] = "off"
    """`required`: a DPoP proof without the server's current nonce gets 401 `use_dpop_nonce` with a
    `DPoP-Nonce` header (RFC 9449 §9)."""
    mcp_metrics_port: int = Field(default=8003, ge=0, le=65535)
    """Prometheus metrics on a loopback listener of their own (0: none); never on the public port."""
    mcp_allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Browser origins allowed to call `/mcp`, comma-separated (`https://app.example.com`); a request whose
    `Origin` is not listed gets 403. None by default."""

    @field_validator("mcp_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if isinstance(value, list | tuple):
            # Browsers send an origin as scheme://host[:port], lower case, without a path.
            return tuple(str(origin).strip().rstrip("/").lower() for origin in value)
        return value

    otel_exporter_otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL; the MCP server's spans are exported there when set."""

    @field_validator("mcp_payment_limit")
    @classmethod
    def _limit_is_money(cls, value: str) -> str:
        try:
            cents = parse_cents(value)
        except InvalidAmount:
            cents = 0
        if cents <= 0:
            raise ValueError("MCP_PAYMENT_LIMIT must be a positive amount like 5000.00")
        return value

    @property
    def require_dpop(self) -> bool:
        """Whether unbound (bearer) tokens are refused: `MCP_REQUIRE_DPOP`, by default in prod mode."""
        return self.mcp_require_dpop if self.mcp_require_dpop is not None else self.voicebank_mode == "prod"

    @property
    def database_url(self) -> str:
        """`BANK_DB_URL`, or SQLite under the state directory."""
        return self.bank_db_url or sqlite_url(self.voicebank_state)

    @property
    def jwks_url(self) -> str:
        """Where the issuer publishes its keys."""
        return self.mcp_jwks_url or f"{self.mcp_issuer_url.rstrip('/')}/.well-known/jwks.json"

    @property
    def payment_limit_cents(self) -> int:
        """The per-payment limit in cents."""
        return parse_cents(self.mcp_payment_limit)
