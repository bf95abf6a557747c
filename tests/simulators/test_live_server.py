"""The GPT-Live simulator against its own protocol, driven over real loopback WebSockets by a bare client
that speaks through the bridge's codec (`bridge.live_events`).

Every server event the simulator emits is parsed with the `openai` package's Live server-event types (no
unknown keys), and every backend event wrapped in `response.event` with the Responses stream types, so the
simulator cannot drift from the real schema unnoticed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge import live_events as le
from calls.simulators import audio
from calls.simulators.live_server import LiveSimulator
from calls.simulators.realtime_server import Faults, Pacing, Reply, Script, ToolCall, agent_audio
from calls.simulators.validation import validate_live_backend_event, validate_live_server_event

AUTH = {"Authorization": "Bearer sk-test"}
SNAPSHOT = {
    "model": "gpt-live-1.1",
    "instructions": "You answer the phone for Example Dental.",
    "voice": "marin",
    "tools": [
        {"kind": "builtin", "name": "end_call", "description": "Hang up.", "parameters": {"type": "object"}},
        {"kind": "http", "name": "lookup_order", "description": "Look up an order.",
         "parameters": {"type": "object", "properties": {"order": {"type": "string"}}}, "url": "http://x"},
    ],
}


class Client:
    """A bare Live client: sends codec-built events, checks and parses every server event."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.parsed: list[le.ServerEvent] = []

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send(event if isinstance(event, str) else le.to_text(event))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        event = json.loads(text)
        validate_live_server_event(event)
        if event["type"] == "response.event":
            validate_live_backend_event(event["event"])
        self.events.append(event)
        self.parsed.append(le.parse_server_event(text))
        return event

    async def until(self, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                if event["type"] == event_type:
                    return event

    async def until_closed(self, timeout: float = 5.0) -> None:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)

    async def close(self) -> None:
        """Close while draining what is still queued: an unread queue would hold back the server's close frame."""
        closing = asyncio.create_task(self.ws.close())
        with contextlib.suppress(ConnectionClosed):
            async for _ in self.ws:
                pass
        await closing

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    def agent_audio(self) -> bytes:
        return b"".join(base64.b64decode(e["delta"]) for e in self.of_type("session.output_audio.delta"))

    def text(self, event_type: str) -> str:
        return "".join(e["delta"] for e in self.of_type(event_type))

    async def speak(self, ulaw: bytes, realtime: bool = False) -> None:
        for frame in audio.frames(ulaw):
            await self.send(le.append_audio(base64.b64encode(frame).decode()))
            if realtime:
                await asyncio.sleep(audio.FRAME_MS / 1000)


async def open_client(url: str, snapshot: dict[str, Any] | None = None, start: bool = True) -> Client:
    client = Client(await connect(url, additional_headers=AUTH))
    if start:
        await client.send(le.session_start(snapshot or SNAPSHOT))
        started = await client.until("session.started")
        assert started["client_event_id"] == le.START_EVENT_ID
    return client


def fast_sim(*turns: Any, **kwargs: Any) -> LiveSimulator:
    script = Script(turns=list(turns), transcripts=["I'd like to check my order please."])
    return LiveSimulator(script=script, pacing=kwargs.pop("pacing", Pacing.fast()), **kwargs)


async def test_handshake_needs_bearer_the_live_path_and_no_query_string() -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        assert url.endswith("/v1/live/sessions")
        with pytest.raises(InvalidStatus) as no_auth:
            await connect(url)
        with pytest.raises(InvalidStatus) as query:
            await connect(url + "?model=gpt-live-1", additional_headers=AUTH)
        with pytest.raises(InvalidStatus) as realtime_path:
            await connect(url.replace("/v1/live/sessions", "/v1/realtime"), additional_headers=AUTH)
        client = Client(await connect(url, additional_headers={**AUTH, "X-Trace": "abc"}))
        await client.close()
    assert (no_auth.value.response.status_code, query.value.response.status_code,
            realtime_path.value.response.status_code) == (401, 400, 404)
    assert sim.sessions[0].headers["x-trace"] == "abc"


async def test_session_start_is_answered_with_the_resolved_session() -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        client = await open_client(url)
        await client.close()
    started = client.parsed[0]
    assert type(started) is le.SessionStarted and started.session_id.startswith("live_")
    session = client.events[0]["session"]
    assert session["audio"] == {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "marin"}}
    assert session["model"] == "gpt-live-1.1" and session["status"] == "active"
    assert session["delegation"]["responses"]["tools"][1]["name"] == "lookup_order"
    assert sim.errors == []


