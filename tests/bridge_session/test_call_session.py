"""CallSession on its own: parsed Twilio messages and engine events in, actions out. No sockets, no clock, no
database (the Call row is an unsaved instance). Every client event the session sends upstream is validated
against the `openai` package's types."""

from __future__ import annotations

import base64
import json

import pytest

from bridge import engine as ev
from bridge import session as cs
from bridge import twilio_media as tw
from bridge.call_config import CallConfig
from bridge.playback import MARK_EVERY_MS
from bridge.realtime_engine import RealtimeEngine
from calls.models import Call
from calls.simulators.validation import validate_client_event

SNAPSHOT = {
    "config_id": 3, "name": "Front desk", "engine": "realtime", "model": "gpt-realtime-2.1",
    "instructions": "You answer the phone.", "voice": "marin", "greeting": "Hello!",
    "turn_detection": {"type": "server_vad", "idle_timeout_ms": 8000, "interrupt_response": True,
                       "create_response": True},
    "max_call_seconds": 600,
    "tools": [
        {"kind": "builtin", "name": "end_call", "description": "End.", "parameters": {"type": "object"}},
        {"kind": "http", "name": "lookup", "description": "Look up.", "parameters": {"type": "object"},
         "url": "https://tools.example.com/lookup", "timeout_s": 3},
    ],
}
T0 = 1000.0


def make_session(snapshot: dict | None = None, handover_after_s: float | None = None) -> cs.CallSession:
    snapshot = SNAPSHOT if snapshot is None else snapshot
    call = Call(id=7, twilio_call_sid="CA" + "1" * 32, stream_sid="MZ" + "2" * 32, from_number="+14155550100",
                to_number="+15005550006", config_snapshot=snapshot, status=Call.Status.IN_PROGRESS)
    config = CallConfig.from_snapshot(snapshot, "gpt-realtime")
    return cs.CallSession(call, config, RealtimeEngine(snapshot), T0, handover_after_s=handover_after_s)


def live_session(**kwargs) -> cs.CallSession:
    session = make_session(**kwargs)
    session.start(T0, api_key_set=True)
    session.upstream_open()
    while session.pop_early_audio() is not None:
        pass
    return session


def upstream(actions: list[cs.Action]) -> list[dict]:
    events = [json.loads(a.text) for a in actions if type(a) is cs.SendUpstream]
    for event in events:
        validate_client_event(event)
    return events


def kinds(actions: list[cs.Action]) -> list[str]:
    return [a.event["kind"] for a in actions if type(a) is cs.Record]


def of(actions: list[cs.Action], kind: type) -> list:
    return [a for a in actions if type(a) is kind]


def payload(nbytes: int, byte: int = 0xFF) -> str:
    return base64.b64encode(bytes([byte]) * nbytes).decode()


def test_without_a_key_the_call_ends_as_not_configured_and_opens_nothing():
    session = make_session()
    actions = session.start(T0, api_key_set=False)
    assert [type(a) for a in actions] == [cs.Publish, cs.EndCall]
    assert actions[0].live["what"] == "started" and actions[0].live["call"]["from"] == "+1415•••0100"
    assert actions[1].reason == Call.EndReason.NOT_CONFIGURED
    assert session.phase is cs.Phase.ENDING


def test_an_unavailable_engine_ends_the_call_as_not_configured():
    call = Call(id=1, twilio_call_sid="CA1", config_snapshot=SNAPSHOT)
    session = cs.CallSession(call, CallConfig.from_snapshot(SNAPSHOT, "m"), None, T0)
    assert of(session.start(T0, api_key_set=True), cs.EndCall)[0].reason == Call.EndReason.NOT_CONFIGURED


def test_start_opens_the_upstream_and_the_call_timer_and_early_audio_flows_in_order():
    session = make_session()
    actions = session.start(T0, api_key_set=True)
    assert of(actions, cs.OpenUpstream) and of(actions, cs.StartTimer) == [cs.StartTimer(cs.MAX_CALL_TIMER, 600)]
    assert session.caller_audio(payload(160, 1), 0) is None  # kept while the upstream opens
    assert session.caller_audio(payload(160, 2), 0) is None
    opening = session.upstream_open()
    events = upstream(opening)
    assert [e["type"] for e in events] == ["session.update", "response.create"]  # configuration, then greeting
    assert "Hello!" in events[1]["response"]["instructions"]
    assert of(opening, cs.FlushEarlyAudio)
    assert session.caller_audio(payload(160, 3), 0) is None  # still buffered until the flush is done
    flushed = []
    while (text := session.pop_early_audio()) is not None:
        flushed.append(json.loads(text)["audio"])
    assert flushed == [payload(160, 1), payload(160, 2), payload(160, 3)]
    assert session.phase is cs.Phase.LIVE
    text = session.caller_audio(payload(160, 4), 0)
    assert json.loads(text) == {"type": "input_audio_buffer.append", "audio": payload(160, 4)}


