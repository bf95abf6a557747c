"""The Realtime simulator against its own protocol, driven by a raw `websockets` client.

Every server event the simulator emits is also parsed with the `openai` package's server-event
types (no unknown keys), so the simulator cannot drift from the real schema unnoticed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from calls.simulators import audio
from calls.simulators.realtime_server import (
    Faults,
    Pacing,
    RealtimeSimulator,
    Reply,
    Script,
    ToolCall,
    agent_audio,
)
from calls.simulators.validation import validate_server_event

AUTH = {"Authorization": "Bearer sk-test"}
# session objects legitimately carry id/object/expires_at, which the request model does not declare
SESSION_EVENTS = {"session.created", "session.updated"}

PCMU_SESSION = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "instructions": "You are a test agent.",
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "interrupt_response": True,
                    "create_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0},
        },
        "tools": [
            {
                "type": "function",
                "name": "end_call",
                "description": "Hang up.",
                "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
            }
        ],
        "tool_choice": "auto",
    },
}


class Client:
    """A bare Realtime client that checks each server event against the openai types."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        validate_server_event(event, allow_extras=event["type"] in SESSION_EVENTS)
        self.events.append(event)
        return event

    async def until(self, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                if event["type"] == event_type:
                    return event

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    async def append(self, ulaw: bytes) -> None:
        for frame in audio.frames(ulaw):
            await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()})


async def open_client(url: str, headers: dict[str, str] | None = None, configure: bool = True) -> Client:
    ws = await connect(url + "?model=gpt-realtime", additional_headers=headers or AUTH)
    client = Client(ws)
    created = await client.recv()
    assert created["type"] == "session.created"
    if configure:
        await client.send(PCMU_SESSION)
        updated = await client.until("session.updated")
        assert updated["session"]["audio"]["input"]["format"]["type"] == "audio/pcmu"
    return client


def fast_sim(*turns: Any, **kwargs: Any) -> RealtimeSimulator:
    script = Script(turns=list(turns), transcripts=["I'd like to check my order."])
    return RealtimeSimulator(script=script, pacing=kwargs.pop("pacing", Pacing.fast()), **kwargs)


async def test_handshake_requires_bearer_and_model_and_records_headers() -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        with pytest.raises(InvalidStatus) as no_auth:
            await connect(url + "?model=gpt-realtime")
        assert no_auth.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as no_model:
            await connect(url, additional_headers=AUTH)
        assert no_model.value.response.status_code == 400
        client = await open_client(url, {**AUTH, "X-Trace": "abc"}, configure=False)
        await client.ws.close()
    assert sim.sessions[0].headers["authorization"] == "Bearer sk-test"
    assert sim.sessions[0].headers["x-trace"] == "abc"
    assert sim.sessions[0].model == "gpt-realtime"
    assert [r["status"] for r in sim.handshake_rejections] == [401, 400]


async def test_beta_header_is_rejected_with_error_event() -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        ws = await connect(
            url + "?model=gpt-realtime", additional_headers={**AUTH, "OpenAI-Beta": "realtime=v1"}
        )
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert event["type"] == "error"
        assert event["error"]["type"] == "invalid_request_error"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008
    assert len(sim.errors) == 1


