"""A loopback stand-in for the OpenAI Realtime API (GA protocol, WebSocket transport).

It speaks the documented GA event names and shapes, validates every client event against the
`openai` package's own types, runs an energy-based server VAD on the caller's audio, and answers
with scripted turns: spoken replies (deterministic audio + transcript) or function calls.
Faults (refused handshake, dropped socket, server error, stall, session cap) can be switched on
per simulator, even mid-test.

    sim = RealtimeSimulator(script=Script([Reply("Hello!"), ToolCall("end_call", {})]))
    async with sim.serve() as url:           # ws://127.0.0.1:PORT/v1/realtime
        ...
    assert sim.errors == []

Sync callers: `url = sim.start_in_thread()` … `sim.stop()`.
Standalone: `python -m calls.simulators.realtime_server --port 8765`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import audio
from .validation import InvalidClientEvent, validate_client_event

logger = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
DEFAULT_SESSION_MAX_S = 3600.0
SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
# Billing rates documented for audio: ~600 tokens/min of caller audio, ~1,200/min of model audio.
INPUT_AUDIO_TOKENS_PER_S = 10.0
OUTPUT_AUDIO_TOKENS_PER_S = 20.0
MAX_RECORDED_ERRORS = 1000
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


# --- the script -----------------------------------------------------------------------------------


@dataclass
class Reply:
    """A spoken model turn: `text` is the transcript; audio lasts `audio_ms` (default ~65 ms/char)."""

    text: str
    audio_ms: int | None = None

    @property
    def duration_ms(self) -> int:
        if self.audio_ms is not None:
            return max(0, int(self.audio_ms))
        return max(200, 65 * len(self.text))


@dataclass
class ToolCall:
    """A model turn that calls a function; `arguments` may be a dict (JSON-encoded) or a raw string."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


Turn = Reply | ToolCall


@dataclass
class Script:
    """What the model says. Each response (greeting, after a user turn, after a tool output)
    consumes the next turn; when they run out, `fallback` repeats. `transcripts` are what the
    simulated transcription model "hears" for each committed user turn, in order."""

    turns: list[Turn] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    fallback: Turn = field(default_factory=lambda: Reply("Is there anything else I can help you with?"))

    def turn(self, index: int) -> Turn:
        return self.turns[index] if index < len(self.turns) else self.fallback

    def transcript(self, index: int) -> str:
        return self.transcripts[index] if index < len(self.transcripts) else f"caller utterance {index + 1}"


@dataclass
class Pacing:
    """How model audio is streamed. `speed` 1.0 = real time, 4.0 = four times faster, None = no
    waiting at all (tests). `first_audio_delay_ms` imitates the model's time to first audio."""

    chunk_ms: int = 100
    speed: float | None = 1.0
    first_audio_delay_ms: int = 200
    pattern: str = "tone"  # "tone" (440 Hz sine) or "counter" (bytes 0,1,2,… mod 256)

    @classmethod
    def fast(cls) -> Pacing:
        return cls(chunk_ms=100, speed=None, first_audio_delay_ms=0)


@dataclass
class Faults:
    """Misbehaviour to inject. Read live, so a test may change fields while calls run."""

    refuse_status: int | None = None  # answer the handshake with this HTTP status (401, 500, …)
    drop_after_events: int | None = None  # abort the TCP connection after sending N server events
    drop_after_first_response: bool = False  # abort right after the first response.done
    error_after_events: int | None = None  # send one `server_error` error event after N server events
    stall_after_events: int | None = None  # after N server events, send nothing more (keep reading)
    stall_s: float | None = None  # with stall_after_events: resume after this long (events delayed, none lost)
    inject_after_events: int | None = None  # after N server events, send the `inject` frames once, as they are
    inject: list[str | bytes] = field(default_factory=list)  # raw frames: malformed or unexpected events (fuzzing)
    abrupt: bool = True  # drops abort the transport (1006); False closes with 1011


