"""A call's stream after a transfer nobody took (`Call.TransferState.RETURNED`), on both engines: the session
carries on where the first stream left off (the conversation, the events' numbering and clock, the usage, the
time left), tells the model why the transfer failed and has it say it is back. Actions out, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bridge import engine as ev
from bridge import session as cs
from bridge.call_config import CallConfig
from bridge.live_engine import LiveEngine
from bridge.realtime_engine import HANDOVER_NOTE, RealtimeEngine
from bridge.transfer import BACK_LINE
from calls import services
from calls.models import Call, CallEvent
from tests.bridge_session.test_call_session import SNAPSHOT, T0, of
from tests.bridge_session.test_keypad_transfer_recording import ENGINES, TRANSFER_TOOL, sent

STARTED = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
BACK_AFTER_S = 90  # the first stream and the ringing
EARLIER = [("agent", "Hello!"), ("caller", "Can I talk to someone about my bill?"),
           ("agent", "I am connecting you to a colleague now.")]


def returned_call(engine: str, usage: dict | None = None, dial_status: str = "busy") -> Call:
    snapshot = {**SNAPSHOT, "engine": engine, "model": "gpt-live-1.1" if engine == "live" else "gpt-realtime-2.1",
                "tools": [*SNAPSHOT["tools"], TRANSFER_TOOL], "transfer_number": "+14155550199"}
    call = Call(id=9, twilio_call_sid="CA" + "5" * 32, stream_sid="MZ" + "7" * 32, config_snapshot=snapshot,
                status=Call.Status.IN_PROGRESS, started_at=STARTED,
                stream_started_at=STARTED + timedelta(seconds=BACK_AFTER_S), stream_count=2,
                transfer_state=Call.TransferState.RETURNED, transfer_dial_status=dial_status, usage=usage or {})
    # As services.claim_stream prefetches it.
    call.conversation = [CallEvent(kind=kind, text=text) for kind, text in EARLIER]
    return call


def session_for(call: Call) -> cs.CallSession:
    snapshot = call.config_snapshot
    codec = LiveEngine(snapshot) if snapshot["engine"] == "live" else RealtimeEngine(snapshot)
    return cs.CallSession(call, CallConfig.from_snapshot(snapshot, "gpt-realtime"), codec, T0)


def opened(session: cs.CallSession) -> list[dict]:
    """Everything the session sends the engine until audio flows."""
    actions = session.upstream_open()
    if session.engine.name == "live":
        actions += session.on_event(ev.Ready(), T0 + 0.5)
    return sent(session, actions)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_stream_says_why_and_goes_on_with_the_calls_numbering_clock_and_time_left(engine):
    session = session_for(returned_call(engine))
    actions = session.start(T0, api_key_set=True)
    status = of(actions, cs.Record)[0].event
    assert status["text"] == "back with the agent: the transfer was not answered (the line was busy)"
    assert status["data"] == {"transfer": {"outcome": "returned", "dial_status": "busy", "why": "the line was busy"}}
    # After every event of the first stream and of the webhook after it; at the call's clock, not the stream's.
    assert status["seq"] == services.stream_seq_base(2) + 1 > services.AFTER_STREAM_SEQ
    assert status["t_ms"] == BACK_AFTER_S * 1000
    timer = next(a for a in of(actions, cs.StartTimer) if a.name == cs.MAX_CALL_TIMER)
    assert timer.seconds == SNAPSHOT["max_call_seconds"] - BACK_AFTER_S
    line = session.on_event(ev.CallerTranscript("Can you take a message?"), T0 + 5)
    assert of(line, cs.Record)[0].event["t_ms"] == (BACK_AFTER_S + 5) * 1000


def test_realtime_gets_the_conversation_as_history_then_the_note_then_says_it_is_back():
    session = session_for(returned_call("realtime"))
    session.start(T0, api_key_set=True)
    events = opened(session)
    assert [e["type"] for e in events] == ["session.update"] + ["conversation.item.create"] * 4 + ["response.create"]
    assert HANDOVER_NOTE in events[0]["session"]["instructions"]  # no new greeting: it carries on
    history = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in events[1:4]]
    assert history == [("assistant", "Hello!"), ("user", "Can I talk to someone about my bill?"),
                       ("assistant", "I am connecting you to a colleague now.")]
    note = events[4]["item"]["content"][0]["text"]
    assert "transfer of the caller to a colleague did not go through: the line was busy" in note
    assert "take a message" in note and "The conversation before" not in note  # it has the history already
    assert BACK_LINE in events[5]["response"]["instructions"]
    assert "Hello, how can I help" not in json.dumps(events)  # the config's greeting is not said again


def test_gpt_live_gets_the_note_with_the_conversation_quoted_then_says_it_is_back():
    session = session_for(returned_call("live", dial_status="no-answer"))
    session.start(T0, api_key_set=True)
    events = opened(session)
    assert [e["type"] for e in events] == ["session.start", "session.thinking.append", "session.commentary.append"]
    note = events[1]["content"]
    assert "did not go through: nobody answered" in note
    assert "Caller: Can I talk to someone about my bill?" in note and "You: Hello!" in note
    assert BACK_LINE in events[2]["content"]


def test_realtime_usage_goes_on_from_the_calls_total():
    session = session_for(returned_call("realtime", usage={"input_tokens": 1000, "output_tokens": 400}))
    session.start(T0, api_key_set=True)
    session.on_event(ev.ResponseDone(usage={"input_tokens": 300, "output_tokens": 100}), T0 + 3)
    assert session.usage == {"input_tokens": 1300, "output_tokens": 500}


def test_gpt_live_billed_seconds_add_to_the_earlier_streams():
    """GPT-Live reports its session's billed seconds so far (cumulative): the call's are the earlier streams' plus
    this session's, not this session's alone."""
    session = session_for(returned_call("live", usage={"seconds": 60.0, "backend": {"input_tokens": 50}}))
    session.start(T0, api_key_set=True)
    session.on_event(ev.Usage({"seconds": 10.0}), T0 + 10)
    session.on_event(ev.Usage({"seconds": 25.0}), T0 + 25)
    session.on_event(ev.Usage({"backend": {"input_tokens": 20}}, cumulative=False), T0 + 26)
    assert session.usage == {"seconds": 85.0, "backend": {"input_tokens": 70}}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_transfer_summarises_the_whole_conversation(engine):
    session = session_for(returned_call(engine))
    session.start(T0, api_key_set=True)
    opened(session)
    while session.pop_early_audio() is not None:
        pass
    actions = session.on_event(ev.FunctionCall("c2", "transfer_call", '{"reason": "billing, second try"}'), T0 + 8)
    end = of(actions, cs.EndCall)[0]
    assert end.reason == Call.EndReason.TRANSFERRED
    assert "billing, second try" in end.transfer_summary
    assert "“Can I talk to someone about my bill?”" in end.transfer_summary  # said on the first stream


def test_a_stream_ended_for_a_transfer_says_the_call_goes_on():
    session = session_for(returned_call("realtime"))
    session.start(T0, api_key_set=True)
    session.end(Call.EndReason.TRANSFERRED, T0 + 9)
    stored = returned_call("realtime")
    stored.transfer_state = Call.TransferState.DIALING
    status = of(session.finished(T0 + 10, stored), cs.Record)[0].event
    assert status["text"] == "the agent's stream ended: the caller is being transferred"
    ended = returned_call("realtime")
    ended.status, ended.end_reason = Call.Status.COMPLETED, Call.EndReason.AGENT_ENDED
    assert of(session.finished(T0 + 10, ended), cs.Record)[0].event["text"] == "call ended: transferred"


def test_a_first_stream_is_not_a_return():
    call = returned_call("realtime")
    call.stream_count, call.transfer_state = 1, Call.TransferState.NONE
    session = session_for(call)
    status = of(session.start(T0, api_key_set=True), cs.Record)
    assert status == [] and session.transcript == []
    events = opened(session)
    assert HANDOVER_NOTE not in events[0]["session"]["instructions"]
