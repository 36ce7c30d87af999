"""The LiveKit participant token that `/sessions` returns, with the agent dispatched to the room."""

from __future__ import annotations

import datetime
import json

from livekit import api


def participant_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    user_id: str,
    session_grant: str,
    agent_name: str,
    ttl: int,
) -> str:
    """A room-join token whose metadata carries the user and the session grant (docs/architecture.md)."""
    metadata = json.dumps({"user_id": user_id, "session_id": room, "session_grant": session_grant})
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(user_id)
        .with_name(user_id)
        .with_metadata(metadata)
        .with_ttl(datetime.timedelta(seconds=ttl))
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=agent_name)]))
    )
    jwt: str = token.to_jwt()
    return jwt
