"""One phone call's state machine: Twilio on one side, an OpenAI engine on the other. No I/O, no clock.

`CallSession` takes parsed Twilio messages and engine events (`bridge.engine`), with the time passed in, and
returns actions for the consumer to run (`bridge.consumer` owns the sockets, the database and the tasks):

    SendTwilio(text)  SendUpstream(text)  Record(event, live)  Publish(live)  RunTool(call_id, name, args, spec)
    OpenUpstream()  FlushEarlyAudio()  StartTimer(name, seconds)  HandOver()  EndCall(reason, …)
    Measure(name, value, …)  (a lifecycle metric, `bridge.metrics`)

The audio hot path returns ready-to-send text instead of action objects: `caller_audio(payload)` (the upstream
text, or None while it is buffered or dropped) and `agent_audio(event)` (a mark to send first or None, and Twilio's
media text; or None). Marks go every `bridge.playback.MARK_EVERY_MS` of agent audio and at the end of a response.
While `awaiting_agent_audio`, the consumer also calls `agent_audio_sent(now)` after sending agent audio: the
time to the first agent audio of the call, and of each answer to a caller's turn (its reply latency).

Phases: STARTING (upstream not open yet: caller audio is kept, up to 2 s) → LIVE → ENDING (the end is being
recorded and the sockets closed) → ENDED. The phases are the stream's: a stream that ends for a transfer leaves
the call live (the caller waits on Twilio's <Dial>), and when nobody answered the call comes back on a new stream
(`Call.TransferState.RETURNED`), whose session carries on where the first left off: the conversation, the
events' numbering and clock, the usage so far and the time left (see `CallSession.__init__`).
A response "in progress" is separate state (`response_active`): tool results, keypress notes and a built-in end
wait for it to finish before the next `response.create`.
"""

from __future__ import annotations

import copy
import enum
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from bridge import engine as ev
from bridge import metrics
from bridge import twilio_media as tw
from bridge.call_config import CallConfig
from bridge.engine import Engine
from bridge.playback import PlaybackTracker
from bridge.recording import CallRecorder
from bridge.transfer import BACK_LINE, back_from_transfer_note, reason_from_arguments, transfer_summary
from calls import live_feed
from calls.models import Call
from calls.services import status_after, stream_seq_base
from calls.transfers import unanswered_why

EARLY_AUDIO_FRAMES = 100  # 2 s of caller audio kept while the upstream session opens
END_MARK = "end"
MAX_CALL_TIMER = "max_call"
CONNECTING = "Tell the caller in one short sentence that you are connecting them to a colleague now."
HANDOVER_TIMER = "handover"


class Phase(enum.Enum):
    STARTING = "starting"
    LIVE = "live"
    ENDING = "ending"
    ENDED = "ended"


class Goodbye(enum.Enum):
    """The polite end after the caller stayed silent twice."""

    NONE = "none"
    WAITING = "waiting"  # for the server's own answer to the silence, to cancel it
    SAYING = "saying"


# --- actions -----------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class SendTwilio:
    text: str


@dataclass(slots=True, frozen=True)
class SendUpstream:
    text: str


@dataclass(slots=True, frozen=True)
class Record:
    """Store `event` (batched, off the audio path) and publish `live` to the dashboard."""

    event: dict[str, Any]
    live: dict[str, Any]


@dataclass(slots=True, frozen=True)
class Publish:
    live: dict[str, Any]


@dataclass(slots=True, frozen=True)
class RunTool:
    """Run an HTTP tool; hand its output to `CallSession.tool_done`."""

    call_id: str
    name: str
    arguments: str
    spec: dict[str, Any]


@dataclass(slots=True, frozen=True)
class OpenUpstream:
    pass


@dataclass(slots=True, frozen=True)
class FlushEarlyAudio:
    """Send what `pop_early_audio` gives, in order, until it returns None (the session is then live)."""


@dataclass(slots=True, frozen=True)
class StartTimer:
    """Call `CallSession.on_timer(name, now)` after `seconds`."""

    name: str
    seconds: float


@dataclass(slots=True, frozen=True)
class HandOver:
    """Open a fresh upstream session, send it `handover_opening()`, then move the call onto it."""


