"""PostgreSQL stopped for 10 s mid-call (a PRIVATE cluster this test starts and stops, never the shared server):
the audio goes on both ways with nothing lost or reordered, the transcript lines spoken during the outage are
written once the database is back, and the call ends properly recorded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script, agent_audio
from tests.bridge_tools.conftest import TlsFiles
from tests.e2e.conftest import bridge_env
from tests.e2e.test_call_flow import appended_audio, open_stream
from tests.faults.conftest import PrivatePostgres, bridge_process, health
from tests.servers import ROOT, subprocess_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

OUTAGE_S = 10.0
GREETING_MS, ANSWER_MS = 5000, 6000
SEED = """
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from calls import services
from calls.models import AgentConfig
config = AgentConfig.objects.create(name="Front desk", instructions="You answer the phone.",
                                    greeting="Hello, how can I help?", is_default=True)
config.tools.set(services.ensure_builtin_tools())
"""


def seed(database_url: str) -> None:
    subprocess.run([sys.executable, "manage.py", "shell", "-c", SEED], cwd=ROOT, check=True, timeout=120,
                   env=subprocess_env(DATABASE_URL=database_url), capture_output=True)


def longest_gap(samples: list[tuple[float, int]], start: float, end: float, boundaries: set[int]) -> float:
    """The longest time within [start, end] a counter did not move, except while it sat on a boundary (between
    two turns of the conversation, when silence from the agent is expected)."""
    longest, since, last = 0.0, None, None
    for t, value in samples:
        if value != last or value in boundaries:
            since, last = t, value
        elif start <= t <= end and since is not None:
            longest = max(longest, t - max(since, start))
    return longest


def rows(database_url: str, call_sid: str) -> tuple[tuple[Any, ...], list[tuple[str, str]]]:
    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
        call = conn.execute("SELECT id, status, end_reason, ended_at FROM calls_call WHERE twilio_call_sid = %s",
                            [call_sid]).fetchone()
        events = conn.execute("SELECT kind, text FROM calls_callevent WHERE call_id = %s ORDER BY seq",
                              [call[0]]).fetchall()
    return call, events


async def test_postgres_down_for_10s_mid_call_loses_nothing(
    fresh_sim: RealtimeSimulator, private_postgres: PrivatePostgres, tls_files: TlsFiles, tmp_path: Path,
    loss_report: dict[str, Any],
) -> None:
    await asyncio.to_thread(seed, private_postgres.url)
    fresh_sim.script = Script(turns=[Reply("Hello, how can I help?", audio_ms=GREETING_MS),
                                     Reply("The database is not needed for me to talk.", audio_ms=ANSWER_MS)],
                              transcripts=["Is the database down?"])
    utterance = audio.speech_like(700)
    with bridge_process(tmp_path, DATABASE_URL=private_postgres.url, **bridge_env(fresh_sim, tls_files)) as bridge:
        params, call = await open_stream(bridge)
        await call.connect()
        assert await call.wait_for_agent_audio(timeout=10)
        session = fresh_sim.sessions[-1]
        samples: list[tuple[float, int, int]] = []

        async def sample() -> None:
            while True:
                samples.append((time.monotonic(), len(call.result.agent_audio), session.audio_in_bytes))
                await asyncio.sleep(0.02)

        sampler = asyncio.get_running_loop().create_task(sample())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_postgres.stop)
        down_at = time.monotonic()
        # During the outage: the greeting plays out, the caller speaks, the agent starts its answer.
        assert await call.wait_for_agent_audio(min_bytes=8 * GREETING_MS, timeout=10)
        assert await call.wait_until_quiet(quiet_ms=300, timeout=5)
        await call.say(utterance + audio.silence(800))
        assert await call.wait_for_agent_audio(min_bytes=8 * GREETING_MS + 1, timeout=5)
        pending_during_outage = health(bridge)["pending_events"]
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        await asyncio.to_thread(private_postgres.start)
        up_at = time.monotonic()
        await call.wait_for_agent_audio(min_bytes=8 * (GREETING_MS + ANSWER_MS), timeout=15)
        await call.wait_until_quiet(quiet_ms=300, timeout=5)
        sampler.cancel()
        await call.stop()
        deadline = time.monotonic() + 30
        while health(bridge)["pending_events"] or health(bridge)["active_calls"]:
            assert time.monotonic() < deadline, "events still unwritten 30 s after the database came back"
            await asyncio.sleep(0.1)
        written_after_s = time.monotonic() - up_at
    (_, status, end_reason, ended_at), events = await asyncio.to_thread(rows, private_postgres.url, params["CallSid"])

    expected = agent_audio(GREETING_MS, "counter") + agent_audio(ANSWER_MS, "counter")
    received = bytes(call.result.agent_audio)
    sent_upstream = appended_audio(session)
    boundaries = {0, 8 * GREETING_MS, len(expected)}
    downstream_gap = longest_gap([(t, a) for t, a, _ in samples], down_at, up_at, boundaries)
    upstream_gap = longest_gap([(t, c) for t, _, c in samples], down_at, up_at, set())
    lines = [(kind, text) for kind, text in events if kind in ("caller", "agent")]
    loss_report.update(
        outage_s=round(up_at - down_at, 1), pending_events_during_outage=pending_during_outage,
        events_written_after_db_back_s=round(written_after_s, 1),
        longest_agent_audio_gap_during_outage_s=round(downstream_gap, 2),
        longest_caller_audio_gap_during_outage_s=round(upstream_gap, 2),
        agent_audio_lost_or_reordered=received != expected,
        caller_frames_sent=call.result.media_frames_sent, caller_frames_reaching_upstream=len(sent_upstream) // 160,
        transcript_lines_written=len(lines), call_status=status, call_left_in_progress=ended_at is None,
    )
    assert received == expected
    assert len(sent_upstream) == call.result.media_frames_sent * 160 and utterance in sent_upstream
    assert downstream_gap < 1.0 and upstream_gap < 0.5, loss_report
    assert pending_during_outage > 0  # the transcript lines really were produced while the database was down
    assert ("caller", "Is the database down?") in lines
    assert ("agent", "Hello, how can I help?") in lines
    assert ("agent", "The database is not needed for me to talk.") in lines
    assert ended_at is not None and status == "completed" and end_reason == "caller_hangup"
