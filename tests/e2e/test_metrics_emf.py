"""The lifecycle metrics from a real bridge (`manage.py runbridge --metrics`): after a simulated call with one
caller turn, its stdout holds EMF documents with the call's end reason, the OpenAI connect time of its engine,
the time to the first agent audio and (Realtime, which has end-of-turn events) the reply latency, which the
agent's transcript event also carries (`reply_ms`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from calls.models import AgentConfig, CallEvent
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from calls.simulators.twilio_caller import run_inbound_call
from tests.bridge_process.test_metrics import check_emf_spec
from tests.conftest import TWILIO_TOKEN
from tests.e2e.conftest import URL_SETTINGS, wait_until_idle
from tests.servers import ROOT, ServerProcess, free_port, subprocess_env, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def test_a_call_leaves_its_lifecycle_metrics_on_stdout(
    fresh_sim: RealtimeSimulator, agent: AgentConfig, engine: str, tmp_path
) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello!", audio_ms=400), Reply("Sure, one moment.", audio_ms=400)])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = subprocess_env(
        PORT=str(port), PUBLIC_WEBHOOK_BASE_URL=base, BRIDGE_PUBLIC_URL=f"ws://127.0.0.1:{port}/media-stream",
        OPENAI_API_KEY="sk-simulated-key-0123456789", TWILIO_AUTH_TOKEN=TWILIO_TOKEN, VOICEOPS_STAGE="dev",
        METRICS_NAMESPACE="VoiceOpsTest", **{URL_SETTINGS[engine]: fresh_sim.url},
    )
    stdout_path = tmp_path / "bridge.stdout"
    with stdout_path.open("w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runbridge", "--host", "127.0.0.1", "--port", str(port), "--metrics"],
            cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_http(f"{base}/healthz")
        started = time.monotonic()
        outcome = await run_inbound_call(base, to="+15005550006", from_="+14155550100", auth_token=TWILIO_TOKEN,
                                         utterances=[audio.speech_like(600)], reply_timeout=15)
        call_s = time.monotonic() - started
        assert outcome.call is not None, (outcome.webhook_status, outcome.webhook_body)
        wait_until_idle(ServerProcess(proc, port, stdout_path))  # the end is recorded (and counted)
    finally:
        proc.terminate()  # the last line flushes what the minute's periodic line has not published yet
        proc.wait(timeout=30)

    docs = [json.loads(line) for line in stdout_path.read_text().splitlines() if line.startswith("{")]
    lifecycle = [doc for doc in docs if "ActiveCalls" not in doc and "CallsStarted" not in doc]
    assert lifecycle, docs
    found: dict[tuple[str, tuple[tuple[str, str], ...]], object] = {}
    for doc in lifecycle:
        check_emf_spec(doc)
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "VoiceOpsTest" and doc["Stage"] == "dev"
        (dimensions,) = directive["Dimensions"]
        key = tuple((name, doc[name]) for name in dimensions if name != "Stage")
        for metric in directive["Metrics"]:
            found[(metric["Name"], key)] = doc[metric["Name"]]
    assert found[("CallsEnded", (("EndReason", "caller_hangup"),))] == 1
    (connect_ms,) = found[("OpenAIConnectMs", (("Engine", engine),))]
    (first_audio_ms,) = found[("TimeToFirstAgentAudioMs", ())]
    assert 0 <= connect_ms < first_audio_ms < call_s * 1000
    assert ("UpstreamErrors", ()) not in found
    if engine == "live":
        # GPT-Live has no end-of-turn event (only timed transcript fragments): no reply latency to measure.
        assert ("ReplyLatencyMs", ()) not in found
        return
    (reply_ms,) = found[("ReplyLatencyMs", ())]
    assert 0 < reply_ms < call_s * 1000

    answer = await CallEvent.objects.filter(call__twilio_call_sid=outcome.call.call_sid, kind="agent",
                                            data__has_key="reply_ms").afirst()
    assert answer is not None and answer.data["reply_ms"] == reply_ms
