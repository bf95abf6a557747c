"""A loopback stand-in for OpenAI GPT-Live (primary WebSocket), beside the Realtime one.

It follows /work/shared/LIVE_PROTOCOL.md and validates every client event against the `openai` package's
`openai.types.live` (strictly: unknown keys are violations). What it does:

- handshake at `/v1/live/sessions` with `Authorization: Bearer …` and no query string (401 / 400 otherwise);
- `session.start` must come first; it is answered by `session.started` with the resolved session
  (model, `audio.format`, voice, delegation, `id`, `expires_at`). Audio is in the session's one format both
  ways (μ-law 8 kHz for the bridge; PCM16 24 kHz if the client left `audio.format` out, the guide's [?]);
- caller audio goes through an energy VAD. Caller speech streams `session.input_transcript.delta`s: the
  first word once the caller has spoken `barge_in_ms`, the rest when the utterance ends; then the model
  takes its next scripted turn;
- the model owns barge-in: caller speech of `barge_in_ms` while the agent talks stops the agent's audio
  and transcript there (no event says so, as in the real service: output just stops);
- a spoken turn (`Reply`) streams `session.output_audio.delta` (no ids, no event_id) and
  `session.output_transcript.delta`s timed on the session timeline, paced by `Pacing` (real time by
  default; `Pacing.fast()` bursts, the other answer to the guide's open pacing question);
- a `ToolCall` turn is a delegation: with `responses` delegation, `session.delegation.created` then the
  backend's Responses stream wrapped in `response.event` (created, function call item added, argument
  deltas, item done, `response.completed` with token usage). The client answers every open call with
  `response.item.create` (function_call_output) then one `response.create`; the backend completes and the
  model speaks the next turn. A partial batch is refused. With `client` delegation the model waits for a
  `session.commentary.append` carrying the delegation id;
- the greeting: `session.commentary.append` with a null `delegation_id` makes the model speak its next turn;
- `session.usage.updated` every `usage_interval_s`, and `session.close` → `session.closed`
  {reason "close_requested", final usage} then a normal close. Billable seconds = whole seconds of the
  session, counted as the longer of wall-clock time and caller audio received (a phone streams audio
  in real time, silence included, so fast tests still bill sensibly);
- not modelled: Decisions delegation, audio fixtures, triggers and automatic delegation acknowledgements
  (`decision.*` and fixture commands are refused as `unsupported_in_simulator`);
- faults as in the Realtime simulator (`Faults`: refused handshake, drop, `server_error`, stall; "first
  response" means the first spoken turn) and a session lifetime ending with `session.closed` "expired".

A client event that breaks the protocol (invalid by the types, not `session.start` first, audio before
`session.started`, a bad audio rate, a tool result for an unknown call, …) is recorded in `errors`, answered
with an `error` event echoing its `event_id`, and — with `close_on_violation` (default) — the socket is
closed with 1008 and the reason, so a test cannot miss it. The guide leaves open whether the real service
closes ([?] §20.4); `close_on_violation=False` keeps the session going instead.

    sim = LiveSimulator(script=Script([Reply("Hello!"), ToolCall("end_call", {})]))
    async with sim.serve() as url:           # ws://127.0.0.1:PORT/v1/live/sessions
        ...
    assert sim.errors == []

Sync callers: `url = sim.start_in_thread()` … `sim.stop()`.
Standalone: `python -m calls.simulators.live_server --port 8766`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, get_args
from urllib.parse import urlsplit

from openai.types.live.built_in_voice import BuiltInVoice
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import audio
from .realtime_server import (
    MAX_RECORDED_ERRORS,
    REALTIME_PATH,
    SERVER_ERROR_MESSAGE,
    Faults,
    Pacing,
    RealtimeSimulator,
    Reply,
    Script,
    ToolCall,
    Turn,
    agent_audio,
    lose_connection,
    run_standalone,
)
from .validation import InvalidClientEvent, validate_live_client_event

logger = logging.getLogger(__name__)

LIVE_PATH = "/v1/live/sessions"
LIVE_MODELS = frozenset({"gpt-live-1", "gpt-live-1.1"})
BUILT_IN_VOICES = frozenset(get_args(BuiltInVoice))
DEFAULT_VOICE = "marin"
DEFAULT_FORMAT = {"type": "audio/pcm", "rate": 24000}  # the guide's assumption when audio.format is omitted
G711 = ("audio/pcmu", "audio/pcma")
DEFAULT_SESSION_MAX_S = 3600.0
DEFAULT_USAGE_INTERVAL_S = 5.0
BARGE_IN_MS = 200  # caller speech this long while the agent talks: the model stops (its own decision)
END_OF_UTTERANCE_MS = 500  # silence that ends a caller utterance
MIN_UTTERANCE_MS = 100  # shorter bursts are noise, not words
BACKEND_MODEL_DEFAULT = "gpt-5.4-mini"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass
class SpokenTurn:
    """One thing the model said (or began to say), kept for assertions."""

    text: str
    transcript: str = ""
    audio_bytes: int = 0
    status: str = "in_progress"  # "completed" or "interrupted"


@dataclass
class Delegation:
    id: str
    target: str  # "responses" or "client"
    response_id: str | None = None
    open_calls: dict[str, str | None] = field(default_factory=dict)  # call_id -> output (None until answered)


class _Violation(Exception):
    """A client event broke the protocol (see the module docstring)."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class LiveSession:
    """One client connection. Public attributes are the record tests assert on."""

    def __init__(self, sim: LiveSimulator, ws: ServerConnection, request: Request) -> None:
        self.sim = sim
        self.ws = ws
        self.id = _new_id("live")
        self.headers: dict[str, str] = {k.lower(): v for k, v in request.headers.raw_items()}
        self.path = request.path
        self.record = sim.record
        self.config: dict[str, Any] | None = None  # the resolved session, once started
        self.received: list[dict[str, Any]] = []  # every client event (when record=True)
        self.sent: list[dict[str, Any]] = []  # every server event (when record=True)
        self.errors: list[dict[str, Any]] = []  # error events caused by the client
        self.turns: list[SpokenTurn] = []
        self.delegations: list[Delegation] = []
        self.tool_outputs: list[dict[str, Any]] = []
        self.appended: list[dict[str, Any]] = []  # commentary / thinking / instructions appends
        self.barge_ins = 0
        self.audio_in_bytes = 0
        self.received_count = 0
        self.sent_count = 0
        self.backend_usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        self.closed_reason: str | None = None  # why the socket ended, for assertions
        self.closed_event_reason: str | None = None  # the `reason` of the session.closed we sent
        self.ended = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._audio_in_ms = 0
        self._pending = b""
        self._muted = False
        self._in_speech = False
        self._speech_start_ms = 0
        self._speech_ms = 0
        self._silence_ms = 0
        self._first_word_sent = False
        self._utterances = 0
        self._turn_index = 0
        self._speaking: SpokenTurn | None = None
        self._interrupt = asyncio.Event()
        self._busy: asyncio.Task[None] | None = None  # the model's current turn (speaking or delegating)
        self._waiting: Delegation | None = None  # a delegation blocked on the client
        self._stalled = False
        self._error_injected = False
        self._dropping = False
        self._closing = False
        self._tasks: list[asyncio.Task[Any]] = []

    # -- clock ----------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Milliseconds on the session timeline."""
        return int((self._loop.time() - self._t0) * 1000)

    def billable_seconds(self) -> float:
        return float(int(max(self._loop.time() - self._t0, self._audio_in_ms / 1000)))

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        """Send one server event, applying the live fault settings."""
        faults = self.sim.faults
        if self._stalled:
            return
        if faults.stall_after_events is not None and self.sent_count >= faults.stall_after_events:
            self._stalled = True
            logger.info("live sim %s: stalling", self.id)
            return
        if event["type"] != "session.output_audio.delta":  # the audio event has no event_id
            event.setdefault("event_id", _new_id("event"))
        await self.ws.send(json.dumps(event))
        self.sent_count += 1
        if self.record:
            self.sent.append(event)
        if (faults.error_after_events is not None and not self._error_injected
                and self.sent_count >= faults.error_after_events):
            self._error_injected = True
            await self.ws.send(json.dumps({
                "type": "error", "event_id": _new_id("event"),
                "error": {"type": "server_error", "code": "server_error", "message": SERVER_ERROR_MESSAGE},
            }))
            self.sent_count += 1
        if faults.drop_after_events is not None and self.sent_count >= faults.drop_after_events:
            await self.drop()

    async def drop(self) -> None:
        """Lose the connection the way a network failure or server crash would."""
        if self._dropping:
            return
        self._dropping = True
        await lose_connection(self, self.sim.faults.abrupt)

    async def _error(self, message: str, code: str, param: str | None, client_event_id: str | None) -> None:
        error: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message}
        if param:
            error["param"] = param
        if client_event_id:
            error["client_event_id"] = client_event_id
        if len(self.errors) < MAX_RECORDED_ERRORS:
            self.errors.append(error)
        logger.info("live sim %s: client error %s: %s", self.id, code, message)
        event: dict[str, Any] = {"type": "error", "error": error}
        if client_event_id:
            event["client_event_id"] = client_event_id
        await self.send(event)

    async def _violation(self, exc: _Violation, client_event_id: str | None) -> None:
        await self._error(exc.message, exc.code, exc.param, client_event_id)
        if self.sim.close_on_violation and not self._closing:
            self._closing = True
            self.closed_reason = f"violation: {exc.code}"
            await self.ws.close(1008, exc.message[:120])

    # -- main loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        lifetime = self._loop.call_later(self.sim.session_max_s, lambda: self._spawn(self._close("expired")))
        try:
            async for message in self.ws:
                if self._closing:
                    break
                await self._handle_raw(message)
        except ConnectionClosed:
            pass
        finally:
            lifetime.cancel()
            for task in self._tasks:
                task.cancel()
            self.closed_reason = self.closed_reason or "client closed"
            self.ended.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(self._guard(coro))
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(task)
        return task

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("live sim %s: task failed", self.id)

    async def _handle_raw(self, message: str | bytes) -> None:
        self.received_count += 1
        event: Any = None
        try:
            if isinstance(message, bytes):
                raise _Violation("Binary frames are not supported; send JSON text events.", "invalid_json")
            try:
                event = json.loads(message)
            except ValueError:
                raise _Violation("The event is not valid JSON.", "invalid_json") from None
            if self.record:
                self.received.append(event)
            try:
                validate_live_client_event(event)
            except InvalidClientEvent as exc:
                raise _Violation(exc.message, exc.code, exc.param) from None
            kind = event["type"]
            if self.config is None and kind != "session.start":
                raise _Violation(f"Send session.start and wait for session.started before '{kind}'.",
                                 "session_not_started", "type")
            handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
            if handler is None:
                raise _Violation(f"'{kind}' is valid but not modelled by the simulator.", "unsupported_in_simulator",
                                 "type")
            await handler(event)
        except _Violation as exc:
            client_event_id = event.get("event_id") if isinstance(event, dict) else None
            await self._violation(exc, client_event_id if isinstance(client_event_id, str) else None)

    # -- session ----------------------------------------------------------------------------------

    async def _on_session_start(self, event: dict[str, Any]) -> None:
        if self.config is not None:
            raise _Violation("The session has already started.", "session_already_started", "type")
        start = event["session"]
        if start["model"] not in LIVE_MODELS:
            raise _Violation(f"The model '{start['model']}' does not exist or you do not have access to it.",
                             "model_not_found", "session.model")
        audio_config = start.get("audio") or {}
        fmt = audio_config.get("format") or dict(DEFAULT_FORMAT)
        if fmt["type"] in G711 and fmt["rate"] != 8000:
            raise _Violation(f"Invalid 'session.audio.format.rate': {fmt['rate']}; G.711 audio uses 8000.",
                             "invalid_value", "session.audio.format.rate")
        voice = (audio_config.get("output") or {}).get("voice") or DEFAULT_VOICE
        if isinstance(voice, str) and voice not in BUILT_IN_VOICES:
            raise _Violation(f"Invalid 'session.audio.output.voice': '{voice}'.", "invalid_value",
                             "session.audio.output.voice")
        self.config = {
            "id": self.id,
            "expires_at": int(time.time() + self.sim.session_max_s),
            "model": start["model"],
            "status": "active",
            "audio": {"format": fmt, "output": {"voice": voice}},
            "delegation": start.get("delegation"),
            "instructions": start.get("instructions") or "You are a helpful voice assistant.",
            "input": start.get("input") or [],
            "store": bool(start.get("store")),
        }
        started: dict[str, Any] = {"type": "session.started", "session": self.config}
        if event.get("event_id"):
            started["client_event_id"] = event["event_id"]
        await self.send(started)
        if self.sim.usage_interval_s:
            self._spawn(self._report_usage())

    @property
    def delegation_type(self) -> str:
        delegation = (self.config or {}).get("delegation")
        return delegation["type"] if delegation else "client"

    @property
    def output_format(self) -> str:
        return "audio/pcm" if self.config is None else self.config["audio"]["format"]["type"]

    async def _report_usage(self) -> None:
        while True:
            await asyncio.sleep(self.sim.usage_interval_s)
            await self.send({"type": "session.usage.updated", "usage": {"seconds": self.billable_seconds()}})

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        assert self.config is not None
        update = event["session"]
        if update.get("delegation"):
            if update["delegation"]["type"] != self.delegation_type:
                raise _Violation("The delegation type cannot change after startup.", "invalid_value",
                                 "session.delegation.type")
            self.config["delegation"] = {**(self.config["delegation"] or {}), **update["delegation"]}
        await self.send({"type": "session.updated", "session": self.config})

    async def _on_session_close(self, event: dict[str, Any]) -> None:
        await self._close("close_requested", event.get("event_id"))

    async def _close(self, reason: str, client_event_id: str | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        self._interrupt.set()
        if self.config is None:  # never started: there is no session to report on
            self.closed_reason = f"closed before start: {reason}"
            await self.ws.close(1000, reason)
            return
        closed: dict[str, Any] = {"type": "session.closed", "reason": reason, "session": self.config,
                                  "usage": {"seconds": self.billable_seconds()}}
        if client_event_id:
            closed["client_event_id"] = client_event_id
        self.closed_event_reason = reason
        self.closed_reason = f"session.closed: {reason}"
        with contextlib.suppress(ConnectionClosed):
            await self.send(closed)
            await self.ws.close(1000, reason)

    # -- caller audio -------------------------------------------------------------------------------

    async def _on_session_input_audio_append(self, event: dict[str, Any]) -> None:
        try:
            data = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError):
            raise _Violation("Invalid 'audio': not valid base64.", "invalid_value", "audio") from None
        self.audio_in_bytes += len(data)
        fmt = self.config["audio"]["format"] if self.config else DEFAULT_FORMAT
        pcm16 = fmt["type"] == "audio/pcm"
        frame_bytes = fmt["rate"] * 2 // 50 if pcm16 else audio.FRAME_BYTES  # 20 ms
        self._pending += data
        while len(self._pending) >= frame_bytes:
            frame, self._pending = self._pending[:frame_bytes], self._pending[frame_bytes:]
            level = 0.0 if self._muted else (audio.pcm16_rms(frame) if pcm16 else audio.ulaw_rms(frame))
            await self._vad_frame(level)

    async def _vad_frame(self, level: float) -> None:
        frame_start = self._audio_in_ms
        self._audio_in_ms += audio.FRAME_MS
        speech = level >= self.sim.vad_rms_threshold
        if not self._in_speech:
            if not speech:
                return
            self._in_speech, self._first_word_sent = True, False
            self._speech_start_ms, self._speech_ms, self._silence_ms = frame_start, 0, 0
        if speech:
            self._speech_ms += audio.FRAME_MS
            self._silence_ms = 0
            if not self._first_word_sent and self._speech_ms >= self.sim.barge_in_ms:
                self._first_word_sent = True
                await self._caller_words(first_only=True)
                if self._speaking is not None:  # the model hears the caller over itself and stops
                    self.barge_ins += 1
                    self._interrupt.set()
            return
        self._silence_ms += audio.FRAME_MS
        if self._silence_ms < END_OF_UTTERANCE_MS:
            return
        self._in_speech = False
        if self._speech_ms < MIN_UTTERANCE_MS:
            return
        await self._caller_words(first_only=False)
        self._utterances += 1
        self._take_turn()

    async def _caller_words(self, first_only: bool) -> None:
        words = self.sim.script.transcript(self._utterances).split(" ")
        start, end = self._speech_start_ms, self._audio_in_ms - self._silence_ms
        if first_only:
            await self._transcript("session.input_transcript.delta", words[0], start, self._audio_in_ms)
            return
        rest = words[1:] if self._first_word_sent else words
        if rest:
            text = " ".join(rest)
            await self._transcript("session.input_transcript.delta", " " + text if self._first_word_sent else text,
                                   start, end)

    async def _transcript(self, kind: str, text: str, start_ms: int, end_ms: int) -> None:
        await self.send({"type": kind, "delta": text, "start_ms": start_ms, "end_ms": max(start_ms, end_ms)})

    async def _on_session_input_audio_mute(self, event: dict[str, Any]) -> None:
        self._muted = True
        await self.send({"type": "session.input_audio.muted", **_echo(event)})

    async def _on_session_input_audio_unmute(self, event: dict[str, Any]) -> None:
        self._muted = False
        await self.send({"type": "session.input_audio.unmuted", **_echo(event)})

    # -- context appends --------------------------------------------------------------------------

    async def _append(self, event: dict[str, Any], kind: str) -> str | None:
        delegation_id = event["delegation_id"]
        if delegation_id is not None:
            if self.delegation_type == "responses":
                raise _Violation("A delegation_id is not accepted with Responses delegation.", "invalid_value",
                                 "delegation_id")
            if self._waiting is None or self._waiting.id != delegation_id:
                raise _Violation(f"Unknown delegation '{delegation_id}'.", "invalid_value", "delegation_id")
        now = self.now_ms()
        self.appended.append({"type": event["type"], "content": event["content"], "delegation_id": delegation_id})
        await self.send({"type": kind, "start_ms": now, "end_ms": now, **_echo(event)})
        return delegation_id

    async def _on_session_commentary_append(self, event: dict[str, Any]) -> None:
        delegation_id = await self._append(event, "session.commentary.appended")
        if delegation_id is not None:
            self._waiting = None  # the client delegation's result: the model says it
        self._take_turn()

    async def _on_session_thinking_append(self, event: dict[str, Any]) -> None:
        await self._append(event, "session.thinking.appended")

    async def _on_session_instructions_append(self, event: dict[str, Any]) -> None:
        await self._append(event, "session.instructions.appended")

    # -- the model's turns ------------------------------------------------------------------------

    def _take_turn(self, delegation: Delegation | None = None) -> None:
        """The model takes its next scripted turn, unless it is busy or blocked on the client."""
        if self._closing or (self._busy is not None and not self._busy.done()):
            return
        if self._waiting is not None and delegation is None:
            return
        turn = self.sim.script.turn(self._turn_index)
        self._turn_index += 1
        self._busy = self._spawn(self._turn(turn, delegation))

    async def _turn(self, turn: Turn, delegation: Delegation | None) -> None:
        pacing = self.sim.pacing
        if isinstance(turn, ToolCall):
            await asyncio.sleep(pacing.first_audio_delay_ms / 1000)
            await self._delegate(turn, delegation)
            return
        if delegation is not None:  # the backend's answer, which the model then voices
            await self._backend_response(delegation, text=turn.text)
        await self._speak(turn)

    async def _speak(self, reply: Reply) -> None:
        pacing = self.sim.pacing
        record = SpokenTurn(reply.text)
        self._speaking = record
        self._interrupt.clear()
        try:
            await self._pause(pacing.first_audio_delay_ms / 1000)
            total_ms = reply.duration_ms
            chunk_ms = max(20, pacing.chunk_ms)
            chunks = max(1, math.ceil(total_ms / chunk_ms))
            words = reply.text.split(" ")
            spoken_words = sent_ms = 0
            start_ms = self.now_ms()
            started = self._loop.time()
            for index in range(chunks):
                if self._interrupt.is_set():
                    break
                this_ms = min(chunk_ms, total_ms - sent_ms)
                data = agent_audio(this_ms, pacing.pattern, sent_ms * audio.BYTES_PER_MS, self.output_format)
                await self.send({"type": "session.output_audio.delta", "delta": base64.b64encode(data).decode()})
                record.audio_bytes += len(data)
                target_words = math.ceil(len(words) * (index + 1) / chunks)
                if target_words > spoken_words:
                    text = " ".join(words[spoken_words:target_words])
                    text = text if not record.transcript else " " + text
                    record.transcript += text
                    await self._transcript("session.output_transcript.delta", text, start_ms + sent_ms,
                                           start_ms + sent_ms + this_ms)
                    spoken_words = target_words
                sent_ms += this_ms
                wait = started + sent_ms / 1000 / pacing.speed - self._loop.time() if pacing.speed else 0
                await self._pause(wait)
            record.status = "interrupted" if self._interrupt.is_set() else "completed"
        finally:
            self._speaking = None
            self.turns.append(record)
            if len(self.turns) > MAX_RECORDED_ERRORS:
                self.turns.pop(0)
        if self.sim.faults.drop_after_first_response and len(self.turns) == 1:
            await self.drop()

    async def _pause(self, seconds: float) -> None:
        """Sleep unless the caller barges in; always yields so the reader can run between chunks."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interrupt.wait(), seconds)

    # -- delegation -------------------------------------------------------------------------------

    async def _delegate(self, call: ToolCall, delegation: Delegation | None) -> None:
        if delegation is None:
            target = self.delegation_type
            if target not in ("responses", "client"):
                logger.info("live sim %s: %s delegation is not modelled; skipping a tool turn", self.id, target)
                return
            delegation = Delegation(_new_id("del"), target, _new_id("resp") if target == "responses" else None)
            self.delegations.append(delegation)
            info: dict[str, Any] = {"id": delegation.id, "target": target, "type": "delegation"}
            if delegation.response_id:
                info["response_id"] = delegation.response_id
            await self.send({"type": "session.delegation.created", "delegation": info, "offset_ms": self.now_ms()})
        self._waiting = delegation
        if delegation.target == "client":
            return  # the client runs its own backend and answers with commentary
        call_id = call.call_id or "call_" + uuid.uuid4().hex[:16]
        delegation.open_calls[call_id] = None
        arguments = call.arguments_json
        item = {"type": "function_call", "id": _new_id("fc"), "call_id": call_id, "name": call.name,
                "arguments": "", "status": "in_progress"}
        response_id = delegation.response_id = _new_id("resp")
        seq = _Sequence()
        await self._backend(delegation, {"type": "response.created", "response": self._backend_snapshot(
            response_id, "in_progress")}, seq)
        await self._backend(delegation, {"type": "response.output_item.added", "output_index": 0,
                                         "item": dict(item)}, seq)
        for start in range(0, len(arguments), 16):
            await self._backend(delegation, {"type": "response.function_call_arguments.delta", "item_id": item["id"],
                                             "output_index": 0, "delta": arguments[start:start + 16]}, seq)
        await self._backend(delegation, {"type": "response.function_call_arguments.done", "item_id": item["id"],
                                         "output_index": 0, "arguments": arguments}, seq)
        item.update(arguments=arguments, status="completed")
        await self._backend(delegation, {"type": "response.output_item.done", "output_index": 0, "item": item}, seq)
        await self._backend(delegation, {"type": "response.completed", "response": self._backend_snapshot(
            response_id, "completed", len(arguments))}, seq)

    async def _backend_response(self, delegation: Delegation, text: str) -> None:
        """A backend response producing text (what the model then voices), after tool results."""
        response_id = delegation.response_id = _new_id("resp")
        seq = _Sequence()
        item_id = _new_id("msg")
        await self._backend(delegation, {"type": "response.created", "response": self._backend_snapshot(
            response_id, "in_progress")}, seq)
        await self._backend(delegation, {"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                                         "content_index": 0, "delta": text, "logprobs": []}, seq)
        await self._backend(delegation, {"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
                                         "content_index": 0, "text": text, "logprobs": []}, seq)
        await self._backend(delegation, {"type": "response.completed", "response": self._backend_snapshot(
            response_id, "completed", len(text))}, seq)

    def _backend_snapshot(self, response_id: str, status: str, output_chars: int = 0) -> dict[str, Any]:
        """A Responses lifecycle snapshot as Live forwards it: input omitted; instructions, tools, output cleared."""
        backend = ((self.config or {}).get("delegation") or {}).get("responses") or {}
        snapshot: dict[str, Any] = {
            "id": response_id, "object": "response", "created_at": int(time.time()), "status": status,
            "model": backend.get("model") or BACKEND_MODEL_DEFAULT, "instructions": None, "output": [],
            "tools": [], "tool_choice": backend.get("tool_choice") or "auto",
            "parallel_tool_calls": bool(backend.get("parallel_tool_calls", True)), "usage": None,
        }
        if status == "completed":
            input_tokens = 200 + len(backend.get("instructions") or "") // 4
            output_tokens = max(1, output_chars // 4)
            snapshot["usage"] = {
                "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            }
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                self.backend_usage[key] += snapshot["usage"][key]
        return snapshot

    async def _backend(self, delegation: Delegation, inner: dict[str, Any], seq: _Sequence) -> None:
        inner["sequence_number"] = seq.next()
        await self.send({"type": "response.event", "delegation_id": delegation.id, "event": inner})

    def _responses_delegation(self) -> Delegation | None:
        if self.delegation_type != "responses":
            raise _Violation("response.* commands require Responses delegation.", "invalid_value", "type")
        return self._waiting

    async def _on_response_item_create(self, event: dict[str, Any]) -> None:
        delegation = self._responses_delegation()
        item = event["item"]
        if item.get("type") != "function_call_output":
            return  # other input items join the backend's context; nothing to answer
        call_id = item["call_id"]
        if delegation is None or call_id not in delegation.open_calls:
            raise _Violation(f"Tool call ID '{call_id}' not found in the delegated response.", "invalid_value",
                             "item.call_id")
        output = item["output"] if isinstance(item["output"], str) else json.dumps(item["output"])
        delegation.open_calls[call_id] = output
        self.tool_outputs.append({"call_id": call_id, "output": output, "delegation_id": delegation.id})

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        delegation = self._responses_delegation()
        if delegation is None:
            self._take_turn()  # a fresh backend request: the model voices what comes of it
            return
        missing = [call_id for call_id, output in delegation.open_calls.items() if output is None]
        if missing:
            raise _Violation(f"Provide output for every open tool call before response.create; missing: "
                             f"{', '.join(missing)}.", "invalid_value", "type")
        delegation.open_calls.clear()
        self._waiting = None
        self._take_turn(delegation)


class _Sequence:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = -1

    def next(self) -> int:
        self.value += 1
        return self.value


def _echo(event: dict[str, Any]) -> dict[str, Any]:
    """The `client_event_id` for an ack, when the command carried an `event_id`."""
    return {"client_event_id": event["event_id"]} if event.get("event_id") else {}


# --- the server ------------------------------------------------------------------------------


class LiveSimulator(RealtimeSimulator):
    """A GPT-Live double (see the module docstring). The server plumbing (serve, thread mode, fault switch,
    session bookkeeping) is the Realtime simulator's; the handshake and the sessions are Live's."""

    session_class = LiveSession

    def __init__(
        self,
        script: Script | None = None,
        faults: Faults | None = None,
        pacing: Pacing | None = None,
        *,
        record: bool = True,
        session_max_s: float = DEFAULT_SESSION_MAX_S,
        vad_rms_threshold: float = 500.0,
        barge_in_ms: int = BARGE_IN_MS,
        usage_interval_s: float | None = DEFAULT_USAGE_INTERVAL_S,
        close_on_violation: bool = True,
    ) -> None:
        super().__init__(script, faults, pacing, record=record, session_max_s=session_max_s,
                         vad_rms_threshold=vad_rms_threshold)
        self.barge_in_ms = barge_in_ms
        self.usage_interval_s = usage_interval_s
        self.close_on_violation = close_on_violation
        self.sessions: list[LiveSession] = []  # type: ignore[assignment]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        def reject(status: HTTPStatus | int, message: str) -> Response:
            if len(self.handshake_rejections) < MAX_RECORDED_ERRORS:
                self.handshake_rejections.append({"status": int(status), "path": request.path, "reason": message})
            body = json.dumps({"error": {"type": "invalid_request_error", "code": None, "param": None,
                                         "message": message}})
            response = connection.respond(status, body)
            response.headers["Content-Type"] = "application/json"
            return response

        if self.faults.refuse_status is not None:
            return reject(self.faults.refuse_status, f"Simulated handshake failure ({self.faults.refuse_status}).")
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != LIVE_PATH:
            return reject(HTTPStatus.NOT_FOUND, f"Invalid URL (GET {parts.path})")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return reject(HTTPStatus.UNAUTHORIZED, "Missing bearer or basic authentication in header.")
        if parts.query:
            return reject(HTTPStatus.BAD_REQUEST, "The Live URL takes no query parameters; put the model in "
                                                  "session.start.")
        return None

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run the server on the current loop; yields its `ws://host:port/v1/live/sessions` URL."""
        async with super().serve(host, port) as url:
            self.url = url.removesuffix(REALTIME_PATH) + LIVE_PATH
            yield self.url


def main(argv: list[str] | None = None) -> None:
    """Run the simulator standalone, e.g. for `OPENAI_LIVE_URL=ws://127.0.0.1:8766/v1/live/sessions`."""
    run_standalone(LiveSimulator, "GPT-Live", "OPENAI_LIVE_URL", 8766, argv)

if __name__ == "__main__":
    main()


__all__ = [
    "LIVE_PATH",
    "Delegation",
    "Faults",
    "LiveSession",
    "LiveSimulator",
    "Pacing",
    "Reply",
    "Script",
    "SpokenTurn",
    "ToolCall",
    "agent_audio",
]
