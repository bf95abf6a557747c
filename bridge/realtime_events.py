"""OpenAI Realtime (GA) events: client-event builders and server-event parsing. Pure: no I/O.

Client events (every builder's output validates against `openai.types.realtime.RealtimeClientEvent` with no
unknown keys; the tests check exactly that):

    session_update(snapshot)          -> dict  # the whole session config, from a call's config snapshot
    greeting_response(text)           -> dict  # response.create: the agent speaks first, saying `text`
    instructed_response(instructions) -> dict  # response.create with one-off instructions (e.g. a goodbye)
    user_text(text)                   -> dict  # conversation.item.create: a user text message (e.g. a keypress note)
    assistant_text(text)              -> dict  # conversation.item.create: what the agent said (handover history)
    function_call_output(call_id, s)  -> dict  # conversation.item.create: a tool's result
    response_create()                 -> dict  # ask for a response (after a tool result)
    response_cancel()                 -> dict
    truncate(item_id, audio_end_ms)   -> dict  # barge-in: what the caller actually heard of an item
    to_text(event)                    -> str   # compact JSON for the socket
    append_audio(payload_b64)         -> str   # HOT PATH: ready-to-send input_audio_buffer.append text

`append_audio` splices Twilio's base64 μ-law payload into the JSON text as-is (the base64 alphabet needs no
escaping, and `bridge.twilio_media.parse` has already checked the payload's shape): no decode, no dumps.

Server events: `parse_server_event(text)` does one `json.loads` and returns a `ServerEvent(type, data)` with
the raw dict; `response.output_audio.delta` comes back as `AudioDelta`, a `ServerEvent` that also carries
`delta` (base64 μ-law, to forward untouched with `twilio_media.media_message`), `item_id` and `response_id`
(`""` if absent). The delta's alphabet is checked, since it is spliced unescaped into Twilio's JSON.
Malformed JSON, a non-object, a missing `type`, or an audio delta without a base64 `delta` or an `item_id`
raise `ProtocolError` (the same class as `bridge.twilio_media.ProtocolError`). Other events are not
validated beyond `type`: handlers read `data` defensively.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bridge.twilio_media import ProtocolError

__all__ = [
    "AUDIO_DELTA",
    "AudioDelta",
    "ProtocolError",
    "ServerEvent",
    "append_audio",
    "assistant_text",
    "function_call_output",
    "greeting_response",
    "instructed_response",
    "parse_server_event",
    "response_cancel",
    "response_create",
    "session_update",
    "to_text",
    "truncate",
    "user_text",
]

AUDIO_FORMAT = {"type": "audio/pcmu"}  # G.711 μ-law 8 kHz, what Twilio carries: no transcoding anywhere
AUDIO_DELTA = "response.output_audio.delta"

# Keys each GA turn-detection mode accepts; anything else in a snapshot would be an unknown_parameter upstream.
_TURN_DETECTION_KEYS = {
    "server_vad": ("type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms",
                   "interrupt_response", "create_response"),
    "semantic_vad": ("type", "eagerness", "interrupt_response", "create_response"),
}
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_loads = json.loads


# --- client events -----------------------------------------------------------------------------------------


def session_update(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The `session.update` that configures a call's session from its frozen config snapshot.

    Optional parts are left out rather than sent as null where null would change behaviour: transcription
    only when `transcription_model` is set, noise reduction only when `noise_reduction` is set."""
    audio_input: dict[str, Any] = {"format": dict(AUDIO_FORMAT)}
    if snapshot.get("transcription_model"):
        audio_input["transcription"] = {"model": snapshot["transcription_model"]}
    if "turn_detection" in snapshot:
        turn_detection = snapshot["turn_detection"]
        if turn_detection is None:
            audio_input["turn_detection"] = None  # VAD off: the bridge would have to ask for every response
        elif isinstance(turn_detection, dict) and turn_detection.get("type") in _TURN_DETECTION_KEYS:
            keys = _TURN_DETECTION_KEYS[turn_detection["type"]]
            audio_input["turn_detection"] = {k: turn_detection[k] for k in keys if turn_detection.get(k) is not None}
        # Anything else (validated configs never have it) is left out: the server's default VAD keeps the
        # call working, where raising here would leave the caller in silence.
    if snapshot.get("noise_reduction"):
        audio_input["noise_reduction"] = {"type": snapshot["noise_reduction"]}

    audio_output: dict[str, Any] = {"format": dict(AUDIO_FORMAT)}
    if snapshot.get("voice"):
        audio_output["voice"] = snapshot["voice"]
    if snapshot.get("speed") is not None:
        audio_output["speed"] = snapshot["speed"]

    session: dict[str, Any] = {"type": "realtime"}
    if snapshot.get("model"):
        session["model"] = snapshot["model"]
    session["output_modalities"] = ["audio"]
    session["instructions"] = snapshot.get("instructions") or ""
    session["audio"] = {"input": audio_input, "output": audio_output}
    session["tools"] = [_function_tool(tool) for tool in snapshot.get("tools") or () if tool.get("name")]
    session["tool_choice"] = "auto"
    if snapshot.get("max_output_tokens") is not None:
        session["max_output_tokens"] = snapshot["max_output_tokens"]
    return {"type": "session.update", "session": session}