def test_agent_audio_goes_to_twilio_untouched_with_a_mark_every_n_ms_and_at_the_end_of_the_response():
    session = live_session()
    session.on_event(ev.ResponseStarted(), T0 + 1)
    delta = payload(160)  # 20 ms
    sent = [session.agent_audio(ev.AgentAudio(delta, "item_1"), T0) for _ in range(MARK_EVERY_MS // 20 + 1)]
    for _, media in sent:
        assert json.loads(media) == {"event": "media", "streamSid": session.stream_sid, "media": {"payload": delta}}
    assert [mark for mark, _ in sent[:-1]] == [None] * (MARK_EVERY_MS // 20)
    assert json.loads(sent[-1][0]) == {"event": "mark", "streamSid": session.stream_sid, "mark": {"name": "p1"}}
    actions = session.on_event(ev.ResponseDone(), T0 + 2)
    assert of(actions, cs.SendTwilio)[0].text == tw.mark_message(session.stream_sid, "p2")  # after the last delta
    assert session.playback.is_playing
    session.on_mark("p2")
    assert not session.playback.is_playing
    assert session.on_event(ev.ResponseDone(), T0 + 3) == []  # nothing unmarked: no second end mark


def test_barge_in_clears_twilio_truncates_at_what_was_heard_and_drops_the_rest_of_the_item():
    session = live_session()
    session.on_event(ev.ResponseStarted(), T0 + 1)
    for _ in range(3):
        session.agent_audio(ev.AgentAudio(payload(800), "item_1"), T0)  # 100 ms each
    assert session.on_mark("p2") is False  # 200 ms played
    actions = session.on_event(ev.CallerSpeechStarted(), T0 + 2)
    assert of(actions, cs.SendTwilio)[0].text == '{"event":"clear","streamSid":"' + session.stream_sid + '"}'
    assert upstream(actions) == [{"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0,
                                  "audio_end_ms": 200}]
    record = of(actions, cs.Record)[0]
    assert record.event["kind"] == "barge_in" and record.event["data"] == {"item_id": "item_1", "heard_ms": 200}
    assert record.event["t_ms"] == 2000
    assert session.agent_audio(ev.AgentAudio(payload(800), "item_1"), T0) is None  # the interrupted item
    assert session.agent_audio(ev.AgentAudio(payload(800), "item_2"), T0) is not None


def test_without_interrupt_response_speech_does_not_barge_in():
    snapshot = {**SNAPSHOT, "turn_detection": {"type": "server_vad", "interrupt_response": False}}
    session = live_session(snapshot=snapshot)
    session.agent_audio(ev.AgentAudio(payload(800), "item_1"), T0)
    assert session.on_event(ev.CallerSpeechStarted(), T0 + 1) == []


def test_end_call_waits_for_the_goodbye_response_then_ends_after_playback():
    session = live_session()
    session.on_event(ev.ResponseStarted(), T0 + 1)
    session.agent_audio(ev.AgentAudio(payload(800), "item_1"), T0)
    actions = session.on_event(ev.FunctionCall("call_1", "end_call", '{"reason": "done"}'), T0 + 2)
    assert kinds(actions) == ["tool_call", "tool_result"] and not of(actions, cs.EndCall)
    actions = session.on_event(ev.ResponseDone(), T0 + 3)
    assert of(actions, cs.EndCall) == [cs.EndCall(Call.EndReason.AGENT_ENDED, wait_for_playback=True,
                                                  close_twilio=True)]
    assert session.on_mark(cs.END_MARK) is True


def test_an_http_tool_runs_and_its_result_waits_for_the_response_to_finish():
    session = live_session()
    session.on_event(ev.ResponseStarted(), T0)
    actions = session.on_event(ev.FunctionCall("call_1", "lookup", '{"id": 1}'), T0 + 1)
    [run] = of(actions, cs.RunTool)
    assert (run.call_id, run.name, run.arguments, run.spec["url"]) == (
        "call_1", "lookup", '{"id": 1}', "https://tools.example.com/lookup")
    actions = session.tool_done("call_1", "lookup", '{"ok": true}', T0 + 2)
    assert kinds(actions) == ["tool_result"]
    assert [e["type"] for e in upstream(actions)] == ["conversation.item.create"]  # no response.create yet
    assert [e["type"] for e in upstream(session.on_event(ev.ResponseDone(), T0 + 3))] == ["response.create"]
    assert upstream(session.on_event(ev.ResponseDone(), T0 + 4)) == []  # asked once


def test_an_unknown_tool_gets_an_error_result_at_once():
    session = live_session()
    actions = session.on_event(ev.FunctionCall("call_9", "nope", "{}"), T0)
    events = upstream(actions)
    assert json.loads(events[0]["item"]["output"]) == {"ok": False, "error": "unknown tool 'nope'"}
    assert events[1] == {"type": "response.create"}


def test_a_keypress_interrupts_and_is_told_to_the_model():
    session = live_session()
    session.on_event(ev.ResponseStarted(), T0)
    session.agent_audio(ev.AgentAudio(payload(800), "item_1"), T0)
    actions = session.on_dtmf("5", T0 + 1)
    assert kinds(actions) == ["dtmf", "barge_in"]
    types = [e["type"] for e in upstream(actions)]
    assert types == ["response.cancel", "conversation.item.truncate", "conversation.item.create"]
    assert [e["type"] for e in upstream(session.on_event(ev.ResponseDone(), T0 + 2))] == ["response.create"]


def test_errors_are_recorded_and_only_fatal_ones_end_the_call():
    session = live_session()
    engine = session.engine
    ignored = engine.parse(json.dumps({"type": "error", "error": {"type": "invalid_request_error",
                                                                  "code": "response_cancel_not_active"}}))
    assert ignored is None
    actions = session.on_event(ev.EngineError("invalid_request_error", "bad", "nope"), T0)
    assert kinds(actions) == ["error"] and not of(actions, cs.EndCall)
    actions = session.on_event(ev.EngineError("server_error", "", "boom", fatal=True), T0)
    assert of(actions, cs.EndCall)[0].reason == Call.EndReason.UPSTREAM_ERROR


def test_the_call_ends_once_and_a_failed_call_is_published_as_failed():
    session = live_session()
    actions = session.upstream_lost(T0 + 5, "OpenAI connection lost")
    assert kinds(actions) == ["error"] and of(actions, cs.EndCall)[0].reason == Call.EndReason.UPSTREAM_ERROR
    assert session.end(Call.EndReason.CALLER_HANGUP, T0 + 6) == []
    assert session.upstream_lost(T0 + 6, "again") == []
    actions = session.finished(T0 + 7, stored=None)  # the database was unreachable
    [ended] = of(actions, cs.Publish)
    assert ended.live["what"] == "ended"
    assert ended.live["call"]["status"] == Call.Status.FAILED
    assert ended.live["call"]["end_reason"] == Call.EndReason.UPSTREAM_ERROR
    assert session.phase is cs.Phase.ENDED


def test_usage_is_summed_over_responses():
    session = live_session()
    session.on_event(ev.ResponseDone({"input_tokens": 10, "output_tokens": 5,
                                      "input_token_details": {"audio_tokens": 8}}), T0)
    session.on_event(ev.ResponseDone({"input_tokens": 1, "output_tokens": 2,
                                      "input_token_details": {"audio_tokens": 1}}), T0)
    assert session.usage == {"input_tokens": 11, "output_tokens": 7, "input_token_details": {"audio_tokens": 9}}


def test_transcripts_are_recorded_and_kept_for_a_handover():
    session = live_session()
    assert kinds(session.on_event(ev.CallerTranscript("When do you open?", "item_1"), T0)) == ["caller"]
    assert kinds(session.on_event(ev.AgentTranscript("At eight.", "item_2"), T0)) == ["agent"]
    assert session.transcript == [("caller", "When do you open?"), ("agent", "At eight.")]


def test_silence_is_reprompted_once_by_the_server_then_the_agent_says_goodbye_and_ends():
    session = live_session()
    actions = session.on_event(ev.IdleTimeout(), T0 + 10)
    assert kinds(actions) == ["status"] and upstream(actions) == []  # the server asks by itself
    session.on_event(ev.ResponseStarted(), T0 + 10)
    session.on_event(ev.ResponseDone(), T0 + 12)
    actions = session.on_event(ev.IdleTimeout(), T0 + 20)
    assert kinds(actions) == ["status"]
    # The server's own answer to this silence is cancelled and not played; the goodbye replaces it.
    assert [e["type"] for e in upstream(session.on_event(ev.ResponseStarted(), T0 + 20))] == ["response.cancel"]
    assert session.agent_audio(ev.AgentAudio(payload(800), "item_x"), T0) is None
    goodbye = upstream(session.on_event(ev.ResponseDone(), T0 + 21))
    assert goodbye[0]["type"] == "response.create" and "goodbye" in goodbye[0]["response"]["instructions"]
    assert session.agent_audio(ev.AgentAudio(payload(800), "item_bye"), T0) is not None
    actions = session.on_event(ev.ResponseDone(), T0 + 23)
    assert of(actions, cs.EndCall)[0].reason == Call.EndReason.AGENT_ENDED


def test_the_caller_speaking_resets_the_silence_count():
    session = live_session()
    session.on_event(ev.IdleTimeout(), T0 + 10)
    session.on_event(ev.CallerSpeechStarted(), T0 + 11)
    session.on_event(ev.IdleTimeout(), T0 + 30)
    assert upstream(session.on_event(ev.ResponseStarted(), T0 + 30)) == []  # a reprompt again, not a goodbye


def test_a_handover_waits_for_a_quiet_moment_and_carries_the_conversation():
    session = make_session(handover_after_s=3300)
    actions = session.start(T0, api_key_set=True)
    assert cs.StartTimer(cs.HANDOVER_TIMER, 3300) not in actions  # the call's limit (600 s) comes first
    session = make_session(snapshot={**SNAPSHOT, "max_call_seconds": 7200}, handover_after_s=3300)
    assert cs.StartTimer(cs.HANDOVER_TIMER, 3300) in session.start(T0, api_key_set=True)
    session.upstream_open()
    while session.pop_early_audio() is not None:
        pass
    session.on_event(ev.CallerTranscript("Hi", "i1"), T0 + 1)
    session.on_event(ev.AgentTranscript("Hello", "i2"), T0 + 2)
    session.on_event(ev.ResponseStarted(), T0 + 3300)
    assert session.on_timer(cs.HANDOVER_TIMER, T0 + 3300) == []  # the agent is talking
    session.on_event(ev.CallerSpeechStarted(), T0 + 3300.5)  # … and the caller talks over it
    assert session.on_event(ev.ResponseDone(), T0 + 3301) == []
    assert session.on_event(ev.CallerSpeechStopped(), T0 + 3302) == []  # the answer to that turn is due
    session.on_event(ev.ResponseStarted(), T0 + 3302)
    assert session.on_event(ev.ResponseDone(), T0 + 3303) == [cs.HandOver()]
    assert session.on_event(ev.ResponseDone(), T0 + 3304) == []  # one handover at a time
    opening = [json.loads(t) for t in session.handover_opening()]
    for event in opening:
        validate_client_event(event)
    assert opening[0]["type"] == "session.update"
    assert opening[0]["session"]["instructions"].startswith("You answer the phone.")
    assert [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in opening[1:]] == [
        ("user", "Hi"), ("assistant", "Hello")]
    actions = session.handed_over(T0 + 3302)
    assert kinds(actions) == ["status"] and cs.StartTimer(cs.HANDOVER_TIMER, 3300) in actions


def test_a_protocol_error_on_the_stream_ends_the_call_without_closing_twilio_twice():
    session = live_session()
    actions = session.stream_error("media payload is not base64", T0 + 1)
    assert kinds(actions) == ["error"]
    assert of(actions, cs.EndCall) == [cs.EndCall(Call.EndReason.PROTOCOL_ERROR, False, close_twilio=False)]
    assert session.agent_audio(ev.AgentAudio(payload(800), "item_1"), T0) is None


@pytest.mark.parametrize("snapshot", [{}, {"name": "x"}])
def test_config_defaults_live_in_the_typed_config(snapshot):
    config = CallConfig.from_snapshot(snapshot, "gpt-realtime")
    assert config.model == "gpt-realtime" and config.engine == "realtime"
    assert config.max_call_seconds == 3300 and config.interrupt_response is True and config.greeting == ""


# --- the GPT-Live engine through the same session ------------------------------------------------------------


def live_engine_session() -> cs.CallSession:
    from bridge.live_engine import LiveEngine

    snapshot = {**SNAPSHOT, "engine": "live", "model": "gpt-live-1.1"}
    call = Call(id=8, twilio_call_sid="CA" + "3" * 32, stream_sid="MZ" + "4" * 32, config_snapshot=snapshot)
    return cs.CallSession(call, CallConfig.from_snapshot(snapshot, "gpt-realtime"), LiveEngine(snapshot), T0,
                          handover_after_s=3300)


def live_event(**event) -> str:
    return json.dumps({"event_id": "ev_1", **event})


def started_live_engine_session() -> cs.CallSession:
    session = live_engine_session()
    session.start(T0, api_key_set=True)
    session.upstream_open()
    session.on_event(session.engine.parse(live_event(type="session.started", session={"id": "live_1"})), T0)
    while session.pop_early_audio() is not None:
        pass
    return session


def test_live_holds_audio_and_the_greeting_until_the_session_started():
    from calls.simulators.validation import validate_live_client_event

    session = live_engine_session()
    actions = session.start(T0, api_key_set=True)
    assert not any(type(a) is cs.StartTimer and a.name == cs.HANDOVER_TIMER for a in actions)  # no handover
    opening = session.upstream_open()
    assert [json.loads(a.text)["type"] for a in opening] == ["session.start"]
    assert session.caller_audio(payload(160, 1), 0) is None and session.phase is cs.Phase.STARTING
    started = session.engine.parse(live_event(type="session.started", session={"id": "live_1"}))
    actions = session.on_event(started, T0 + 1)
    texts = [json.loads(a.text) for a in actions if type(a) is cs.SendUpstream]
    assert [e["type"] for e in texts] == ["session.commentary.append"] and of(actions, cs.FlushEarlyAudio)
    assert json.loads(session.pop_early_audio()) == {"type": "session.input_audio.append", "audio": payload(160, 1)}
    assert session.pop_early_audio() is None and session.phase is cs.Phase.LIVE
    for text in [a.text for a in opening] + [json.dumps(e) for e in texts]:
        validate_live_client_event(json.loads(text))


def test_live_caller_words_clear_queued_audio_and_transcripts_become_lines():
    session = started_live_engine_session()
    engine = session.engine
    audio_event = engine.parse(json.dumps({"type": "session.output_audio.delta", "delta": payload(8000)}))
    assert session.agent_audio(audio_event, T0) is not None  # 1 s queued at Twilio
    agent_words = live_event(type="session.output_transcript.delta", delta="Hello there", start_ms=0, end_ms=900)
    assert session.on_event(engine.parse(agent_words), T0) == []  # the line is still open
    caller_ack = live_event(type="session.input_transcript.delta", delta="Mhm.", start_ms=950, end_ms=1200)
    actions = session.on_event(engine.parse(caller_ack), T0 + 1)
    assert kinds(actions) == ["agent"] and not of(actions, cs.SendTwilio)  # a back-channel does not interrupt
    caller_words = live_event(type="session.input_transcript.delta", delta=" wait, no", start_ms=1300, end_ms=1600)
    actions = session.on_event(engine.parse(caller_words), T0 + 2)
    assert of(actions, cs.SendTwilio)[0].text.startswith('{"event":"clear"') and kinds(actions) == ["barge_in"]
    assert upstream(actions) == []  # nothing to truncate or cancel: the model stopped by itself
    later = engine.parse(json.dumps({"type": "session.output_audio.delta", "delta": payload(160)}))
    assert session.agent_audio(later, T0) is not None  # new output after the clear plays
    closed = live_event(type="session.closed", reason="close_requested", usage={"seconds": 42.0}, session={})
    actions = session.on_event(engine.parse(closed), T0 + 3)
    assert [(a.event["kind"], a.event["text"]) for a in of(actions, cs.Record)] == [("caller", "Mhm. wait, no")]
    assert session.usage == {"seconds": 42.0}


def test_live_tools_errors_and_usage():
    session = started_live_engine_session()
    engine = session.engine
    call = live_event(type="response.event", delegation_id="del_1", event={
        "type": "response.output_item.done", "item": {"type": "function_call", "status": "completed",
                                                      "call_id": "call_1", "name": "lookup", "arguments": "{}"}})
    assert of(session.on_event(engine.parse(call), T0), cs.RunTool)
    types = [json.loads(a.text)["type"] for a in session.tool_done("call_1", "lookup", "{}", T0) if
             type(a) is cs.SendUpstream]
    assert types == ["response.item.create", "response.create"]
    done = live_event(type="response.event", delegation_id="del_1", event={
        "type": "response.completed", "response": {"usage": {"input_tokens": 100, "output_tokens": 20}}})
    session.on_event(engine.parse(done), T0)
    session.on_event(engine.parse(done), T0)
    session.on_event(engine.parse(live_event(type="session.usage.updated", usage={"seconds": 30.0})), T0)
    assert session.usage == {"backend": {"input_tokens": 200, "output_tokens": 40}, "seconds": 30.0}
    key = live_event(type="error", error={"type": "invalid_request_error", "code": "invalid_api_key",
                                          "message": "Incorrect API key"})
    assert of(session.on_event(engine.parse(key), T0), cs.EndCall)[0].reason == Call.EndReason.UPSTREAM_ERROR
    assert [json.loads(t)["type"] for t in engine.close()] == ["session.close"]
