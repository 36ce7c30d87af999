"""The worker entry point: a clear message and a non-zero exit when not configured; a picklable job."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit.agents import JobExecutorType, JobProcess

from orchestrator import AgentSettings, AgentWiring, Bank, CallerIdentity, NotConfigured
from orchestrator._call._worker import build_server, entrypoint, freeze_job_process, main, use_our_logging
from orchestrator._logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = [
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "ORCHESTRATOR_STT",
    "ORCHESTRATOR_LLM",
    "ORCHESTRATOR_TTS",
]
CONFIGURED = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "a-secret-that-must-not-leak",
    "ORCHESTRATOR_STT": "deepgram/nova-3",
    "ORCHESTRATOR_LLM": "openai/gpt-4.1-mini",
    "ORCHESTRATOR_TTS": "cartesia/sonic-2",
}


async def module_bank_factory(identity: CallerIdentity) -> Bank:
    raise NotImplementedError  # never called: only pickled


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [*VARIABLES, "REDIS_URL", "LIVEKIT_AGENT_NAME"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_main_names_every_missing_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("LIVEKIT_URL", "ws://127.0.0.1:7880")
    assert main([], wiring=AgentWiring(module_bank_factory)) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "orchestrator: the voice agent is not configured: set LIVEKIT_API_KEY, LIVEKIT_API_SECRET,"
    )
    assert "ORCHESTRATOR_STT, ORCHESTRATOR_LLM, ORCHESTRATOR_TTS" in err
    assert "LIVEKIT_URL," not in err


def test_blank_values_count_as_missing(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in CONFIGURED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("ORCHESTRATOR_TTS", "  ")
    assert AgentSettings().missing() == ["ORCHESTRATOR_TTS"]


def test_main_without_the_orchestrator_key_says_so(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name, value in CONFIGURED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("VOICEBANK_STATE", str(tmp_path))
    clean_env.delenv("ORCHESTRATOR_CLIENT_KEY", raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "cannot load the orchestrator's client key" in err
    assert "voicebank dev-init" in err


def test_python_dash_m_orchestrator_exits_non_zero_when_not_configured() -> None:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "not configured" in done.stderr
    assert "LIVEKIT_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_settings_and_server(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in CONFIGURED.items():
        clean_env.setenv(name, value)
    settings = AgentSettings()
    assert (settings.stt, settings.llm, settings.tts) == (
        "deepgram/nova-3",
        "openai/gpt-4.1-mini",
        "cartesia/sonic-2",
    )
    assert "a-secret-that-must-not-leak" not in repr(settings)

    server = build_server(settings, AgentWiring(module_bank_factory))
    assert server._agent_name == "voicebank-agent"
    # Job processes are spawned with forkserver: the entrypoint and its wiring travel pickled.
    job = pickle.loads(pickle.dumps(server._entrypoint_fnc))  # noqa: S301 - our own bytes
    assert job.func is entrypoint
    assert job.keywords["wiring"].bank_factory is module_bank_factory


def test_the_process_that_serves_calls_freezes_its_startup_heap(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in CONFIGURED.items():
        clean_env.setenv(name, value)
    server = build_server(AgentSettings(), AgentWiring(module_bank_factory))
    # livekit-agents runs the setup hook in each job process once its imports are done, before any job.
    hook = pickle.loads(pickle.dumps(server.setup_fnc))  # noqa: S301 - our own bytes
    assert hook is freeze_job_process
    before = gc.get_freeze_count()  # 0 unless an earlier test of this process froze and left it so
    try:
        hook(JobProcess(executor_type=JobExecutorType.PROCESS, user_arguments=None, http_proxy=None))
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


def test_build_server_refuses_missing_settings(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotConfigured):
        build_server(AgentSettings(), AgentWiring(module_bank_factory))


def test_main_refuses_an_unknown_log_format_with_one_line(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in CONFIGURED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("LOG_FORMAT", "xml")
    assert main([], wiring=AgentWiring(module_bank_factory)) == 2
    err = capsys.readouterr().err
    assert err.startswith("orchestrator: invalid setting LOG_FORMAT: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.fixture
def logging_state() -> Iterator[None]:
    """The logging configuration as it was, restored after a test that lets a worker take it over."""
    loggers = [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    kept = [(logger, logger.handlers[:], logger.propagate) for logger in [logging.getLogger(), *loggers]]
    yield
    for logger, handlers, propagate in kept:
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_once_started_the_worker_logs_through_our_handler_only(
    clean_env: pytest.MonkeyPatch, logging_state: None
) -> None:
    for name, value in CONFIGURED.items():
        clean_env.setenv(name, value)
    server = build_server(AgentSettings(), AgentWiring(module_bank_factory))
    ours = logging.StreamHandler(io.StringIO())
    ours.setFormatter(JsonFormatter())
    # What livekit-agents does before it starts: a console handler of its own on the root logger and on
    # its logger, which would print every record twice, and in another format.
    theirs = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(theirs)
    library = logging.getLogger("livekit.agents")
    library.addHandler(theirs)
    use_our_logging(server, ours)
    assert theirs in logging.getLogger().handlers  # nothing changes before the worker runs
    server.emit("worker_started")
    assert logging.getLogger().handlers == [ours]
    assert (library.handlers, library.propagate) == ([], True)
    library.warning("registered")
    assert theirs.stream.getvalue() == ""
    (record,) = [json.loads(line) for line in ours.stream.getvalue().splitlines()]
    assert (record["logger"], record["message"]) == ("livekit.agents", "registered")
