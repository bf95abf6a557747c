"""SIGTERM while many calls are live (VOICEOPS_FAULT_CALLS, 10 here, 50 in the published run): readiness flips,
new streams are refused, every live call goes on to its own end or to DRAIN_TIMEOUT_S and then ends politely
(the Connect action's apology); nothing is left "in progress" and no agent audio is lost or reordered."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from calls.models import AgentConfig, Call, CallEvent
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script, agent_audio
from calls.simulators.twilio_caller import MediaStreamCall
from lambda_webhook import twiml
from tests.bridge_tools.conftest import TlsFiles
from tests.e2e.conftest import bridge_env
from tests.e2e.test_call_flow import open_stream, wait_for
from tests.faults.conftest import DRAIN_CALLS, bridge_process, http_status, stream_ended_twiml

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DRAIN_TIMEOUT_S = 6
LONG_ANSWER_MS = 120_000  # longer than the test: only a hang-up or the drain ends these calls


def audio_intact(received: bytes, pattern: str) -> bool:
    """The agent audio a caller got is exactly the start of what the model produced: nothing lost or reordered."""
    return bytes(received) == agent_audio(LONG_ANSWER_MS, pattern)[: len(received)]


async def test_sigterm_during_live_calls_drains_them_politely(
    fresh_sim: RealtimeSimulator, agent: AgentConfig, tls_files: TlsFiles, tmp_path: Path,
    loss_report: dict[str, Any],
) -> None:
    fresh_sim.script = Script(turns=[Reply("A long answer " * 20, audio_ms=LONG_ANSWER_MS)])
    env = bridge_env(fresh_sim, tls_files, DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S))
    with bridge_process(tmp_path, **env) as bridge:
        streams: list[tuple[dict[str, str], MediaStreamCall]] = list(
            await asyncio.gather(*(open_stream(bridge) for _ in range(DRAIN_CALLS))))
        await asyncio.gather(*(call.connect() for _, call in streams))
        heard = await asyncio.gather(*(call.wait_for_agent_audio(timeout=30) for _, call in streams))
        assert all(heard), f"{heard.count(False)} call(s) never heard the agent"

        bridge.proc.send_signal(signal.SIGTERM)
        t_signal = time.monotonic()
        at_signal = [len(call.result.agent_audio) for _, call in streams]
        await asyncio.to_thread(wait_for, lambda: http_status(bridge.http + "/readyz") == 503, 5, 0.02)
        readiness_flip_s = time.monotonic() - t_signal
        _, late = await open_stream(bridge)  # the webhook is still served: only new *streams* are refused
        with pytest.raises(InvalidStatus):
            await late.connect()

        # Every other caller hangs up during the drain window (staggered); the rest stay until the drain ends them.
        hang_ups = streams[::2]
        stayers = streams[1::2]
        ended_at: dict[str, float] = {}

        async def hang_up(index: int, call: MediaStreamCall) -> None:
            # On the clock of the signal, so that a slow start (a saturated machine) does not push them past the drain.
            due = t_signal + 1 + 3 * index / max(1, len(hang_ups))
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            assert not call.closed.is_set(), "the bridge closed a call before its caller hung up or the drain ended"
            await call.stop()
            ended_at[call.result.call_sid] = time.monotonic() - t_signal

        async def stay(call: MediaStreamCall) -> None:
            assert await call.wait_closed(DRAIN_TIMEOUT_S + 10), "a call outlived the drain window"
            ended_at[call.result.call_sid] = time.monotonic() - t_signal

        await asyncio.gather(*(hang_up(i, call) for i, (_, call) in enumerate(hang_ups)),
                             *(stay(call) for _, call in stayers))
        code = await asyncio.to_thread(bridge.proc.wait, 20)
        exit_s = time.monotonic() - t_signal

    rows = {row.twilio_call_sid: row for row in Call.objects.filter(
        twilio_call_sid__in=[params["CallSid"] for params, _ in streams])}
    left_in_progress = [sid for sid, row in rows.items() if row.ended_at is None]
    # Each call's last event (its end, with the usage) is stored: the process flushed its events before exiting.
    end_events_lost = [sid for sid, row in rows.items()
                       if not CallEvent.objects.filter(call=row, kind="status").exists()]
    stayer_closes = [ended_at[call.result.call_sid] for _, call in stayers]
    cut_early = [t for t in stayer_closes if t < DRAIN_TIMEOUT_S - 0.5]
    corrupted = [call.result.call_sid for _, call in streams if not audio_intact(call.result.agent_audio, "counter")]
    # While draining, each call went on hearing the agent (at least half the real-time rate until its end).
    starved = [
        call.result.call_sid for (_, call), before in zip(streams, at_signal, strict=True)
        if len(call.result.agent_audio) - before < 4 * 1000 * (ended_at[call.result.call_sid] - 1.0)
    ]
    loss_report.update(
        calls=len(streams), hung_up_during_drain=len(hang_ups), ended_by_drain=len(stayers),
        readiness_flip_s=round(readiness_flip_s, 2), drain_timeout_s=DRAIN_TIMEOUT_S,
        drained_calls_closed_after_s=[round(min(stayer_closes), 1), round(max(stayer_closes), 1)],
        process_exit_s=round(exit_s, 1), exit_code=code, calls_cut_early=len(cut_early),
        calls_left_in_progress=len(left_in_progress), calls_with_audio_lost_or_reordered=len(corrupted),
        calls_starved_while_draining=len(starved), late_stream_refused=True, end_events_lost=len(end_events_lost),
    )
    assert code == 0
    # Probed from this process, which also runs every simulated caller and the OpenAI simulator: at 50 calls on
    # 2 cores its own lateness dominates (0.01 s at 10 calls). Health checks probe every few seconds anyway.
    assert readiness_flip_s < 5
    assert not cut_early and not left_in_progress and not corrupted and not starved, loss_report
    assert not end_events_lost, loss_report
    assert max(stayer_closes) < DRAIN_TIMEOUT_S + 5
    for params, _ in hang_ups:
        assert rows[params["CallSid"]].end_reason == Call.EndReason.CALLER_HANGUP
    for params, call in stayers:
        assert call.result.closed_by_server
        assert rows[params["CallSid"]].end_reason == Call.EndReason.DRAINED
    polite = stream_ended_twiml(stayers[0][0])
    assert polite.verbs == ["Say", "Hangup"] and polite.says == [twiml.DRAINED]