async def test_anything_before_session_start_is_a_violation_that_closes_the_socket() -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        client = await open_client(url, start=False)
        await client.send(le.append_audio(base64.b64encode(audio.silence(20)).decode()))
        error = await client.until("error")
        await client.until_closed()
    assert error["error"]["code"] == "session_not_started"
    assert client.ws.close_code == 1008
    assert [e["code"] for e in sim.errors] == ["session_not_started"]


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "session.start", "event_id": "s1", "session": {"model": "gpt-live-1", "voice": "marin"}},
         "unknown_parameter", "session.voice"),
        ({"type": "input_audio_buffer.append", "audio": "AAAA"}, "invalid_value", "type"),  # a Realtime event
        ({"type": "session.start", "session": {"model": "gpt-live-1",
                                               "audio": {"format": {"type": "audio/pcmu", "rate": 16000}}}},
         "invalid_value", "session.audio.format.rate"),
        ({"type": "session.start", "session": {"model": "gpt-realtime"}}, "model_not_found", "session.model"),
    ],
)
async def test_invalid_client_events_fail_loudly(event: dict[str, Any], code: str, param: str) -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        client = await open_client(url, start=False)
        await client.send(event)
        error = await client.until("error")
        await client.until_closed()
    assert (error["error"]["code"], error["error"]["param"]) == (code, param)
    assert error.get("client_event_id") == event.get("event_id")
    parsed = client.parsed[-1]
    assert type(parsed) is le.LiveError and parsed.code == code
    assert len(sim.errors) == 1 and sim.sessions[0].closed_reason == f"violation: {code}"


async def test_without_close_on_violation_the_session_goes_on() -> None:
    sim = fast_sim(Reply("Hello.", audio_ms=100), close_on_violation=False)
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "session.thinking.append", "content": "no delegation_id"})
        error = await client.until("error")
        await client.send(le.greeting("Hello."))
        await client.until("session.commentary.appended")
        await client.close()
    assert error["error"]["param"] == "delegation_id"
    assert len(sim.errors) == 1


async def test_greeting_then_a_caller_turn_then_the_reply() -> None:
    sim = fast_sim(Reply("Thanks for calling Example Dental!", audio_ms=1000), Reply("Sure, one moment.", audio_ms=400))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(le.greeting("Thanks for calling Example Dental!"))
        appended = await client.until("session.commentary.appended")
        assert appended["client_event_id"] == "voiceops-greeting"
        await client.until("session.output_transcript.delta")
        while len(client.agent_audio()) < 8000:
            await client.recv()
        greeting_audio = client.agent_audio()
        await client.speak(audio.utterance(800, lead_silence_ms=100, trail_silence_ms=700))
        async with asyncio.timeout(5):
            while len(client.agent_audio()) < 8000 + 3200:
                await client.recv()
        await client.close()
    assert greeting_audio == agent_audio(1000)  # deterministic and byte-exact, μ-law as asked
    assert client.agent_audio()[8000:] == agent_audio(400)
    assert client.text("session.input_transcript.delta") == "I'd like to check my order please."
    assert client.events[-1]["type"] == "session.output_audio.delta"
    # transcripts arrive as fragments only; the codec's grouping makes the lines of the call
    lines = le.TranscriptLines()
    done = [line for event in client.parsed if type(event) is le.TranscriptDelta for line in lines.add(event)]
    done += lines.flush()
    assert [(line.role, line.text) for line in done] == [
        ("agent", "Thanks for calling Example Dental!"),
        ("caller", "I'd like to check my order please."),
        ("agent", "Sure, one moment."),
    ]
    caller = [e for e in client.parsed if type(e) is le.TranscriptDelta and e.role == "caller"]
    assert caller[0].start_ms == 100 and caller[-1].end_ms >= 900  # on the caller-audio timeline
    assert [t.status for t in sim.sessions[0].turns] == ["completed", "completed"]
    assert sim.errors == []


async def test_the_model_stops_itself_when_the_caller_talks_over_it() -> None:
    pacing = Pacing(chunk_ms=100, speed=1.0, first_audio_delay_ms=0)
    sim = fast_sim(Reply("This is a long explanation about opening hours.", audio_ms=3000),
                   Reply("Yes?", audio_ms=200), pacing=pacing)
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(le.greeting("hi"))
        await client.until("session.output_audio.delta")
        reader = asyncio.create_task(client.until("session.input_transcript.delta", timeout=10))
        await client.speak(audio.utterance(600, trail_silence_ms=600), realtime=True)
        first_caller = await reader
        async with asyncio.timeout(5):
            while not client.text("session.output_transcript.delta").endswith("Yes?"):
                await client.recv()
            while len(sim.sessions[0].turns) < 2:
                await asyncio.sleep(0.01)
        await client.close()
    session = sim.sessions[0]
    assert session.barge_ins == 1
    interrupted = session.turns[0]
    assert interrupted.status == "interrupted"
    assert 0 < interrupted.audio_bytes < 3000 * 8  # the model stopped mid-sentence; no event said so
    assert first_caller["delta"] == "I'd"  # the first caller words stream while the caller still speaks
    assert session.turns[1].status == "completed"
    assert sim.errors == []


