"""The root of the orchestrator's errors.

OrchestratorError           orchestrator_error
├── BankError               bank_error          a bank call failed; safe to speak (`_bank/_protocol.py`,
│                                               the token client's under it in `_tokens/_errors.py`)
├── IdentityRefused         identity_refused    the participant metadata names no caller (`_call`)
├── NotConfigured           not_configured      the worker cannot start (`_call/_settings.py`)
├── UnknownRef              unknown_ref         the LLM named a reference this call never gave (`_agent`)
└── the command layer's: DevInitError dev_init, AdminCommandError admin_command, StackError demo_stack,
    UpError up, ServeError serve, TokenCommandError token_command
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises; `code` is stable."""

    code = "orchestrator_error"
