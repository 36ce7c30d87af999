"""The banking voice agent: function tools that are thin wrappers over a `Bank`, with PII masking."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from livekit import rtc
from livekit.agents import Agent, RunContext, StopResponse, ToolError, function_tool, llm
from livekit.agents.types import FlushSentinel
from livekit.agents.voice.agent import ModelSettings

from orchestrator._agent._approvals import ApprovalWaits, waiting_sentence
from orchestrator._agent._confirmation import PendingOperation, amount_cents, classify_answer
from orchestrator._agent._pii import collect_names, mask_data, mask_text, split_speakable
from orchestrator._agent._refs import RefTable, UnknownRef
from orchestrator._agent._speech import AUTHORIZATION_LOST, NOT_CONFIRMED, speakable_error
from orchestrator._bank._movement import binding_message
from orchestrator._bank._protocol import ApprovalRequired, AuthorizationLost, Bank, BankError, ToolRefused
from orchestrator._call._identity import CallerIdentity

__all__ = ["INSTRUCTIONS", "BankingAgent", "CallState"]

INSTRUCTIONS = """\
You are the voice assistant of a bank, speaking with one verified customer on a phone call.
Help them check balances, recent transactions, loans and payees, make payments, move money between
their own accounts, and change notification settings, using only the tools.
Accounts, payees and other items are named by references such as account-1 or payee-2 in tool results:
pass those references back to the tools, never invent them, and never read them aloud.
Account numbers are masked; say "ending in" and the last four digits.
To pay someone: call prepare_payment, read its summary to the customer word for word, ask them to confirm,
and call make_payment with the confirmation id and the same account, payee and amount only after they
clearly say yes in their next answer. Transfers work the same way with prepare_transfer and make_transfer.
Large payments also need the customer's approval in their banking app: the bank tells them, and tells
them the outcome when it arrives; meanwhile carry on with whatever else they ask.
When a tool returns an error, tell the customer its sentence plainly.
Keep answers short and conversational: this is a phone call, not a document."""

AccountType = Literal["checking", "savings", "credit"]
Channel = Literal["sms", "email", "push"]


@dataclass
class CallState:
    """Per-call state kept in the session's `userdata`."""

    identity: CallerIdentity
    refs: RefTable = field(default_factory=RefTable)
    labels: dict[str, str] = field(default_factory=dict)
    """Speakable, masked descriptions of references ("checking account ending in 1234")."""
    names: set[str] = field(default_factory=set)
    """Counterparty full names seen this call, masked wherever they appear unless the user said them."""
    currencies: dict[str, str] = field(default_factory=dict)
    """The currency of each account reference seen this call."""
    pending: PendingOperation | None = None
    confirmations: int = 0
    authorization_lost: bool = False
    approvals: ApprovalWaits = field(default_factory=ApprovalWaits)
    """Movements waiting for the customer's approval in their banking app."""


def user_words(chat_ctx: llm.ChatContext) -> str:
    """Everything the user said so far, one message per line."""
    return "\n".join(
        item.text_content or ""
        for item in chat_ctx.items
        if isinstance(item, llm.ChatMessage) and item.role == "user"
    )


def _last_user_message(chat_ctx: llm.ChatContext) -> llm.ChatMessage | None:
    for item in reversed(chat_ctx.items):
        if isinstance(item, llm.ChatMessage) and item.role == "user":
            return item
    return None


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


async def masked_stream(text: AsyncIterable[str], mask: Callable[[str], str]) -> AsyncIterator[str]:
    """Mask streamed text, holding back only the unfinished sentence so no number is cut in two."""
    buffer = ""
    async for chunk in text:
        buffer += chunk
        ready, buffer = split_speakable(buffer)
        if ready:
            yield mask(ready)
    if buffer:
        yield mask(buffer)


