"""Realtime GA client events validate against the `openai` package's own types (no unknown keys);
server events parse with one json.loads and fail loudly on garbage."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from bridge import realtime_events as rt
from bridge import twilio_media as tw
from calls.simulators.validation import validate_client_event

LOOKUP_SCHEMA = {
    "type": "object",
    "properties": {"order_number": {"type": "string", "description": "The order number"}},
    "required": ["order_number"],
    "additionalProperties": False,
}

SNAPSHOT = {
    "config_id": 3, "name": "Front desk", "revision": 7,
    "model": "gpt-realtime",
    "instructions": "You answer the phone for Example Dental.",
    "voice": "marin",
    "speed": 1.1,
    "greeting": "Thanks for calling Example Dental!",
    "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                       "silence_duration_ms": 500, "interrupt_response": True, "create_response": True},
    "noise_reduction": "near_field",
    "transcription_model": "gpt-4o-mini-transcribe",
    "max_output_tokens": 4096,
    "max_call_seconds": 3300,
    "transfer_number": "+15551230000",
    "tools": [
        {"kind": "builtin", "name": "end_call", "description": "Hang up when the caller is done.",
         "parameters": {"type": "object", "properties": {}}},
        {"kind": "http", "name": "lookup_order", "description": "Look up an order.", "parameters": LOOKUP_SCHEMA,
         "url": "https://api.example.com/orders", "timeout_s": 5.0, "secret_header_name": "X-Api-Key",
         "tool_id": 4},
    ],
}


def snapshot(**overrides: object) -> dict:
    return copy.deepcopy(SNAPSHOT) | overrides


# --- session.update ----------------------------------------------------------------------------------------


def test_session_update_carries_the_whole_config():
    event = rt.session_update(snapshot())
    validate_client_event(event)
    assert event == {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "instructions": "You answer the phone for Example Dental.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "gpt-4o-mini-transcribe"},
                    "turn_detection": SNAPSHOT["turn_detection"],
                    "noise_reduction": {"type": "near_field"},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.1},
            },
            "tools": [
                {"type": "function", "name": "end_call", "description": "Hang up when the caller is done.",
                 "parameters": {"type": "object", "properties": {}}},
                {"type": "function", "name": "lookup_order", "description": "Look up an order.",
                 "parameters": LOOKUP_SCHEMA},
            ],
            "tool_choice": "auto",
            "max_output_tokens": 4096,
        },
    }


def test_session_update_leaves_out_what_is_off():
    event = rt.session_update(snapshot(transcription_model=None, noise_reduction=None, tools=[],
                                       max_output_tokens="inf"))
    validate_client_event(event)
    audio_input = event["session"]["audio"]["input"]
    assert "transcription" not in audio_input and "noise_reduction" not in audio_input
    assert event["session"]["tools"] == [] and event["session"]["max_output_tokens"] == "inf"


def test_session_update_semantic_vad():
    turn = {"type": "semantic_vad", "eagerness": "low", "interrupt_response": False, "create_response": True}
    event = rt.session_update(snapshot(turn_detection=turn, noise_reduction="far_field"))
    validate_client_event(event)
    assert event["session"]["audio"]["input"]["turn_detection"] == turn
    assert event["session"]["audio"]["input"]["noise_reduction"] == {"type": "far_field"}


def test_session_update_drops_turn_detection_keys_the_mode_does_not_have():
    # server_vad-only keys in a semantic_vad config would be unknown_parameter upstream.
    turn = {"type": "semantic_vad", "eagerness": "auto", "threshold": 0.5, "silence_duration_ms": 500,
            "interrupt_response": True}
    event = rt.session_update(snapshot(turn_detection=turn))
    validate_client_event(event)
    assert event["session"]["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad", "eagerness": "auto", "interrupt_response": True
    }


def test_session_update_turn_detection_off_and_unknown_mode():
    event = rt.session_update(snapshot(turn_detection=None))
    validate_client_event(event)
    assert event["session"]["audio"]["input"]["turn_detection"] is None
    for unusable in ({"type": "push_to_talk"}, {}, "server_vad"):
        event = rt.session_update(snapshot(turn_detection=unusable))
        validate_client_event(event)
        assert "turn_detection" not in event["session"]["audio"]["input"]  # the server's default VAD applies


def test_session_update_never_sends_beta_fields_or_private_tool_keys():
    text = rt.to_text(rt.session_update(snapshot()))
    for absent in ("temperature", "modalities\":", "input_audio_format", "g711_ulaw", "kind", "url",
                   "timeout_s", "secret_header_name", "tool_id", "greeting", "max_call_seconds", "transfer_number"):
        assert f'"{absent}' not in text, absent


@pytest.mark.parametrize("voice", ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin",
                                   "cedar"])
def test_session_update_every_voice(voice):
    validate_client_event(rt.session_update(snapshot(voice=voice, speed=0.25)))


def test_session_update_skips_a_nameless_tool_rather_than_failing_the_call():
    event = rt.session_update(snapshot(tools=[{"kind": "http", "description": "broken"}, SNAPSHOT["tools"][0]]))
    validate_client_event(event)
    assert [t["name"] for t in event["session"]["tools"]] == ["end_call"]


def test_session_update_from_a_sparse_snapshot():
    event = rt.session_update({"instructions": "Hi"})
    validate_client_event(event)
    assert "model" not in event["session"] and event["session"]["tools"] == []


def test_session_update_from_a_real_config_snapshot(db):
    from calls import services
    from calls.models import AgentConfig, Tool

    config = AgentConfig.objects.create(name="Desk", instructions="Be brief.", greeting="Hello!",
                                        transfer_number="+15551230000")
    services.record_revision(config)
    tool = Tool.objects.create(name="lookup_order", kind=Tool.Kind.HTTP, description="Look up an order.",
                               parameters=LOOKUP_SCHEMA, url="https://api.example.com/orders")
    config.tools.add(tool)
    event = rt.session_update(services.config_snapshot(config))
    validate_client_event(event)
    assert [t["name"] for t in event["session"]["tools"]] == ["lookup_order"]
    assert set(event["session"]["tools"][0]) == {"type", "name", "description", "parameters"}


# --- the other client events -------------------------------------------------------------------------------


def test_greeting_response_is_a_response_create_with_the_text_in_its_instructions():
    event = rt.greeting_response("Thanks for calling Example Dental!")
    validate_client_event(event)
    assert event["type"] == "response.create"
    assert "Thanks for calling Example Dental!" in event["response"]["instructions"]
    assert set(event["response"]) == {"instructions"}


def test_truncate():
    event = rt.truncate("item_abc", 1234)
    validate_client_event(event)
    assert event == {"type": "conversation.item.truncate", "item_id": "item_abc", "content_index": 0,
                     "audio_end_ms": 1234}
    assert rt.truncate("item_abc", -3)["audio_end_ms"] == 0


def test_function_call_output_and_user_text():
    output = json.dumps({"ok": True, "status": "shipped"})
    event = rt.function_call_output("call_1", output)
    validate_client_event(event)
    assert event["item"] == {"type": "function_call_output", "call_id": "call_1", "output": output}
    event = rt.user_text("(The caller pressed 5 on the keypad.)")
    validate_client_event(event)
    assert event["item"]["content"] == [{"type": "input_text", "text": "(The caller pressed 5 on the keypad.)"}]


def test_response_create_and_cancel():
    for event, kind in ((rt.response_create(), "response.create"), (rt.response_cancel(), "response.cancel")):
        validate_client_event(event)
        assert event == {"type": kind}


def test_to_text_is_compact_and_round_trips():
    event = rt.user_text("naïve “quotes”")
    text = rt.to_text(event)
    assert json.loads(text) == event and ", " not in text and ": " not in text


def test_append_audio_passes_twilio_payload_through():
    payload = base64.b64encode(bytes(range(160))).decode()
    inbound = tw.parse(json.dumps({"event": "media", "media": {"track": "inbound", "chunk": "1",
                                                               "timestamp": "20", "payload": payload}}))
    text = rt.append_audio(inbound.payload_b64)
    event = json.loads(text)
    validate_client_event(event)
    assert event == {"type": "input_audio_buffer.append", "audio": payload}


# --- server events -----------------------------------------------------------------------------------------


def delta_event(**overrides: object) -> dict:
    return {"type": "response.output_audio.delta", "event_id": "event_1", "response_id": "resp_1",
            "item_id": "item_1", "output_index": 0, "content_index": 0,
            "delta": base64.b64encode(bytes(range(256)) * 10).decode(), **overrides}


def test_audio_delta_exposes_delta_and_ids():
    raw = delta_event()
    event = rt.parse_server_event(json.dumps(raw))
    assert type(event) is rt.AudioDelta and isinstance(event, rt.ServerEvent)
    assert (event.type, event.delta, event.item_id, event.response_id) == (
        "response.output_audio.delta", raw["delta"], "item_1", "resp_1")
    assert event.data == raw
    assert tw.b64_audio_len(event.delta) == 2560


def test_audio_delta_forwards_to_twilio_unchanged():
    raw = delta_event()
    event = rt.parse_server_event(json.dumps(raw).encode())
    assert json.loads(tw.media_message("MZ1", event.delta))["media"]["payload"] == raw["delta"]


@pytest.mark.parametrize(
    "overrides",
    [{"delta": None}, {"delta": 5}, {"item_id": None}, {"delta": 'AA"}'}, {"delta": "AA\\u0000"},
     {"delta": "AA\nA"}],
)
def test_audio_delta_that_cannot_be_forwarded(overrides):
    raw = delta_event()
    raw.update(overrides)
    with pytest.raises(rt.ProtocolError, match="delta"):
        rt.parse_server_event(json.dumps(raw))


def test_audio_delta_without_response_id_still_plays():
    raw = delta_event()
    del raw["response_id"]
    assert rt.parse_server_event(json.dumps(raw)).response_id == ""


def test_other_events_keep_the_raw_dict():
    raw = {"type": "response.function_call_arguments.done", "call_id": "call_1", "name": "end_call",
           "arguments": "{}", "item_id": "item_2", "response_id": "resp_2", "output_index": 1, "event_id": "e"}
    event = rt.parse_server_event(json.dumps(raw))
    assert type(event) is rt.ServerEvent and event.type == raw["type"] and event.data == raw


@pytest.mark.parametrize("text", ["nope", "", "[]", '"x"', "{}", '{"type": 3}', '{"type": ""}', b"\xff"])
def test_garbage_server_events(text):
    with pytest.raises(rt.ProtocolError):
        rt.parse_server_event(text)


def test_one_protocol_error_class():
    assert rt.ProtocolError is tw.ProtocolError
