"""The client registry: registered clients, their public keys, grants and scopes, loaded from a file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from issuer._oauth._errors import InvalidScope, IssuerError
from issuer._oauth._scope import ISSUER_SCOPES, RESOURCE_SCOPES, parse_scope
from keys import KeyMaterialError, VerifyKey

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
GRANT_REFRESH = "refresh_token"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_CIBA = "urn:openid:params:grant-type:ciba"
GrantType = Literal[
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "refresh_token",
    "client_credentials",
    "urn:openid:params:grant-type:ciba",
]


class ClientRegistryError(IssuerError):
    """The clients file is missing or invalid; the message names the file and the problem."""

    code = "invalid_client_registry"


class _ClientModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = Field(default=None, pattern=r"^https?://")
    grant_types: list[GrantType] = Field(min_length=1)
    scope: str = Field(min_length=1)
    dpop_bound_access_tokens: bool = False
    disabled: bool = False

    @model_validator(mode="after")
    def _one_key_source(self) -> _ClientModel:
        if (self.jwks is None) == (self.jwks_uri is None):
            raise ValueError("exactly one of jwks and jwks_uri is required")
        return self


class _RegistryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clients: list[_ClientModel]


@dataclass(frozen=True)
class Client:
    """One registered client: its key source, allowed grants and the scopes it may hold."""

    client_id: str
    grant_types: frozenset[str]
    scopes: frozenset[str]
    jwks: Mapping[str, Any] | None
    jwks_uri: str | None
    # RFC 9449 §5.2: the client always proves possession of a DPoP key, so every token it gets is bound.
    dpop_bound_access_tokens: bool = False
    disabled: bool = False
    """A disabled client stays registered (its kids stay taken) but is refused authentication."""

    def may_use(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _check_jwks(client_id: str, jwks: Mapping[str, Any]) -> None:
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ClientRegistryError(f"client {client_id!r}: jwks must have a non-empty 'keys' list")
    for jwk in keys:
        try:
            VerifyKey.from_jwk(jwk)
        except KeyMaterialError as exc:
            raise ClientRegistryError(f"client {client_id!r}: invalid public key: {exc}") from None
        if not jwk.get("kid"):
            raise ClientRegistryError(f"client {client_id!r}: every key needs a kid")


def _client(model: _ClientModel) -> Client:
    try:
        scopes = parse_scope(model.scope)
    except InvalidScope:
        raise ClientRegistryError(f"client {model.client_id!r}: scope is malformed") from None
    unknown = scopes - RESOURCE_SCOPES - ISSUER_SCOPES
    if unknown:
        raise ClientRegistryError(f"client {model.client_id!r}: unknown scopes {sorted(unknown)}")
    if model.jwks is not None:
        _check_jwks(model.client_id, model.jwks)
    return Client(
        model.client_id,
        frozenset(model.grant_types),
        scopes,
        model.jwks,
        model.jwks_uri,
        model.dpop_bound_access_tokens,
        model.disabled,
    )


class ClientRegistry:
    """Registered clients by id."""

    def __init__(self, clients: Mapping[str, Client]) -> None:
        self._clients = dict(clients)

    def get(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def clients(self) -> list[Client]:
        return list(self._clients.values())

    def __len__(self) -> int:
        return len(self._clients)

    @classmethod
    def from_data(cls, data: Any, *, source: str = "clients") -> ClientRegistry:
        try:
            model = _RegistryModel.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ClientRegistryError(f"{source}: {where}: {first['msg']}") from None
        clients: dict[str, Client] = {}
        kids: set[str] = set()
        for entry in model.clients:
            if entry.client_id in clients:
                raise ClientRegistryError(f"{source}: client {entry.client_id!r} is registered twice")
            try:
                clients[entry.client_id] = _client(entry)
            except ClientRegistryError as exc:
                raise ClientRegistryError(f"{source}: {exc}") from None
            # A kid identifies its client (kids are key thumbprints), so two clients may not share one.
            own = {str(jwk["kid"]) for jwk in (entry.jwks or {}).get("keys", [])}
            if own & kids:
                raise ClientRegistryError(f"{source}: client {entry.client_id!r} reuses another client's kid")
            kids |= own
        return cls(clients)

    @classmethod
    def load(cls, path: Path) -> ClientRegistry:
        """Read a JSON or YAML clients file (YAML when the suffix is .yaml or .yml)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ClientRegistryError(f"cannot read clients file {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (ValueError, yaml.YAMLError):
            raise ClientRegistryError(f"clients file {path} is not valid JSON or YAML") from None
        return cls.from_data(data, source=str(path))
