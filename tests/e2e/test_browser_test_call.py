"""The browser test call for real: Debian's chromium, its fake microphone playing a WAV (a 600 Hz tone burst),
the dashboard's test-call page, the real bridge (runbridge, with TWILIO_AUTH_TOKEN set, so the handshake
takes the browser's token path) and the Realtime simulator. The agent's reply arrives and plays, marks are
echoed, the transcript shows live, and what reached "OpenAI" is the microphone's tone, resampled and μ-law
encoded by the page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from calls import services, stream_token
from calls.models import AgentConfig, Call
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from tests.bridge_tools.conftest import TlsFiles
from tests.e2e.conftest import bridge_env
from tests.e2e.test_call_flow import wait_for
from tests.servers import ServerProcess, run_bridge
from tests.web.conftest import launched_chromium
from tests.web.helpers import logged_in_page

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("VOICEOPS_SCREENSHOTS", "/tmp/voiceops-screenshots")
MIC_RATE = 48_000
TONE_HZ = 600


@pytest.fixture(scope="module")
def bridge(sim: RealtimeSimulator, tls_files: TlsFiles, django_db_setup, django_db_blocker,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The e2e bridge, sharing this process's secret key so the tests can mint stream tokens it accepts."""
    assert sim.url is not None
    env = bridge_env(sim.url, tls_files, DJANGO_SECRET_KEY=settings.SECRET_KEY)
    with django_db_blocker.unblock(), run_bridge(tmp_path_factory.mktemp("bridge"), **env) as server:
        yield server


def mic_wav(path: Path) -> Path:
    """2.5 s quiet, 1 s of a 600 Hz tone (the caller "speaks"), 2.5 s quiet; chromium loops it."""
    samples = [0] * (MIC_RATE * 5 // 2)
    samples += audio.tone_samples(TONE_HZ, 1000, amplitude=0.5, rate=MIC_RATE)
    samples += [0] * (MIC_RATE * 5 // 2)
    path.write_bytes(audio.pcm16_wav_bytes(samples, MIC_RATE))
    return path


@pytest.fixture
def mic_browser(tmp_path: Path) -> Iterator[Any]:
    """Chromium whose fake microphone plays `mic_wav`; permission prompts answered yes."""
    args = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_wav(tmp_path / 'mic.wav')}",
            "--autoplay-policy=no-user-gesture-required")
    with launched_chromium(args) as chromium:
        yield chromium


def dominant_hz(ulaw: bytes) -> float:
    """The frequency of the loud part of μ-law 8 kHz audio, from its zero crossings."""
    samples = audio.ulaw_to_samples(ulaw)
    loud = [s for i in range(0, len(samples) - 160, 160)
            if audio.pcm16_rms(audio.ulaw_to_pcm16(ulaw[i:i + 160])) > 2000 for s in samples[i:i + 160]]
    assert len(loud) > 8000 * 0.3, "less than 0.3 s of loud caller audio reached the model"
    crossings = sum(1 for a, b in itertools.pairwise(loud) if (a < 0) != (b < 0))
    return crossings / 2 / (len(loud) / 8000)


def test_browser_call_talks_to_the_agent(mic_browser: Any, bridge: ServerProcess, fresh_sim: RealtimeSimulator,
                                         agent: AgentConfig, admin_user: Any) -> None:
    from playwright.sync_api import expect

    fresh_sim.pacing.speed = 1.0  # the page plays audio in real time; marks follow playback
    fresh_sim.script = Script(turns=[Reply("Hello, this is the front desk.", audio_ms=1000),
                                     Reply("We open at eight.", audio_ms=1200)],
                              transcripts=["When do you open?"])
    page = logged_in_page(mic_browser, bridge.http)
    page.goto(f"/dashboard/test-call/?config={agent.pk}")
    root = page.locator("#test-call")

    page.click("#tc-start")

    expect(root).to_have_attribute("data-state", "live", timeout=15_000)
    call = Call.objects.get(is_test=True)
    # The greeting arrives, plays, and its marks go back to the bridge.
    wait_for(lambda: int(root.get_attribute("data-played") or 0) >= 8000, timeout_s=15)
    wait_for(lambda: int(root.get_attribute("data-marks") or 0) > 0, timeout_s=10)
    expect(page.locator("#tc-transcript .vo-agent").first).to_contain_text("Hello, this is the front desk.",
                                                                          timeout=15_000)
    # The microphone's tone burst is a caller turn: transcribed, answered.
    expect(page.locator("#tc-transcript .vo-caller").first).to_contain_text("When do you open?", timeout=20_000)
    expect(page.locator("#tc-transcript .vo-agent").nth(1)).to_contain_text("We open at eight.", timeout=15_000)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, "dashboard-test-call.png"), full_page=True)

    page.click("#tc-hangup")
    expect(root).to_have_attribute("data-state", "ended")

    done = wait_for(lambda: Call.objects.filter(pk=call.pk, ended_at__isnull=False).first())
    assert done.is_test and done.agent_config == agent and done.stream_token_used_at is not None
    assert done.end_reason == Call.EndReason.CALLER_HANGUP and done.status == Call.Status.COMPLETED
    session = fresh_sim.sessions[-1]
    assert fresh_sim.errors == []
    sent = b"".join(base64.b64decode(e["audio"]) for e in session.received if e["type"] == "input_audio_buffer.append")
    assert len(sent) % 160 == 0 and len(sent) >= 8000 * 3  # 20 ms frames, seconds of them
    assert math.isclose(dominant_hz(sent), TONE_HZ, rel_tol=0.05)
    assert page.js_errors == [], page.js_errors
    page.context.close()