async def test_full_voice_turn_with_vad_transcription_audio_and_usage() -> None:
    sim = fast_sim(Reply("Sure, let me look that up.", audio_ms=1000))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.append(audio.utterance(800, lead_silence_ms=200, trail_silence_ms=700))
        started = await client.until("input_audio_buffer.speech_started")
        # speech begins at 200 ms; prefix padding (300 ms) is clamped at the start of the buffer
        assert started["audio_start_ms"] == 0
        stopped = await client.until("input_audio_buffer.speech_stopped")
        assert stopped["item_id"] == started["item_id"]
        assert 1000 <= stopped["audio_end_ms"] <= 1600
        committed = await client.until("input_audio_buffer.committed")
        assert committed["item_id"] == started["item_id"]
        transcript = await client.until("conversation.item.input_audio_transcription.completed")
        assert transcript["transcript"] == "I'd like to check my order."
        done = await client.until("response.done")
        await client.ws.close()

    deltas = client.of_type("response.output_audio.delta")
    received = b"".join(base64.b64decode(d["delta"]) for d in deltas)
    assert received == agent_audio(1000)  # deterministic, byte-exact
    assert len(received) == 8000
    assert (
        client.of_type("response.output_audio_transcript.done")[0]["transcript"]
        == "Sure, let me look that up."
    )
    order = [e["type"] for e in client.events if e["type"].startswith("response.")]
    assert order[0] == "response.created"
    assert order[1:3] == ["response.output_item.added", "response.content_part.added"]
    assert order[-5:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    assert done["response"]["status"] == "completed"
    usage = done["response"]["usage"]
    assert usage["output_token_details"]["audio_tokens"] == 20  # 1 s at 1,200 tokens/min
    assert usage["input_token_details"]["audio_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert sim.errors == []
    session = sim.sessions[0]
    assert session.responses[0].audio_bytes == 8000
    assert session.received[0]["type"] == "session.update"


async def test_no_transcription_event_when_transcription_is_off() -> None:
    sim = fast_sim(Reply("ok", audio_ms=100))
    async with sim.serve() as url:
        client = await open_client(url, configure=False)
        update = json.loads(json.dumps(PCMU_SESSION))
        update["session"]["audio"]["input"]["transcription"] = None
        await client.send(update)
        await client.until("session.updated")
        await client.append(audio.utterance(500, trail_silence_ms=600))
        await client.until("response.done")
        await client.ws.close()
    assert client.of_type("conversation.item.input_audio_transcription.completed") == []
    assert sim.errors == []


async def test_invalid_client_event_gets_error_and_is_recorded() -> None:
    sim = fast_sim()
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(
            {
                "type": "session.update",
                "event_id": "evt_1",
                "session": {"type": "realtime", "temperature": 0.7},
            }
        )
        error = await client.until("error")
        await client.send({"type": "response.audio.delta", "event_id": "evt_2"})
        error2 = await client.until("error")
        await client.send({"type": "input_audio_buffer.append", "audio": "not base64!!"})
        error3 = await client.until("error")
        await client.ws.close()
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == "unknown_parameter"
    assert error["error"]["param"] == "session.temperature"
    assert error["error"]["event_id"] == "evt_1"
    assert error2["error"]["param"] == "type"
    assert error3["error"]["param"] == "audio"
    assert [e["code"] for e in sim.errors] == ["unknown_parameter", "invalid_value", "invalid_value"]


async def test_function_call_round_trip_then_next_turn() -> None:
    sim = fast_sim(
        ToolCall("lookup_order", {"order_id": "A17"}, call_id="call_1"), Reply("It ships today.", 300)
    )
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "response.create"})
        args = await client.until("response.function_call_arguments.done")
        assert args["name"] == "lookup_order"
        assert json.loads(args["arguments"]) == {"order_id": "A17"}
        assert args["call_id"] == "call_1"
        first_done = await client.until("response.done")
        assert first_done["response"]["output"][0]["type"] == "function_call"
        deltas = "".join(d["delta"] for d in client.of_type("response.function_call_arguments.delta"))
        assert deltas == args["arguments"]
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": "call_1",
                    "output": '{"status": "shipped"}',
                },
            }
        )
        await client.until("conversation.item.done")
        await client.send({"type": "response.create"})
        await client.until("response.done")
        transcript = client.of_type("response.output_audio_transcript.done")[0]["transcript"]
        # an output for a call the model never made is rejected
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "nope", "output": "x"},
            }
        )
        await client.until("error")
        await client.ws.close()
    assert transcript == "It ships today."
    assert sim.sessions[0].tool_outputs[0]["output"] == '{"status": "shipped"}'
    assert [e["param"] for e in sim.errors] == ["item.call_id"]


async def test_truncate_beyond_audio_is_rejected_and_valid_truncate_accepted() -> None:
    sim = fast_sim(Reply("Hello there.", audio_ms=500))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "response.create"})
        done = await client.until("response.done")
        item_id = done["response"]["output"][0]["id"]
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 900,
            }
        )
        error = await client.until("error")
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 320,
            }
        )
        truncated = await client.until("conversation.item.truncated")
        await client.ws.close()
    assert "already shorter" in error["error"]["message"]
    assert truncated["audio_end_ms"] == 320
    truncates = sim.sessions[0].truncates
    assert [(t["audio_end_ms"], t["accepted"]) for t in truncates] == [(900, False), (320, True)]
    assert truncates[0]["item_audio_ms"] == 500


