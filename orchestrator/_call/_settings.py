"""Settings of the agent worker: LiveKit connection and the model stack, read once at the entry point."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator._errors import OrchestratorError

__all__ = ["AgentSettings", "NotConfigured"]


class NotConfigured(OrchestratorError):
    """The worker cannot start: the message names every missing environment variable."""

    code = "not_configured"


class AgentSettings(BaseSettings):
    """LiveKit credentials and the STT/LLM/TTS models.

    Models are LiveKit Inference model strings ("deepgram/nova-3", "openai/gpt-4.1-mini",
    "cartesia/sonic-2"), passed to `AgentSession` as they are.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: SecretStr | None = None
    livekit_agent_name: str = "voicebank-agent"
    stt: str | None = Field(default=None, validation_alias="ORCHESTRATOR_STT")
    llm: str | None = Field(default=None, validation_alias="ORCHESTRATOR_LLM")
    tts: str | None = Field(default=None, validation_alias="ORCHESTRATOR_TTS")
    redis_url: str | None = None

    def missing(self) -> list[str]:
        """The environment variables that must still be set before the worker can run."""
        secret = self.livekit_api_secret.get_secret_value() if self.livekit_api_secret else None
        required = {
            "LIVEKIT_URL": self.livekit_url,
            "LIVEKIT_API_KEY": self.livekit_api_key,
            "LIVEKIT_API_SECRET": secret,
            "ORCHESTRATOR_STT": self.stt,
            "ORCHESTRATOR_LLM": self.llm,
            "ORCHESTRATOR_TTS": self.tts,
        }
        return [name for name, value in required.items() if not (value and value.strip())]

    def require(self) -> None:
        """Raise `NotConfigured` naming what is missing."""
        missing = self.missing()
        if missing:
            raise NotConfigured(
                "the voice agent is not configured: set "
                + ", ".join(missing)
                + " (LiveKit server credentials, and LiveKit Inference model names such as"
                " ORCHESTRATOR_STT=deepgram/nova-3 ORCHESTRATOR_LLM=openai/gpt-4.1-mini"
                " ORCHESTRATOR_TTS=cartesia/sonic-2)"
            )
