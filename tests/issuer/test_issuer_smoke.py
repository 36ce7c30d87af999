from __future__ import annotations

from tests.issuer.conftest import Harness


async def test_login_flow(issuer: Harness) -> None:
    body = await issuer.login("read")
    assert body["token_type"] == "Bearer"
    refreshed = await issuer.refresh(body["refresh_token"], scope="transact")
    assert refreshed.status_code == 200, refreshed.text