async def test_cancel_without_response_is_an_error_and_double_create_too() -> None:
    sim = fast_sim(Reply("A long answer.", audio_ms=3000), pacing=Pacing(speed=1.0, first_audio_delay_ms=0))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "response.cancel"})
        error = await client.until("error")
        assert error["error"]["code"] == "response_cancel_not_active"
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.send({"type": "response.create"})
        busy = await client.until("error")
        await client.send({"type": "response.cancel"})
        done = await client.until("response.done")
        await client.ws.close()
    assert busy["error"]["code"] == "conversation_already_has_active_response"
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    assert [e["code"] for e in sim.errors] == [
        "response_cancel_not_active",
        "conversation_already_has_active_response",
    ]


async def test_barge_in_cancels_response_in_flight() -> None:
    sim = fast_sim(
        Reply("This is a rather long greeting for you.", audio_ms=4000),
        pacing=Pacing(speed=1.0, first_audio_delay_ms=0),
    )
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.append(audio.speech_like(200))
        started = await client.until("input_audio_buffer.speech_started")
        done = await client.until("response.done", timeout=2)
        await client.ws.close()
    assert started
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    assert sim.sessions[0].responses[0].audio_bytes < 4000 * 8
    # a cancelled response still closes its audio/transcript parts, as the API does
    assert client.of_type("response.output_audio.done")


async def test_interrupt_response_false_lets_response_finish() -> None:
    sim = fast_sim(Reply("Short.", audio_ms=400), pacing=Pacing(speed=1.0, first_audio_delay_ms=0))
    async with sim.serve() as url:
        client = await open_client(url, configure=False)
        update = json.loads(json.dumps(PCMU_SESSION))
        update["session"]["audio"]["input"]["turn_detection"]["interrupt_response"] = False
        update["session"]["audio"]["input"]["turn_detection"]["create_response"] = False
        await client.send(update)
        await client.until("session.updated")
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.append(audio.speech_like(200) + audio.silence(600))
        done = await client.until("response.done")
        if not client.of_type("input_audio_buffer.committed"):
            await client.until("input_audio_buffer.committed")
        await asyncio.sleep(0.1)
        await client.ws.close()
    assert done["response"]["status"] == "completed"
    assert len(client.of_type("response.created")) == 1  # create_response false: no automatic reply


async def test_fault_refuse_handshake() -> None:
    sim = fast_sim(faults=Faults(refuse_status=500))
    async with sim.serve() as url:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url + "?model=gpt-realtime", additional_headers=AUTH)
        assert refused.value.response.status_code == 500
        sim.faults.refuse_status = None  # faults are live: the next connection works
        client = await open_client(url, configure=False)
        await client.ws.close()


async def test_fault_drop_after_events() -> None:
    sim = fast_sim(faults=Faults(drop_after_events=2))
    async with sim.serve() as url:
        client = await open_client(url, configure=False)
        await client.send(PCMU_SESSION)
        await client.recv()  # session.updated is the 2nd event; then the socket dies
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code in (None, 1006)


async def test_fault_drop_after_first_response_and_clean_close_mode() -> None:
    sim = fast_sim(Reply("hi", 100), faults=Faults(drop_after_first_response=True, abrupt=False))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "response.create"})
        await client.until("response.done")
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1011


async def test_fault_server_error_and_stall() -> None:
    sim = fast_sim(Reply("hi", 100), faults=Faults(error_after_events=2, stall_after_events=6))
    async with sim.serve() as url:
        client = await open_client(url, configure=False)
        await client.send(PCMU_SESSION)
        await client.until("session.updated")
        error = await client.recv()
        assert error["type"] == "error"
        assert error["error"]["type"] == "server_error"
        await client.send({"type": "response.create"})
        with pytest.raises(TimeoutError):
            await client.until("response.done", timeout=0.5)
        await client.ws.close()
    assert sim.errors == []  # injected server errors are not the client's fault


async def test_session_lifetime_limit() -> None:
    sim = fast_sim(session_max_s=0.3)
    async with sim.serve() as url:
        client = await open_client(url, configure=False)
        error = await client.until("error", timeout=3)
        assert error["error"]["code"] == "session_expired"
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1001
        assert "60 minutes" in client.ws.close_reason


async def test_session_update_guards_model_and_voice() -> None:
    sim = fast_sim(Reply("hi", 100))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(
            {"type": "session.update", "session": {"type": "realtime", "model": "gpt-4o-realtime-preview"}}
        )
        model_error = await client.until("error")
        await client.send({"type": "response.create"})
        await client.until("response.done")
        await client.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}},
            }
        )
        voice_error = await client.until("error")
        await client.ws.close()
    assert model_error["error"]["param"] == "session.model"
    assert voice_error["error"]["code"] == "cannot_update_voice"


