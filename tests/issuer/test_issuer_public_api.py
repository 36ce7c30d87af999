"""The public names of `issuer` are pinned: everything else is private; each one resolves."""

import issuer


def test_public_names() -> None:
    assert sorted(issuer.__all__) == [
        "Client",
        "ClientRegistry",
        "ClientRegistryError",
        "GRANT_CIBA",
        "GRANT_CLIENT_CREDENTIALS",
        "GRANT_REFRESH",
        "GRANT_TOKEN_EXCHANGE",
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
    assert all(getattr(issuer, name) is not None for name in issuer.__all__)
