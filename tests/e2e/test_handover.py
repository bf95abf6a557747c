"""A call longer than one upstream Realtime session (60 minutes; here the simulator's limit is shortened) moves
to a fresh session with the conversation so far, between turns, and the caller hears no break: no apology, no
second greeting, no caller audio lost, the conversation goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from calls.models import AgentConfig, Call, CallEvent
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script, agent_audio
from tests.bridge_tools.conftest import TlsFiles
from tests.e2e.conftest import bridge_env, only_realtime
from tests.e2e.test_call_flow import appended_audio, open_stream, wait_for
from tests.servers import run_bridge

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SESSION_LIMIT_S = 7.0
HANDOVER_AFTER_S = 3


@only_realtime  # a Realtime session's 60-minute limit; GPT-Live's is unknown (an expired session ends the call)
async def test_a_call_outlives_the_upstream_session_limit_through_a_handover(
    fresh_sim: RealtimeSimulator, agent: AgentConfig, tls_files: TlsFiles, tmp_path: Path
) -> None:
    fresh_sim.session_max_s = SESSION_LIMIT_S
    fresh_sim.script = Script(turns=[Reply("Hello, how can I help?", audio_ms=600),
                                     Reply("We open at eight.", audio_ms=800)],
                              transcripts=["When do you open?"])
    before = fresh_sim.total_sessions
    env = bridge_env(fresh_sim, tls_files, OPENAI_REALTIME_HANDOVER_S=str(HANDOVER_AFTER_S))
    try:
        with run_bridge(tmp_path, **env) as bridge:
            params, call = await open_stream(bridge)
            async with call:
                await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
                heard = len(call.result.agent_audio)
                await call.say(audio.speech_like(600) + audio.silence(800))
                await call.wait_for_reply(since_bytes=heard, start_timeout=10, quiet_ms=300, finish_timeout=10)
                # The handover is due after 3 s and happens between turns.
                await asyncio.to_thread(wait_for, lambda: fresh_sim.total_sessions == before + 2, 10)
                fresh_sim.script = Script(turns=[Reply("Yes, on Saturdays too.", audio_ms=800)],
                                          transcripts=["And on Saturdays?"])
                # Past the first session's limit: the call goes on in the second one.
                await asyncio.sleep(SESSION_LIMIT_S + 1 - HANDOVER_AFTER_S)
                assert not call.result.closed_by_server
                heard = len(call.result.agent_audio)
                await call.say(audio.speech_like(600) + audio.silence(800))
                await call.wait_for_reply(since_bytes=heard, start_timeout=10, quiet_ms=300, finish_timeout=10)
            row = await asyncio.to_thread(wait_for, lambda: Call.objects.filter(
                twilio_call_sid=params["CallSid"], ended_at__isnull=False).first())
    finally:
        fresh_sim.session_max_s = 3600.0
    sessions = fresh_sim.sessions[before:]  # a handover every 3 s: the call may have reached a third session
    first, second = sessions[0], sessions[1]
    assert fresh_sim.errors == []
    assert first.closed_reason == "client closed"  # closed by the bridge before it expired
    # The fresh session got the same configuration, told to carry on, and the conversation so far; no greeting.
    types = [e["type"] for e in second.received if e["type"] != "input_audio_buffer.append"]
    assert types[0] == "session.update" and "response.create" not in types
    instructions = second.received[0]["session"]["instructions"]
    assert instructions.startswith("You answer the phone.") and "Do not greet the caller again" in instructions
    history = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in second.received
               if e["type"] == "conversation.item.create"]
    assert history == [("assistant", "Hello, how can I help?"), ("user", "When do you open?"),
                       ("assistant", "We open at eight.")]
    # The caller heard every reply, byte for byte, and none of their audio was lost in the switch.
    pattern = fresh_sim.pacing.pattern
    assert bytes(call.result.agent_audio) == (agent_audio(600, pattern) + agent_audio(800, pattern)
                                              + agent_audio(800, pattern))
    assert sum(len(appended_audio(s)) for s in sessions) == call.result.media_frames_sent * 160
    assert row.end_reason == Call.EndReason.CALLER_HANGUP and row.status == Call.Status.COMPLETED
    lines = await asyncio.to_thread(wait_for, lambda: list(CallEvent.objects.filter(
        call=row, kind__in=["caller", "agent"]).values_list("text", flat=True)) if CallEvent.objects.filter(
        call=row, kind="agent").count() >= 3 else None)
    assert "And on Saturdays?" in lines and "Yes, on Saturdays too." in lines
    assert CallEvent.objects.filter(call=row, kind="status", data__handover=True).count() == len(sessions) - 1
