"""The session's keypad menu, warm transfer and recording hooks, on both engines: actions out, no I/O."""

from __future__ import annotations

import json

import pytest

from bridge import engine as ev
from bridge import session as cs
from bridge.call_config import CallConfig
from bridge.live_engine import LiveEngine
from bridge.realtime_engine import RealtimeEngine
from bridge.recording import CallRecorder
from calls.models import Call
from calls.simulators.validation import validate_client_event, validate_live_client_event
from tests.bridge_session.test_call_session import SNAPSHOT, T0, kinds, of, payload

TRANSFER_TOOL = {"kind": "builtin", "name": "transfer_call", "description": "Transfer.",
                 "parameters": {"type": "object"}}
MENU = {"0": "transfer", "9": "repeat", "#": "end", "5": "model"}


def session_for(engine: str, recorder: CallRecorder | None = None, **snapshot_extra) -> cs.CallSession:
    snapshot = {**SNAPSHOT, "engine": engine, "model": "gpt-live-1.1" if engine == "live" else "gpt-realtime-2.1",
                "tools": [*SNAPSHOT["tools"], TRANSFER_TOOL], "transfer_number": "+14155550199",
                "dtmf_actions": MENU, **snapshot_extra}
    call = Call(id=9, twilio_call_sid="CA" + "5" * 32, stream_sid="MZ" + "6" * 32, config_snapshot=snapshot)
    codec = LiveEngine(snapshot) if engine == "live" else RealtimeEngine(snapshot)
    session = cs.CallSession(call, CallConfig.from_snapshot(snapshot, "gpt-realtime"), codec, T0, recorder=recorder)
    session.start(T0, api_key_set=True)
    session.upstream_open()
    if engine == "live":
        session.on_event(ev.Ready(), T0)
    while session.pop_early_audio() is not None:
        pass
    return session


def sent(session: cs.CallSession, actions: list[cs.Action]) -> list[dict]:
    events = [json.loads(a.text) for a in actions if type(a) is cs.SendUpstream]
    validate = validate_live_client_event if session.engine.name == "live" else validate_client_event
    for event in events:
        validate(event)
    return events


ENGINES = ["realtime", "live"]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_unmapped_key_tells_the_model(engine):
    session = session_for(engine)
    actions = session.on_dtmf("1", T0 + 1)
    assert [a.event["data"] for a in of(actions, cs.Record)] == [{"action": "model"}]
    notes = json.dumps(sent(session, actions))
    assert "pressed 1 on the keypad" in notes and not of(actions, cs.EndCall)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_end_key_ends_the_call(engine):
    session = session_for(engine)
    actions = session.on_dtmf("#", T0 + 1)
    assert of(actions, cs.EndCall)[0].reason == Call.EndReason.AGENT_ENDED
    assert sent(session, actions) == []  # the model is not asked anything


@pytest.mark.parametrize("engine", ENGINES)
def test_the_transfer_key_transfers_with_a_summary(engine):
    session = session_for(engine)
    session.on_event(ev.CallerTranscript("I need to change my booking."), T0 + 1)
    actions = session.on_dtmf("0", T0 + 2)
    end = of(actions, cs.EndCall)[0]
    assert end.reason == Call.EndReason.TRANSFERRED
    assert "pressed 0" in end.transfer_summary and "“I need to change my booking.”" in end.transfer_summary
    transfer = next(a.event for a in of(actions, cs.Record) if a.event["kind"] == "status")
    assert transfer["data"]["transfer"] == {"mode": "warm", "reason": "the caller pressed 0 on the keypad to speak "
                                            "to a person", "summary": end.transfer_summary}


@pytest.mark.parametrize("engine", ENGINES)
def test_the_repeat_key_has_the_agent_say_its_last_line_again(engine):
    session = session_for(engine)
    session.on_event(ev.AgentTranscript("We open at eight."), T0 + 1)
    actions = session.on_dtmf("9", T0 + 2)
    events = sent(session, actions)
    assert "We open at eight." in json.dumps(events) and not of(actions, cs.EndCall)
    if engine == "realtime":
        assert events[-1]["type"] == "response.create"  # nothing is playing: the model answers now


@pytest.mark.parametrize("engine", ENGINES)
def test_repeat_before_the_line_is_transcribed_still_asks_for_it(engine):
    session = session_for(engine)
    actions = session.on_dtmf("9", T0 + 1)
    assert [a.event["data"] for a in of(actions, cs.Record)] == [{"action": "repeat"}]
    assert "hear your last sentence again. Say it again, word for word." in json.dumps(sent(session, actions))