def agent_audio(ms: int, pattern: str = "tone", start_byte: int = 0, fmt: str = "audio/pcmu") -> bytes:
    """The simulator's deterministic model audio. `start_byte` is the offset into the response's
    audio, so chunks concatenate into exactly `agent_audio(total_ms)`; tests can recompute it."""
    if fmt == "audio/pcm":
        # 24 kHz PCM16: what a session that forgot to ask for G.711 would get.
        count = ms * 24
        first = start_byte // 2
        samples = [
            round(0.3 * 32767 * math.sin(2 * math.pi * 440 * (first + n) / 24000)) for n in range(count)
        ]
        return b"".join(int(s).to_bytes(2, "little", signed=True) for s in samples)
    count = ms * audio.BYTES_PER_MS
    if pattern == "counter":
        return bytes((start_byte + n) % 256 for n in range(count))
    # One 440 Hz period is not a whole number of samples, so index the sine by absolute sample.
    return audio.samples_to_ulaw(
        [
            round(0.3 * 32767 * math.sin(2 * math.pi * 440 * (start_byte + n) / audio.SAMPLE_RATE))
            for n in range(count)
        ]
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _default_session(model: str) -> dict[str, Any]:
    """The GA defaults a fresh session reports (PCM16 24 kHz until the client asks for G.711)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": _new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful assistant.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0},
        },
        "include": None,
    }


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if (
            isinstance(value, dict)
            and isinstance(base.get(key), dict)
            and key not in ("turn_detection", "format")
        ):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# --- per-connection state ----------------------------------------------------------------------


@dataclass
class ResponseRecord:
    """Summary of one response, kept for assertions."""

    id: str
    kind: str  # "audio", "text" or "function_call"
    status: str = "in_progress"
    reason: str | None = None
    item_id: str | None = None
    transcript: str = ""
    audio_bytes: int = 0
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    usage: dict[str, Any] | None = None


@dataclass
class _Item:
    id: str
    type: str
    role: str | None = None
    call_id: str | None = None
    audio_ms: float = 0.0


async def lose_connection(session: Any, abrupt: bool) -> None:
    """A session's fault: lose the connection the way a network failure (`abrupt`) or a server crash would."""
    session.closed_reason = "fault: dropped"
    if abrupt:
        session.ws.transport.abort()
    else:
        await session.ws.close(1011, "internal error")
    raise ConnectionClosed(None, None)


class SimSession:
    """One client connection. Public attributes are the record tests assert on."""

    def __init__(self, sim: RealtimeSimulator, ws: ServerConnection, request: Request) -> None:
        self.sim = sim
        self.ws = ws
        self.id = _new_id("sess")
        self.headers: dict[str, str] = {k.lower(): v for k, v in request.headers.raw_items()}
        self.path = request.path
        self.model = parse_qs(urlsplit(request.path).query).get("model", [""])[0]
        self.config = _default_session(self.model)
        self.config["id"] = self.id
        self.record = sim.record
        self.received: list[dict[str, Any]] = []  # every client event (when record=True)
        self.sent: list[dict[str, Any]] = []  # every server event (when record=True)
        self.errors: list[dict[str, Any]] = []  # error events caused by the client
        self.truncates: list[dict[str, Any]] = []
        self.tool_outputs: list[dict[str, Any]] = []
        self.responses: list[ResponseRecord] = []
        self.received_count = 0
        self.sent_count = 0
        self.audio_in_bytes = 0
        self.closed_reason: str | None = None
        self.ended = asyncio.Event()
        # Conversation / VAD state.
        self._items: dict[str, _Item] = {}
        self._last_item_id: str | None = None
        self._turn_index = 0
        self._user_turns = 0
        self._buffer_ms = 0.0  # uncommitted input audio
        self._audio_ms_total = 0.0  # all audio written this session
        self._pending = b""
        self._in_speech = False
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0.0
        self._silence_ms = 0.0
        self._idle_ms = 0.0  # silence since the last response finished playing (server VAD idle timeout)
        self.idle_timeouts = 0
        self._input_audio_tokens = 0.0
        self._context_output_audio_tokens = 0.0
        self._context_text_tokens = 0
        self._instruction_tokens = 0
        self._audio_produced = False
        self._active: _ActiveResponse | None = None
        self._stalled = False
        self._stall_over: asyncio.Event | None = None  # set when a timed stall (Faults.stall_s) ends
        self.stalled_at: float | None = None  # time.monotonic() when a timed stall began
        self._error_injected = False
        self._frames_injected = False
        self._drop_scheduled = False

    # -- sending ------------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        """Send one server event, applying the live fault settings."""
        faults = self.sim.faults
        if self._stalled:
            return
        if faults.stall_after_events is not None and self.sent_count >= faults.stall_after_events:
            if faults.stall_s is not None:
                await self._timed_stall(faults.stall_s)
            else:
                self._stalled = True
                logger.info("realtime sim %s: stalling", self.id)
                return
        event.setdefault("event_id", _new_id("event"))
        await self.ws.send(json.dumps(event))
        self.sent_count += 1
        if self.record:
            self.sent.append(event)
        if (
            faults.error_after_events is not None
            and not self._error_injected
            and self.sent_count >= faults.error_after_events
        ):
            self._error_injected = True
            await self.ws.send(
                json.dumps(
                    {
                        "type": "error",
                        "event_id": _new_id("event"),
                        "error": {
                            "type": "server_error",
                            "code": None,
                            "param": None,
                            "event_id": None,
                            "message": SERVER_ERROR_MESSAGE,
                        },
                    }
                )
            )
            self.sent_count += 1
        if (
            faults.inject_after_events is not None
            and not self._frames_injected
            and self.sent_count >= faults.inject_after_events
        ):
            self._frames_injected = True
            for frame in faults.inject:
                await self.ws.send(frame)
                self.sent_count += 1
        if faults.drop_after_events is not None and self.sent_count >= faults.drop_after_events:
            await self.drop()
        if faults.drop_after_first_response and event["type"] == "response.done":
            await self.drop()

    async def _timed_stall(self, seconds: float) -> None:
        """The first send past the threshold holds every send (in order) for `seconds`, once per session."""
        if self._stall_over is None:
            self._stall_over = asyncio.Event()
            self.stalled_at = time.monotonic()
            logger.info("realtime sim %s: stalling for %.1fs", self.id, seconds)
            await asyncio.sleep(seconds)
            self._stall_over.set()
        await self._stall_over.wait()

    async def drop(self) -> None:
        """Lose the connection the way a network failure or server crash would."""
        if self._drop_scheduled:
            return
        self._drop_scheduled = True
        await lose_connection(self, self.sim.faults.abrupt)

    async def client_error(
        self,
        message: str,
        *,
        code: str | None,
        param: str | None = None,
        event_id: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        """Answer a client mistake with an `error` event, as the API does, and record it."""
        error = {"type": error_type, "code": code, "message": message, "param": param, "event_id": event_id}
        if len(self.errors) < MAX_RECORDED_ERRORS:
            self.errors.append(error)
        logger.info("realtime sim %s: client error %s: %s", self.id, code, message)
        await self.send({"type": "error", "error": error})

    # -- main loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        beta = self.headers.get("openai-beta", "")
        if "realtime=v1" in beta.replace(" ", ""):
            await self.client_error(
                "The beta Realtime API (OpenAI-Beta: realtime=v1) is not supported by this GA endpoint; "
                "remove the header to use the GA event schema.",
                code="beta_api_not_supported",
                param="OpenAI-Beta",
            )
            await self.ws.close(1008, "beta schema not supported")
            self.closed_reason = "beta header"
            return
        lifetime = asyncio.get_running_loop().call_later(self.sim.session_max_s, self._expire)
        try:
            await self.send({"type": "session.created", "session": copy.deepcopy(self.config)})
            async for message in self.ws:
                await self._handle_raw(message)
        except ConnectionClosed:
            pass
        finally:
            lifetime.cancel()
            if self._active is not None and self._active.task is not None:
                self._active.task.cancel()
            self.closed_reason = self.closed_reason or "client closed"
            self.ended.set()

    def _expire(self) -> None:
        async def expire() -> None:
            self.closed_reason = "session expired"
            with contextlib.suppress(ConnectionClosed):
                await self.send(
                    {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "code": "session_expired",
                            "message": SESSION_EXPIRED_MESSAGE,
                            "param": None,
                            "event_id": None,
                        },
                    }
                )
                await self.ws.close(1001, SESSION_EXPIRED_MESSAGE)

        self.sim._spawn(expire())

    async def _handle_raw(self, message: str | bytes) -> None:
        self.received_count += 1
        if isinstance(message, bytes):
            await self.client_error(
                "Binary frames are not supported; send JSON text events.", code="invalid_json"
            )
            return
        try:
            event = json.loads(message)
        except ValueError:
            await self.client_error("The event is not valid JSON.", code="invalid_json")
            return
        if self.record:
            self.received.append(event)
        event_id = event.get("event_id") if isinstance(event, dict) else None
        try:
            validate_client_event(event)
        except InvalidClientEvent as exc:
            await self.client_error(exc.message, code=exc.code, param=exc.param, event_id=event_id)
            return
        handler = getattr(self, "_on_" + event["type"].replace(".", "_"))
        await handler(event, event_id)

    # -- session ----------------------------------------------------------------------------------

    async def _on_session_update(self, event: dict[str, Any], event_id: str | None) -> None:
        update = event["session"]
        if update.get("type") != "realtime":
            await self.client_error(
                "Cannot change the session type of a realtime session.",
                code="invalid_value",
                param="session.type",
                event_id=event_id,
            )
            return
        if "model" in update and update["model"] != self.model:
            await self.client_error(
                "The model cannot be changed after the session is created.",
                code="invalid_value",
                param="session.model",
                event_id=event_id,
            )
            return
        output = update.get("audio", {}).get("output") or {}
        if "voice" in output and self._audio_produced and output["voice"] != self._voice:
            await self.client_error(
                "Cannot update a conversation's voice if assistant audio is present.",
                code="cannot_update_voice",
                param="session.audio.output.voice",
                event_id=event_id,
            )
            return
        speed = output.get("speed")
        if speed is not None and not 0.25 <= speed <= 1.5:
            await self.client_error(
                f"Invalid 'session.audio.output.speed': {speed}; expected 0.25..1.5.",
                code="decimal_out_of_range",
                param="session.audio.output.speed",
                event_id=event_id,
            )
            return
        _deep_merge(self.config, update)
        self._instruction_tokens = len(self.config.get("instructions") or "") // 4
        await self.send({"type": "session.updated", "session": copy.deepcopy(self.config)})

    @property
    def _voice(self) -> str:
        return self.config["audio"]["output"].get("voice") or "alloy"

    @property
    def input_format(self) -> str:
        return (self.config["audio"]["input"].get("format") or {}).get("type") or "audio/pcm"

    @property
    def output_format(self) -> str:
        return (self.config["audio"]["output"].get("format") or {}).get("type") or "audio/pcm"

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        return self.config["audio"]["input"].get("turn_detection")

    # -- input audio and VAD ------------------------------------------------------------------

    async def _on_input_audio_buffer_append(self, event: dict[str, Any], event_id: str | None) -> None:
        try:
            data = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError):
            await self.client_error(
                "Invalid 'audio': not valid base64.", code="invalid_value", param="audio", event_id=event_id
            )
            return
        self.audio_in_bytes += len(data)
        pcm16 = self.input_format == "audio/pcm"
        frame_bytes = 960 if pcm16 else audio.FRAME_BYTES  # 20 ms at 24 kHz PCM16 or 8 kHz G.711
        self._pending += data
        while len(self._pending) >= frame_bytes:
            frame, self._pending = self._pending[:frame_bytes], self._pending[frame_bytes:]
            level = audio.pcm16_rms(frame) if pcm16 else audio.ulaw_rms(frame)
            await self._vad_frame(level)

    async def _vad_frame(self, level: float) -> None:
        frame_start = self._audio_ms_total
        self._audio_ms_total += audio.FRAME_MS
        self._buffer_ms += audio.FRAME_MS
        td = self.turn_detection
        if not td:
            return
        is_speech = level >= self.sim.vad_rms_threshold
        if not self._in_speech:
            if not is_speech:
                # Without speech the buffer keeps only the prefix padding, as server VAD does.
                self._buffer_ms = min(self._buffer_ms, float(td.get("prefix_padding_ms") or 300))
                await self._idle_frame(td)
                return
            self._in_speech = True
            self._idle_ms = 0.0
            self._silence_ms = 0.0
            self._speech_item_id = _new_id("item")
            padding = td.get("prefix_padding_ms")
            self._speech_start_ms = max(0.0, frame_start - (300 if padding is None else padding))
            await self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": int(self._speech_start_ms),
                    "item_id": self._speech_item_id,
                }
            )
            if self._active is not None and td.get("interrupt_response") is not False:
                await self._active.cancel("turn_detected")
            return
        if is_speech:
            self._silence_ms = 0.0
            return
        self._silence_ms += audio.FRAME_MS
        if td.get("type") == "semantic_vad":
            eagerness = td.get("eagerness") or "auto"
            needed = {"high": 300, "medium": 600, "auto": 600, "low": 1200}.get(eagerness, 600)
        else:
            needed = td.get("silence_duration_ms")
            needed = 200 if needed is None else needed
        if self._silence_ms < needed:
            return
        self._in_speech = False
        item_id = self._speech_item_id or _new_id("item")
        await self.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": int(self._audio_ms_total),
                "item_id": item_id,
            }
        )
        await self._commit(item_id, None)
        if td.get("create_response") is not False:
            await self._start_response({}, None)

    async def _idle_frame(self, td: dict[str, Any]) -> None:
        """Server VAD's `idle_timeout_ms`: after that much silence (counted from the end of the last response's
        playback) the server reports the timeout, commits the silence and answers by itself."""
        timeout = td.get("idle_timeout_ms") if td.get("type") == "server_vad" else None
        if not timeout or self._active is not None:
            return
        self._idle_ms += audio.FRAME_MS
        if self._idle_ms < timeout:
            return
        self._idle_ms = 0.0
        self.idle_timeouts += 1
        item_id = _new_id("item")
        end_ms = int(self._audio_ms_total)
        await self.send({"type": "input_audio_buffer.timeout_triggered", "audio_start_ms": max(0, end_ms - timeout),
                         "audio_end_ms": end_ms, "item_id": item_id})
        await self._commit(item_id, None, silent=True)
        if td.get("create_response") is not False:
            await self._start_response({}, None)

    async def _on_input_audio_buffer_commit(self, event: dict[str, Any], event_id: str | None) -> None:
        if self._buffer_ms < 100:
            await self.client_error(
                f"Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {self._buffer_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                event_id=event_id,
            )
            return
        self._in_speech = False
        await self._commit(self._speech_item_id or _new_id("item"), event_id)

    async def _on_input_audio_buffer_clear(self, event: dict[str, Any], event_id: str | None) -> None:
        self._buffer_ms = 0.0
        self._pending = b""
        self._in_speech = False
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _commit(self, item_id: str, event_id: str | None, silent: bool = False) -> None:
        """`silent`: the idle timeout's commit of silence (an empty transcript, no scripted caller line)."""
        self._input_audio_tokens += self._buffer_ms / 1000 * INPUT_AUDIO_TOKENS_PER_S
        committed_ms = self._buffer_ms
        self._buffer_ms = 0.0
        self._speech_item_id = None
        previous = self._last_item_id
        await self.send(
            {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous}
        )
        transcription = self.config["audio"]["input"].get("transcription")
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(_Item(item_id, "message", role="user", audio_ms=committed_ms))
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        transcript = "" if silent else self.sim.script.transcript(self._user_turns)
        self._user_turns += 0 if silent else 1
        if transcription:
            item["content"][0]["transcript"] = transcript
            await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": transcript,
                    "usage": {"type": "duration", "seconds": round(committed_ms / 1000, 3)},
                }
            )
        else:
            await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    def _add_item(self, item: _Item) -> None:
        self._items[item.id] = item
        self._last_item_id = item.id
        # Bounded: a phone call never needs more than the recent items for truncate/delete checks.
        while len(self._items) > 500:
            self._items.pop(next(iter(self._items)))

    # -- conversation items -------------------------------------------------------------------

    async def _on_conversation_item_create(self, event: dict[str, Any], event_id: str | None) -> None:
        item = copy.deepcopy(event["item"])
        item.setdefault("id", _new_id("item"))
        item["object"] = "realtime.item"
        item.setdefault("status", "completed")
        if item["type"] == "function_call_output":
            known = {i.call_id for i in self._items.values() if i.type == "function_call"}
            if item["call_id"] not in known:
                await self.client_error(
                    f"Tool call ID '{item['call_id']}' not found in conversation.",
                    code="invalid_value",
                    param="item.call_id",
                    event_id=event_id,
                )
                return
            output = {"call_id": item["call_id"], "output": item["output"], "item_id": item["id"]}
            self.tool_outputs.append(output)
            self._context_text_tokens += len(str(item["output"])) // 4
        elif item["type"] == "message":
            self._context_text_tokens += len(json.dumps(item.get("content", []))) // 4
        self._add_item(_Item(item["id"], item["type"], role=item.get("role"), call_id=item.get("call_id")))
        previous = event.get("previous_item_id") or self._last_item_id
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    async def _on_conversation_item_delete(self, event: dict[str, Any], event_id: str | None) -> None:
        if self._items.pop(event["item_id"], None) is None:
            await self.client_error(
                f"Item with item_id '{event['item_id']}' not found.",
                code="item_not_found",
                param="item_id",
                event_id=event_id,
            )
            return
        await self.send({"type": "conversation.item.deleted", "item_id": event["item_id"]})

    async def _on_conversation_item_retrieve(self, event: dict[str, Any], event_id: str | None) -> None:
        item = self._items.get(event["item_id"])
        if item is None:
            await self.client_error(
                f"Item with item_id '{event['item_id']}' not found.",
                code="item_not_found",
                param="item_id",
                event_id=event_id,
            )
            return
        await self.send(
            {
                "type": "conversation.item.retrieved",
                "item": {
                    "id": item.id,
                    "object": "realtime.item",
                    "type": "message",
                    "role": item.role or "user",
                    "status": "completed",
                    "content": [],
                },
            }
        )

    async def _on_conversation_item_truncate(self, event: dict[str, Any], event_id: str | None) -> None:
        item = self._items.get(event["item_id"])
        requested = event["audio_end_ms"]
        record = {
            "item_id": event["item_id"],
            "content_index": event["content_index"],
            "audio_end_ms": requested,
            "item_audio_ms": item.audio_ms if item else None,
            "accepted": False,
        }
        self.truncates.append(record)
        if item is None:
            await self.client_error(
                f"Item with item_id '{event['item_id']}' not found.",
                code="item_not_found",
                param="item_id",
                event_id=event_id,
            )
            return
        if item.role != "assistant" or event["content_index"] != 0:
            await self.client_error(
                "Only assistant message audio content can be truncated.",
                code="invalid_value",
                param="content_index",
                event_id=event_id,
            )
            return
        if requested < 0:
            await self.client_error(
                f"Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, but got "
                f"{requested} instead.",
                code="integer_below_min_value",
                param="audio_end_ms",
                event_id=event_id,
            )
            return
        if requested > item.audio_ms:
            await self.client_error(
                f"Audio content of {int(item.audio_ms)}ms is already shorter than {requested}ms",
                code="invalid_value",
                param="audio_end_ms",
                event_id=event_id,
            )
            return
        item.audio_ms = float(requested)
        record["accepted"] = True
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item.id,
                "content_index": 0,
                "audio_end_ms": requested,
            }
        )

    async def _on_output_audio_buffer_clear(self, event: dict[str, Any], event_id: str | None) -> None:
        # The output audio buffer exists only for WebRTC/SIP; a WebSocket client owns its playback.
        await self.client_error(
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            code="invalid_value",
            param="type",
            event_id=event_id,
        )

    # -- responses ------------------------------------------------------------------------------

    async def _on_response_create(self, event: dict[str, Any], event_id: str | None) -> None:
        await self._start_response(event.get("response") or {}, event_id)

    async def _on_response_cancel(self, event: dict[str, Any], event_id: str | None) -> None:
        active = self._active
        wanted = event.get("response_id")
        if active is None or (wanted and wanted != active.record.id):
            await self.client_error(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
                event_id=event_id,
            )
            return
        await active.cancel("client_cancelled")

    async def _start_response(self, params: dict[str, Any], event_id: str | None) -> None:
        if self._active is not None:
            await self.client_error(
                f"Conversation already has an active response in progress: {self._active.record.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
                event_id=event_id,
            )
            return
        turn = self.sim.script.turn(self._turn_index)
        self._turn_index += 1
        active = _ActiveResponse(self, turn, params)
        self._active = active
        await active.begin()
        active.task = self.sim._spawn(active.stream())

    def usage(self, output_audio_tokens: int, output_text_tokens: int) -> dict[str, Any]:
        input_audio = round(self._input_audio_tokens + self._context_output_audio_tokens)
        input_text = self._instruction_tokens + self._context_text_tokens
        cached = (input_audio + input_text) // 2 if self.responses else 0
        return {
            "total_tokens": input_audio + input_text + output_audio_tokens + output_text_tokens,
            "input_tokens": input_audio + input_text,
            "output_tokens": output_audio_tokens + output_text_tokens,
            "input_token_details": {
                "text_tokens": input_text,
                "audio_tokens": input_audio,
                "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": {
                    "text_tokens": min(cached, input_text),
                    "audio_tokens": max(0, cached - input_text),
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": output_text_tokens, "audio_tokens": output_audio_tokens},
        }


class _ActiveResponse:
    """One response being generated; streams its events and can be cancelled mid-way."""

    def __init__(self, session: SimSession, turn: Turn, params: dict[str, Any]) -> None:
        self.session = session
        self.turn = turn
        self.params = params
        modalities = params.get("output_modalities") or session.config.get("output_modalities") or ["audio"]
        self.modalities = list(modalities)
        kind = (
            "function_call" if isinstance(turn, ToolCall) else ("audio" if "audio" in modalities else "text")
        )
        self.record = ResponseRecord(id=_new_id("resp"), kind=kind)
        self.item_id = _new_id("item")
        self.record.item_id = self.item_id
        self.out_of_band = params.get("conversation") == "none"
        self.cancel_reason: str | None = None
        self.cancelled = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        status_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        session = self.session
        return {
            "object": "realtime.response",
            "id": self.record.id,
            "status": status,
            "status_details": status_details,
            "output": output or [],
            "conversation_id": None if self.out_of_band else "conv_" + session.id[5:],
            "output_modalities": self.modalities,
            "max_output_tokens": self.params.get(
                "max_output_tokens", session.config.get("max_output_tokens", "inf")
            ),
            "audio": {
                "output": {
                    "format": copy.deepcopy(session.config["audio"]["output"].get("format")),
                    "voice": session._voice,
                }
            },
            "usage": usage,
            "metadata": self.params.get("metadata"),
        }

    async def begin(self) -> None:
        await self.session.send({"type": "response.created", "response": self._response("in_progress")})

    async def cancel(self, reason: str) -> None:
        """Stop generating and wait until the closing events (response.done: cancelled) are out."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.cancelled.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.finished.wait()

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless cancelled; True if cancelled."""
        if seconds <= 0:
            await asyncio.sleep(0)  # let the reader run so a barge-in can land between chunks
            return self.cancelled.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.cancelled.wait(), seconds)
        return self.cancelled.is_set()

    async def stream(self) -> None:
        session = self.session
        try:
            if isinstance(self.turn, ToolCall):
                await self._stream_function_call(self.turn)
            else:
                await self._stream_message(self.turn)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("realtime sim: response stream failed")
        finally:
            if session._active is self:
                session._active = None
                # Server VAD's idle timeout counts from the end of this response's playback.
                session._idle_ms = -self.record.audio_bytes / audio.BYTES_PER_MS
            session.responses.append(self.record)
            if len(session.responses) > MAX_RECORDED_ERRORS:
                session.responses.pop(0)
            self.finished.set()

    async def _finish(self, output: list[dict[str, Any]], audio_tokens: int, text_tokens: int) -> None:
        session = self.session
        usage = session.usage(audio_tokens, text_tokens)
        if self.cancel_reason:
            status = "cancelled"
            details = {"type": "cancelled", "reason": self.cancel_reason}
        else:
            status = "completed"
            details = None
        self.record.status = status
        self.record.reason = self.cancel_reason
        self.record.usage = usage
        session._context_output_audio_tokens += audio_tokens
        session._context_text_tokens += text_tokens
        await session.send(
            {"type": "response.done", "response": self._response(status, output, usage, details)}
        )
        await session.send(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                    {
                        "name": "tokens",
                        "limit": 400000,
                        "remaining": 400000 - usage["total_tokens"],
                        "reset_seconds": 0.9,
                    },
                ],
            }
        )

    async def _stream_message(self, reply: Reply) -> None:
        session = self.session
        pacing = session.sim.pacing
        audio_out = self.record.kind == "audio"
        base = {"response_id": self.record.id, "item_id": self.item_id, "output_index": 0, "content_index": 0}
        item = {
            "id": self.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await self._item_added(item, _Item(self.item_id, "message", role="assistant"))
        part_type = "audio" if audio_out else "text"
        empty_part = {"type": part_type, "transcript": ""} if audio_out else {"type": "text", "text": ""}
        await session.send({"type": "response.content_part.added", **base, "part": empty_part})

        total_ms = reply.duration_ms if audio_out else 0
        chunk_ms = max(20, pacing.chunk_ms)
        chunks = max(1, math.ceil(total_ms / chunk_ms)) if audio_out else 1
        words = reply.text.split(" ")
        spoken_words = 0
        transcript = ""
        sent_ms = 0
        fmt = session.output_format
        cancelled = await self._pause(pacing.first_audio_delay_ms / 1000)
        started = asyncio.get_running_loop().time()
        for index in range(chunks):
            if cancelled:
                break
            if audio_out:
                this_ms = min(chunk_ms, total_ms - sent_ms)
                data = agent_audio(this_ms, pacing.pattern, sent_ms * audio.BYTES_PER_MS, fmt)
                await session.send(
                    {
                        "type": "response.output_audio.delta",
                        **base,
                        "delta": base64.b64encode(data).decode("ascii"),
                    }
                )
                session._audio_produced = True
                sent_ms += this_ms
                self.record.audio_bytes += len(data)
                item_record = None if self.out_of_band else session._items.get(self.item_id)
                if item_record is not None:
                    item_record.audio_ms = sent_ms
            # Spread the transcript over the audio so a cancelled response has a partial transcript.
            target_words = math.ceil(len(words) * (index + 1) / chunks)
            if target_words > spoken_words:
                delta = " ".join(words[spoken_words:target_words])
                delta = delta if not transcript else " " + delta
                transcript += delta
                spoken_words = target_words
                kind = "response.output_audio_transcript.delta" if audio_out else "response.output_text.delta"
                await session.send({"type": kind, **base, "delta": delta})
            if pacing.speed:
                target = started + sent_ms / 1000 / pacing.speed
                cancelled = await self._pause(target - asyncio.get_running_loop().time())
            else:
                cancelled = await self._pause(0)
        self.record.transcript = transcript
        if audio_out:
            await session.send({"type": "response.output_audio.done", **base})
            await session.send(
                {"type": "response.output_audio_transcript.done", **base, "transcript": transcript}
            )
            part = {"type": "audio", "transcript": transcript}
            content = [{"type": "output_audio", "transcript": transcript}]
        else:
            await session.send({"type": "response.output_text.done", **base, "text": transcript})
            part = {"type": "text", "text": transcript}
            content = [{"type": "output_text", "text": transcript}]
        await session.send({"type": "response.content_part.done", **base, "part": part})
        item.update(status="incomplete" if self.cancel_reason else "completed", content=content)
        await self._item_done(item)
        audio_tokens = round(sent_ms / 1000 * OUTPUT_AUDIO_TOKENS_PER_S)
        await self._finish([item], audio_tokens, max(1, len(transcript) // 4))

    async def _item_added(self, item: dict[str, Any], record: _Item) -> None:
        """`response.output_item.added`, and the item joins the conversation unless the response is out of band."""
        await self.session.send(
            {"type": "response.output_item.added", "response_id": self.record.id, "output_index": 0,
             "item": copy.deepcopy(item)}
        )
        if not self.out_of_band:
            self.session._add_item(record)
            await self.session.send(
                {"type": "conversation.item.added", "previous_item_id": None, "item": copy.deepcopy(item)}
            )

    async def _item_done(self, item: dict[str, Any]) -> None:
        """`response.output_item.done`, and `conversation.item.done` unless the response is out of band."""
        await self.session.send(
            {"type": "response.output_item.done", "response_id": self.record.id, "output_index": 0,
             "item": copy.deepcopy(item)}
        )
        if not self.out_of_band:
            await self.session.send(
                {"type": "conversation.item.done", "previous_item_id": None, "item": copy.deepcopy(item)}
            )

    async def _stream_function_call(self, call: ToolCall) -> None:
        session = self.session
        call_id = call.call_id or "call_" + uuid.uuid4().hex[:16]
        self.record.call_id, self.record.name = call_id, call.name
        arguments = call.arguments_json
        self.record.arguments = arguments
        item = {
            "id": self.item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
        }
        await self._item_added(item, _Item(self.item_id, "function_call", call_id=call_id))
        base = {"response_id": self.record.id, "item_id": self.item_id, "output_index": 0, "call_id": call_id}
        cancelled = await self._pause(session.sim.pacing.first_audio_delay_ms / 1000)
        if not cancelled:
            for start in range(0, len(arguments), 16):
                await session.send(
                    {
                        "type": "response.function_call_arguments.delta",
                        **base,
                        "delta": arguments[start : start + 16],
                    }
                )
            await session.send(
                {
                    "type": "response.function_call_arguments.done",
                    **base,
                    "name": call.name,
                    "arguments": arguments,
                }
            )
            item.update(status="completed", arguments=arguments)
        else:
            item.update(status="incomplete")
        await self._item_done(item)
        await self._finish([item], 0, max(1, len(arguments) // 4))


# --- the server ------------------------------------------------------------------------------


class RealtimeSimulator:
    """A Realtime API double. See the module docstring."""

    session_class: type[Any] = SimSession  # one connection's protocol; the GPT-Live simulator has its own

    def __init__(
        self,
        script: Script | None = None,
        faults: Faults | None = None,
        pacing: Pacing | None = None,
        *,
        record: bool = True,
        session_max_s: float = DEFAULT_SESSION_MAX_S,
        vad_rms_threshold: float = 500.0,
    ) -> None:
        self.script = script or Script()
        self.faults = faults or Faults()
        self.pacing = pacing or Pacing()
        self.record = record
        self.session_max_s = session_max_s
        self.vad_rms_threshold = vad_rms_threshold
        self.sessions: list[SimSession] = []
        self.handshake_rejections: list[dict[str, Any]] = []
        self.url: str | None = None
        self._max_sessions_kept = 10_000 if record else 200
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._session_added: asyncio.Event | None = None
        self.total_sessions = 0

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every client-caused error event across sessions (plus refused handshakes): assert == []."""
        return [error for session in self.sessions for error in session.errors]

    @property
    def active_sessions(self) -> list[SimSession]:
        return [s for s in self.sessions if not s.ended.is_set()]

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        def reject(status: HTTPStatus | int, message: str) -> Response:
            if len(self.handshake_rejections) < MAX_RECORDED_ERRORS:
                self.handshake_rejections.append(
                    {"status": int(status), "path": request.path, "reason": message}
                )
            body = json.dumps(
                {"error": {"type": "invalid_request_error", "code": None, "param": None, "message": message}}
            )
            response = connection.respond(status, body)
            response.headers["Content-Type"] = "application/json"
            return response

        faults = self.faults
        if faults.refuse_status is not None:
            return reject(faults.refuse_status, f"Simulated handshake failure ({faults.refuse_status}).")
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != REALTIME_PATH:
            return reject(HTTPStatus.NOT_FOUND, f"Invalid URL (GET {parts.path})")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return reject(HTTPStatus.UNAUTHORIZED, "Missing bearer or basic authentication in header.")
        if not parse_qs(parts.query).get("model", [""])[0]:
            return reject(HTTPStatus.BAD_REQUEST, "Missing required parameter: 'model'.")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        session = self.session_class(self, ws, ws.request)  # type: ignore[arg-type]
        self.sessions.append(session)
        self.total_sessions += 1
        excess = len(self.sessions) - self._max_sessions_kept
        if excess > 0:
            # Keep memory bounded in long load tests: forget the oldest finished sessions.
            forget = {id(s) for s in [s for s in self.sessions if s.ended.is_set()][:excess]}
            self.sessions = [s for s in self.sessions if id(s) not in forget]
        if self._session_added is not None:
            self._session_added.set()
        await session.run()

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run the server on the current loop; yields its `ws://host:port/v1/realtime` URL."""
        self._session_added = asyncio.Event()
        server: Server = await serve(
            self._handler,
            host,
            port,
            process_request=self._process_request,
            max_size=16 * 2**20,
            ping_interval=None,
        )
        try:
            bound = server.sockets[0].getsockname()
            self.url = f"ws://{host}:{bound[1]}{REALTIME_PATH}"
            yield self.url
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
            for task in list(self._tasks):
                task.cancel()

    async def wait_for_session(self, count: int = 1, wait_s: float = 5.0) -> SimSession:
        """Wait until at least `count` sessions have connected; returns the newest."""
        async with asyncio.timeout(wait_s):
            while self.total_sessions < count:
                assert self._session_added is not None
                self._session_added.clear()
                await self._session_added.wait()
        return self.sessions[-1]

    # -- thread mode for sync callers --------------------------------------------------------

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve from a daemon thread with its own event loop; returns the URL once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            try:
                async with self.serve(host, port):
                    ready.set()
                    await self._stop_event.wait()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                raise

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="realtime-sim", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError("realtime simulator failed to start") from failure[0]
        assert self.url is not None
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with `start_in_thread`."""
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._loop = None

    def call_in_loop(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the server's loop (thread mode), e.g. to change faults atomically."""
        if self._loop is None:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)


def _counts_to_text(sim: RealtimeSimulator) -> str:
    return f"{len(sim.sessions)} session(s), {len(sim.errors)} client error(s)"


def run_standalone(simulator_class: type[RealtimeSimulator], name: str, url_setting: str, default_port: int,
                   argv: list[str] | None = None) -> None:
    """The command line of a simulator run on its own (this one and the GPT-Live one)."""
    parser = argparse.ArgumentParser(description=f"OpenAI {name} simulator (loopback WebSocket server).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--speed", type=float, default=1.0, help="audio pacing; 0 = as fast as possible")
    parser.add_argument("--first-audio-delay-ms", type=int, default=200)
    parser.add_argument("--chunk-ms", type=int, default=100, help="audio per output audio delta")
    parser.add_argument("--reply", action="append", default=[], help="scripted reply text (repeatable)")
    parser.add_argument("--no-record", action="store_true", help="keep no per-event records (load tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    script = Script(turns=[Reply(text) for text in args.reply])
    pacing = Pacing(chunk_ms=args.chunk_ms, speed=args.speed or None, first_audio_delay_ms=args.first_audio_delay_ms)
    sim = simulator_class(script=script, pacing=pacing, record=not args.no_record)

    async def run() -> None:
        async with sim.serve(args.host, args.port) as url:
            logger.info("%s simulator listening on %s (set %s to it)", name, url, url_setting)
            try:
                await asyncio.Future()
            finally:
                logger.info("stopping: %s", _counts_to_text(sim))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    """Run the simulator standalone, e.g. for `OPENAI_REALTIME_URL=ws://127.0.0.1:8765/v1/realtime`."""
    run_standalone(RealtimeSimulator, "Realtime GA", "OPENAI_REALTIME_URL", 8765, argv)

if __name__ == "__main__":
    main()


__all__ = [
    "DEFAULT_SESSION_MAX_S",
    "Faults",
    "Pacing",
    "RealtimeSimulator",
    "Reply",
    "ResponseRecord",
    "Script",
    "SimSession",
    "ToolCall",
    "Turn",
    "agent_audio",
]
