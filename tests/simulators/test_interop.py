"""The two simulators talk through a deliberately minimal pass-through bridge written here:
proves they agree on formats (μ-law both ways, untouched), that synthetic caller speech
triggers the simulated server VAD end to end, and that the latency numbers come out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from calls.simulators import audio
from calls.simulators.realtime_server import Pacing, RealtimeSimulator, Reply, Script, agent_audio
from calls.simulators.twilio_caller import MediaStreamCall

SESSION = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
        },
    },
}


def make_bridge(realtime_url: str) -> Callable[[ServerConnection], Awaitable[None]]:
    async def bridge(twilio: ServerConnection) -> None:
        openai = await connect(
            realtime_url + "?model=gpt-realtime", additional_headers={"Authorization": "Bearer k"}
        )
        await openai.send(json.dumps(SESSION))
        await openai.send(json.dumps({"type": "response.create"}))  # greeting
        stream_sid = None

        async def from_twilio() -> None:
            nonlocal stream_sid
            async for raw in twilio:
                message = json.loads(raw)
                if message["event"] == "start":
                    stream_sid = message["streamSid"]
                elif message["event"] == "media":
                    append = {"type": "input_audio_buffer.append", "audio": message["media"]["payload"]}
                    await openai.send(json.dumps(append))
            await openai.close()

        async def from_openai() -> None:
            async for raw in openai:
                event = json.loads(raw)
                if event["type"] == "response.output_audio.delta":
                    media = {"event": "media", "streamSid": stream_sid, "media": {"payload": event["delta"]}}
                    await twilio.send(json.dumps(media))
                elif event["type"] == "input_audio_buffer.speech_started":
                    await twilio.send(json.dumps({"event": "clear", "streamSid": stream_sid}))

        with contextlib.suppress(ConnectionClosed):
            await asyncio.gather(from_twilio(), from_openai())

    return bridge


async def test_caller_and_realtime_simulators_interoperate_through_a_passthrough_bridge() -> None:
    sim = RealtimeSimulator(
        script=Script([Reply("Hello!", audio_ms=300), Reply("Sure thing.", audio_ms=400)]),
        pacing=Pacing(speed=None, first_audio_delay_ms=50),
    )
    async with sim.serve() as realtime_url:
        server = await serve(make_bridge(realtime_url), "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/media-stream"
        async with MediaStreamCall(url, pace=True) as call:
            assert await call.wait_for_reply(since_bytes=0, start_timeout=5, quiet_ms=300, finish_timeout=5)
            heard = len(call.result.agent_audio)
            await call.say(audio.speech_like(600) + audio.silence(500))
            assert await call.wait_for_reply(
                since_bytes=heard, start_timeout=5, quiet_ms=300, finish_timeout=5
            )
        server.close()
        await server.wait_closed()

    result = call.result
    assert bytes(result.agent_audio) == agent_audio(300) + agent_audio(400)  # μ-law passed through untouched
    assert result.protocol_errors == []
    assert sim.errors == []
    session = sim.sessions[0]
    assert [r.status for r in session.responses] == ["completed", "completed"]
    # reply latency = VAD silence (300 ms) + model delay (50 ms) + transport, from the last speech frame
    assert len(result.reply_latencies_ms) == 1
    assert 300 <= result.reply_latencies_ms[0] <= 1000
