"""Whole calls through the real bridge (daphne subprocess on loopback) with Twilio played by the caller simulator
and OpenAI by a simulator: every test runs on both engines, Realtime and GPT-Live (see conftest). Every client
event the bridge sends is validated by the simulator against the `openai` package's own types (`openai.types.
realtime` or `openai.types.live`); `sim.errors` must stay empty."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from channels.layers import get_channel_layer
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from calls import stream_token
from calls.live_feed import ALL_CALLS_GROUP
from calls.models import AgentConfig, Call, CallEvent, Tool
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script, ToolCall, agent_audio
from calls.simulators.twilio_caller import (
    MediaStreamCall,
    compute_signature,
    inbound_call_params,
    parse_twiml,
    run_inbound_call,
    signed_webhook_post,
)
from tests.conftest import TWILIO_TOKEN, requires_redis
from tests.e2e.conftest import only_realtime
from tests.servers import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout_s: float = 10.0, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")


AUDIO_APPEND = {"input_audio_buffer.append", "session.input_audio.append"}  # Realtime, GPT-Live


def appended_audio(session) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in session.received if e["type"] in AUDIO_APPEND)


def configured_session(session) -> dict:
    """The session config the bridge sent first: Realtime's session.update, GPT-Live's session.start."""
    return next(e for e in session.received if e["type"] in ("session.update", "session.start"))["session"]


async def open_stream(bridge: ServerProcess, to: str = "+15005550006") -> tuple[dict[str, str], MediaStreamCall]:
    params = inbound_call_params(to=to, from_="+14155550100")
    status, body = await asyncio.to_thread(signed_webhook_post, bridge.http, "/twilio/voice", params, TWILIO_TOKEN)
    assert status == 200, body
    twiml = parse_twiml(body)
    assert twiml.kind == "stream", body
    call = MediaStreamCall(twiml.stream_url, parameters=twiml.parameters, auth_token=TWILIO_TOKEN,
                           account_sid=params["AccountSid"], call_sid=params["CallSid"])
    return params, call


def stream_ended_twiml(bridge: ServerProcess, params: dict[str, str]):
    status, body = signed_webhook_post(bridge.http, "/twilio/stream-ended", {**params, "CallStatus": "in-progress"},
                                       TWILIO_TOKEN)
    assert status == 200
    return parse_twiml(body)


async def test_a_call_round_trip_passes_audio_unchanged_and_stores_the_transcript(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, engine: str
) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello, how can I help?", audio_ms=1200),
                                     Reply("We open at eight.", audio_ms=1500)],
                              transcripts=["When do you open?"])
    sessions_before = fresh_sim.total_sessions
    caller_audio = audio.utterance(900, seed=3) if hasattr(audio, "utterance") else audio.speech_like(900)
    outcome = await run_inbound_call(bridge.http, to="+15005550006", from_="+14155550100", auth_token=TWILIO_TOKEN,
                                     utterances=[caller_audio], reply_timeout=15)
    result = outcome.call
    assert result is not None, (outcome.webhook_status, outcome.webhook_body)
    assert result.protocol_errors == []
    session = fresh_sim.sessions[-1]
    assert fresh_sim.total_sessions == sessions_before + 1
    assert fresh_sim.errors == []
    # GA protocol, bearer key, no beta header; session configured from the snapshot.
    assert session.headers["authorization"] == "Bearer sk-simulated"
    assert "openai-beta" not in session.headers
    config = configured_session(session)
    assert config["instructions"] == "You answer the phone."
    if engine == "live":  # one format both ways, model in session.start (no query string)
        assert config["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
        assert config["model"] == "gpt-live-1.1" and "?" not in session.path
    else:
        assert config["audio"]["input"]["format"]["type"] == "audio/pcmu"
        assert config["audio"]["output"]["format"]["type"] == "audio/pcmu"
    # Agent audio reached "Twilio" byte for byte: the greeting, then the reply.
    expected = agent_audio(1200, fresh_sim.pacing.pattern) + agent_audio(1500, fresh_sim.pacing.pattern)
    assert bytes(result.agent_audio) == expected
    # Caller audio reached OpenAI byte for byte (everything the caller sent, in order).
    sent = appended_audio(session)
    assert caller_audio in sent
    assert len(sent) == result.media_frames_sent * 160
    # The bridge stored the conversation (batched writes) and ended the call cleanly.
    call = wait_for(lambda: Call.objects.filter(twilio_call_sid=result.call_sid, ended_at__isnull=False).first())
    lines = wait_for(lambda: list(CallEvent.objects.filter(call=call, kind__in=["caller", "agent"])
                                  .values_list("kind", "text")) if CallEvent.objects.filter(
                                      call=call, kind="agent").count() >= 2 else None)
    assert ("caller", "When do you open?") in lines
    assert ("agent", "Hello, how can I help?") in lines and ("agent", "We open at eight.") in lines
    assert call.end_reason == Call.EndReason.CALLER_HANGUP
    assert call.status == Call.Status.COMPLETED
    if engine == "live":  # billed by the second: the session's final usage, from session.closed
        assert call.usage["seconds"] > 0 and call.engine == "live"
    else:
        assert call.input_tokens > 0 and call.output_tokens > 0
    assert call.stream_sid == result.stream_sid and call.started_at is not None


async def test_barge_in_clears_twilio_and_truncates_at_what_the_caller_heard(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, engine: str
) -> None:
    """Realtime: Twilio's buffer is cleared and the item truncated at what the marks say was heard. GPT-Live
    stops by itself and has nothing to truncate: the caller's words clear the audio Twilio still holds."""
    fresh_sim.script = Script(turns=[Reply("A very long greeting " * 5, audio_ms=6000), Reply("Sure.", audio_ms=500)])
    params, call = await open_stream(bridge)
    async with call:
        assert await call.wait_for_agent_audio(min_bytes=8 * 4000, timeout=10)  # generation runs ahead of playback
        await asyncio.sleep(1.5)
        heard_ms = call.played_bytes / 8
        await call.say(audio.speech_like(700) + audio.silence(800))
        await call.wait_for_reply(since_bytes=len(call.result.agent_audio), start_timeout=10, quiet_ms=500,
                                  finish_timeout=10)
    result = call.result
    assert result.clears >= 1 and result.cleared_bytes > 0
    session = fresh_sim.sessions[-1]
    assert fresh_sim.errors == []
    call_row = Call.objects.get(twilio_call_sid=params["CallSid"])
    wait_for(lambda: CallEvent.objects.filter(call=call_row, kind="barge_in").exists())
    if engine == "live":
        assert not any("truncate" in e["type"] or "cancel" in e["type"] for e in session.received)
        return
    assert len(session.truncates) == 1
    truncate = session.truncates[0]
    assert truncate["content_index"] == 0
    # What was heard, from marks: never more than the item's 6 s, and close to what was really played.
    assert truncate["audio_end_ms"] < 6000
    assert heard_ms - 250 <= truncate["audio_end_ms"] <= heard_ms + 600, (heard_ms, truncate)


