"""`POST /revoke` (RFC 7009): a refresh token revokes its whole family; unknown tokens answer 200 too."""

from __future__ import annotations

from issuer._audit import Decision
from issuer._http._body import required_param
from issuer._oauth._errors import InvalidGrant, UnsupportedTokenType
from issuer._state import IssuerState


async def revoke_token(
    state: IssuerState, form: dict[str, str], authorization: str | None, decision: Decision
) -> None:
    client = await state.clients.authenticate(form, authorization=authorization)
    decision.client_id = client.client_id
    token = required_param(form, "token")
    family = await state.refresh.peek(token)
    if family is None:
        if token.count(".") == 2:
            # Access tokens are short-lived JWTs; revoking them is not supported (RFC 7009 §2.2.1).
            raise UnsupportedTokenType("only refresh tokens can be revoked")
        decision.reason = "unknown_token"
        return  # unknown, expired or already revoked: RFC 7009 §2.2 answers 200
    decision.family, decision.sub, decision.sid, decision.scope = (
        family.family_id,
        family.sub,
        family.sid,
        family.scope,
    )
    if family.client_id != client.client_id:
        raise InvalidGrant("the token was issued to another client", reason="revoke_wrong_client")
    await state.refresh.revoke(token)
