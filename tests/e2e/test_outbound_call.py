"""An outbound call end to end: place_call → the Twilio REST fake → the callee answers (signed /twilio/outbound
on the real bridge) → the media stream → the agent greets → async AMD says human or machine → status
callbacks. OpenAI is the Realtime simulator; the fake plays Twilio's REST API and the far end."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from calls import outbound
from calls.models import AgentConfig, Call, PhoneNumber
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script, agent_audio
from calls.simulators.twilio_caller import MediaStreamCall
from calls.simulators.twilio_rest import TwilioRestFake
from tests.bridge_tools.conftest import TlsFiles
from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN
from tests.e2e.conftest import bridge_env
from tests.e2e.test_call_flow import wait_for
from tests.servers import ServerProcess, run_bridge

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CALLER_ID = "+15005550006"
CALLEE = "+14155550123"


@pytest.fixture(scope="module")
def twilio_rest() -> Iterator[TwilioRestFake]:
    fake = TwilioRestFake(ACCOUNT_SID, TWILIO_TOKEN, numbers=(CALLER_ID,))
    fake.start_in_thread()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def bridge(sim: RealtimeSimulator, tls_files: TlsFiles, twilio_rest: TwilioRestFake, django_db_setup,
           django_db_blocker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The bridge, also serving the webhooks, with its Twilio REST client pointed at the fake."""
    assert sim.url is not None and twilio_rest.url is not None
    env = bridge_env(sim.url, tls_files, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_API_BASE_URL=twilio_rest.url)
    with django_db_blocker.unblock(), run_bridge(tmp_path_factory.mktemp("bridge"), **env) as server:
        yield server


@pytest.fixture
def caller(agent: AgentConfig, bridge: ServerProcess, twilio_rest: TwilioRestFake, settings) -> AgentConfig:
    """This process places the call as the bridge's own deployment would."""
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = ACCOUNT_SID, TWILIO_TOKEN
    settings.TWILIO_API_BASE_URL = twilio_rest.url
    settings.PUBLIC_WEBHOOK_BASE_URL = bridge.http
    agent.calling_hours_start, agent.calling_hours_end = 0, 24
    agent.machine_detection = AgentConfig.MachineDetection.VOICEMAIL
    agent.voicemail_message = "Hi, this is the front desk. Please call us back."
    agent.save()
    PhoneNumber.objects.create(number=CALLER_ID, agent_config=agent)
    return agent


async def answer_and_stream(twilio_rest: TwilioRestFake, sid: str) -> MediaStreamCall:
    status, twiml = await asyncio.to_thread(twilio_rest.answer, sid)
    assert status == 200 and twiml.kind == "stream", twiml
    stream = MediaStreamCall(twiml.stream_url, parameters=twiml.parameters, auth_token=TWILIO_TOKEN,
                             account_sid=ACCOUNT_SID, call_sid=sid)
    await stream.connect()
    return stream


async def test_outbound_call_to_a_person(bridge, fresh_sim, twilio_rest, caller) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello, this is the front desk calling.", audio_ms=1000)])

    call = await asyncio.to_thread(outbound.place_call, CALLEE, None, "test")
    stream = await answer_and_stream(twilio_rest, call.twilio_call_sid)
    try:
        assert await stream.wait_for_reply(since_bytes=0, start_timeout=15, quiet_ms=500)
        assert bytes(stream.result.agent_audio) == agent_audio(1000, fresh_sim.pacing.pattern)
        assert await asyncio.to_thread(twilio_rest.amd_result, call.twilio_call_sid, "human") == 204
    finally:
        await stream.stop()
    assert await asyncio.to_thread(twilio_rest.complete, call.twilio_call_sid, 4) == 204

    done = wait_for(lambda: Call.objects.filter(pk=call.pk, ended_at__isnull=False, status="completed").first())
    assert done.direction == Call.Direction.OUTBOUND and done.answered_by == "human"
    assert done.stream_token_used_at is not None and done.started_at is not None
    assert twilio_rest.calls[call.twilio_call_sid].updates == []  # nobody redirected the call
    assert fresh_sim.errors == []


async def test_outbound_call_to_a_machine_leaves_the_voicemail(bridge, fresh_sim, twilio_rest, caller) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello, this is the front desk calling.", audio_ms=800)])

    call = await asyncio.to_thread(outbound.place_call, CALLEE, None, "test")
    stream = await answer_and_stream(twilio_rest, call.twilio_call_sid)
    try:
        assert await stream.wait_for_reply(since_bytes=0, start_timeout=15, quiet_ms=400)
        # The beep: the bridge's deployment tells Twilio (the fake) to replace the stream with the message.
        assert await asyncio.to_thread(twilio_rest.amd_result, call.twilio_call_sid, "machine_end_beep") == 204
        [update] = twilio_rest.calls[call.twilio_call_sid].updates
        root = ET.fromstring(update["Twiml"])
        assert [c.tag for c in root] == ["Say", "Hangup"] and root.find("Say").text == caller.voicemail_message
    finally:
        await stream.stop()  # Twilio ends the stream when it takes up the new TwiML
    assert await asyncio.to_thread(twilio_rest.complete, call.twilio_call_sid, 12) == 204

    done = wait_for(lambda: Call.objects.filter(pk=call.pk, ended_at__isnull=False, status="completed").first())
    assert done.answered_by == "machine_end_beep"
