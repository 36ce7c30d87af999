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
        use_attribute_docstrings=True,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    livekit_url: str | None = None
    """The LiveKit server the worker registers with."""
    livekit_api_key: str | None = None
    """The LiveKit API key of the worker."""
    livekit_api_secret: SecretStr | None = None
    """The LiveKit API secret of the worker."""
    livekit_agent_name: str = "voicebank-agent"
    """The name calls are dispatched to (explicit dispatch only)."""
    stt: str | None = Field(default=None, validation_alias="ORCHESTRATOR_STT")
    """Speech-to-text model, a LiveKit Inference model string such as `deepgram/nova-3`."""
    llm: str | None = Field(default=None, validation_alias="ORCHESTRATOR_LLM")
    """Language model, a LiveKit Inference model string such as `openai/gpt-4.1-mini`."""
    tts: str | None = Field(default=None, validation_alias="ORCHESTRATOR_TTS")
    """Text-to-speech model, a LiveKit Inference model string such as `cartesia/sonic-2`."""
    redis_url: str | None = None
    """Redis for the session records; unset: the worker's memory."""
    otel_exporter_otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL; spans of each call are exported there when set."""

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