def _function_tool(tool: dict[str, Any]) -> dict[str, Any]:
    # Only the model-facing fields; kind, url, timeout_s, secret header and tool_id stay on our side.
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description") or "",
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }


def greeting_response(text: str) -> dict[str, Any]:
    """A `response.create` that makes the agent speak first, saying `text`.

    A response's `instructions` replace the session instructions for that one response, so they carry the
    whole task: say this text, nothing more, then wait for the caller."""
    instructions = (
        "The phone call has just been answered. Greet the caller by saying exactly the following, "
        "word for word, in the voice and language it is written in, then stop and wait for the caller "
        f"to speak:\n{text}"
    )
    return instructed_response(instructions)


def instructed_response(instructions: str) -> dict[str, Any]:
    """A `response.create` whose `instructions` replace the session's for that one response."""
    return {"type": "response.create", "response": {"instructions": instructions}}


def assistant_text(text: str) -> dict[str, Any]:
    """A `conversation.item.create` adding what the agent said earlier (a handover's history)."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]},
    }


def user_text(text: str) -> dict[str, Any]:
    """A `conversation.item.create` adding a user text message (the bridge's notes, e.g. a keypress)."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    """A `conversation.item.create` giving the model a tool's result; follow it with `response_create()`."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def response_create() -> dict[str, Any]:
    return {"type": "response.create"}


def response_cancel() -> dict[str, Any]:
    return {"type": "response.cancel"}


def truncate(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    """A `conversation.item.truncate`: the caller heard `audio_end_ms` of the assistant item's audio.

    The server rejects a point beyond the item's audio; `bridge.playback` computes one that never is."""
    return {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": max(0, int(audio_end_ms)),
    }


def to_text(event: dict[str, Any]) -> str:
    """Compact JSON text for a client event."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def append_audio(payload_b64: str) -> str:
    """Ready-to-send `input_audio_buffer.append` text; the base64 payload goes in untouched (hot path)."""
    return '{"type":"input_audio_buffer.append","audio":"' + payload_b64 + '"}'


# --- server events -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerEvent:
    """One server event: its `type` and the raw decoded object."""

    type: str
    data: dict[str, Any]


@dataclass(slots=True)
class AudioDelta(ServerEvent):
    """`response.output_audio.delta`: a chunk of the agent's voice (base64 μ-law) for an assistant item."""

    delta: str
    item_id: str
    response_id: str


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
        delta, item_id = data.get("delta"), data.get("item_id")
        # delta is spliced unescaped into Twilio's JSON: check its alphabet (about 1.5 ns a character,
        # 15 µs per second of audio). Padding length is not policed; that is Twilio's to judge.
        if type(delta) is not str or type(item_id) is not str or _BASE64_TEXT.fullmatch(delta) is None:
            raise ProtocolError("response.output_audio.delta without a base64 delta and an item_id")
        response_id = data.get("response_id")
        return AudioDelta(kind, data, delta, item_id, response_id if type(response_id) is str else "")
    if type(kind) is not str or not kind:
        raise ProtocolError("server event has no type")
    return ServerEvent(kind, data)
