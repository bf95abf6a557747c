"""The audio path as runbridge serves it (bridge/media_path.py): Twilio's messages are taken as they arrive unless
one is queued before them (a `start` still waiting for the database), so a burst of frames sent with `start`,
before the call is even set up, reaches OpenAI complete and in order; bad input in the middle of a call still
gets a close with a code and a reason, and the call row is finalised."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from calls.models import AgentConfig, Call
from calls.simulators.realtime_server import Faults, RealtimeSimulator, Reply, Script
from calls.simulators.twilio_caller import compute_signature
from tests.conftest import TWILIO_TOKEN
from tests.e2e.test_call_flow import open_stream, wait_for
from tests.servers import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
FRAMES = 60  # 1.2 s of audio: under the early-audio buffer (session.EARLY_AUDIO_FRAMES), none dropped


def numbered_frame(n: int) -> str:
    payload = base64.b64encode(bytes([n % 256, n // 256]) * 80).decode()  # 160 bytes of μ-law, numbered
    return json.dumps({"event": "media", "streamSid": "MZ", "media": {"track": "inbound", "chunk": str(n),
                                                                      "timestamp": str(n * 20), "payload": payload}})


def appended_audio(sim: RealtimeSimulator, first_session: int) -> list[str]:
    return [event["audio"] for session in sim.sessions[first_session:] for event in session.received
            if event.get("type") == "input_audio_buffer.append"]


async def open_raw_stream(bridge: ServerProcess) -> tuple[str, ClientConnection]:
    """A call's stream opened as Twilio opens it (signed webhook, signed handshake, `connected`, `start`), on a
    socket that sends nothing by itself afterwards: the test writes every byte."""
    params, call = await open_stream(bridge)
    headers = {"X-Twilio-Signature": compute_signature(call.stream_url, {}, TWILIO_TOKEN)}
    ws = await connect(call.connect_url, additional_headers=headers, ping_interval=None)
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send(start_message(params, call.parameters))
    return params["CallSid"], ws


def start_message(params: dict[str, str], custom_parameters: dict[str, str]) -> str:
    return json.dumps({"event": "start", "streamSid": "MZ", "start": {
        "accountSid": params["AccountSid"], "streamSid": "MZ", "callSid": params["CallSid"], "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": dict(custom_parameters)}})


async def hang_up(ws: ClientConnection, call_sid: str) -> Call:
    await ws.send(json.dumps({"event": "stop", "streamSid": "MZ", "stop": {"callSid": call_sid}}))
    await ws.close()
    return await asyncio.to_thread(wait_for, lambda: Call.objects.filter(
        twilio_call_sid=call_sid, ended_at__isnull=False).first(), 10)


async def test_frames_sent_with_start_reach_openai_complete_and_in_order(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    fresh_sim.script, fresh_sim.faults = Script(turns=[Reply("Hello.", audio_ms=400)]), Faults()
    first_session = len(fresh_sim.sessions)  # the simulator records every client event
    call_sid, ws = await open_raw_stream(bridge)
    frames = [numbered_frame(n) for n in range(FRAMES)]
    for frame in frames:  # right behind `start`, unpaced: most arrive while `start` waits for the database
        await ws.send(frame)
    await asyncio.to_thread(wait_for, lambda: len(appended_audio(fresh_sim, first_session)) >= FRAMES, 10)
    assert appended_audio(fresh_sim, first_session) == [json.loads(frame)["media"]["payload"] for frame in frames]
    row = await hang_up(ws, call_sid)
    assert row.end_reason == Call.EndReason.CALLER_HANGUP


async def test_invalid_utf8_mid_call_closes_with_1007_and_a_reason_and_finalises_the_call(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    fresh_sim.script, fresh_sim.faults = Script(turns=[Reply("Hello.", audio_ms=400)]), Faults()
    params, call = await open_stream(bridge)
    async with call:
        assert call.ws is not None
        await call.ws.send(numbered_frame(1))
        try:
            async with call.ws.send_context():  # the client library would refuse to encode invalid UTF-8
                call.ws.protocol.send_text(b'{"event": "mark", "mark": {"name": "\xc3\x28"}}')
        except ConnectionClosed:
            pass
        await call.wait_closed(5)
    assert call.result.close_code == 1007 and call.result.close_reason
    await asyncio.to_thread(wait_for, lambda: Call.objects.filter(
        twilio_call_sid=params["CallSid"], ended_at__isnull=False).first(), 10)


async def test_frames_cut_at_any_byte_with_pings_and_fragments_between_them_arrive_in_order(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    """The bridge reads whole text frames itself and hands the library every other frame (bridge/ws_frames.py):
    TCP may cut a frame anywhere, a ping or a fragmented message (which takes the ASGI queue) may sit between
    audio frames; the audio still reaches OpenAI complete and in order."""
    fresh_sim.script, fresh_sim.faults = Script(turns=[Reply("Hello.", audio_ms=400)]), Faults()
    first_session = len(fresh_sim.sessions)
    call_sid, ws = await open_raw_stream(bridge)
    await asyncio.to_thread(wait_for, lambda: len(fresh_sim.sessions) > first_session, 10)  # the call is live
    frames = [numbered_frame(n) for n in range(FRAMES)]
    stream = b""
    for n, frame in enumerate(frames):
        if n == 20:
            stream += Frame(Opcode.PING, b"are you there").serialize(mask=True)
        if n == 40:  # a mark in two fragments: the library assembles it, the app takes it from the queue
            mark = json.dumps({"event": "mark", "streamSid": "MZ", "mark": {"name": "m-x"}}).encode()
            stream += Frame(Opcode.TEXT, mark[:9], fin=False).serialize(mask=True)
            stream += Frame(Opcode.CONT, mark[9:]).serialize(mask=True)
        stream += Frame(Opcode.TEXT, frame.encode()).serialize(mask=True)
    rng = random.Random(11)
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 2, 5, 64, 200, 333, 1000])
        ws.transport.write(stream[pos:pos + step])
        await asyncio.sleep(0.001 if step < 10 else 0)
        pos += step
    await asyncio.to_thread(wait_for, lambda: len(appended_audio(fresh_sim, first_session)) >= FRAMES, 10)
    assert appended_audio(fresh_sim, first_session) == [json.loads(frame)["media"]["payload"] for frame in frames]
    assert ws.close_code is None  # still open: nothing in the stream was refused
    row = await hang_up(ws, call_sid)
    assert row.end_reason == Call.EndReason.CALLER_HANGUP


async def test_frames_after_a_refused_start_are_ignored_without_a_second_close(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig
) -> None:
    """A `start` refused (a bad token: 4401) with media right behind it: the refusal stands and the media is
    ignored; before, the media was refused again ("media before start"), a second close the server rejects."""
    params, call = await open_stream(bridge)
    log_before = len(bridge.log())
    headers = {"X-Twilio-Signature": compute_signature(call.stream_url, {}, TWILIO_TOKEN)}
    async with connect(call.connect_url, additional_headers=headers, ping_interval=None) as ws:
        start = start_message(params, {"token": "not-a-token"})
        # One write: the media is queued behind `start` before the bridge has read it.
        ws.transport.write(b"".join(Frame(Opcode.TEXT, text.encode()).serialize(mask=True)
                                    for text in [start, *(numbered_frame(n) for n in range(20))]))
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4401 and ws.close_reason
    await asyncio.sleep(0.5)
    log = bridge.log()[log_before:]
    assert "Unexpected ASGI message" not in log and "Traceback" not in log, log[-2000:]
