"""Issuer settings, read from the environment once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from keys import DEFAULT_JWKS_MAX_AGE, Algorithm


class IssuerSettings(BaseSettings):
    """Everything the issuer needs; environment variable names are the field names in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    issuer_url: str = "http://127.0.0.1:8000"
    mcp_resource_url: str = "http://127.0.0.1:8001/mcp"
    voicebank_state: Path = Path("./var")
    voicebank_mode: Literal["dev", "prod"] = "dev"
    keys_store: Literal["file", "redis"] = "file"
    keys_passphrase: SecretStr | None = None
    keys_rotation_period: float = Field(default=86400, gt=0)
    # The JWKS Cache-Control max-age, and the rotation timing that must agree with it: one setting.
    jwks_max_age: int = Field(default=DEFAULT_JWKS_MAX_AGE, gt=0, le=86400)
    issuer_signing_alg: Algorithm = "ES256"
    issuer_clients_file: Path | None = None
    redis_url: str | None = None
    # The client that may act for the user (`may_act` of a session grant); the agent reads the same name.
    orchestrator_client_id: str = "orchestrator"

    access_token_lifetime: int = Field(default=300, gt=0, le=3600)
    transact_token_lifetime: int = Field(default=60, gt=0, le=3600)
    session_grant_lifetime: int = Field(default=600, gt=0, le=3600)
    refresh_idle_lifetime: int = Field(default=1800, gt=0)
    refresh_absolute_lifetime: int = Field(default=43200, gt=0)
    issuer_token_lifetime: int = Field(default=300, gt=0, le=3600)

    rotation_tick: float = Field(default=30, gt=0)
    max_body_bytes: int = Field(default=16 * 1024, gt=0)

    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: SecretStr | None = None
    livekit_agent_name: str = "voicebank-agent"

    @model_validator(mode="after")
    def _check(self) -> IssuerSettings:
        if self.voicebank_mode == "prod" and (
            self.keys_passphrase is None or not self.keys_passphrase.get_secret_value()
        ):
            raise ValueError("KEYS_PASSPHRASE must be set when VOICEBANK_MODE=prod")
        if self.keys_store == "redis" and not self.redis_url:
            raise ValueError("KEYS_STORE=redis needs REDIS_URL")
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
