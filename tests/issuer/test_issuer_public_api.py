"""The issuer's public names are pinned: everything else is private."""

import issuer
import issuer.cli


def test_public_names() -> None:
    assert sorted(issuer.__all__) == [
        "Client",
        "ClientRegistry",
        "ClientRegistryError",
        "IssuerSettings",
        "IssuerStartupError",
        "JWT_BEARER",
        "OAuthError",
        "assertion_form",
        "client_assertion",
        "create_app",
        "issuer_state",
        "load_client_key",
        "metrics_app",
    ]
    assert sorted(issuer.cli.__all__) == [
        "AdminCommandError",
        "DevInitError",
        "ServeError",
        "SharedLoopServer",
        "dev_init",
        "issuer_server",
        "keys_command",
        "preflight",
        "serve_all",
        "up",
    ]
