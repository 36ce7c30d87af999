"""The voicebank token issuer: `create_app(settings)` and the helpers its clients use."""

from issuer._app import create_app, issuer_state, metrics_app
from issuer._assertion import JWT_BEARER, assertion_form, client_assertion
from issuer._build import IssuerStartupError
from issuer._client_keys import load_client_key
from issuer._clients import Client, ClientRegistry, ClientRegistryError
from issuer._errors import OAuthError
from issuer._settings import IssuerSettings

__all__ = [
    "JWT_BEARER",
    "Client",
    "ClientRegistry",
    "ClientRegistryError",
    "IssuerSettings",
    "IssuerStartupError",
    "OAuthError",
    "assertion_form",
    "client_assertion",
    "create_app",
    "issuer_state",
    "load_client_key",
    "metrics_app",
]