async def test_end_call_tool_ends_the_call_and_twilio_hangs_up(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    # The simulator makes each turn its own response: the greeting, then (after the caller speaks) end_call.
    fresh_sim.script = Script(turns=[Reply("Hello, goodbye.", audio_ms=600),
                                     ToolCall("end_call", {"reason": "caller is done"})])
    params, call = await open_stream(bridge)
    async with call:
        await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=400, finish_timeout=10)
        await call.say(audio.speech_like(600) + audio.silence(800))
        assert await call.wait_closed(15), "the bridge did not close the stream after end_call"
    assert call.result.closed_by_server
    assert fresh_sim.errors == []
    row = wait_for(
        lambda: Call.objects.filter(twilio_call_sid=params["CallSid"], ended_at__isnull=False).first())
    assert row.end_reason == Call.EndReason.AGENT_ENDED
    assert bytes(call.result.agent_audio) == agent_audio(600, fresh_sim.pacing.pattern)
    after = await asyncio.to_thread(stream_ended_twiml, bridge, params)
    assert after.verbs == ["Hangup"]


async def test_transfer_call_dials_the_configured_number(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=300), ToolCall("transfer_call", {"reason": "billing"})])
    params, call = await open_stream(bridge)
    async with asyncio.timeout(40), call:
        await call.say(audio.speech_like(600) + audio.silence(800))
        assert await call.wait_closed(15)
    after = await asyncio.to_thread(stream_ended_twiml, bridge, params)
    assert "Dial" in after.verbs
    # Warm transfer: Twilio fetches the whisper once the person answers (seconds later: the bridge's events
    # are stored by then); it says why the caller is coming.
    wait_for(lambda: CallEvent.objects.filter(call__twilio_call_sid=params["CallSid"], kind="tool_call").exists())
    status, body = signed_webhook_post(bridge.http, "/twilio/transfer-ended", {
        **params, "CallStatus": "in-progress", "DialCallStatus": "no-answer", "DialCallDuration": "0"}, TWILIO_TOKEN)
    assert status == 200 and parse_twiml(body).kind == "stream"  # nobody answered: back to the agent
    whisper = await asyncio.to_thread(
        signed_webhook_post, bridge.http, f"/twilio/whisper?call={params['CallSid']}",
        {"CallSid": "CA" + "5" * 32, "AccountSid": params["AccountSid"], "CallStatus": "in-progress"}, TWILIO_TOKEN)
    assert whisper[0] == 200 and "billing" in parse_twiml(whisper[1]).says[0]
    outcome = CallEvent.objects.filter(call__twilio_call_sid=params["CallSid"], kind="status").last()
    assert outcome.data["dial_status"] == "no-answer"


