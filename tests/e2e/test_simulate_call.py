"""`manage.py simulate_call` against the real bridge: exit 0 and a WAV only when the agent answered; a failed or
unanswered call exits non-zero and writes no empty WAV."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from calls.models import AgentConfig, Call
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from tests.conftest import TWILIO_TOKEN
from tests.e2e.conftest import wait_until_idle
from tests.servers import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def simulate(bridge: ServerProcess, out, *args: str) -> str:
    stdout = StringIO()
    call_command("simulate_call", "--to", "+15005550006", "--url", bridge.http, "--auth-token", TWILIO_TOKEN,
                 "--out", str(out), "--timeout", "10", *args, stdout=stdout)
    return stdout.getvalue()


def test_an_answered_call_saves_the_reply(bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig,
                                          tmp_path) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello!", audio_ms=600), Reply("We open at eight.", audio_ms=600)])
    out = tmp_path / "reply.wav"
    printed = simulate(bridge, out)
    assert out.stat().st_size > 44 and "Agent audio saved to" in printed
    assert Call.objects.get().is_test  # simulate_call marks its calls as tests


def test_a_failed_call_exits_non_zero_without_a_wav(bridge: ServerProcess, fresh_sim: RealtimeSimulator,
                                                    agent: AgentConfig, tmp_path) -> None:
    fresh_sim.faults.refuse_status = 401  # OpenAI refuses the key
    out = tmp_path / "reply.wav"
    with pytest.raises(CommandError) as failure:
        simulate(bridge, out)
    assert "failed" in str(failure.value) or "never spoke" in str(failure.value)
    assert not out.exists()


def test_an_unanswered_call_exits_non_zero(bridge: ServerProcess, transactional_db, tmp_path) -> None:
    out = tmp_path / "reply.wav"
    try:
        with pytest.raises(CommandError, match="not answered by the agent"):
            simulate(bridge, out)  # no agent config at all: the webhook apologises and hangs up
    finally:
        wait_until_idle(bridge)
    assert not out.exists()
