"""The voicebank token issuer: `create_app(settings)`, its settings, and its checks before serving."""

from issuer._build import IssuerStartupError, key_store, preflight
from issuer._http._app import create_app, issuer_state, metrics_app, reload_clients
from issuer._oauth._clients import (
    GRANT_CIBA,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH,
    GRANT_TOKEN_EXCHANGE,
    Client,
    ClientRegistry,
    ClientRegistryError,
)
from issuer._oauth._errors import IssuerError, OAuthError
from issuer._settings import IssuerSettings

__all__ = [
    "GRANT_CIBA",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_REFRESH",
    "GRANT_TOKEN_EXCHANGE",
    "Client",
    "ClientRegistry",
    "ClientRegistryError",
    "IssuerError",
    "IssuerSettings",
    "IssuerStartupError",
    "OAuthError",
    "create_app",
    "issuer_state",
    "key_store",
    "metrics_app",
    "preflight",
    "reload_clients",
]
