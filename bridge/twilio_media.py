"""Twilio Media Streams codec: parse what Twilio sends, build what we send back. Pure: no I/O.

Inbound (Twilio → us), one JSON text frame each:

    parse(text) -> Connected | Start | Media | Mark | Dtmf | Stop

A `media` frame in Twilio's own shape (its keys in its order, string values of digits, a lowercase track and a
base64 payload, JSON whitespace anywhere) is read by one anchored regular expression, `_MEDIA`, that also checks
the payload's alphabet: no `json.loads`, no dict, no second pass over the payload (`bridge.benchmarks.codec_bench`
compares the two). No value it matches can hold a quote or a backslash, so the frame is exactly that object and
the result is what the full parse gives. Anything else (other key orders, escapes, extra keys) takes the full
parse, `parse_json`: one `json.loads`.

Anything malformed (not JSON, not an object, unknown event, missing or ill-typed fields, a `start` whose
media format is not μ-law 8000 Hz mono, a payload that is not base64-shaped) raises `ProtocolError`, whose
`reason` is a short human sentence the consumer can put in the WebSocket close frame. No KeyError or
TypeError escapes `parse`.

`media` is checked first: it is 50 frames per second per call. Its base64 `payload` is kept as the string
Twilio sent and is meant to be forwarded untouched (see `bridge.realtime_events.append_audio`).

Outbound (us → Twilio), ready-to-send JSON text:

    media_message(stream_sid, payload_b64)  # plays base64 μ-law; payload passed through untouched
    mark_message(stream_sid, name)          # Twilio echoes a `mark` once the audio before it has played
    clear_message(stream_sid)               # empties Twilio's playback buffer (barge-in)

`media_message` is built by string concatenation: the base64 alphabet never needs JSON escaping, so the
payload goes in as-is. The caller must pass base64 text (OpenAI's `delta` is). SIDs and mark names are
JSON-escaped unless they are plain alphanumerics (ours always are, so that check is all it costs).

Audio arithmetic never decodes: `b64_audio_len(payload)` counts bytes from the base64 length, and μ-law at
8 kHz is `MULAW_BYTES_PER_MS` = 8 bytes per millisecond.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MULAW_BYTES_PER_MS",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "ProtocolError",
    "Start",
    "Stop",
    "TwilioMessage",
    "b64_audio_len",
    "clear_message",
    "is_base64_shaped",
    "mark_message",
    "media_message",
    "parse",
    "parse_json",
]

MULAW_BYTES_PER_MS = 8  # G.711 μ-law: 8000 samples/s, one byte each
EXPECTED_ENCODING = "audio/x-mulaw"
EXPECTED_SAMPLE_RATE = 8000
EXPECTED_CHANNELS = 1

# Standard base64 (RFC 4648 §4) with optional padding; the length check is done separately.
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_loads = json.loads

# Twilio's media frame: {"event":"media","sequenceNumber":"3",["streamSid":"MZ…",]"media":{"track":"inbound",
# "chunk":"1","timestamp":"5","payload":"…"}[,"streamSid":"MZ…"]}. JSON whitespace only ([ \t\n\r], not \s) and
# ASCII digits only ([0-9], not \d): json.loads rejects the rest, so the fast path must not accept it.
_W = r"[ \t\n\r]*"
_SID = rf'"streamSid"{_W}:{_W}"[A-Za-z0-9]*"'
_MEDIA = re.compile(
    rf'{_W}\{{{_W}"event"{_W}:{_W}"media"{_W},{_W}"sequenceNumber"{_W}:{_W}"[0-9]*"{_W},{_W}(?:{_SID}{_W},{_W})?'
    rf'"media"{_W}:{_W}\{{{_W}"track"{_W}:{_W}"([a-z_]*)"{_W},{_W}"chunk"{_W}:{_W}"[0-9]*"{_W},'
    rf'{_W}"timestamp"{_W}:{_W}"([0-9]+)"{_W},{_W}"payload"{_W}:{_W}"([A-Za-z0-9+/]*={{0,2}})"{_W}\}}{_W}'
    rf'(?:,{_W}{_SID}{_W})?\}}{_W}'
).fullmatch


class ProtocolError(Exception):
    """A frame that breaks the wire protocol; `reason` is short and safe to send as a close reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True, frozen=True)
class Connected:
    protocol: str = ""
    version: str = ""