def test_a_transfer_key_without_a_transfer_number_tells_the_model():
    snapshot = {**SNAPSHOT, "dtmf_actions": {"0": "transfer"}}  # the snapshot drops it (services.config_snapshot)
    config = CallConfig.from_snapshot({**snapshot, "dtmf_actions": {}}, "m")
    assert config.keypad_action("0") == "model"
    assert CallConfig.from_snapshot({**snapshot, "dtmf_actions": {"0": "dance", "1": ["end"]}}, "m").keypad == {}


def test_the_transfer_tool_asks_for_a_connecting_line_when_the_model_said_nothing():
    session = session_for("realtime")
    session.on_event(ev.CallerTranscript("Can I talk to someone about my bill?"), T0 + 1)
    session.on_event(ev.ResponseStarted(), T0 + 2)
    call = ev.FunctionCall("c1", "transfer_call", json.dumps({"reason": "billing question"}))
    actions = session.on_event(call, T0 + 2)
    assert kinds(actions) == ["tool_call", "tool_result"] and not of(actions, cs.EndCall)
    actions = session.on_event(ev.ResponseDone(), T0 + 3)  # the response held only the tool call
    events = sent(session, actions)
    assert events[0]["type"] == "response.create" and "connecting" in events[0]["response"]["instructions"]
    assert not of(actions, cs.EndCall)
    session.agent_audio(ev.AgentAudio(payload(800), "item_connecting"), T0 + 3)
    actions = session.on_event(ev.ResponseDone(), T0 + 4)
    end = of(actions, cs.EndCall)[0]
    assert end.reason == Call.EndReason.TRANSFERRED and end.wait_for_playback
    assert end.transfer_summary.startswith("A call transferred by the Front desk assistant. Reason: billing question.")
    assert "Can I talk to someone about my bill?" in end.transfer_summary


def test_the_transfer_tool_after_the_model_spoke_ends_after_that_line_plays():
    session = session_for("realtime")
    session.on_event(ev.ResponseStarted(), T0 + 1)
    session.agent_audio(ev.AgentAudio(payload(800), "item_1"), T0 + 1)  # "I'll connect you now."
    session.on_event(ev.FunctionCall("c1", "transfer_call", "{}"), T0 + 1)
    actions = session.on_event(ev.ResponseDone(), T0 + 2)
    assert sent(session, actions) == []
    end = of(actions, cs.EndCall)[0]
    assert end.reason == Call.EndReason.TRANSFERRED and end.wait_for_playback
    assert end.transfer_summary == "A call transferred by the Front desk assistant."


def test_a_cold_transfer_is_recorded_as_cold():
    session = session_for("live", transfer_mode="cold")
    actions = session.on_event(ev.FunctionCall("c1", "transfer_call", '{"reason": "sales"}'), T0 + 1)
    assert of(actions, cs.EndCall)[0].reason == Call.EndReason.TRANSFERRED
    status = next(a.event for a in of(actions, cs.Record) if a.event["kind"] == "status")
    assert status["text"] == "transferring to a person (cold)" and status["data"]["transfer"]["mode"] == "cold"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_recorder_gets_both_legs_and_keeps_only_what_was_heard(engine):
    recorder = CallRecorder()
    session = session_for(engine, recorder=recorder, record_calls=True)
    assert session.config.record_calls
    session.caller_audio(payload(160, 0x10), 1000)
    for _ in range(10):  # 1 s of the agent, forwarded at t=2 s (ahead of playback)
        assert session.agent_audio(ev.AgentAudio(payload(800, 0x20), "item_1"), T0 + 2) is not None
    session.on_mark("p3")  # Twilio played 300 ms
    if engine == "realtime":
        session.on_event(ev.CallerSpeechStarted(), T0 + 2.4)
    else:
        session.on_event(ev.CallerHeard("wait, stop, I have a question"), T0 + 2.4)
    caller, agent = recorder.channels(3000)
    assert caller[8000:8160] == bytes([0x10]) * 160  # at Twilio's timestamp
    assert agent[16000:18400] == bytes([0x20]) * 2400  # the 300 ms heard, from t=2 s
    assert agent[18400:] == bytes([0xFF]) * (24000 - 18400)  # cleared at Twilio: not kept


def test_a_recorder_that_hit_its_limit_says_so_in_the_events():
    recorder = CallRecorder(max_ms=100)
    session = session_for("realtime", recorder=recorder, record_calls=True)
    session.caller_audio(payload(160), 200)
    session.end(Call.EndReason.CALLER_HANGUP, T0 + 1)
    actions = session.finished(T0 + 1, None)
    assert "recording stopped at its length limit" in [a.event["text"] for a in of(actions, cs.Record)][-1]
