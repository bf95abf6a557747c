"""SIGTERM on a bridge with a live call: it turns not-ready, refuses new streams, keeps the live call to its end
(or ends it politely after DRAIN_TIMEOUT_S), then exits 0."""

from __future__ import annotations

import asyncio
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from calls.models import AgentConfig, Call
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from tests.bridge_tools.conftest import TlsFiles
from tests.e2e.conftest import bridge_env
from tests.e2e.test_call_flow import open_stream, wait_for
from tests.servers import run_bridge

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def readyz_status(base: str) -> int:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_sigterm_keeps_the_live_call_to_its_end_then_exits(
    fresh_sim: RealtimeSimulator, agent: AgentConfig, tls_files: TlsFiles, tmp_path: Path
) -> None:
    fresh_sim.script = Script(turns=[Reply("A long answer " * 20, audio_ms=30000)])
    with run_bridge(tmp_path, **bridge_env(fresh_sim, tls_files, DRAIN_TIMEOUT_S="30")) as bridge:
        assert readyz_status(bridge.http) == 200
        params, call = await open_stream(bridge)
        await call.connect()
        assert await call.wait_for_agent_audio(timeout=10)
        bridge.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(wait_for, lambda: readyz_status(bridge.http) == 503, 5)
        # New streams are refused while draining.
        _, second = await open_stream(bridge)
        with pytest.raises(InvalidStatus):
            await second.connect()
        # The live call goes on: agent audio keeps arriving after the signal.
        heard = len(call.result.agent_audio)
        await asyncio.sleep(1.5)
        assert len(call.result.agent_audio) > heard
        assert bridge.proc.poll() is None
        await call.stop()  # the caller hangs up: nothing is left to wait for
        code = await asyncio.to_thread(bridge.proc.wait, 15)
        assert code == 0
    row = Call.objects.get(twilio_call_sid=params["CallSid"])
    assert row.end_reason == Call.EndReason.CALLER_HANGUP
    assert "drain" in bridge.log().lower()


async def test_drain_timeout_ends_the_call_politely(
    fresh_sim: RealtimeSimulator, agent: AgentConfig, tls_files: TlsFiles, tmp_path: Path
) -> None:
    fresh_sim.script = Script(turns=[Reply("A long answer " * 20, audio_ms=30000)])
    with run_bridge(tmp_path, **bridge_env(fresh_sim, tls_files, DRAIN_TIMEOUT_S="2")) as bridge:
        params, call = await open_stream(bridge)
        await call.connect()
        assert await call.wait_for_agent_audio(timeout=10)
        bridge.proc.send_signal(signal.SIGTERM)
        assert await call.wait_closed(10), "the call outlived the drain window"
        assert call.result.closed_by_server
        code = await asyncio.to_thread(bridge.proc.wait, 15)
        assert code == 0
    row = wait_for(lambda: Call.objects.filter(twilio_call_sid=params["CallSid"], ended_at__isnull=False).first())
    assert row.end_reason == Call.EndReason.DRAINED