def test_talking_over_the_agent_clears_what_the_page_queued(mic_browser: Any, bridge: ServerProcess,
                                                            fresh_sim: RealtimeSimulator, agent: AgentConfig,
                                                            admin_user: Any) -> None:
    """A six-second greeting, and the microphone's tone starts 2.5 s in: the bridge sends `clear`, the page drops
    the queued audio and echoes its pending marks, and OpenAI's item is truncated at what was heard."""
    from playwright.sync_api import expect

    fresh_sim.pacing.speed = 1.0
    fresh_sim.script = Script(turns=[Reply("A very long greeting that goes on and on.", audio_ms=6000)])
    page = logged_in_page(mic_browser, bridge.http)
    page.goto(f"/dashboard/test-call/?config={agent.pk}")
    root = page.locator("#test-call")

    page.click("#tc-start")
    expect(root).to_have_attribute("data-state", "live", timeout=15_000)
    wait_for(lambda: int(root.get_attribute("data-cleared") or 0) >= 1, timeout_s=15)

    received, played = int(root.get_attribute("data-received")), int(root.get_attribute("data-played"))
    assert 0 < played < received <= 6000 * 8  # part of the greeting was heard, the rest dropped
    [truncate] = wait_for(lambda: fresh_sim.sessions[-1].truncates, timeout_s=10)
    assert 0 < truncate["audio_end_ms"] < 6000
    page.click("#tc-hangup")
    expect(root).to_have_attribute("data-state", "ended")
    assert fresh_sim.errors == []
    assert page.js_errors == [], page.js_errors
    page.context.close()


async def test_the_browser_token_is_single_use(bridge: ServerProcess, fresh_sim: RealtimeSimulator,
                                               agent: AgentConfig) -> None:
    """The bridge (TWILIO_AUTH_TOKEN set) takes an unsigned handshake only with a browser test-call token,
    and the token starts its call once; a phone call's token is no substitute for Twilio's signature."""
    call = await asyncio.to_thread(services.start_test_call, agent, "test")
    token = stream_token.mint(call.twilio_call_sid, agent.pk, browser=True)
    phone_token = stream_token.mint(call.twilio_call_sid, agent.pk)

    def start(token: str) -> str:
        return json.dumps({"event": "start", "streamSid": "MZ" + "1" * 32, "start": {
            "streamSid": "MZ" + "1" * 32, "accountSid": call.account_sid, "callSid": call.twilio_call_sid,
            "tracks": ["inbound"], "customParameters": {"token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})

    async def handshake_refused(url: str) -> int | None:
        try:
            async with connect(url) as ws:
                await asyncio.wait_for(ws.recv(), 5)
        except InvalidStatus as exc:
            return exc.response.status_code
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        return None

    assert await handshake_refused(bridge.ws) in (403, 4401)  # unsigned, no token
    assert await handshake_refused(f"{bridge.ws}?token={phone_token}") in (403, 4401)
    outcomes = []
    for _ in range(2):
        async with connect(f"{bridge.ws}?token={token}") as ws:
            await ws.send(start(token))
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)  # the greeting's first frame, or the refusal
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 0.5)
            outcomes.append((ws.close_code, ws.close_reason) if ws.close_code is not None else "open")
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"event": "stop", "streamSid": "MZ" + "1" * 32, "stop": {}}))
    assert outcomes[0] == "open"  # the first use started the call: the agent spoke
    assert outcomes[1] == (4401, "stream token already used")
