"""The voicebank token issuer: `create_app(settings)` and the helpers its clients use."""

from issuer._build import IssuerStartupError
from issuer._http._app import create_app, issuer_state
from issuer._oauth._clients import Client, ClientRegistry, ClientRegistryError
from issuer._oauth._errors import OAuthError
from issuer._settings import IssuerSettings

__all__ = [
    "Client",
    "ClientRegistry",
    "ClientRegistryError",
    "IssuerSettings",
    "IssuerStartupError",
    "OAuthError",
    "create_app",
    "issuer_state",
]
