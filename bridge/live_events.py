"""OpenAI GPT-Live events (primary WebSocket): client-event builders and server-event parsing. Pure: no I/O.

Field guide: /work/shared/LIVE_PROTOCOL.md; the `openai` package's `openai.types.live` is the authority on
shapes (every builder's output validates against its client events with no unknown keys; the tests check).

Client events:

    session_start(snapshot)            -> dict  # the first message: model, instructions, voice, μ-law both ways,
                                                #   Responses delegation with the backend model + function tools
    append_audio(payload_b64)          -> str   # HOT PATH: ready-to-send session.input_audio.append text
    greeting(text)                     -> dict  # session.commentary.append asking the model to greet now
    caller_note(text)                  -> dict  # session.thinking.append: silent context (e.g. a keypress)
    function_call_output(call_id, s)   -> dict  # response.item.create: a function tool's result
    response_create()                  -> dict  # continue the backend response after every open call's result
    session_close()                    -> dict  # hang-up: the server answers with session.closed (final usage)
    to_text(event)                     -> str   # compact JSON for the socket

`snapshot` keys read by `session_start`: `model` (default `DEFAULT_MODEL`), `instructions` (the voice model's
prompt), `voice`, `backend_model` (default `DEFAULT_BACKEND_MODEL`), `backend_instructions` (default: the
agent's `instructions`, so an agent configured for Realtime works unchanged), `tools` (the snapshot's tool
specs; only name/description/parameters reach OpenAI). Calls must not send audio or commands before
`SessionStarted` (the guide, §1): hold caller audio until then.

`append_audio` splices Twilio's base64 μ-law payload into the JSON text as-is (the base64 alphabet needs no
escaping and `bridge.twilio_media.parse` has checked its shape): no decode, no dumps.

Server events: `parse_server_event(text)` does one `json.loads` and returns one of

    AudioDelta(delta, item_id)             session.output_audio.delta: base64 μ-law to forward untouched with
                                           `twilio_media.media_message`. Live has no items: `item_id` is always
                                           `OUTPUT_STREAM_ID`, so the whole output is one stream to a tracker.
    SessionStarted(session_id, expires_at) session.started: start sending audio (and the greeting) now
    TranscriptDelta(role, text, start_ms, end_ms)
                                           session.input_transcript.delta (role "caller") and
                                           session.output_transcript.delta (role "agent")
    DelegationCreated(delegation_id, target, response_id)
                                           the model handed work to the backend (the agent is "thinking")
    FunctionCall(call_id, name, arguments, delegation_id)
                                           response.event wrapping a completed function_call output item:
                                           run the tool, then function_call_output(...) + response_create()
    BackendDone(delegation_id, status, usage)
                                           response.event wrapping response.completed/incomplete/failed; `usage`
                                           is the backend's token usage (billed apart from Live's seconds)
    Usage(seconds)                         session.usage.updated: cumulative billable seconds (never sum them)
    LiveError(code, message, error_type, param, client_event_id, fatal)
                                           error; `fatal` says whether to end the call (see "Errors" below)
    SessionClosed(reason, seconds)         session.closed: final usage; the server closes the socket next
    ServerEvent(type, data)                anything else (acks, info, other response.event kinds): ignore it

Each carries `type` and the raw decoded `data` too. Malformed JSON, a non-object, a missing `type`, or a
handled event whose fields the bridge relies on are missing or ill-typed raise `ProtocolError` (the class of
`bridge.twilio_media`); an audio delta's alphabet is checked, since it is spliced unescaped into Twilio's JSON.
Unknown event types are not errors: the guide and the SDK say new events and fields appear and must be
ignored, so they come back as a plain `ServerEvent`.

Transcript lines: Live has **no** transcript-done event and no turns (guide §8), only timed fragments.
`TranscriptLines` (pure, no clock) turns `TranscriptDelta`s into finished caller/agent lines, with a simplified
form of the SDK's `TranscriptGrouper` rules (openai.lib.live):

    lines = TranscriptLines()
    for line in lines.add(delta): store(line)     # TranscriptLine(role, text, start_ms, end_ms)
    for line in lines.flush(): store(line)        # at session.closed / hang-up (finishes the open line)

- fragments of one speaker are appended in arrival order, as sent (they carry their own spaces);
- a caller fragment ends the agent's open line at once (the SDK promotes user speech over the assistant at
  once too); an agent fragment ends the caller's open line (the SDK first waits 500 ms to drop an assistant
  back-channel; a phone log can keep a short "mhm" line, so we do not hold lines back);
- a fragment that starts `LINE_GAP_MS` (2 s, the SDK's assistant-silence close) or more after its speaker's
  open line ended starts a new line, for either speaker (a caller pausing while the agent's backend works
  is two utterances in a call log);
- blank lines are never emitted.

Barge-in and Twilio's playback buffer. Live has no speech-started, interrupted or truncate event (guide §9):
the model listens while it speaks and stops by itself. What the caller hears late is what already sits in
Twilio's buffer, so that buffer must stay shallow. Decision:
1. Forward every audio delta at once with a `mark` every `MARK_EVERY_MS` of it, exactly as for Realtime
   (`bridge.playback` with `item_id` = `OUTPUT_STREAM_ID`), so the bridge always knows how much audio Twilio
   still holds (within `MARK_EVERY_MS`: Live has no end-of-response event to mark the last chunk). No
   bridge-side pacing: it would add a timer and latency per frame and cannot beat the model's own stop.
2. When a caller `TranscriptDelta` arrives (the only sign of caller speech Live gives) and
   `should_clear_playback(queued_bytes, text)` is true, send Twilio `clear` (and reset the tracker);
   `queued_bytes` = agent audio sent to Twilio minus what echoed marks confirmed played.
   It is true when more than `CLEAR_QUEUED_MS` (300 ms) of agent audio is queued and the fragment is not a
   bare acknowledgement ("mhm", "okay", the SDK's back-channel list).
Why: the guide cannot say whether output comes paced in real time (LiveKit's reading) or in bursts (§7, [?]).
If paced, Twilio holds about one chunk, the rule never fires and barge-in is wholly the model's, as in
Twilio's own GPT-Live connector, which never clears. If bursty, seconds of audio the model has already
abandoned would play over the caller; the caller's words are the earliest signal, and clearing then matches
what Realtime's barge-in does. Acknowledgements are exempt because full duplex means the model keeps talking
through them; clearing would cut words the model believes were heard (Live has no truncate to correct it).

Errors. Live has no fatal flag (guide §14, [?] which codes end a session). `LiveError.fatal` is true for
auth/quota/billing codes (`FATAL_ERROR_CODES`), for `server_error`, and for an error answering
`session.start` (its `client_event_id` is `START_EVENT_ID`): the session never started. Any other error
rejected one command: record it and keep the call going.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bridge.realtime_events import _function_tool, to_text  # the same tool fields and JSON text as Realtime
from bridge.twilio_media import MULAW_BYTES_PER_MS, ProtocolError

__all__ = [
    "AUDIO_DELTA",
    "AUDIO_FORMAT",
    "CLEAR_QUEUED_MS",
    "DEFAULT_BACKEND_MODEL",
    "DEFAULT_MODEL",
    "FATAL_ERROR_CODES",
    "LINE_GAP_MS",
    "OUTPUT_STREAM_ID",
    "START_EVENT_ID",
    "AudioDelta",
    "BackendDone",
    "DelegationCreated",
    "FunctionCall",
    "LiveError",
    "ProtocolError",
    "ServerEvent",
    "SessionClosed",
    "SessionStarted",
    "TranscriptDelta",
    "TranscriptLine",
    "TranscriptLines",
    "Usage",
    "append_audio",
    "caller_note",
    "function_call_output",
    "greeting",
    "is_acknowledgement",
    "parse_server_event",
    "response_create",
    "session_close",
    "session_start",
    "should_clear_playback",
    "to_text",
]

DEFAULT_MODEL = "gpt-live-1.1"
DEFAULT_BACKEND_MODEL = "gpt-5.4-mini"  # a small, fast Responses model for delegated tool work
# One format for both directions (guide §3): G.711 μ-law 8 kHz, what Twilio carries. `rate` is required here
# (Realtime's pcmu object has none).
AUDIO_FORMAT = {"type": "audio/pcmu", "rate": 8000}
AUDIO_DELTA = "session.output_audio.delta"
OUTPUT_STREAM_ID = "live-output"  # Live audio has no item ids: the whole output is one stream
START_EVENT_ID = "voiceops-start"
GREETING_EVENT_ID = "voiceops-greeting"
CLOSE_EVENT_ID = "voiceops-close"
FATAL_ERROR_CODES = frozenset(
    {"invalid_api_key", "insufficient_quota", "account_deactivated", "billing_hard_limit_reached"}
)
CLEAR_QUEUED_MS = 300
LINE_GAP_MS = 2000
# Built-in voices (openai.types.live.BuiltInVoice); custom voices are `voice_…` ids.
LIVE_VOICES = frozenset({
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo", "gleam", "marin",
    "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone", "tempo", "verse", "vesper", "willow",
})
# Bare acknowledgements, as in the SDK's transcript grouping (openai.lib.live), normalised.
ACKNOWLEDGEMENTS = frozenset(
    {"aha", "alright", "gotcha", "hm", "hmm", "mhm", "mm", "mm hmm", "okay", "ok", "right", "sure", "uh huh",
     "yeah", "yep", "yes"}
)
_BACKEND_DONE = {"response.completed": "completed", "response.incomplete": "incomplete", "response.failed": "failed"}
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_loads = json.loads


# --- client events -----------------------------------------------------------------------------------------


def session_start(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The `session.start` that configures a call's Live session from its frozen config snapshot.

    Tools go to the Responses backend (`responses` delegation): GPT-Live has no tools of its own, and the
    backend's function calls come back wrapped in `response.event` for the bridge to run. Parallel tool
    calls are off so each backend response waits on at most one result: a partial batch of results is
    refused (guide §10), and one call at a time keeps `function_call_output` + `response_create` simple."""
    instructions = snapshot.get("instructions") or ""
    backend: dict[str, Any] = {
        "model": snapshot.get("backend_model") or DEFAULT_BACKEND_MODEL,
        "instructions": snapshot.get("backend_instructions") or instructions,
        "tools": [_function_tool(tool) for tool in snapshot.get("tools") or () if tool.get("name")],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    audio: dict[str, Any] = {"format": dict(AUDIO_FORMAT)}
    voice = _voice(snapshot.get("voice"))
    if voice is not None:
        audio["output"] = {"voice": voice}
    session: dict[str, Any] = {
        "model": snapshot.get("model") or DEFAULT_MODEL,
        "instructions": instructions,
        "audio": audio,
        "delegation": {"type": "responses", "responses": backend},
    }
    return {"type": "session.start", "event_id": START_EVENT_ID, "session": session}


def _voice(voice: object) -> str | dict[str, str] | None:
    # An unknown name would get the whole session refused; leaving it out keeps the call working with the
    # default voice (marin). Validated configs only hold names from the voice list.
    if type(voice) is not str or not voice:
        return None
    if voice.startswith("voice_"):
        return {"id": voice}
    return voice if voice in LIVE_VOICES else None


def append_audio(payload_b64: str) -> str:
    """Ready-to-send `session.input_audio.append` text; the base64 payload goes in untouched (hot path)."""
    return '{"type":"session.input_audio.append","audio":"' + payload_b64 + '"}'


def greeting(text: str) -> dict[str, Any]:
    """A `session.commentary.append` that makes the agent speak first, saying `text`.

    Commentary is something the model says once in its own words; worded as an instruction it is how
    GPT-Live is made to greet (guide §10). `delegation_id` is required and null: general context."""
    content = (
        "The phone call has just been answered. Greet the caller now by saying the following, in the "
        f"language it is written in, then wait for the caller to speak:\n{text}"
    )
    return {"type": "session.commentary.append", "event_id": GREETING_EVENT_ID, "content": content,
            "delegation_id": None}


def caller_note(text: str) -> dict[str, Any]:
    """A `session.thinking.append`: silent context for the model (e.g. "the caller pressed 1").

    Live has no user-message command; the model owns turn-taking and decides whether to answer."""
    return {"type": "session.thinking.append", "content": text, "delegation_id": None}


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    """A `response.item.create` giving the backend a function tool's result; follow it with `response_create()`."""
    return {
        "type": "response.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def response_create() -> dict[str, Any]:
    """A `response.create`: resumes the delegated backend response that waits on tool output."""
    return {"type": "response.create"}


def session_close() -> dict[str, Any]:
    return {"type": "session.close", "event_id": CLOSE_EVENT_ID}


# --- server events -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerEvent:
    """One server event: its `type` and the raw decoded object."""

    type: str
    data: dict[str, Any]


@dataclass(slots=True)
class AudioDelta(ServerEvent):
    """`session.output_audio.delta`: a chunk of the agent's voice (base64 μ-law), in playing order."""

    delta: str
    item_id: str


@dataclass(slots=True)
class SessionStarted(ServerEvent):
    session_id: str
    expires_at: int | None


@dataclass(slots=True)
class TranscriptDelta(ServerEvent):
    """A transcript fragment; `role` is "caller" or "agent"; times are ms on the session timeline."""

    role: str
    text: str
    start_ms: int
    end_ms: int


@dataclass(slots=True)
class DelegationCreated(ServerEvent):
    delegation_id: str
    target: str
    response_id: str


@dataclass(slots=True)
class FunctionCall(ServerEvent):
    """The backend wants a function tool run; `arguments` is the JSON text as the model wrote it."""

    call_id: str
    name: str
    arguments: str
    delegation_id: str


@dataclass(slots=True)
class BackendDone(ServerEvent):
    """A delegated backend response ended; `usage` is its Responses token usage (or {} if not reported)."""

    delegation_id: str
    status: str
    usage: dict[str, Any]


@dataclass(slots=True)
class Usage(ServerEvent):
    """Cumulative billable seconds so far (a snapshot, not an increment)."""

    seconds: float


@dataclass(slots=True)
class LiveError(ServerEvent):
    code: str
    message: str
    error_type: str
    param: str | None
    client_event_id: str | None
    fatal: bool


@dataclass(slots=True)
class SessionClosed(ServerEvent):
    """`session.closed`: why (`close_requested`, `expired`, `content`, `remote_hangup`, `connection_lost`)
    and the final cumulative billable seconds."""

    reason: str
    seconds: float


def parse_server_event(text: str | bytes) -> ServerEvent:
    """Decode one server event with a single `json.loads`; raise `ProtocolError` if it is not one."""
    try:
        data = _loads(text)
    except (ValueError, TypeError, RecursionError):
        raise ProtocolError("server event is not valid JSON") from None
    if type(data) is not dict:
        raise ProtocolError("server event is not a JSON object")
    kind = data.get("type")
    if kind == AUDIO_DELTA:  # the hot path downstream
        delta = data.get("delta")
        # delta is spliced unescaped into Twilio's JSON: check its alphabet (padding is Twilio's to judge).
        if type(delta) is not str or _BASE64_TEXT.fullmatch(delta) is None:
            raise ProtocolError("session.output_audio.delta without a base64 delta")
        return AudioDelta(kind, data, delta, OUTPUT_STREAM_ID)
    if type(kind) is not str or not kind:
        raise ProtocolError("server event has no type")
    parse = _PARSERS.get(kind)
    return ServerEvent(kind, data) if parse is None else parse(kind, data)


def _transcript(kind: str, data: dict[str, Any]) -> TranscriptDelta:
    text, start_ms, end_ms = data.get("delta"), data.get("start_ms"), data.get("end_ms")
    if type(text) is not str or type(start_ms) is not int or type(end_ms) is not int:
        raise ProtocolError(f"{kind} without a text delta and integer start_ms/end_ms")
    role = "caller" if kind == "session.input_transcript.delta" else "agent"
    return TranscriptDelta(kind, data, role, text, start_ms, end_ms)


def _session_started(kind: str, data: dict[str, Any]) -> SessionStarted:
    session = data.get("session")
    if type(session) is not dict or type(session.get("id")) is not str:
        raise ProtocolError("session.started without a session id")
    expires_at = session.get("expires_at")
    return SessionStarted(kind, data, session["id"], expires_at if type(expires_at) is int else None)


def _delegation_created(kind: str, data: dict[str, Any]) -> DelegationCreated:
    delegation = data.get("delegation")
    if type(delegation) is not dict or type(delegation.get("id")) is not str:
        raise ProtocolError("session.delegation.created without a delegation id")
    return DelegationCreated(kind, data, delegation["id"], _str(delegation.get("target")),
                             _str(delegation.get("response_id")))


def _response_event(kind: str, data: dict[str, Any]) -> ServerEvent:
    """`response.event`: the delegated backend's Responses stream event, wrapped. Only two inner kinds
    matter to the bridge: a completed function call, and the end of a backend response (its usage)."""
    inner = data.get("event")
    if type(inner) is not dict:
        raise ProtocolError("response.event without an event object")
    inner_type = inner.get("type")
    delegation_id = _str(data.get("delegation_id"))
    if inner_type == "response.output_item.done":
        item = inner.get("item")
        # Only completed calls run (guide §10): an incomplete one belongs to an abandoned response.
        if type(item) is dict and item.get("type") == "function_call" and item.get("status") == "completed":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
            if type(call_id) is not str or not call_id or type(name) is not str or type(arguments) is not str:
                raise ProtocolError("function_call item without call_id, name and arguments")
            return FunctionCall(kind, data, call_id, name, arguments, delegation_id)
    elif inner_type in _BACKEND_DONE:
        response = inner.get("response")
        usage = response.get("usage") if type(response) is dict else None
        return BackendDone(kind, data, delegation_id, _BACKEND_DONE[inner_type], usage if type(usage) is dict else {})
    return ServerEvent(kind, data)


def _usage_seconds(kind: str, data: dict[str, Any]) -> float:
    usage = data.get("usage")
    seconds = usage.get("seconds") if type(usage) is dict else None
    if type(seconds) not in (int, float) or seconds < 0:
        raise ProtocolError(f"{kind} without usage.seconds")
    return float(seconds)


def _usage(kind: str, data: dict[str, Any]) -> Usage:
    return Usage(kind, data, _usage_seconds(kind, data))


def _session_closed(kind: str, data: dict[str, Any]) -> SessionClosed:
    return SessionClosed(kind, data, _str(data.get("reason")), _usage_seconds(kind, data))


def _error(kind: str, data: dict[str, Any]) -> LiveError:
    error = data.get("error")
    if type(error) is not dict:
        raise ProtocolError("error event without an error object")
    code, error_type = _str(error.get("code")), _str(error.get("type"))
    client_event_id = error.get("client_event_id") or data.get("client_event_id")
    client_event_id = client_event_id if type(client_event_id) is str else None
    param = error.get("param") if type(error.get("param")) is str else None
    fatal = code in FATAL_ERROR_CODES or error_type == "server_error" or client_event_id == START_EVENT_ID
    return LiveError(kind, data, code, _str(error.get("message")), error_type, param, client_event_id, fatal)


def _str(value: object) -> str:
    return value if type(value) is str else ""


_PARSERS = {
    "session.input_transcript.delta": _transcript,
    "session.output_transcript.delta": _transcript,
    "session.started": _session_started,
    "session.delegation.created": _delegation_created,
    "response.event": _response_event,
    "session.usage.updated": _usage,
    "session.closed": _session_closed,
    "error": _error,
}


# --- barge-in policy ---------------------------------------------------------------------------------------


def is_acknowledgement(text: str) -> bool:
    """True for a bare back-channel such as "Mhm." or "okay" (the SDK's list), which never interrupts."""
    normal = " ".join(text.lower().replace("-", " ").strip(" \t\n.,!?;:\"'()[]{}").split())
    return normal in ACKNOWLEDGEMENTS


def should_clear_playback(queued_bytes: int, caller_text: str) -> bool:
    """Whether a caller transcript fragment should empty Twilio's buffer (see the module docstring).

    `queued_bytes`: agent μ-law sent to Twilio and not yet confirmed played by a mark."""
    return (
        queued_bytes > CLEAR_QUEUED_MS * MULAW_BYTES_PER_MS
        and bool(caller_text.strip())
        and not is_acknowledgement(caller_text)
    )


# --- transcript lines --------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class TranscriptLine:
    """A finished line of the conversation: `role` "caller" or "agent", times on the session timeline."""

    role: str
    text: str
    start_ms: int
    end_ms: int


class TranscriptLines:
    """Groups transcript fragments into finished lines (rules in the module docstring). Pure: no clock.

    A fragment of one speaker finishes the other's line, so at most one line is open at a time."""

    __slots__ = ("_end_ms", "_role", "_start_ms", "_text")

    def __init__(self) -> None:
        self._role = ""  # "" = no open line
        self._text = ""
        self._start_ms = self._end_ms = 0

    def add(self, delta: TranscriptDelta) -> list[TranscriptLine]:
        """Take one fragment; return the line it finished, if any."""
        done: list[TranscriptLine] = []
        if self._role and (self._role != delta.role or delta.start_ms - self._end_ms >= LINE_GAP_MS):
            done = self.flush()
        if self._role:
            self._text += delta.text
            self._end_ms = max(self._end_ms, delta.end_ms)
        else:
            self._role, self._text, self._start_ms, self._end_ms = delta.role, delta.text, delta.start_ms, delta.end_ms
        return done

    def flush(self) -> list[TranscriptLine]:
        """Finish the open line (at the session's end)."""
        role, text = self._role, self._text.strip()
        self._role, self._text = "", ""
        return [TranscriptLine(role, text, self._start_ms, self._end_ms)] if role and text else []
