"""Production logs from a real bridge (`manage.py runbridge`, DJANGO_DEBUG=0): every stderr line is one JSON
object; the lines about a call carry its call_sid (and stream_sid), never the caller's number or a secret."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calls.models import AgentConfig
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from calls.simulators.twilio_caller import run_inbound_call
from tests.conftest import TWILIO_TOKEN
from tests.servers import ROOT, free_port, subprocess_env, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET_KEY = "j" * 10 + "Zq3xV9mP2kL7wN4bR8tY6hJ1cF5gD0sAeUiOpQ7vB0a9s8d7f6g5"


async def test_bridge_production_logs_are_json_lines_about_the_call(
    fresh_sim: RealtimeSimulator, agent: AgentConfig, tmp_path
) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello!", audio_ms=400)])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = subprocess_env(
        PORT=str(port), PUBLIC_WEBHOOK_BASE_URL=base, BRIDGE_PUBLIC_URL=f"ws://127.0.0.1:{port}/media-stream",
        OPENAI_REALTIME_URL=fresh_sim.url, OPENAI_API_KEY="sk-simulated-key-0123456789", DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=SECRET_KEY, DJANGO_ALLOWED_HOSTS="127.0.0.1", DJANGO_SECURE_SSL_REDIRECT="0",
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
    )
    stderr_path = tmp_path / "bridge.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "manage.py", "runbridge", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        wait_http(f"{base}/healthz")
        outcome = await run_inbound_call(base, to="+15005550006", from_="+14155550100", auth_token=TWILIO_TOKEN,
                                         utterances=[audio.speech_like(600)], reply_timeout=15)
        assert outcome.call is not None, (outcome.webhook_status, outcome.webhook_body)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    text = stderr_path.read_text()
    bad = [line for line in text.splitlines() if not line.startswith("{")]
    assert not bad, bad
    lines = [json.loads(line) for line in text.splitlines()]  # fails on any line that is not JSON
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    call_sid, stream_sid = outcome.call.call_sid, outcome.call.stream_sid
    about_call = [line for line in lines if line.get("call_sid") == call_sid]
    loggers = {line["logger"] for line in about_call}
    assert "lambda_webhook.views" in loggers  # the webhook's answer
    assert any(line["logger"].startswith("bridge") for line in about_call)  # the stream's lifecycle
    started = next(line for line in about_call if "started" in line["message"])
    assert started["stream_sid"] == stream_sid
    ended = next(line for line in about_call if "ended" in line["message"])
    assert ended["stream_sid"] == stream_sid
    assert len(about_call) < 20  # lifecycle steps, never one line per audio frame
    for leaked in ("+14155550100", TWILIO_TOKEN, "sk-simulated-key", SECRET_KEY):
        assert leaked not in text