async def test_http_tool_round_trip(bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig,
                                    tool_server) -> None:
    tool = Tool.objects.create(
        name="lookup_order", description="Look up an order.", url=tool_server.url("/echo"), timeout_s=3,
        secret_header_name="X-Api-Key",
        parameters={"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
    )
    agent.tools.add(tool)
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=300), ToolCall("lookup_order", {"order": "A-17"}),
                                     Reply("Your order ships today.", audio_ms=500)])
    params, call = await open_stream(bridge)
    async with call:
        await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
        before = len(call.result.agent_audio)
        await call.say(audio.speech_like(600) + audio.silence(800))
        await call.wait_for_reply(since_bytes=before, start_timeout=15, quiet_ms=400, finish_timeout=10)
    session = fresh_sim.sessions[-1]
    assert fresh_sim.errors == []
    assert len(session.tool_outputs) == 1
    output = json.loads(session.tool_outputs[0]["output"])
    assert output["ok"] is True and output["result"]["received"]["arguments"] == {"order": "A-17"}
    request = tool_server.requests[-1]
    assert request.headers["X-Api-Key"] == "tool-secret-123"
    assert "X-Voiceops-Signature" in request.headers
    # After the output the bridge asked for the next response, and its audio reached the caller.
    assert bytes(call.result.agent_audio).endswith(agent_audio(500, fresh_sim.pacing.pattern))
    row = Call.objects.get(twilio_call_sid=params["CallSid"])
    wait_for(lambda: CallEvent.objects.filter(call=row, kind="tool_result").exists())


@pytest.mark.parametrize("case", ["missing", "forged", "expired", "other_call", "reused"])
async def test_bad_stream_tokens_are_refused_before_any_upstream_session(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, case: str
) -> None:
    params, call = await open_stream(bridge)
    if case == "reused":
        async with call:
            await call.wait_for_agent_audio(timeout=10)
        params_again = dict(call.parameters)
        call = MediaStreamCall(call.stream_url, parameters=params_again, auth_token=TWILIO_TOKEN,
                               account_sid=params["AccountSid"], call_sid=params["CallSid"])
    elif case == "missing":
        call.parameters.pop("token")
    elif case == "forged":
        call.parameters["token"] = call.parameters["token"][:-4] + "AAAA"
    elif case == "expired":
        call.parameters["token"] = await asyncio.to_thread(_expired_token, params["CallSid"])
    elif case == "other_call":
        call.parameters["token"] = stream_token.mint("CA" + "f" * 32, agent.pk)
    sessions_before = fresh_sim.total_sessions
    async with call:
        assert await call.wait_closed(10)
    assert call.result.close_code == 4401, (call.result.close_code, call.result.close_reason)
    assert call.result.close_reason
    assert call.result.agent_audio == bytearray()
    await asyncio.sleep(0.3)
    assert fresh_sim.total_sessions == sessions_before, "an upstream session was opened for a refused stream"