@dataclass(slots=True, frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    media_format: dict[str, Any] = field(default_factory=dict)
    tracks: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class Media:
    payload_b64: str
    timestamp_ms: int
    track: str


@dataclass(slots=True, frozen=True)
class Mark:
    name: str


@dataclass(slots=True, frozen=True)
class Dtmf:
    digit: str
    track: str = ""


@dataclass(slots=True, frozen=True)
class Stop:
    call_sid: str = ""
    account_sid: str = ""


TwilioMessage = Connected | Start | Media | Mark | Dtmf | Stop


# --- inbound -----------------------------------------------------------------------------------------------


def is_base64_shaped(text: str) -> bool:
    """True when `text` looks like padded standard base64 (alphabet, padding, length multiple of 4).

    A shape check, not a decode: it is what keeps the string safe to splice into JSON unescaped."""
    return len(text) % 4 == 0 and _BASE64.fullmatch(text) is not None


def parse(text: str | bytes) -> TwilioMessage:
    """Parse one Media Streams frame from Twilio; raise `ProtocolError` for anything malformed."""
    if type(text) is str and (fast := _MEDIA(text)) is not None and not len(fast[3]) % 4:  # the hot path
        return Media(fast[3], int(fast[2]), fast[1])
    return parse_json(text)


def parse_json(text: str | bytes) -> TwilioMessage:
    """`parse` by one `json.loads`, for any frame (`parse` uses it for all but Twilio's own media frames)."""
    try:
        message = _loads(text)
    except (ValueError, TypeError, RecursionError):
        raise ProtocolError("frame is not valid JSON") from None
    if type(message) is not dict:
        raise ProtocolError("frame is not a JSON object")
    event = message.get("event")
    if event == "media":  # media frames in another shape than Twilio's: checked first, no helper calls
        media = message.get("media")
        if type(media) is not dict:
            raise ProtocolError("media frame without a media object")
        payload = media.get("payload")
        if type(payload) is not str or len(payload) % 4 or _BASE64.fullmatch(payload) is None:
            raise ProtocolError("media payload is not base64")
        track = media.get("track")
        if type(track) is not str:
            raise ProtocolError("media frame without a track")
        return Media(payload, _timestamp(media.get("timestamp")), track)
    if event == "mark":
        return Mark(_string(_object(message, "mark"), "name", "mark.name"))
    if event == "start":
        return _start(message)
    if event == "dtmf":
        dtmf = _object(message, "dtmf")
        track = dtmf.get("track", "")
        if type(track) is not str:
            raise ProtocolError("dtmf.track is not a string")
        return Dtmf(_string(dtmf, "digit", "dtmf.digit"), track)
    if event == "stop":
        # The call is ending anyway: a stop with a sparse body still stops, but a wrong type is malformed.
        stop = message.get("stop", {})
        if type(stop) is not dict:
            raise ProtocolError("stop is not an object")
        return Stop(_optional_string(stop, "callSid", "stop.callSid"),
                    _optional_string(stop, "accountSid", "stop.accountSid"))
    if event == "connected":
        return Connected(_optional_string(message, "protocol", "protocol"),
                         _optional_string(message, "version", "version"))
    if type(event) is not str:
        raise ProtocolError("frame has no event name")
    return _unknown(event)


def _unknown(event: str) -> TwilioMessage:
    shown = event if len(event) <= 32 else event[:32] + "…"
    raise ProtocolError(f"unknown event {shown!r}")


def _timestamp(value: object) -> int:
    # Twilio sends milliseconds since the stream started as a decimal string; accept a plain int too.
    if type(value) is str:
        if value.isascii() and value.isdigit():  # isdigit alone admits non-ASCII digits such as "²"
            return int(value)
    elif type(value) is int and value >= 0:
        return value
    raise ProtocolError("media timestamp is missing or not a number")


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if type(value) is not dict:
        raise ProtocolError(f"{key} frame without a {key} object")
    return value


def _string(obj: dict[str, Any], key: str, label: str) -> str:
    value = obj.get(key)
    if type(value) is not str or not value:
        raise ProtocolError(f"{label} is missing or not a string")
    return value


def _optional_string(obj: dict[str, Any], key: str, label: str) -> str:
    value = obj.get(key, "")
    if type(value) is not str:
        raise ProtocolError(f"{label} is not a string")
    return value


def _start(message: dict[str, Any]) -> Start:
    start = _object(message, "start")
    # start.streamSid is the documented field; the top-level copy is the same value on every frame.
    stream_sid = start.get("streamSid", message.get("streamSid"))
    if type(stream_sid) is not str or not stream_sid:
        raise ProtocolError("start.streamSid is missing or not a string")
    call_sid = _string(start, "callSid", "start.callSid")
    account_sid = _string(start, "accountSid", "start.accountSid")

    params = start.get("customParameters", {})
    if type(params) is not dict or not all(type(v) is str for v in params.values()):
        raise ProtocolError("start.customParameters must map names to strings")

    media_format = start.get("mediaFormat")
    if type(media_format) is not dict:
        raise ProtocolError("start.mediaFormat is missing")
    if (
        media_format.get("encoding") != EXPECTED_ENCODING
        or media_format.get("sampleRate") != EXPECTED_SAMPLE_RATE
        or media_format.get("channels", EXPECTED_CHANNELS) != EXPECTED_CHANNELS
    ):
        raise ProtocolError("media format must be audio/x-mulaw, 8000 Hz, mono")

    tracks = start.get("tracks", [])
    if type(tracks) is not list or not all(type(t) is str for t in tracks):
        raise ProtocolError("start.tracks must be a list of strings")
    return Start(stream_sid, call_sid, account_sid, dict(params), dict(media_format), tuple(tracks))


# --- outbound ----------------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    """JSON string literal for `value`; plain alphanumerics (our SIDs and mark names) skip the encoder."""
    if value.isascii() and value.isalnum():
        return '"' + value + '"'
    return json.dumps(value)


def media_message(stream_sid: str, payload_b64: str) -> str:
    """A `media` frame that plays `payload_b64` (base64 μ-law 8 kHz) to the caller; payload is not re-encoded."""
    return '{"event":"media","streamSid":' + _quote(stream_sid) + ',"media":{"payload":"' + payload_b64 + '"}}'


def mark_message(stream_sid: str, name: str) -> str:
    """A `mark` frame: Twilio echoes it back once all audio sent before it has played (or was cleared)."""
    return '{"event":"mark","streamSid":' + _quote(stream_sid) + ',"mark":{"name":' + _quote(name) + "}}"


def clear_message(stream_sid: str) -> str:
    """A `clear` frame: Twilio drops the audio it has buffered and echoes the marks still pending."""
    return '{"event":"clear","streamSid":' + _quote(stream_sid) + "}"


# --- audio arithmetic --------------------------------------------------------------------------------------


def b64_audio_len(payload_b64: str) -> int:
    """Bytes encoded by a base64 string, from its length alone (padded or not); never decodes."""
    n = len(payload_b64)
    if payload_b64.endswith("="):
        n -= 2 if payload_b64.endswith("==") else 1
    return n * 3 // 4
