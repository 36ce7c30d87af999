"""Streamed speech is masked without cutting a number, name or token in two."""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestrator._agent._banking_agent import masked_stream
from orchestrator._agent._pii import mask_text

GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


async def chunks(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


def spoken(text: str) -> str:
    return mask_text(text, names={"Jane Smith"}, spoken=True)


async def test_numbers_names_and_tokens_split_across_chunks_are_masked() -> None:
    stream = chunks(
        "Sent to Ja", "ne Smi", "th. Card 4111 11", "11 1111 1111. Token ", GRANT[:20], GRANT[20:], " end"
    )
    out = [piece async for piece in masked_stream(stream, spoken)]
    assert "".join(out) == "Sent to Jane S.. Card ending in 1111. Token [redacted] end"
    assert out[0] == "Sent to Jane S.. "  # a finished sentence is spoken without waiting for the rest


async def test_empty_stream() -> None:
    assert [piece async for piece in masked_stream(chunks(), spoken)] == []