async def test_delegated_tool_call_round_trip() -> None:
    sim = fast_sim(ToolCall("lookup_order", {"order": "A1"}, call_id="call_1"), Reply("Your order has shipped."))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(le.greeting("hi"))
        created = await client.until("session.delegation.created")
        async with asyncio.timeout(5):
            while not any(type(e) is le.FunctionCall for e in client.parsed):
                await client.recv()
        call = next(e for e in client.parsed if type(e) is le.FunctionCall)
        await client.until("response.event")  # the backend response's completion
        await client.send(le.function_call_output(call.call_id, '{"status": "shipped"}'))
        await client.send(le.response_create())
        await client.until("session.output_transcript.delta")
        async with asyncio.timeout(5):
            while client.text("session.output_transcript.delta") != "Your order has shipped.":
                await client.recv()
        await client.close()
    assert created["delegation"]["target"] == "responses"
    assert (call.call_id, call.name, json.loads(call.arguments), call.delegation_id) == (
        "call_1", "lookup_order", {"order": "A1"}, created["delegation"]["id"])
    backend_done = [e for e in client.parsed if type(e) is le.BackendDone]
    assert len(backend_done) == 2 and all(e.usage["total_tokens"] > 0 for e in backend_done)
    assert sim.sessions[0].tool_outputs == [
        {"call_id": "call_1", "output": '{"status": "shipped"}', "delegation_id": created["delegation"]["id"]}]
    assert sim.sessions[0].backend_usage["total_tokens"] == sum(e.usage["total_tokens"] for e in backend_done)
    assert sim.errors == []


@pytest.mark.parametrize("mistake", ["create_before_output", "unknown_call_id"])
async def test_tool_result_mistakes_are_refused(mistake: str) -> None:
    sim = fast_sim(ToolCall("lookup_order", {"order": "A1"}, call_id="call_1"))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(le.greeting("hi"))
        async with asyncio.timeout(5):
            while not any(e.get("event", {}).get("type") == "response.completed" for e in client.events):
                await client.recv()
        if mistake == "create_before_output":
            await client.send(le.response_create())  # a partial batch: call_1 has no output yet
        else:
            await client.send(le.function_call_output("call_nope", "{}"))
        error = await client.until("error")
        await client.until_closed()
    assert error["error"]["message"].startswith(
        "Provide output" if mistake == "create_before_output" else "Tool call ID 'call_nope'")
    assert len(sim.errors) == 1


async def test_end_call_then_session_close_reports_final_usage() -> None:
    sim = fast_sim(ToolCall("end_call", {}), Reply("Goodbye!", audio_ms=200))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(le.greeting("hi"))
        async with asyncio.timeout(5):
            while not any(type(e) is le.FunctionCall for e in client.parsed):
                await client.recv()
        call = next(e for e in client.parsed if type(e) is le.FunctionCall)
        assert call.name == "end_call"
        await client.send(le.function_call_output(call.call_id, '{"ok": true}'))
        await client.send(le.response_create())
        async with asyncio.timeout(5):
            while len(client.agent_audio()) < 1600:
                await client.recv()
        await client.speak(audio.silence(2000))  # 2 s of phone audio: billed
        await client.send(le.session_close())
        closed = await client.until("session.closed")
        await client.until_closed()
    assert closed["reason"] == "close_requested" and closed["client_event_id"] == "voiceops-close"
    parsed = client.parsed[-1]
    assert type(parsed) is le.SessionClosed and parsed.seconds == 2.0
    assert client.ws.close_code == 1000
    assert sim.sessions[0].closed_event_reason == "close_requested"
    assert sim.errors == []


async def test_client_delegation_waits_for_commentary_with_the_delegation_id() -> None:
    snapshot = dict(SNAPSHOT)
    sim = fast_sim(ToolCall("anything"), Reply("It is sunny.", audio_ms=100))
    async with sim.serve() as url:
        client = Client(await connect(url, additional_headers=AUTH))
        start = le.session_start(snapshot)
        start["session"]["delegation"] = {"type": "client"}
        await client.send(start)
        await client.until("session.started")
        await client.send(le.greeting("hi"))
        created = await client.until("session.delegation.created")
        assert created["delegation"]["target"] == "client" and "response_id" not in created["delegation"]
        await client.send({"type": "session.commentary.append", "content": "Sunny, 22 degrees.",
                           "delegation_id": created["delegation"]["id"]})
        await client.until("session.output_transcript.delta")
        await client.close()
    assert client.text("session.output_transcript.delta") == "It is sunny."
    assert sim.errors == []


