"""A scripted stand-in for the LLM: replays text and function calls, recording what it was given.

The demo and the tests use it where a real model cannot run; everything around it (the agent, its
function tools, masking, the bank) is the real code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from livekit.agents import llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr

__all__ = ["ScriptedLLM", "Step", "call"]

# A step is text to say, function calls to emit, or a function of the (masked) context the LLM is given.
Step = str | list[llm.FunctionToolCall] | Callable[[llm.ChatContext], "str | list[llm.FunctionToolCall]"]


def call(name: str, call_id: str, **arguments: Any) -> llm.FunctionToolCall:
    """One scripted function call."""
    return llm.FunctionToolCall(name=name, arguments=json.dumps(arguments), call_id=call_id)


class _ScriptedStream(llm.LLMStream):
    def __init__(
        self,
        owner: ScriptedLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        step: str | list[llm.FunctionToolCall],
    ) -> None:
        super().__init__(owner, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._step = step

    async def _run(self) -> None:
        if isinstance(self._step, str):
            # Two chunks, split mid-text, as a streaming model would send them (masking must cope).
            half = len(self._step) // 2
            for part in (self._step[:half], self._step[half:]):
                if part:
                    delta = llm.ChoiceDelta(role="assistant", content=part)
                    self._event_ch.send_nowait(llm.ChatChunk(id="scripted", delta=delta))
        else:
            delta = llm.ChoiceDelta(role="assistant", tool_calls=self._step)
            self._event_ch.send_nowait(llm.ChatChunk(id="scripted", delta=delta))


class ScriptedLLM(llm.LLM[Any]):
    """An LLM that replays a script and records every context it is given."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        super().__init__()
        self.steps: list[Step] = list(steps)
        self.contexts: list[llm.ChatContext] = []

    def script(self, *steps: Step) -> None:
        """Append steps for the next turn."""
        self.steps.extend(steps)

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        self.contexts.append(chat_ctx.copy())
        step = self.steps.pop(0) if self.steps else ""
        if callable(step):
            step = step(chat_ctx)
        return _ScriptedStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options, step=step
        )

    def seen_text(self) -> str:
        """Everything the LLM was given, as one string (messages, tool calls and tool outputs)."""
        return "\n".join(json.dumps(ctx.to_dict(exclude_timestamp=True)) for ctx in self.contexts)
