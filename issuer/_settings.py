"""Issuer settings, read from the environment once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from issuer._oauth._authorization_details import amount_cents
from keys import DEFAULT_JWKS_MAX_AGE, Algorithm


class IssuerSettings(BaseSettings):
    """Everything the issuer needs; environment variable names are the field names in upper case."""

    model_config = SettingsConfigDict(
        use_attribute_docstrings=True, case_sensitive=False, extra="ignore", frozen=True
    )

    issuer_url: str = "http://127.0.0.1:8000"
    """The issuer's own URL, exactly as clients use it: the `iss` of every token it signs and the audience
    of client assertions (`$ISSUER_URL/token`)."""
    mcp_resource_url: str = "http://127.0.0.1:8001/mcp"
    """The MCP server's resource URL: the `aud` of the access tokens the issuer signs."""
    voicebank_state: Path = Path("./var")
    """The state directory: the key ring (`keys/`), `clients.json`, the dev clients' keys and passphrase,
    the SQLite bank."""
    voicebank_mode: Literal["dev", "prod"] = "dev"
    """`prod` requires `KEYS_PASSPHRASE` and refuses development shortcuts such as `voicebank token`."""
    keys_store: Literal["file", "redis"] = "file"
    """Where the key ring lives: files under `$VOICEBANK_STATE/keys` (one machine), or Redis (`REDIS_URL`,
    shared by replicas; needs persistence)."""
    keys_passphrase: SecretStr | None = None
    """Encrypts the issuer's private keys at rest; required in prod mode. Unset in dev: the passphrase file
    `dev-init` wrote in the state directory."""
    keys_rotation_period: float = Field(default=86400, gt=0)
    """Seconds between scheduled key rotations; with several replicas exactly one rotates per period."""
    jwks_max_age: int = Field(default=DEFAULT_JWKS_MAX_AGE, gt=0, le=86400)
    """Seconds the JWKS may be cached (`Cache-Control: max-age`); a next key is published for twice this
    long before it signs."""
    issuer_signing_alg: Algorithm = "ES256"
    """The algorithm of the signing key; prepare a change with `voicebank keys rotate --alg` first."""
    issuer_clients_file: Path | None = None
    """The client registry, JSON or YAML; unset: `$VOICEBANK_STATE/clients.json`."""
    redis_url: str | None = None
    """Redis for refresh-token families, replay caches and key events (and the key ring with
    `KEYS_STORE=redis`); unset: in-process memory, one replica only."""
    orchestrator_client_id: str = "orchestrator"
    """The client that may act for the user: the `may_act` of every session grant."""

    access_token_lifetime: int = Field(default=300, gt=0, le=3600)
    """Seconds a `read` or `configure` access token lives."""
    transact_token_lifetime: int = Field(default=60, gt=0, le=3600)
    """Seconds a single-use `transact` token lives."""
    session_grant_lifetime: int = Field(default=600, gt=0, le=3600)
    """Seconds a session grant waits to be exchanged."""
    refresh_idle_lifetime: int = Field(default=1800, gt=0)
    """Seconds a refresh-token family may go unused before it dies."""
    refresh_absolute_lifetime: int = Field(default=43200, gt=0)
    """Seconds a refresh-token family lives at most."""
    issuer_token_lifetime: int = Field(default=300, gt=0, le=3600)
    """Seconds a bearer for the issuer's own endpoints (client credentials) lives."""

    approval_threshold: str = "500.00"
    """The amount (a decimal like `500.00`) a call's session may move in all without the user's own approval;
    a movement that would pass it waits for the user to approve it in their banking app (CIBA)."""

    dpop_nonce: Literal["off", "required"] = "off"
    """`required`: a `/token` or `/bc-authorize` request without the current DPoP nonce gets 400
    `use_dpop_nonce` and a `DPoP-Nonce` header (RFC 9449 §8)."""
    issuer_metrics_port: int = Field(default=8002, ge=0, le=65535)
    """Prometheus metrics on a loopback listener of their own (0: none); never on the public port."""

    rotation_tick: float = Field(default=30, gt=0)
    """Seconds between the rotation loop's checks whether a rotation is due."""
    max_body_bytes: int = Field(default=16 * 1024, gt=0)
    """The largest request body the issuer reads, in bytes."""

    livekit_url: str | None = None
    """The LiveKit server's URL for the participant tokens `POST /sessions` hands out; unset: sessions
    without LiveKit."""
    livekit_api_key: str | None = None
    """The LiveKit API key: participant tokens and agent dispatch."""
    livekit_api_secret: SecretStr | None = None
    """The LiveKit API secret: signs participant tokens (HS256, as LiveKit's protocol wants)."""
    livekit_agent_name: str = "voicebank-agent"
    """The agent dispatched to each session's room."""
    otel_exporter_otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL; the issuer's spans are exported there when set."""

    @model_validator(mode="after")
    def _check(self) -> IssuerSettings:
        if self.voicebank_mode == "prod" and (
            self.keys_passphrase is None or not self.keys_passphrase.get_secret_value()
        ):
            raise ValueError("KEYS_PASSPHRASE must be set when VOICEBANK_MODE=prod")
        if self.keys_store == "redis" and not self.redis_url:
            raise ValueError("KEYS_STORE=redis needs REDIS_URL")
        if amount_cents(self.approval_threshold) is None:
            raise ValueError("APPROVAL_THRESHOLD must be an amount like 500.00")
        if self.refresh_idle_lifetime > self.refresh_absolute_lifetime:
            raise ValueError("the refresh idle lifetime exceeds the absolute lifetime")
        return self

    @property
    def clients_file(self) -> Path:
        return self.issuer_clients_file or self.voicebank_state / "clients.json"

    @property
    def keys_dir(self) -> Path:
        return self.voicebank_state / "keys"

    @property
    def token_endpoint(self) -> str:
        return self.issuer_url.rstrip("/") + "/token"

    @property
    def approval_threshold_cents(self) -> int:
        """`APPROVAL_THRESHOLD` in cents: a session may authorize this much without out-of-band approval."""
        cents = amount_cents(self.approval_threshold)
        if cents is None:  # the validator refused this already
            raise ValueError("APPROVAL_THRESHOLD must be an amount like 500.00")
        return cents

    @property
    def livekit_enabled(self) -> bool:
        return bool(self.livekit_url and self.livekit_api_key and self.livekit_api_secret)

    def passphrase_bytes(self) -> bytes | None:
        """The key-store passphrase, or the dev passphrase file's content when it exists."""
        if self.keys_passphrase is not None and self.keys_passphrase.get_secret_value():
            return self.keys_passphrase.get_secret_value().encode()
        path = self.voicebank_state / "passphrase"
        if path.is_file():
            return path.read_bytes().strip() or None
        return None