async def test_a_delegation_id_under_responses_delegation_is_refused() -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "session.commentary.append", "content": "x", "delegation_id": "del_1"})
        error = await client.until("error")
        await client.until_closed()
    assert error["error"]["param"] == "delegation_id"


async def test_usage_updates_are_cumulative_snapshots() -> None:
    sim = fast_sim(usage_interval_s=0.05)
    async with sim.serve() as url:
        client = await open_client(url)
        await client.speak(audio.silence(3000))
        first = await client.until("session.usage.updated")
        second = await client.until("session.usage.updated")
        await client.close()
    assert first["usage"]["seconds"] == second["usage"]["seconds"] == 3.0  # never to be summed
    assert type(client.parsed[-1]) is le.Usage


async def test_omitted_audio_format_means_pcm16_24k_out() -> None:
    sim = fast_sim(Reply("Hi.", audio_ms=100))
    async with sim.serve() as url:
        client = Client(await connect(url, additional_headers=AUTH))
        await client.send({"type": "session.start", "session": {"model": "gpt-live-1"}})
        started = await client.until("session.started")
        await client.send(le.greeting("hi"))
        await client.until("session.output_audio.delta")
        await client.close()
    assert started["session"]["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert len(client.agent_audio()) == 100 * 24 * 2


async def test_fault_refuse_handshake() -> None:
    sim = fast_sim(faults=Faults(refuse_status=401))
    async with sim.serve() as url:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, additional_headers=AUTH)
    assert refused.value.response.status_code == 401


async def test_fault_drop_after_events() -> None:
    sim = fast_sim(faults=Faults(drop_after_events=1))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.until_closed()
    assert client.ws.close_code == 1006
    assert sim.sessions[0].closed_reason == "fault: dropped"


async def test_fault_drop_after_first_spoken_turn() -> None:
    sim = fast_sim(Reply("Hello.", audio_ms=200), faults=Faults(drop_after_first_response=True, abrupt=False))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(le.greeting("hi"))
        await client.until_closed()
    assert client.ws.close_code == 1011
    assert len(client.agent_audio()) == 1600


async def test_fault_server_error_is_fatal_to_the_codec_and_stall_goes_silent() -> None:
    sim = fast_sim(Reply("Hello.", audio_ms=1000), faults=Faults(error_after_events=1, stall_after_events=3))
    async with sim.serve() as url:
        client = await open_client(url)
        error = await client.until("error")
        await client.send(le.greeting("hi"))
        await client.recv()
        with pytest.raises(TimeoutError):
            await client.recv(timeout=0.3)
        await client.close()
    assert error["error"]["type"] == "server_error"
    assert next(e for e in client.parsed if type(e) is le.LiveError).fatal


async def test_session_lifetime_ends_with_session_closed_expired() -> None:
    sim = fast_sim(session_max_s=0.2)
    async with sim.serve() as url:
        client = await open_client(url)
        closed = await client.until("session.closed")
        await client.until_closed()
    assert closed["reason"] == "expired"


def test_thread_mode_for_sync_callers() -> None:
    sim = fast_sim()
    url = sim.start_in_thread()
    try:
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/v1/live/sessions")

        async def one() -> None:
            client = await open_client(url)
            await client.close()

        asyncio.run(one())
    finally:
        sim.stop()
    assert sim.total_sessions == 1 and sim.errors == []


@pytest.mark.parametrize(("pacing", "clears"), [
    (Pacing(chunk_ms=100, speed=1.0, first_audio_delay_ms=0), False),  # real-time stream: Twilio stays shallow
    (Pacing(chunk_ms=100, speed=None, first_audio_delay_ms=0), True),  # bursts: seconds queued at Twilio
])
async def test_clear_policy_under_both_output_pacings(pacing: Pacing, clears: bool) -> None:
    """The guide cannot say whether Live paces its output (§7 [?]); the bridge's clear rule must be right
    either way. Twilio plays in real time, so what it still holds when the caller's first words arrive is
    the agent audio received minus the time since the first chunk."""
    sim = fast_sim(Reply("A long answer about our opening hours and the parking.", audio_ms=3000), pacing=pacing)
    loop = asyncio.get_running_loop()
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(le.greeting("hi"))
        await client.until("session.output_audio.delta")
        first_audio_at = loop.time()
        await asyncio.sleep(0.3)  # the caller listens a little, then talks over the agent
        speaking = asyncio.create_task(client.speak(audio.utterance(600, trail_silence_ms=600), realtime=True))
        delta = await client.until("session.input_transcript.delta", timeout=10)
        played = int((loop.time() - first_audio_at) * 1000) * 8
        queued = len(client.agent_audio()) - played
        await speaking
        await client.close()
    assert le.should_clear_playback(queued, delta["delta"]) is clears
    assert sim.errors == []