def _expired_token(call_sid: str) -> str:
    from unittest import mock

    with mock.patch("django.core.signing.time.time", return_value=time.time() - 3600):
        return stream_token.mint(call_sid, None)


async def test_unsigned_websocket_handshake_is_refused(bridge: ServerProcess, agent: AgentConfig) -> None:
    with pytest.raises(InvalidStatus):
        async with connect(bridge.ws):
            pass
    bad = compute_signature(bridge.ws.replace("127.0.0.1", "evil.example"), {}, TWILIO_TOKEN)
    with pytest.raises(InvalidStatus):
        async with connect(bridge.ws, additional_headers={"X-Twilio-Signature": bad}):
            pass


async def test_malformed_twilio_frames_close_with_a_reason_and_the_bridge_lives_on(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    params, call = await open_stream(bridge)
    async with call:
        await call.wait_for_agent_audio(timeout=10)
        assert call.ws is not None
        await call.ws.send('{"event": "media", "media": {"payload": 12}}')
        assert await call.wait_closed(10)
    assert call.result.close_code == 4400 and call.result.close_reason
    row = wait_for(
        lambda: Call.objects.filter(twilio_call_sid=params["CallSid"], ended_at__isnull=False).first())
    assert row.end_reason == Call.EndReason.PROTOCOL_ERROR
    with urllib.request.urlopen(bridge.http + "/healthz", timeout=5) as response:
        assert response.status == 200
    # The upstream session of that call was closed too.
    await asyncio.sleep(0.5)
    assert fresh_sim.sessions[-1].ended.is_set()


@pytest.mark.parametrize("fault", ["drop_after_first_response", "refuse_status", "wrong_key", "server_error"])
async def test_upstream_trouble_ends_the_call_with_an_apology(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, fault: str
) -> None:
    if fault == "drop_after_first_response":
        fresh_sim.faults.drop_after_first_response = True
    elif fault == "refuse_status":
        fresh_sim.faults.refuse_status = 500
    elif fault == "wrong_key":
        fresh_sim.faults.refuse_status = 401  # what OpenAI answers a bad key with at the handshake
    else:
        fresh_sim.faults.error_after_events = 3
    params, call = await open_stream(bridge)
    async with call:
        assert await call.wait_closed(15), "the bridge kept a call with a broken upstream"
    row = wait_for(
        lambda: Call.objects.filter(twilio_call_sid=params["CallSid"], ended_at__isnull=False).first())
    assert row.end_reason == Call.EndReason.UPSTREAM_ERROR
    assert row.status == Call.Status.FAILED
    after = await asyncio.to_thread(stream_ended_twiml, bridge, params)
    assert after.verbs == ["Say", "Hangup"] and after.says[0]


async def test_twilio_hang_up_closes_the_upstream_session_at_once(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    fresh_sim.script = Script(turns=[Reply("A long story " * 10, audio_ms=20000)])
    params, call = await open_stream(bridge)
    await call.connect()
    await call.wait_for_agent_audio(timeout=10)
    session = fresh_sim.sessions[-1]
    assert call.ws is not None
    await call.ws.close()  # the caller hangs up without a stop message
    await asyncio.to_thread(wait_for, session.ended.is_set, 3)  # the simulator's own loop owns the event
    row = wait_for(
        lambda: Call.objects.filter(twilio_call_sid=params["CallSid"], ended_at__isnull=False).first())
    assert row.end_reason == Call.EndReason.CALLER_HANGUP


@contextlib.asynccontextmanager
async def dashboard_feed() -> AsyncIterator[Callable[[str], Awaitable[list[dict]]]]:
    """Listen on the channel layer's all-calls group as the dashboard does; yields `updates(call_sid)`, which
    returns that call's updates up to its "ended" one (an earlier test's last update may still arrive)."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(ALL_CALLS_GROUP, channel)

    async def updates(call_sid: str) -> list[dict]:
        seen: list[dict] = []
        async with asyncio.timeout(10):
            while not any(m["what"] == "ended" for m in seen):
                message = await layer.receive(channel)
                if message["call"]["sid"] == call_sid:
                    seen.append(message)
        return seen

    try:
        yield updates
    finally:
        await layer.group_discard(ALL_CALLS_GROUP, channel)


@requires_redis
async def test_live_events_reach_the_dashboard_group_through_redis(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    """The bridge (its own process) publishes call updates on the Redis channel layer the dashboard listens on."""
    async with dashboard_feed() as updates:
        fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=300)], transcripts=["Hi there"])
        outcome = await run_inbound_call(bridge.http, to="+15005550006", from_="+14155550100",
                                         auth_token=TWILIO_TOKEN, utterances=[audio.speech_like(600)],
                                         reply_timeout=10)
        seen = await updates(outcome.call_params["CallSid"])
    assert seen[0]["what"] == "started" and seen[0]["type"] == "call.update"
    assert "+14155550100" not in json.dumps(seen)  # the caller's number is masked
    kinds = [m["event"]["kind"] for m in seen if m["what"] == "event"]
    assert "agent" in kinds and "caller" in kinds


@requires_redis
async def test_the_live_feed_publishes_a_failed_call_as_failed(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    """The dashboard's 'ended' update carries the status the call is stored with (it once said 'completed')."""
    fresh_sim.faults.refuse_status = 500
    async with dashboard_feed() as updates:
        params, call = await open_stream(bridge)
        async with call:
            assert await call.wait_closed(15)
        ended = (await updates(params["CallSid"]))[-1]
    row = Call.objects.get(twilio_call_sid=params["CallSid"])
    assert row.status == Call.Status.FAILED
    assert ended["call"]["status"] == Call.Status.FAILED
    assert ended["call"]["end_reason"] == Call.EndReason.UPSTREAM_ERROR
    assert ended["call"]["status_label"] == "Failed"


@only_realtime  # server VAD's idle timeout; GPT-Live owns turn-taking
async def test_a_silent_caller_is_asked_once_then_the_agent_says_goodbye_and_hangs_up(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    agent.idle_timeout_ms = 1000  # below the admin's minimum (5 s), to keep the test short
    await asyncio.to_thread(agent.save)
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=400), Reply("Are you still there?", audio_ms=600),
                                     Reply("Not this: cancelled.", audio_ms=3000),
                                     Reply("Goodbye, call again any time.", audio_ms=700)])
    params, call = await open_stream(bridge)
    async with call:  # the line stays open, silent
        assert await call.wait_closed(20), "the bridge kept a silent call open"
    session = fresh_sim.sessions[-1]
    assert fresh_sim.errors == []
    assert session.idle_timeouts == 2
    turn = next(e for e in session.received if e["type"] == "session.update")["session"]["audio"]["input"]
    assert turn["turn_detection"]["idle_timeout_ms"] == 1000
    # The greeting, the server's own reprompt, then the goodbye; the second silence's answer is never played.
    pattern = fresh_sim.pacing.pattern
    assert bytes(call.result.agent_audio) == agent_audio(400, pattern) + agent_audio(600, pattern) + agent_audio(
        700, pattern)
    assert [r.status for r in session.responses] == ["completed", "completed", "cancelled", "completed"]
    row = wait_for(lambda: Call.objects.filter(twilio_call_sid=params["CallSid"], ended_at__isnull=False).first())
    assert row.end_reason == Call.EndReason.AGENT_ENDED
    after = await asyncio.to_thread(stream_ended_twiml, bridge, params)
    assert after.verbs == ["Hangup"]