async def test_manual_commit_and_empty_commit() -> None:
    sim = fast_sim(Reply("ok", 100))
    async with sim.serve() as url:
        client = await open_client(url, configure=False)
        update = json.loads(json.dumps(PCMU_SESSION))
        update["session"]["audio"]["input"]["turn_detection"] = None
        await client.send(update)
        await client.until("session.updated")
        await client.send({"type": "input_audio_buffer.commit"})
        empty = await client.until("error")
        await client.append(audio.speech_like(300))
        await client.send({"type": "input_audio_buffer.commit"})
        committed = await client.until("input_audio_buffer.committed")
        await client.ws.close()
    assert empty["error"]["code"] == "input_audio_buffer_commit_empty"
    assert committed["item_id"].startswith("item_")
    assert client.of_type("input_audio_buffer.speech_started") == []  # VAD off


async def test_counter_pattern_and_record_false() -> None:
    sim = fast_sim(
        Reply("x", audio_ms=60),
        pacing=Pacing(speed=None, first_audio_delay_ms=0, chunk_ms=20, pattern="counter"),
        record=False,
    )
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send({"type": "response.create"})
        await client.until("response.done")
        await client.ws.close()
        await asyncio.wait_for(sim.sessions[0].ended.wait(), 5)
    data = b"".join(base64.b64decode(d["delta"]) for d in client.of_type("response.output_audio.delta"))
    assert data == bytes(n % 256 for n in range(480))
    assert len(client.of_type("response.output_audio.delta")) == 3
    session = sim.sessions[0]
    assert session.received == [] and session.sent == []
    assert session.received_count == 2 and session.sent_count > 5


def test_thread_mode_for_sync_callers() -> None:
    from websockets.sync.client import connect as sync_connect

    sim = fast_sim(Reply("hi", 100))
    url = sim.start_in_thread()
    try:
        with sync_connect(url + "?model=gpt-realtime", additional_headers=AUTH) as ws:
            first = json.loads(ws.recv(timeout=5))
            assert first["type"] == "session.created"
    finally:
        sim.stop()
    assert len(sim.sessions) == 1


async def test_out_of_band_text_response_after_user_text_item() -> None:
    sim = fast_sim(Reply("Noted."))
    async with sim.serve() as url:
        client = await open_client(url)
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                },
            }
        )
        added = await client.until("conversation.item.added")
        await client.send(
            {"type": "response.create", "response": {"conversation": "none", "output_modalities": ["text"]}}
        )
        done = await client.until("response.done")
        await client.ws.close()
    assert added["item"]["role"] == "user"
    assert client.of_type("response.output_text.done")[0]["text"] == "Noted."
    assert client.of_type("response.output_audio.delta") == []
    assert done["response"]["conversation_id"] is None
    assert sim.errors == []


async def test_pcm_default_format_is_used_when_client_does_not_ask_for_pcmu() -> None:
    # A bridge that forgets audio/pcmu gets 24 kHz PCM16 back: 48 bytes per ms, not 8.
    sim = fast_sim(Reply("x", audio_ms=100))
    async with sim.serve() as url:
        client = await open_client(url, configure=False)
        await client.send({"type": "response.create"})
        await client.until("response.done")
        await client.ws.close()
    data = b"".join(base64.b64decode(d["delta"]) for d in client.of_type("response.output_audio.delta"))
    assert len(data) == 100 * 48


async def test_server_vad_idle_timeout_commits_the_silence_and_answers() -> None:
    sim = fast_sim(Reply("Are you still there?", audio_ms=200))
    async with sim.serve() as url:
        client = await open_client(url)
        update = json.loads(json.dumps(PCMU_SESSION))
        update["session"]["audio"]["input"]["turn_detection"]["idle_timeout_ms"] = 400
        await client.send(update)
        await client.until("session.updated")
        await client.append(audio.silence(300))  # not yet
        await client.append(audio.silence(200))
        timeout = await client.until("input_audio_buffer.timeout_triggered")
        assert timeout["audio_end_ms"] - timeout["audio_start_ms"] == 400
        committed = await client.until("input_audio_buffer.committed")
        assert committed["item_id"] == timeout["item_id"]
        done = await client.until("response.done")
        assert done["response"]["status"] == "completed"
        assert client.of_type("conversation.item.input_audio_transcription.completed")[0]["transcript"] == ""
        await client.ws.close()
    assert sim.sessions[0].idle_timeouts == 1 and sim.errors == []