@dataclass(slots=True, frozen=True)
class EndCall:
    """Send Twilio an end mark and wait for it (if `wait_for_playback`), close the upstream, record the end,
    then call `finished()`; close Twilio's socket if `close_twilio`."""

    reason: str
    wait_for_playback: bool
    close_twilio: bool
    transfer_summary: str = ""  # a transfer: what the person taking the call hears first (stored on the Call)


@dataclass(slots=True, frozen=True)
class Measure:
    """Add to a lifecycle metric (`bridge.metrics.CallStats`): a count, or with `timing` one value in ms."""

    name: str
    value: float = 1
    timing: bool = False
    dimensions: tuple[tuple[str, str], ...] = ()


Action = (
    SendTwilio | SendUpstream | Record | Publish | RunTool | OpenUpstream | FlushEarlyAudio | StartTimer | HandOver
    | EndCall | Measure
)


# --- the session -------------------------------------------------------------------------------------------


class CallSession:
    def __init__(self, call: Call, config: CallConfig, engine: Engine | None, now: float,
                 handover_after_s: float | None = None, recorder: CallRecorder | None = None) -> None:
        """`engine` None: the config's engine is not available here (the call ends as not configured).
        `handover_after_s`: how long one upstream session may serve the call before a handover (None: never).
        `recorder`: keeps both legs of a recorded call (the consumer writes the WAV after the call)."""
        self.call = call
        self.recorder = recorder
        self.config = config
        self.engine: Engine = engine  # type: ignore[assignment] - used only once start() found one
        self.phase = Phase.STARTING
        self.stream_sid = call.stream_sid
        self.t0 = now
        self.end_reason = ""
        self.twilio_open = True
        self.playback = PlaybackTracker()
        self.usage: dict[str, Any] = {}
        self.transcript: list[tuple[str, str]] = []  # ("caller" | "agent", text), for a handover
        self.handover_after_s = handover_after_s if engine is not None and engine.can_hand_over else None
        self._early_audio: deque[str] = deque(maxlen=EARLY_AUDIO_FRAMES)
        self._seq = stream_seq_base(call.stream_count)  # each stream of a call numbers its events in its own block
        self._t_offset_ms = 0  # the events' clock counts from the call's first stream
        self._elapsed_s = 0.0  # of the call's time limit, before this stream
        # Back from a transfer nobody took (`services.claim_stream` prefetched the conversation so far).
        self.back_from_transfer = (call.stream_count > 1 and call.transfer_state == Call.TransferState.RETURNED)
        if self.back_from_transfer and call.started_at and call.stream_started_at:
            self._elapsed_s = (call.stream_started_at - call.started_at).total_seconds()
            self._t_offset_ms = int(self._elapsed_s * 1000)
        self._usage_before: dict[str, Any] = {}  # the call's earlier streams' usage
        if self.back_from_transfer:
            # The call's running total from here on (finish_call stores it whole).
            self._usage_before = copy.deepcopy(call.usage or {})
            self.usage = copy.deepcopy(self._usage_before)
            self.transcript = [(event.kind, event.text) for event in getattr(call, "conversation", ())]
        self._response_active = False
        self._caller_speaking = False
        self._reply_due = False
        self._suppressed_item: str | None = None
        # What waits for the current response to finish.
        self._continue_after_response = False
        self._end_after_response: str = ""
        self._handover_due = False
        self._handing_over = False
        self._idle_reprompted = False
        self._goodbye = Goodbye.NONE
        self._audio_blocked = False  # no agent audio to Twilio: its socket is closed, or a reply is being replaced
        self._transfer_reason = ""  # why the call is being transferred (the model's reason, or the key pressed)
        self._transfer_announced = False
        # Latency: the first agent audio of the call, and of the answer to each caller turn.
        self.awaiting_agent_audio = True
        self._first_audio_sent = False
        self._turn_ended_at: float | None = None
        self._turn_item: str | None = None  # the agent item playing when the turn ended: not its answer
        self._reply_ms: tuple[str, int] | None = None  # (item_id, ms) for that item's transcript event
        # Frames not passed on: caller audio when the early-audio buffer overflowed while the upstream opened;
        # agent audio of a reply the caller interrupted; either when the socket it was for was closing or had
        # stopped reading (its write buffer full).
        self.caller_frames_dropped = 0
        self.agent_frames_dropped = 0

    # --- start -------------------------------------------------------------------------------------------
    def start(self, now: float, api_key_set: bool) -> list[Action]:
        actions: list[Action] = [Publish(live_feed.call_update(self.call, "started"))]
        if not api_key_set or not self.config.is_configured or self.engine is None:
            return actions + self.end(Call.EndReason.NOT_CONFIGURED, now)
        if self.back_from_transfer:
            why = unanswered_why(self.call.transfer_dial_status)
            actions += self._record("status", now, f"back with the agent: the transfer was not answered ({why})", {
                "transfer": {"outcome": "returned", "dial_status": self.call.transfer_dial_status, "why": why}})
        time_left = max(1.0, self.config.max_call_seconds - self._elapsed_s)
        actions += [OpenUpstream(), StartTimer(MAX_CALL_TIMER, time_left)]
        if self.handover_after_s is not None and self.handover_after_s < self.config.max_call_seconds:
            actions.append(StartTimer(HANDOVER_TIMER, self.handover_after_s))
        return actions

    def upstream_open(self) -> list[Action]:
        """The upstream socket is open: configure the session; audio flows now or on `Ready`. Back from a transfer,
        an engine that can be given the conversation so far (Realtime) gets it as its history."""
        if self.back_from_transfer and self.engine.can_hand_over:
            opening = self.engine.handover_opening(self.transcript)
        else:
            opening = self.engine.opening()
        actions: list[Action] = [SendUpstream(t) for t in opening]
        if self.engine.ready_on_open:
            actions += self._ready()
        return actions

    def _ready(self) -> list[Action]:
        actions: list[Action] = []
        if self.back_from_transfer:
            # The model learns why the transfer failed (and, without a history, what was said), then tells the
            # caller it is back; what it offers next is its own.
            why = unanswered_why(self.call.transfer_dial_status)
            history = [] if self.engine.can_hand_over else self.transcript
            actions += [SendUpstream(t) for t in self.engine.user_note(back_from_transfer_note(why, history))]
            actions += [SendUpstream(t) for t in self.engine.greeting(BACK_LINE)]
        elif self.config.greeting:
            actions += [SendUpstream(t) for t in self.engine.greeting(self.config.greeting)]
        actions.append(FlushEarlyAudio())
        return actions

    def pop_early_audio(self) -> str | None:
        """The next buffered frame's upstream text; None once the buffer is empty (the session is then live)."""
        if self._early_audio:
            return self.engine.caller_audio(self._early_audio.popleft())
        if self.phase is Phase.STARTING:
            self.phase = Phase.LIVE
        return None

    # --- the hot paths -----------------------------------------------------------------------------------
    def caller_audio(self, payload_b64: str, timestamp_ms: int) -> str | None:
        """`timestamp_ms`: Twilio's media timestamp (where the frame sits in a recording)."""
        if self.recorder is not None:
            self.recorder.caller(payload_b64, timestamp_ms)
        phase = self.phase
        if phase is Phase.LIVE:
            return self.engine.caller_audio(payload_b64)
        if phase is Phase.STARTING:
            if len(self._early_audio) == EARLY_AUDIO_FRAMES:
                self.caller_frames_dropped += 1  # the deque drops its oldest frame
            self._early_audio.append(payload_b64)
        return None

    def agent_audio(self, audio: ev.AgentAudio, now: float) -> tuple[str | None, str] | None:
        """The mark to send before the audio (None most of the time) and Twilio's media text; None for audio
        the caller interrupted."""
        item_id = audio.item_id
        if item_id == self._suppressed_item:
            self.agent_frames_dropped += 1  # the rest of a reply the caller talked over
            return None
        if self._audio_blocked:
            return None
        if self.recorder is not None:
            self.recorder.agent(audio.delta, item_id, int((now - self.t0) * 1000))
        mark = self.playback.on_audio_sent(item_id, tw.b64_audio_len(audio.delta))
        return (None if mark is None else tw.mark_message(self.stream_sid, mark),
                tw.media_message(self.stream_sid, audio.delta))

    def agent_audio_sent(self, now: float) -> list[Action]:
        """Agent audio went to Twilio while `awaiting_agent_audio`: the call's first (time to first agent audio)
        or the first of an answer to the caller's turn (reply latency, also kept for the answer's transcript)."""
        actions: list[Action] = []
        if not self._first_audio_sent:
            self._first_audio_sent = True
            actions.append(Measure(metrics.TIME_TO_FIRST_AGENT_AUDIO_MS, (now - self.t0) * 1000, timing=True))
        item_id = self.playback.item_id
        if self._turn_ended_at is not None:
            if item_id == self._turn_item:
                return actions  # still the reply the caller talked over: keep waiting for the answer
            reply_ms = round((now - self._turn_ended_at) * 1000)
            self._reply_ms = (item_id or "", reply_ms)
            actions.append(Measure(metrics.REPLY_LATENCY_MS, reply_ms, timing=True))
            self._turn_ended_at = None
        self.awaiting_agent_audio = False
        return actions

    # --- Twilio ------------------------------------------------------------------------------------------
    def on_mark(self, name: str) -> bool:
        """Twilio echoed a mark; True when it is the end mark (the goodbye has played)."""
        if name == END_MARK:
            return True
        self.playback.on_mark(name)
        return False

    def on_dtmf(self, digit: str, now: float) -> list[Action]:
        """A keypad press: the config's keypad menu decides (end, transfer, repeat), else the model is told."""
        action = self.config.keypad_action(digit)
        actions = self._record("dtmf", now, digit, {"action": action})
        if self.phase is not Phase.LIVE:
            return actions
        if action == "end":
            return actions + self.end(Call.EndReason.AGENT_ENDED, now)
        if action == "transfer":
            self._transfer_reason = f"the caller pressed {digit} on the keypad to speak to a person"
            return actions + self.end(Call.EndReason.TRANSFERRED, now)
        actions += self._barge_in(now, cancel=True)
        if action == "repeat":
            # The model knows what it said; the line is quoted when its transcript is in (GPT-Live finishes a line
            # only when someone speaks next).
            last_line = next((text for role, text in reversed(self.transcript) if role == "agent"), "")
            note = (f"(The caller pressed {digit} on the keypad to hear your last sentence again. Say it again, "
                    + (f"word for word: \"{last_line}\")" if last_line else "word for word.)"))
        else:
            note = f"(The caller pressed {digit} on the keypad.)"
        actions += [SendUpstream(t) for t in self.engine.user_note(note)]
        if self.engine.owns_turns:
            return actions  # the model decides itself whether to answer
        return actions + self._continue_when_idle()

    def twilio_closed(self) -> None:
        self.twilio_open = False
        self._audio_blocked = True

    # --- engine events -----------------------------------------------------------------------------------
    def on_event(self, event: ev.EngineEvent | list[ev.EngineEvent], now: float) -> list[Action]:
        """Everything but `AgentAudio` (see `agent_audio`)."""
        kind = type(event)
        if kind is list:
            return [action for one in event for action in self.on_event(one, now)]  # type: ignore[union-attr]
        if kind is ev.CallerSpeechStarted:
            self._caller_speaking = True
            self._idle_reprompted = False
            if self._goodbye is Goodbye.WAITING:  # the caller is back before the goodbye: carry on
                self._goodbye = Goodbye.NONE
                self._audio_blocked = not self.twilio_open
            return self._barge_in(now)
        if kind is ev.CallerHeard:
            if self.engine.caller_heard(self.playback.queued_bytes, event.text):  # type: ignore[union-attr]
                return self._barge_in(now)
            return []
        if kind is ev.CallerSpeechStopped:
            self._caller_speaking = False
            self._reply_due = True  # the engine answers the turn: no handover until that answer is done
            self._turn_ended_at = now
            self._turn_item = self.playback.item_id
            self.awaiting_agent_audio = True
            return []
        if kind is ev.ResponseStarted:
            self._response_active = True
            self._reply_due = False
            if self._goodbye is Goodbye.WAITING:  # the server's answer to the silence: replaced by the goodbye
                return [SendUpstream(t) for t in self.engine.cancel_response()]
            return []
        if kind is ev.ResponseDone:
            return self._mark_response_end() + self._on_response_done(event, now)  # type: ignore[arg-type]
        if kind is ev.FunctionCall:
            return self._on_function_call(event, now)  # type: ignore[arg-type]
        if kind is ev.CallerTranscript:
            return self._on_transcript("caller", event, now)  # type: ignore[arg-type]
        if kind is ev.AgentTranscript:
            return self._on_transcript("agent", event, now)  # type: ignore[arg-type]
        if kind is ev.Usage:
            if event.cumulative:  # type: ignore[union-attr]
                # This upstream session's figures so far, on top of the call's earlier streams' (if any).
                self.usage.update(on_top_of(self._usage_before, event.usage))  # type: ignore[union-attr]
            else:
                add_usage(self.usage, event.usage)  # type: ignore[union-attr]
            return []
        if kind is ev.IdleTimeout:
            return self._on_idle(now)
        if kind is ev.EngineError:
            return self._on_error(event, now)  # type: ignore[arg-type]
        if kind is ev.Ready and self.phase is Phase.STARTING:
            return self._ready()
        return []

    def _mark_response_end(self) -> list[Action]:
        """A mark after the response's last audio: its echo says the response finished playing."""
        mark = None if self._audio_blocked else self.playback.flush()
        return [] if mark is None else [SendTwilio(tw.mark_message(self.stream_sid, mark))]

    def _on_response_done(self, done: ev.ResponseDone, now: float) -> list[Action]:
        self._response_active = False
        if done.usage:
            add_usage(self.usage, done.usage)
        actions: list[Action] = []
        if done.failure is not None:
            message = f"response failed: {done.failure.get('message', 'unknown')}"
            actions += self._record("error", now, message, {"details": done.failure})
            actions.append(Measure(metrics.UPSTREAM_ERRORS))
        if self.phase is not Phase.LIVE:
            return actions
        if self._goodbye is Goodbye.WAITING:
            self._goodbye = Goodbye.SAYING
            self._audio_blocked = not self.twilio_open
            self._response_active = True
            self._end_after_response = Call.EndReason.AGENT_ENDED
            return actions + [SendUpstream(t) for t in self.engine.say_goodbye()]
        if self._end_after_response == Call.EndReason.TRANSFERRED and not self._transfer_announced:
            # A warm transfer: the caller hears that they are being connected, in the model's words if it spoke
            # before calling the tool, else in a short line asked for here (engines that take instructions).
            self._transfer_announced = True
            announcement = [] if self.playback.is_playing else self.engine.say_goodbye(CONNECTING)
            if announcement:
                self._response_active = True
                return actions + [SendUpstream(t) for t in announcement]
        if self._end_after_response:
            return actions + self.end(self._end_after_response, now, after_playback=True)
        if self._continue_after_response:
            self._continue_after_response = False
            actions += [SendUpstream(t) for t in self.engine.continue_response()]
            return actions
        return actions + self._maybe_hand_over()

    def _on_transcript(self, role: str, event: ev.CallerTranscript | ev.AgentTranscript,
                       now: float) -> list[Action]:
        if not event.text:
            return []  # e.g. the silence an idle timeout commits
        self.transcript.append((role, event.text))
        data: dict[str, Any] = {"item_id": event.item_id}
        if role == "agent" and self._reply_ms is not None and self._reply_ms[0] == (event.item_id or ""):
            data["reply_ms"] = self._reply_ms[1]  # how long the caller waited for this answer
            self._reply_ms = None
        return self._record(role, now, event.text, data)

    def _on_error(self, error: ev.EngineError, now: float) -> list[Action]:
        text = f"OpenAI error {error.code or error.type}: {error.message}"[:500]
        actions = self._record("error", now, text, {"type": error.type, "code": error.code})
        actions.append(Measure(metrics.UPSTREAM_ERRORS))
        if error.fatal:
            actions += self.end(Call.EndReason.UPSTREAM_ERROR, now)
        return actions

    def _on_idle(self, now: float) -> list[Action]:
        """Server VAD's idle timeout. The server then commits the silence and answers by itself: the first time
        that answer is the reprompt; the second time in a row it is cancelled (and not played) and the agent
        says goodbye instead, after which the call ends."""
        if self.phase is not Phase.LIVE or self._goodbye is not Goodbye.NONE:
            return []
        if not self._idle_reprompted:
            self._idle_reprompted = True
            return self._record("status", now, "caller silent: the agent asks whether they are still there")
        self._goodbye = Goodbye.WAITING
        self._audio_blocked = True
        actions = self._record("status", now, "caller still silent: the agent says goodbye")
        if self._response_active:
            actions += [SendUpstream(t) for t in self.engine.cancel_response()]
        return actions

    # --- barge-in ----------------------------------------------------------------------------------------
    def _barge_in(self, now: float, cancel: bool = False) -> list[Action]:
        """The caller talks over the agent: stop playback at Twilio and tell the model what was heard. With the
        engine's own turn detection the server cancels its response itself; `cancel` is for interruptions it
        cannot see, such as a keypress."""
        if not self.config.interrupt_response and not cancel:
            return []
        actions: list[Action] = []
        if cancel and self._response_active and self.phase is Phase.LIVE:
            actions += [SendUpstream(t) for t in self.engine.cancel_response()]
        point = self.playback.on_barge_in()
        if point is None:
            return actions
        self._suppressed_item = point.item_id
        if self.recorder is not None:  # Twilio drops what was not played: the recording keeps what was heard
            self.recorder.barge_in(point.item_id, point.truncate_point_ms, self.t_ms(now))
        actions.append(SendTwilio(tw.clear_message(self.stream_sid)))
        if self.phase is Phase.LIVE:
            actions += [SendUpstream(t) for t in self.engine.truncate(point.item_id, point.truncate_point_ms)]
        actions.append(Measure(metrics.BARGE_INS))
        return actions + self._record("barge_in", now, "", {"item_id": point.item_id,
                                                            "heard_ms": point.truncate_point_ms})

    # --- tools -------------------------------------------------------------------------------------------
    def _on_function_call(self, call: ev.FunctionCall, now: float) -> list[Action]:
        actions = self._record("tool_call", now, call.name,
                               {"call_id": call.call_id, "arguments": call.arguments[:2000]})
        end_reason = self.config.builtin_end_reason(call.name)
        if end_reason is not None:
            if end_reason == Call.EndReason.TRANSFERRED:
                self._transfer_reason = reason_from_arguments(call.arguments)
            actions += self._record("tool_result", now, call.name, {"call_id": call.call_id, "output": "call ending"})
            if self._response_active:
                self._end_after_response = end_reason  # let the model finish its goodbye first
                return actions
            return actions + self.end(end_reason, now, after_playback=True)
        spec = self.config.http_tool(call.name)
        if spec is None:
            output = json.dumps({"ok": False, "error": f"unknown tool {call.name!r}"})
            return actions + self.tool_done(call.call_id, call.name, output, now)
        return [*actions, RunTool(call.call_id, call.name, call.arguments, spec)]

    def tool_done(self, call_id: str, name: str, output: str, now: float) -> list[Action]:
        actions = self._record("tool_result", now, name, {"call_id": call_id, "output": output[:2000]})
        if self.phase is not Phase.LIVE:
            return actions
        actions += [SendUpstream(t) for t in self.engine.tool_result(call_id, output)]
        return actions + self._continue_when_idle()

    def _continue_when_idle(self) -> list[Action]:
        """Ask for a response now, or once the current one is done (one during a live response is refused)."""
        if self._response_active:
            self._continue_after_response = True
            return []
        return [SendUpstream(t) for t in self.engine.continue_response()]

    # --- timers and the handover -------------------------------------------------------------------------
    def on_timer(self, name: str, now: float) -> list[Action]:
        if name == MAX_CALL_TIMER:
            return self.end(Call.EndReason.MAX_DURATION, now, after_playback=True)
        if name == HANDOVER_TIMER:
            self._handover_due = True
            return self._maybe_hand_over()
        return []

    def _maybe_hand_over(self) -> list[Action]:
        """Hand over between turns (no response playing, the caller not talking), so no one hears a seam."""
        if (not self._handover_due or self._handing_over or self.phase is not Phase.LIVE or self._response_active
                or self._caller_speaking or self._reply_due or self._continue_after_response
                or self._end_after_response):
            return []
        self._handing_over = True
        return [HandOver()]

    def handover_opening(self) -> list[str]:
        """The fresh upstream session's first events: the config and the conversation so far."""
        return self.engine.handover_opening(self.transcript)

    def handed_over(self, now: float) -> list[Action]:
        """The call now runs on the fresh upstream session; the next handover is due after as long again."""
        self._handing_over = False
        self._handover_due = False
        self.playback.reset()
        actions = self._record("status", now, "moved to a fresh OpenAI session", {"handover": True})
        assert self.handover_after_s is not None
        return [*actions, StartTimer(HANDOVER_TIMER, self.handover_after_s)]

    def handover_failed(self, now: float, detail: str) -> list[Action]:
        """The fresh session could not be opened: the call goes on in the old one until its limit."""
        self._handing_over = False
        return [*self._record("error", now, f"handover failed: {detail}"), Measure(metrics.UPSTREAM_ERRORS)]

    # --- the upstream going away -------------------------------------------------------------------------
    def upstream_lost(self, now: float, detail: str) -> list[Action]:
        """The upstream session failed to open, closed or broke: apologise and end (unless already ending)."""
        if self.phase in (Phase.ENDING, Phase.ENDED):
            return []
        return [*self._record("error", now, detail), Measure(metrics.UPSTREAM_ERRORS),
                *self.end(Call.EndReason.UPSTREAM_ERROR, now)]

    def stream_error(self, reason: str, now: float) -> list[Action]:
        """Twilio's stream broke the protocol: the consumer closes it with `reason`; the call ends."""
        self.twilio_closed()
        actions = self._record("error", now, f"stream closed: {reason}")
        return actions + self.end(Call.EndReason.PROTOCOL_ERROR, now, close_twilio=False)

    # --- the end -----------------------------------------------------------------------------------------
    def end(self, reason: str, now: float, after_playback: bool = False, close_twilio: bool = True) -> list[Action]:
        """End the call once: the consumer records why, closes the upstream session, then Twilio's socket so that
        Twilio asks the webhook's Connect action what to say or do next (apology, transfer, hang-up)."""
        if self.phase in (Phase.ENDING, Phase.ENDED):
            return []
        self.phase = Phase.ENDING
        self.end_reason = reason
        wait = after_playback and self.playback.is_playing and self.twilio_open
        if reason != Call.EndReason.TRANSFERRED:
            return [EndCall(reason, wait, close_twilio)]
        summary = transfer_summary(self.config.name, self.transcript, self._transfer_reason)
        actions = self._record("status", now, f"transferring to a person ({self.config.transfer_mode})", {
            "transfer": {"mode": self.config.transfer_mode, "reason": self._transfer_reason, "summary": summary}})
        return [*actions, EndCall(reason, wait, close_twilio, summary)]

    def finished(self, now: float, stored: Call | None) -> list[Action]:
        """The end is recorded (`stored`: the saved row, or None if the database could not be reached)."""
        self.phase = Phase.ENDED
        if stored is not None:
            self.call = stored
        else:
            self.call.status = status_after(self.end_reason)
            self.call.end_reason = self.end_reason
        if stored is not None and stored.is_live and stored.transfer_state == Call.TransferState.DIALING:
            text = "the agent's stream ended: the caller is being transferred"  # the call goes on (calls.transfers)
        else:
            text = f"call ended: {self.end_reason}"
        actions = self._record("status", now, text, {"end_reason": self.end_reason, "usage": self.usage})
        if self.recorder is not None and self.recorder.truncated:
            actions += self._record("status", now, "recording stopped at its length limit (the rest is not kept)")
        for direction, dropped in (("caller", self.caller_frames_dropped), ("agent", self.agent_frames_dropped)):
            if dropped:
                actions.append(Measure(metrics.FRAMES_DROPPED, dropped, dimensions=((metrics.DIRECTION, direction),)))
        return [*actions, Publish(live_feed.call_update(self.call, "ended"))]

    @property
    def ending(self) -> bool:
        return self.phase in (Phase.ENDING, Phase.ENDED)

    # --- helpers -----------------------------------------------------------------------------------------
    def t_ms(self, now: float) -> int:
        return int((now - self.t0) * 1000)

    def _record(self, kind: str, now: float, text: str = "", data: dict[str, Any] | None = None) -> list[Action]:
        self._seq += 1
        event = live_feed.event(self._seq, kind, self._t_offset_ms + self.t_ms(now), text, data)
        return [Record(event, live_feed.call_update(self.call, "event", event))]


def on_top_of(before: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    """Cumulative figures of one upstream session (e.g. GPT-Live's billed seconds so far) as the call's: plus
    what the call's earlier streams had under the same key."""
    combined = dict(usage)
    for key, value in usage.items():
        earlier = before.get(key)
        if type(value) in (int, float) and type(earlier) in (int, float):
            combined[key] = earlier + value
    return combined


def add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    """Sum response.done usage objects, nested token details included."""
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            add_usage(total.setdefault(key, {}), value)
