"""GPT-Live client events validate against `openai.types.live` (no unknown keys); server events parse with one
json.loads into the bridge's vocabulary and fail loudly on garbage; transcript lines and the barge-in clear
policy behave as the module docstring says."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from bridge import live_events as le
from bridge import twilio_media as tw
from calls.simulators.validation import InvalidClientEvent, validate_live_client_event, validate_live_server_event

LOOKUP_SCHEMA = {
    "type": "object",
    "properties": {"order_number": {"type": "string", "description": "The order number"}},
    "required": ["order_number"],
    "additionalProperties": False,
}

SNAPSHOT = {
    "config_id": 3, "name": "Front desk", "revision": 7,
    "model": "gpt-live-1",
    "instructions": "You answer the phone for Example Dental.",
    "voice": "cedar",
    "speed": 1.1,
    "greeting": "Thanks for calling Example Dental!",
    "turn_detection": {"type": "server_vad", "threshold": 0.5},
    "noise_reduction": "near_field",
    "max_output_tokens": 4096,
    "max_call_seconds": 3300,
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


# --- client events -----------------------------------------------------------------------------------------


def test_session_start_carries_the_config_and_validates():
    event = le.session_start(snapshot(backend_model="gpt-5.4", backend_instructions="Look orders up."))
    validate_live_client_event(event)
    assert event == {
        "type": "session.start",
        "event_id": le.START_EVENT_ID,
        "session": {
            "model": "gpt-live-1",
            "instructions": "You answer the phone for Example Dental.",
            "audio": {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "cedar"}},
            "delegation": {
                "type": "responses",
                "responses": {
                    "model": "gpt-5.4",
                    "instructions": "Look orders up.",
                    "tools": [
                        {"type": "function", "name": "end_call", "description": "Hang up when the caller is done.",
                         "parameters": {"type": "object", "properties": {}}},
                        {"type": "function", "name": "lookup_order", "description": "Look up an order.",
                         "parameters": LOOKUP_SCHEMA},
                    ],
                    "tool_choice": "auto",
                    "parallel_tool_calls": False,
                },
            },
        },
    }
    # Secrets and our routing details never leave: only the model-facing tool fields are sent.
    assert "api.example.com" not in le.to_text(event) and "X-Api-Key" not in le.to_text(event)


def test_session_start_defaults_work_for_a_realtime_style_snapshot():
    event = le.session_start({"instructions": "Be brief.", "voice": "verse", "tools": []})
    validate_live_client_event(event)
    session = event["session"]
    assert session["model"] == le.DEFAULT_MODEL
    backend = session["delegation"]["responses"]
    assert backend["model"] == le.DEFAULT_BACKEND_MODEL
    assert backend["instructions"] == "Be brief."  # the agent's prompt reaches the backend too
    assert backend["tools"] == []


@pytest.mark.parametrize(
    ("voice", "expected"),
    [("marin", {"voice": "marin"}), ("voice_abc123", {"voice": {"id": "voice_abc123"}}), ("no-such-voice", None),
     ("", None), (None, None)],
)
def test_session_start_voice(voice, expected):
    event = le.session_start(snapshot(voice=voice))
    validate_live_client_event(event)
    assert event["session"]["audio"].get("output") == expected
    assert event["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}


def test_the_other_builders_validate():
    for event in (
        le.greeting("Hello, Example Dental!"),
        le.caller_note("(The caller pressed 1 on the keypad.)"),
        le.function_call_output("call_1", '{"ok": true}'),
        le.response_create(),
        le.session_close(),
    ):
        validate_live_client_event(event)
    greeting = le.greeting("Hello, Example Dental!")
    assert greeting["type"] == "session.commentary.append"
    assert greeting["delegation_id"] is None and "Hello, Example Dental!" in greeting["content"]
    assert le.function_call_output("call_1", "x")["item"] == {
        "type": "function_call_output", "call_id": "call_1", "output": "x"}


def test_append_audio_is_a_splice_of_the_untouched_payload():
    payload = base64.b64encode(bytes(range(160))).decode()
    text = le.append_audio(payload)
    event = json.loads(text)
    validate_live_client_event(event)
    assert event == {"type": "session.input_audio.append", "audio": payload}
    assert text == le.to_text(event)  # byte-identical to what dumps would have produced


def test_to_text_is_compact_and_keeps_unicode():
    assert le.to_text(le.caller_note("café")) == (
        '{"type":"session.thinking.append","content":"café","delegation_id":null}')


# The validator must be able to fail, or the tests above prove nothing.
@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": "session.start", "session": {"model": "gpt-live-1", "voice": "marin"}}, "session.voice"),
        ({"type": "session.start", "session": {"model": "gpt-live-1",
                                               "audio": {"format": {"type": "audio/pcmu"}}}}, "rate"),
        ({"type": "session.start", "session": {}}, "session.model"),
        ({"type": "session.input_audio.append", "audio": "AAAA", "extra": 1}, "extra"),
        ({"type": "session.commentary.append", "content": "hi"}, "delegation_id"),
        ({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": "c", "output": "o",
                                                   "tool": "x"}}, "item.tool"),
        ({"type": "input_audio_buffer.append", "audio": "AAAA"}, "type"),
        ({"type": "session.start", "session": {"model": "m", "delegation": {"type": "responses",
                                               "responses": {"model": "b", "tools": [{"type": "function",
                                                             "name": "f", "kind": "http"}]}}}}, "kind"),
    ],
)
def test_the_live_validator_rejects_what_the_api_would(event, param):
    with pytest.raises(InvalidClientEvent) as caught:
        validate_live_client_event(event)
    assert param in (caught.value.param or "") + caught.value.message


# --- server events -----------------------------------------------------------------------------------------

SESSION = {"id": "live_abc", "expires_at": 1_900_000_000, "model": "gpt-live-1", "status": "active",
           "audio": {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "marin"}}}
FUNCTION_CALL_DONE = {
    "type": "response.event", "event_id": "ev_5", "delegation_id": "del_1",
    "event": {"type": "response.output_item.done", "output_index": 0, "sequence_number": 7,
              "item": {"type": "function_call", "id": "fc_1", "status": "completed", "call_id": "call_9",
                       "name": "lookup_order", "arguments": '{"order_number":"A1"}'}},
}
BACKEND_COMPLETED = {
    "type": "response.event", "event_id": "ev_6", "delegation_id": "del_1",
    "event": {"type": "response.completed", "sequence_number": 9,
              "response": {"id": "resp_1", "status": "completed",
                           "usage": {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}}},
}


def parse(event: dict) -> le.ServerEvent:
    validate_live_server_event(event)  # the fixtures themselves are real Live server events
    return le.parse_server_event(json.dumps(event))


def test_audio_delta_is_the_hot_path():
    payload = base64.b64encode(b"\xff" * 160).decode()
    event = parse({"type": "session.output_audio.delta", "delta": payload})
    assert type(event) is le.AudioDelta
    assert event.delta == payload and event.item_id == le.OUTPUT_STREAM_ID
    assert tw.media_message("MZ1", event.delta) == '{"event":"media","streamSid":"MZ1","media":{"payload":"' + \
        payload + '"}}'


def test_session_started():
    event = parse({"type": "session.started", "event_id": "ev_1", "session": SESSION,
                   "client_event_id": le.START_EVENT_ID})
    assert type(event) is le.SessionStarted
    assert (event.session_id, event.expires_at) == ("live_abc", 1_900_000_000)


@pytest.mark.parametrize(("kind", "role"), [("session.input_transcript.delta", "caller"),
                                            ("session.output_transcript.delta", "agent")])
def test_transcript_deltas(kind, role):
    event = parse({"type": kind, "event_id": "ev_2", "delta": " Hello", "start_ms": 1200, "end_ms": 1500})
    assert type(event) is le.TranscriptDelta
    assert (event.role, event.text, event.start_ms, event.end_ms) == (role, " Hello", 1200, 1500)


def test_delegation_created():
    event = parse({"type": "session.delegation.created", "event_id": "ev_3", "offset_ms": 4000,
                   "delegation": {"id": "del_1", "target": "responses", "type": "delegation",
                                  "response_id": "resp_1"}})
    assert type(event) is le.DelegationCreated
    assert (event.delegation_id, event.target, event.response_id) == ("del_1", "responses", "resp_1")


def test_function_call_from_the_backend_stream():
    event = parse(FUNCTION_CALL_DONE)
    assert type(event) is le.FunctionCall
    assert (event.call_id, event.name, event.arguments, event.delegation_id) == (
        "call_9", "lookup_order", '{"order_number":"A1"}', "del_1")


def test_incomplete_function_calls_and_other_backend_events_are_not_run():
    incomplete = copy.deepcopy(FUNCTION_CALL_DONE)
    incomplete["event"]["item"]["status"] = "incomplete"
    assert type(parse(incomplete)) is le.ServerEvent
    message = copy.deepcopy(FUNCTION_CALL_DONE)
    message["event"]["item"] = {"type": "message", "id": "m", "role": "assistant", "status": "completed",
                                "content": []}
    assert type(parse(message)) is le.ServerEvent
    delta = {"type": "response.event", "event_id": "e", "delegation_id": "del_1",
             "event": {"type": "response.output_text.delta", "delta": "hi"}}
    assert type(parse(delta)) is le.ServerEvent


@pytest.mark.parametrize(("inner", "status"), [("response.completed", "completed"),
                                               ("response.incomplete", "incomplete"), ("response.failed", "failed")])
def test_backend_done_carries_its_token_usage(inner, status):
    event_data = copy.deepcopy(BACKEND_COMPLETED)
    event_data["event"]["type"] = inner
    event = parse(event_data)
    assert type(event) is le.BackendDone
    assert (event.delegation_id, event.status) == ("del_1", status)
    assert event.usage["total_tokens"] == 150
    del event_data["event"]["response"]["usage"]
    assert parse(event_data).usage == {}


def test_usage_and_closed():
    usage = parse({"type": "session.usage.updated", "event_id": "e", "usage": {"seconds": 42.0},
                   "context_window": {"usage_ratio": 0.1}})
    assert type(usage) is le.Usage and usage.seconds == 42.0
    closed = parse({"type": "session.closed", "event_id": "e", "reason": "close_requested", "session": SESSION,
                    "usage": {"seconds": 61}})
    assert type(closed) is le.SessionClosed and (closed.reason, closed.seconds) == ("close_requested", 61.0)


@pytest.mark.parametrize(
    ("error", "client_event_id", "fatal"),
    [
        ({"type": "invalid_request_error", "code": "unknown_parameter", "message": "m", "param": "session.voice",
          "client_event_id": le.START_EVENT_ID}, None, True),  # the session never started
        ({"type": "invalid_request_error", "code": "invalid_api_key", "message": "m"}, None, True),
        ({"type": "insufficient_quota", "code": "insufficient_quota", "message": "m"}, None, True),
        ({"type": "server_error", "code": "internal_error", "message": "m"}, None, True),
        ({"type": "invalid_request_error", "code": "invalid_value", "message": "m"}, "voiceops-greeting", False),
        ({"type": "invalid_request_error", "code": "invalid_value", "message": "m"}, None, False),
    ],
)
def test_errors_and_which_ones_end_the_call(error, client_event_id, fatal):
    data = {"type": "error", "event_id": "e", "error": error}
    if client_event_id:
        data["client_event_id"] = client_event_id
    event = parse(data)
    assert type(event) is le.LiveError
    assert event.fatal is fatal
    assert (event.code, event.message, event.error_type) == (error["code"], "m", error["type"])
    assert event.client_event_id == (error.get("client_event_id") or client_event_id)
    assert event.param == error.get("param")


def test_unknown_and_unhandled_events_are_passed_over():
    for data in (
        {"type": "session.commentary.appended", "event_id": "e", "start_ms": 1, "end_ms": 1},
        {"type": "info", "event_id": "e", "code": "notice", "message": "m"},
        {"type": "session.brand_new_event", "whatever": 1},  # new events appear: ignore, never fail the call
    ):
        event = le.parse_server_event(json.dumps(data))
        assert type(event) is le.ServerEvent and event.data == data


@pytest.mark.parametrize(
    "text",
    [
        "not json", "[]", '"text"', "{}", '{"type": ""}', '{"type": 5}',
        '{"type": "session.output_audio.delta"}',
        '{"type": "session.output_audio.delta", "delta": "AA\\"AA"}',  # would break Twilio's JSON
        '{"type": "session.output_audio.delta", "delta": 12}',
        '{"type": "session.input_transcript.delta", "event_id": "e", "delta": "hi"}',
        '{"type": "session.output_transcript.delta", "event_id": "e", "delta": 3, "start_ms": 0, "end_ms": 1}',
        '{"type": "session.started", "event_id": "e", "session": {}}',
        '{"type": "session.delegation.created", "event_id": "e", "delegation": {}}',
        '{"type": "response.event", "event_id": "e"}',
        '{"type": "response.event", "event_id": "e", "event": {"type": "response.output_item.done", "item": '
        '{"type": "function_call", "status": "completed", "name": "f", "arguments": "{}"}}}',
        '{"type": "session.usage.updated", "event_id": "e", "usage": {}}',
        '{"type": "session.closed", "event_id": "e", "reason": "expired"}',
        '{"type": "error", "event_id": "e", "error": "boom"}',
        b"\xff\xfe",
    ],
)
def test_malformed_events_raise_protocol_error(text):
    with pytest.raises(le.ProtocolError) as caught:
        le.parse_server_event(text)
    assert caught.value.reason  # a short sentence the session can log or put in a close reason


# --- transcript lines --------------------------------------------------------------------------------------


def delta(role: str, text: str, start_ms: int, end_ms: int) -> le.TranscriptDelta:
    kind = "session.input_transcript.delta" if role == "caller" else "session.output_transcript.delta"
    return le.TranscriptDelta(kind, {}, role, text, start_ms, end_ms)


def feed(lines: le.TranscriptLines, *deltas: le.TranscriptDelta) -> list[tuple[str, str]]:
    done = [line for d in deltas for line in lines.add(d)]
    return [(line.role, line.text) for line in done]


def test_fragments_join_into_lines_closed_by_the_other_speaker():
    lines = le.TranscriptLines()
    assert feed(lines, delta("agent", "Hello,", 0, 400), delta("agent", " how can I help?", 400, 1500)) == []
    assert feed(lines, delta("caller", "I'd like", 2000, 2400)) == [("agent", "Hello, how can I help?")]
    assert feed(lines, delta("caller", " to book.", 2400, 3000), delta("agent", "Sure.", 3600, 4000)) == [
        ("caller", "I'd like to book.")]
    flushed = lines.flush()
    assert [(line.role, line.text, line.start_ms, line.end_ms) for line in flushed] == [("agent", "Sure.", 3600, 4000)]
    assert lines.flush() == []


def test_a_long_pause_starts_a_new_line_for_the_same_speaker():
    lines = le.TranscriptLines()
    assert feed(lines, delta("caller", "One moment.", 0, 800), delta("caller", " Still there?", 1500, 2000)) == []
    assert feed(lines, delta("caller", "Hello?", 2000 + le.LINE_GAP_MS, 4500)) == [
        ("caller", "One moment. Still there?")]
    assert [(line.role, line.text) for line in lines.flush()] == [("caller", "Hello?")]


def test_caller_talking_over_the_agent_ends_the_agent_line():
    lines = le.TranscriptLines()
    feed(lines, delta("agent", "Your appointment is on", 0, 900))
    assert feed(lines, delta("caller", "Wait", 800, 1000)) == [("agent", "Your appointment is on")]
    assert [(line.role, line.text) for line in lines.flush()] == [("caller", "Wait")]


def test_blank_fragments_make_no_lines():
    lines = le.TranscriptLines()
    assert feed(lines, delta("agent", "  ", 0, 10), delta("caller", "", 20, 30)) == []
    assert lines.flush() == []


# --- barge-in policy ---------------------------------------------------------------------------------------

QUEUED_ENOUGH = (le.CLEAR_QUEUED_MS + 20) * tw.MULAW_BYTES_PER_MS


@pytest.mark.parametrize(
    ("queued_bytes", "text", "clear"),
    [
        (QUEUED_ENOUGH, "Wait, that's wrong", True),
        (QUEUED_ENOUGH, " no", True),
        (QUEUED_ENOUGH, "Mhm.", False),  # a back-channel: the full-duplex model talks on, so must Twilio
        (QUEUED_ENOUGH, "uh-huh", False),
        (QUEUED_ENOUGH, "  ", False),
        (le.CLEAR_QUEUED_MS * tw.MULAW_BYTES_PER_MS, "Wait", False),  # real-time paced output: shallow already
        (0, "Wait", False),
    ],
)
def test_should_clear_playback(queued_bytes, text, clear):
    assert le.should_clear_playback(queued_bytes, text) is clear
