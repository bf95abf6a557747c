"""The lifecycle metrics CallSession asks for (`Measure` actions) and the reply latency it keeps for the
transcript: measured at lifecycle points only, with the time passed in."""

from __future__ import annotations

from bridge import engine as ev
from bridge import metrics
from bridge import session as cs
from calls.models import Call
from tests.bridge_session.test_call_session import T0, kinds, live_session, make_session, of, payload


def measures(actions: list[cs.Action]) -> list[tuple[str, float]]:
    return [(m.name, m.value) for m in of(actions, cs.Measure)]


def send_agent_audio(session: cs.CallSession, item_id: str, now: float) -> list[cs.Action]:
    """What the consumer does: the audio goes to Twilio, then (while awaited) `agent_audio_sent`."""
    assert session.agent_audio(ev.AgentAudio(payload(160), item_id), now) is not None
    return session.agent_audio_sent(now) if session.awaiting_agent_audio else []


def test_time_to_first_agent_audio_once_then_reply_latency_per_turn_on_the_transcript():
    session = live_session()
    assert session.awaiting_agent_audio
    assert measures(send_agent_audio(session, "greet", T0 + 1.25)) == [(metrics.TIME_TO_FIRST_AGENT_AUDIO_MS, 1250)]
    assert not session.awaiting_agent_audio  # the rest of the greeting costs the consumer one bool per frame
    assert send_agent_audio(session, "greet", T0 + 1.3) == []

    session.on_event(ev.CallerSpeechStarted(), T0 + 5)
    session.on_event(ev.CallerSpeechStopped(), T0 + 6)
    assert session.awaiting_agent_audio
    assert measures(send_agent_audio(session, "a1", T0 + 6.8)) == [(metrics.REPLY_LATENCY_MS, 800)]
    actions = session.on_event(ev.AgentTranscript("Sure.", "a1"), T0 + 7)
    (record,) = of(actions, cs.Record)
    assert record.event["data"]["reply_ms"] == 800
    # Once: a later transcript of another item carries none.
    session.on_event(ev.CallerSpeechStopped(), T0 + 8)
    (record,) = of(session.on_event(ev.AgentTranscript("Hm.", "a0"), T0 + 8.1), cs.Record)
    assert "reply_ms" not in record.event["data"]


def test_the_reply_the_caller_talked_over_is_not_the_answer():
    session = live_session()
    send_agent_audio(session, "greet", T0 + 1)
    session.on_event(ev.CallerSpeechStopped(), T0 + 2)  # a turn ends (no barge-in: the greeting goes on)
    assert send_agent_audio(session, "greet", T0 + 2.1) == []  # still the greeting
    assert session.awaiting_agent_audio
    assert measures(send_agent_audio(session, "a1", T0 + 2.5)) == [(metrics.REPLY_LATENCY_MS, 500)]


def test_barge_in_counts_and_the_suppressed_audio_is_reported_as_dropped_at_the_end():
    session = live_session()
    send_agent_audio(session, "greet", T0 + 1)
    actions = session.on_event(ev.CallerSpeechStarted(), T0 + 2)
    assert measures(actions) == [(metrics.BARGE_INS, 1)]
    for _ in range(3):
        assert session.agent_audio(ev.AgentAudio(payload(160), "greet"), T0 + 2) is None
    session.end(Call.EndReason.CALLER_HANGUP, T0 + 3, close_twilio=False)
    finished = session.finished(T0 + 3, None)
    assert [(m.name, m.value, m.dimensions) for m in of(finished, cs.Measure)] == [
        (metrics.FRAMES_DROPPED, 3, ((metrics.DIRECTION, "agent"),))
    ]


def test_caller_frames_lost_from_a_full_early_audio_buffer_are_counted():
    session = make_session()
    session.start(T0, api_key_set=True)
    for _ in range(cs.EARLY_AUDIO_FRAMES + 7):
        assert session.caller_audio(payload(160), 0) is None
    session.end(Call.EndReason.CALLER_HANGUP, T0 + 1, close_twilio=False)
    assert [(m.name, m.value, m.dimensions) for m in of(session.finished(T0 + 1, None), cs.Measure)] == [
        (metrics.FRAMES_DROPPED, 7, ((metrics.DIRECTION, "caller"),))
    ]


def test_upstream_errors_are_counted():
    session = live_session()
    actions = session.on_event(ev.EngineError("server_error", "x", "boom"), T0 + 1)
    assert measures(actions) == [(metrics.UPSTREAM_ERRORS, 1)]
    actions = session.on_event(ev.ResponseDone(failure={"message": "bad"}), T0 + 2)
    assert measures(actions) == [(metrics.UPSTREAM_ERRORS, 1)]
    actions = session.upstream_lost(T0 + 3, "OpenAI connection lost")
    assert measures(actions) == [(metrics.UPSTREAM_ERRORS, 1)] and kinds(actions) == ["error"]
    assert session.upstream_lost(T0 + 4, "again") == []  # already ending: counted once