class BankingAgent(Agent):
    """The banking agent; every tool is a thin wrapper over one `Bank` method."""

    def __init__(
        self,
        bank: Bank,
        *,
        instructions: str = INSTRUCTIONS,
        new_idempotency_key: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        super().__init__(instructions=instructions)
        self._bank = bank
        self._new_key = new_idempotency_key

    # -- masking of everything that reaches the LLM or the TTS --------------------------------------

    def _state(self) -> CallState:
        state: CallState = self.session.userdata
        return state

    def mask_for_llm(self, chat_ctx: llm.ChatContext) -> llm.ChatContext:
        """A copy of the chat context with every message and tool output masked (defence in depth)."""
        state = self._state()
        said = user_words(chat_ctx)
        items: list[llm.ChatItem] = []
        for item in chat_ctx.items:
            if isinstance(item, llm.ChatMessage):
                content = [
                    mask_text(part, names=state.names, said=said) if isinstance(part, str) else part
                    for part in item.content
                ]
                items.append(item.model_copy(update={"content": content}))
            elif isinstance(item, llm.FunctionCallOutput):
                output = mask_text(item.output, names=state.names, said=said)
                items.append(item.model_copy(update={"output": output}))
            else:
                items.append(item)
        return llm.ChatContext(items=items)

    def _mask_spoken(self, text: str) -> str:
        state = self._state()
        return mask_text(text, names=state.names, said=user_words(self.session.history), spoken=True)

    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterator[llm.ChatChunk | str | FlushSentinel]:
        """The default LLM node, fed a masked context, its spoken text masked before TTS and history."""
        buffer = ""
        async for chunk in Agent.default.llm_node(self, self.mask_for_llm(chat_ctx), tools, model_settings):
            if isinstance(chunk, str):
                text, calls = chunk, None
            elif isinstance(chunk, llm.ChatChunk) and chunk.delta is not None:
                text, calls = chunk.delta.content or "", chunk.delta
            else:
                if isinstance(chunk, FlushSentinel) and buffer:
                    yield self._mask_spoken(buffer)
                    buffer = ""
                yield chunk
                continue
            buffer += text
            ready, buffer = split_speakable(buffer)
            if ready:
                yield self._mask_spoken(ready)
            if calls is not None and calls.tool_calls:
                yield llm.ChatChunk(
                    id=chunk.id if isinstance(chunk, llm.ChatChunk) else "",
                    delta=llm.ChoiceDelta(role=calls.role, tool_calls=calls.tool_calls, extra=calls.extra),
                )
        if buffer:
            yield self._mask_spoken(buffer)

    def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterable[rtc.AudioFrame]:
        """The default TTS node, given masked text (covers `session.say` too)."""
        result: AsyncIterable[rtc.AudioFrame] = Agent.default.tts_node(
            self, masked_stream(text, self._mask_spoken), model_settings
        )
        return result

    # -- the bank seam -----------------------------------------------------------------------------

    def _guard(self, state: CallState) -> None:
        if state.authorization_lost:
            raise ToolError(AUTHORIZATION_LOST)

    async def _call(
        self,
        context: RunContext[CallState],
        call: Callable[[], Awaitable[dict[str, Any]]],
        *,
        settles_pending: bool = False,
    ) -> dict[str, Any]:
        """Run one bank call; errors become speakable `ToolError`s, results come back masked.

        With `settles_pending`, a result or a refusal ends the pending operation; an unreachable bank
        keeps it, so a retry carries the same idempotency key.
        """
        state = context.userdata
        self._guard(state)
        try:
            result = await call()
        except AuthorizationLost:
            first = not state.authorization_lost
            state.authorization_lost = True
            state.pending = None
            if first:  # parallel calls failing together must not repeat it
                # Said directly rather than left to the LLM, so the user always hears it plainly.
                context.session.say(AUTHORIZATION_LOST)
            raise StopResponse() from None
        except ApprovalRequired:
            if settles_pending:
                state.pending = None  # the customer's banking app decides it now
            raise
        except BankError as err:
            if settles_pending and isinstance(err, ToolRefused):
                state.pending = None
            raise ToolError(speakable_error(err)) from None
        if settles_pending:
            state.pending = None
        return self._present(state, result, user_words(context.session.history))

    def _present(self, state: CallState, result: dict[str, Any], said: str) -> dict[str, Any]:
        """Bank ids to references, labels remembered, then every string masked."""
        visible = state.refs.replace_ids(result)
        state.names |= collect_names(visible)
        masked: dict[str, Any] = mask_data(visible, names=state.names, said=said)
        for account in masked.get("accounts", []):
            number = str(account.get("account_number", ""))[-4:]
            state.labels[account["account_id"]] = f"{account.get('type', '')} account ending in {number}"
            if isinstance(account.get("currency"), str):
                state.currencies[account["account_id"]] = account["currency"]
        for payee in masked.get("payees", []):
            state.labels[payee["payee_id"]] = str(payee.get("name", "the payee"))
        return masked

    def _resolve(self, state: CallState, kind: str, ref: str) -> str:
        try:
            return state.refs.resolve(kind, ref)
        except UnknownRef:
            raise ToolError(
                f"I don't know the {kind} {ref!r}; look it up with the listing tool first."
            ) from None

    # -- read tools --------------------------------------------------------------------------------

    @function_tool
    async def get_balance(
        self, context: RunContext[CallState], account_type: AccountType | None = None
    ) -> str:
        """Get the balance of the customer's accounts, optionally only one type of account.

        Args:
            account_type: checking, savings or credit; leave empty for every account.
        """
        return _dumps(await self._call(context, lambda: self._bank.get_balance(account_type)))

    @function_tool
    async def list_transactions(
        self, context: RunContext[CallState], account: str | None = None, limit: int = 10
    ) -> str:
        """List the customer's recent transactions, newest first.

        Args:
            account: an account reference such as account-1, or empty for every account.
            limit: how many transactions, 1 to 100.
        """
        self._guard(context.userdata)
        account_id = self._resolve(context.userdata, "account", account) if account else None
        return _dumps(await self._call(context, lambda: self._bank.list_transactions(account_id, limit)))

    @function_tool
    async def list_loans(self, context: RunContext[CallState]) -> str:
        """List the customer's loans with their balance, rate and next payment."""
        return _dumps(await self._call(context, self._bank.list_loans))

    @function_tool
    async def list_payees(self, context: RunContext[CallState]) -> str:
        """List the payees the customer can pay."""
        return _dumps(await self._call(context, self._bank.list_payees))

    # -- money movement: prepare, read back, confirm -----------------------------------------------

    def _check_amount(self, amount: str) -> str:
        amount = amount.strip()
        if not amount_cents(amount):
            raise ToolError("The amount must be a positive number with at most two decimals, like 12.50.")
        return amount

    async def _currency(self, context: RunContext[CallState], account: str) -> str:
        """The currency of an account reference, from the balances (looked up once if not seen yet)."""
        state = context.userdata
        ref = account.strip().lower()
        if ref not in state.currencies:
            await self._call(context, lambda: self._bank.get_balance())
        currency = state.currencies.get(ref)
        if currency is None:
            raise ToolError(f"I don't know the currency of {account!r}; look up the balances first.")
        return currency

    def _prepare(
        self,
        context: RunContext[CallState],
        tool: Literal["make_payment", "transfer_between_accounts"],
        arguments: dict[str, str | None],
        summary: str,
        *,
        currency: str,
        phrase: str,
        label: str,
    ) -> str:
        state = context.userdata
        state.confirmations += 1
        last = _last_user_message(context.session.history)
        pending = PendingOperation(
            confirmation_id=f"confirm-{state.confirmations}",
            tool=tool,
            arguments=arguments,
            idempotency_key=self._new_key(),
            summary=self._mask_spoken(summary),
            asked_after=last.id if last is not None else None,
            currency=currency,
            phrase=self._mask_spoken(phrase),
            label=binding_message(label),
        )
        # One operation waits at a time: preparing another replaces it.
        state.pending = pending
        return _dumps(
            {
                "confirmation_id": pending.confirmation_id,
                "summary": pending.summary,
                "next_step": "Read the summary to the customer and ask them to confirm.",
            }
        )

    async def _confirm(
        self,
        context: RunContext[CallState],
        tool: Literal["make_payment", "transfer_between_accounts"],
        confirmation_id: str,
        restated: dict[str, str],
    ) -> dict[str, Any]:
        state = context.userdata
        self._guard(state)
        pending = state.pending
        noun = "payment" if tool == "make_payment" else "transfer"
        if pending is None or pending.tool != tool or pending.confirmation_id != confirmation_id.strip():
            raise ToolError(f"There is no {noun} waiting for confirmation with that id; prepare it first.")
        answer = _last_user_message(context.session.history)
        if answer is None or answer.id == pending.asked_after:
            raise ToolError(
                f"The customer has not confirmed yet: read the summary and ask them to confirm the {noun}."
            )
        verdict = classify_answer(answer.text_content or "")
        if verdict == "no":
            state.pending = None
            raise ToolError(f"The customer did not confirm, so the {noun} was not made.")
        if verdict == "unclear":
            raise ToolError(f"The customer's answer was not a clear yes; ask them to confirm the {noun}.")
        if not self._restates(state, pending, restated):
            # The model asked for something else than what the customer confirmed: nothing is sent, the
            # confirmation is spent, and the customer hears it from us rather than from the model.
            state.pending = None
            context.session.say(NOT_CONFIRMED.format(noun=noun))
            raise StopResponse()
        movement = pending.movement()

        async def run() -> dict[str, Any]:
            result: dict[str, Any] = await getattr(self._bank, tool)(
                **pending.arguments, idempotency_key=pending.idempotency_key, confirmed=movement
            )
            return result

        try:
            return await self._call(context, run, settles_pending=True)
        except ApprovalRequired as waiting:
            self._wait_for_approval(context, waiting, pending.phrase)
            raise StopResponse() from None

    def _restates(self, state: CallState, pending: PendingOperation, restated: dict[str, str]) -> bool:
        """Whether the model's call names exactly the confirmed accounts, payee and amount."""
        for name, ref in restated.items():
            if name == "amount":
                if amount_cents(ref.strip()) != amount_cents(str(pending.arguments["amount"])):
                    return False
                continue
            kind = "payee" if name == "payee_id" else "account"
            try:
                if state.refs.resolve(kind, ref) != pending.arguments[name]:
                    return False
            except UnknownRef:
                return False
        return True

    def _wait_for_approval(
        self, context: RunContext[CallState], waiting: ApprovalRequired, phrase: str
    ) -> None:
        state = context.userdata
        session = context.session

        async def tell(sentence: str) -> None:
            await session.say(sentence)

        def made(result: dict[str, Any]) -> None:
            self._present(state, result, user_words(session.history))

        def lost() -> None:
            state.authorization_lost = True

        session.say(waiting_sentence(phrase))
        state.approvals.start(waiting.approval, phrase, tell=tell, made=made, lost=lost)

    @function_tool
    async def prepare_payment(
        self,
        context: RunContext[CallState],
        from_account: str,
        payee: str,
        amount: str,
        memo: str | None = None,
    ) -> str:
        """Prepare a payment to a payee; returns a summary to read back before make_payment.

        Args:
            from_account: the account reference to pay from, such as account-1.
            payee: the payee reference, such as payee-1.
            amount: the amount as a decimal string, such as 12.50.
            memo: an optional note for the payee.
        """
        state = context.userdata
        self._guard(state)
        amount = self._check_amount(amount)
        arguments: dict[str, str | None] = {
            "from_account_id": self._resolve(state, "account", from_account),
            "payee_id": self._resolve(state, "payee", payee),
            "amount": amount,
            "memo": memo,
        }
        currency = await self._currency(context, from_account)
        source = state.labels.get(from_account.strip().lower(), "your account")
        target = state.labels.get(payee.strip().lower(), "the payee")
        summary = f"Pay {amount} from your {source} to {target}"
        summary += f" with the note {memo!r}." if memo else "."
        return self._prepare(
            context,
            "make_payment",
            arguments,
            summary,
            currency=currency,
            phrase=f"the payment of {amount} {currency} to {target}",
            label=f"Pay {amount} {currency} to {target}",
        )

    @function_tool
    async def make_payment(
        self,
        context: RunContext[CallState],
        confirmation_id: str,
        from_account: str,
        payee: str,
        amount: str,
    ) -> str:
        """Make the prepared payment, only after the customer clearly confirmed its summary.

        Args:
            confirmation_id: the confirmation id returned by prepare_payment.
            from_account: the account reference the customer confirmed paying from.
            payee: the payee reference the customer confirmed.
            amount: the amount the customer confirmed, such as 12.50.
        """
        restated = {"from_account_id": from_account, "payee_id": payee, "amount": amount}
        return _dumps(await self._confirm(context, "make_payment", confirmation_id, restated))

    @function_tool
    async def prepare_transfer(
        self, context: RunContext[CallState], from_account: str, to_account: str, amount: str
    ) -> str:
        """Prepare a transfer between two of the customer's accounts; read its summary back first.

        Args:
            from_account: the account reference to take the money from.
            to_account: the account reference to put the money in.
            amount: the amount as a decimal string, such as 100.00.
        """
        state = context.userdata
        self._guard(state)
        amount = self._check_amount(amount)
        arguments: dict[str, str | None] = {
            "from_account_id": self._resolve(state, "account", from_account),
            "to_account_id": self._resolve(state, "account", to_account),
            "amount": amount,
        }
        currency = await self._currency(context, from_account)
        source = state.labels.get(from_account.strip().lower(), "your account")
        target = state.labels.get(to_account.strip().lower(), "your other account")
        summary = f"Move {amount} from your {source} to your {target}."
        return self._prepare(
            context,
            "transfer_between_accounts",
            arguments,
            summary,
            currency=currency,
            phrase=f"the transfer of {amount} {currency} to your {target}",
            label=f"Move {amount} {currency} to your {target}",
        )

    @function_tool
    async def make_transfer(
        self,
        context: RunContext[CallState],
        confirmation_id: str,
        from_account: str,
        to_account: str,
        amount: str,
    ) -> str:
        """Make the prepared transfer, only after the customer clearly confirmed its summary.

        Args:
            confirmation_id: the confirmation id returned by prepare_transfer.
            from_account: the account reference the customer confirmed taking the money from.
            to_account: the account reference the customer confirmed putting the money in.
            amount: the amount the customer confirmed, such as 100.00.
        """
        restated = {"from_account_id": from_account, "to_account_id": to_account, "amount": amount}
        return _dumps(await self._confirm(context, "transfer_between_accounts", confirmation_id, restated))

    # -- settings ----------------------------------------------------------------------------------

    @function_tool
    async def update_notification_settings(
        self,
        context: RunContext[CallState],
        low_balance_alert: bool | None = None,
        low_balance_threshold: str | None = None,
        large_payment_alert: bool | None = None,
        channel: Channel | None = None,
    ) -> str:
        """Change the customer's notification settings; leave unchanged settings empty.

        Args:
            low_balance_alert: whether to alert when the balance is low.
            low_balance_threshold: the low balance threshold as a decimal string.
            large_payment_alert: whether to alert on large payments.
            channel: sms, email or push.
        """
        return _dumps(
            await self._call(
                context,
                lambda: self._bank.update_notification_settings(
                    low_balance_alert, low_balance_threshold, large_payment_alert, channel
                ),
            )
        )
