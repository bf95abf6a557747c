"""One phone call: the Twilio Media Streams WebSocket ⇄ one OpenAI Realtime WebSocket.

The audio path does no per-frame logging, database or channel-layer work, and never decodes audio: Twilio's
base64 μ-law payload goes upstream as-is, the model's base64 μ-law deltas go to Twilio as-is. Everything
else (transcripts, tool calls, usage) leaves through the event sink, off the audio path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bridge import realtime_events as rt
from bridge import twilio_media as tw
from bridge.event_sink import sink
from bridge.lifecycle import state
from bridge.playback import PlaybackTracker
from bridge.tools import ToolCallContext, run_http_tool
from bridge.upstream import open_realtime
from calls import services, stream_token
from calls.models import Call
from voiceops.tracing import INVALID_SPAN, call_span

log = logging.getLogger(__name__)

# Close codes Twilio's socket gets (4000-4999 are ours); the reason text says what was wrong.
CLOSE_PROTOCOL = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNAVAILABLE = 4503
EARLY_AUDIO_FRAMES = 100  # 2 s of caller audio kept while the upstream socket opens
END_PLAYBACK_WAIT_S = 15.0  # how long a goodbye may play before the call is closed anyway
FATAL_ERROR_TYPES = {"server_error"}


class MediaStreamConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A plain receive loop instead of Channels' generic one, which per message creates a task, waits on it
        and hops to a thread to close stale database connections: at 50 frames a second per call that was most
        of the bridge's CPU. The bridge never receives from the channel layer (it publishes through the event
        sink), and reaches the database only through `database_sync_to_async`, which closes stale connections
        itself."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    await self.receive(message.get("text"), message.get("bytes"))
                else:
                    handler = getattr(self, get_handler_name(message), None)
                    if handler is None:
                        raise ValueError(f"no handler for {message['type']}")
                    await handler(message)

    # --- connection --------------------------------------------------------------------------------------
    async def connect(self) -> None:
        self.call: Call | None = None
        self.stream_sid = ""
        self.upstream: ClientConnection | None = None
        self.early_audio: deque[str] = deque(maxlen=EARLY_AUDIO_FRAMES)
        self.playback = PlaybackTracker()
        self.ending: str = ""
        self.closed = False
        self.response_active = False
        self.response_idle = asyncio.Event()
        self.response_idle.set()
        self.suppressed_item: str | None = None
        self.end_mark_played = asyncio.Event()
        self.usage: dict[str, Any] = {}
        self.seq = 0
        self.t0 = time.monotonic()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.trace_span = INVALID_SPAN  # the call's first span; later steps hang under it
        if state.draining:
            log.info("stream refused: bridge is draining")
            await self.close(code=CLOSE_UNAVAILABLE, reason="bridge is draining")
            return
        if settings.TWILIO_AUTH_TOKEN and not (self._handshake_signed() or stream_token.is_browser_call(self.scope)):
            log.warning("stream refused: missing or invalid X-Twilio-Signature on the handshake")
            await self.close(code=CLOSE_UNAUTHORIZED, reason="invalid signature")
            return
        await self.accept()

    def _handshake_signed(self) -> bool:
        signature = ""
        for name, value in self.scope.get("headers", []):
            if name == b"x-twilio-signature":
                signature = value.decode("latin-1")
        if not signature:
            return False
        return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(settings.BRIDGE_PUBLIC_URL, {}, signature)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._reject(CLOSE_PROTOCOL, "binary frames are not part of the Media Streams protocol")
            return
        try:
            message = tw.parse(text_data)
        except tw.ProtocolError as exc:
            await self._reject(CLOSE_PROTOCOL, exc.reason)
            return
        if type(message) is tw.Media:  # the hot path: 50 per second
            if self.upstream is not None:
                try:  # noqa: SIM105 - try/except costs less per frame than contextlib.suppress
                    await self.upstream.send(rt.append_audio(message.payload_b64))
                except ConnectionClosed:
                    pass  # the upstream task sees the close and ends the call
            elif self.call is not None:
                self.early_audio.append(message.payload_b64)
            else:
                await self._reject(CLOSE_PROTOCOL, "media before start")
            return
        if type(message) is tw.Mark:
            if message.name == "end":
                self.end_mark_played.set()
            else:
                self.playback.on_mark(message.name)
        elif type(message) is tw.Start:
            await self._on_start(message)
        elif type(message) is tw.Dtmf:
            self._spawn(self._on_dtmf(message.digit))
        elif type(message) is tw.Stop:
            await self._end(Call.EndReason.CALLER_HANGUP, close_twilio=False)

    async def disconnect(self, code: int) -> None:
        """Twilio hung up (or the socket dropped): stop the upstream session at once, it is billed."""
        self.closed = True
        if self.call is not None:
            await self._end(Call.EndReason.CALLER_HANGUP, close_twilio=False)

    # --- call start -------------------------------------------------------------------------------------
    async def _on_start(self, start: tw.Start) -> None:
        # Tasks spawned in here (the OpenAI session, hence tool calls) inherit this span as their parent.
        with call_span("call.start", call_sid=start.call_sid, stream_sid=start.stream_sid) as span:
            if self.call is None:
                self.trace_span = span
            await self._start(start)

    async def _start(self, start: tw.Start) -> None:
        if self.call is not None:
            await self._reject(CLOSE_PROTOCOL, "second start on one stream")
            return
        try:
            stream_token.verify(start.custom_parameters.get("token"), start.call_sid)
        except stream_token.TokenRejected as exc:
            await self._reject(CLOSE_UNAUTHORIZED, exc.reason)
            return
        try:
            call = await database_sync_to_async(services.claim_stream)(
                start.call_sid, start.stream_sid, settings.BRIDGE_INSTANCE_ID
            )
        except DatabaseError:
            log.exception("call %s: database unavailable at stream start", start.call_sid)
            await self._reject(CLOSE_UNAVAILABLE, "database unavailable")
            return
        if call is None:
            await self._reject(CLOSE_UNAUTHORIZED, "stream token already used")
            return
        self.call, self.stream_sid, self.t0 = call, start.stream_sid, time.monotonic()
        self.snapshot: dict[str, Any] = call.config_snapshot
        state.add(self)
        log.info("call %s stream %s started (config %s)", call.twilio_call_sid, start.stream_sid,
                 self.snapshot.get("config_id"))
        sink.publish(self._live("started"))
        if not settings.OPENAI_API_KEY or not self.snapshot:
            await self._end(Call.EndReason.NOT_CONFIGURED)
            return
        self._spawn(self._upstream_loop())
        self._spawn(self._time_limit(int(self.snapshot.get("max_call_seconds") or 3300)))

    # --- upstream ---------------------------------------------------------------------------------------
    async def _upstream_loop(self) -> None:
        reason = Call.EndReason.UPSTREAM_ERROR
        try:
            ws = await open_realtime(self.snapshot.get("model") or settings.OPENAI_REALTIME_MODEL)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            log.error("call %s: OpenAI Realtime connect failed: %s", self._sid, type(exc).__name__)
            self._event("error", f"OpenAI connect failed: {type(exc).__name__}")
            await self._end(reason)
            return
        if self.ending:
            await ws.close()
            return
        try:
            await ws.send(rt.to_text(rt.session_update(self.snapshot)))
            if self.snapshot.get("greeting"):
                await ws.send(rt.to_text(rt.greeting_response(self.snapshot["greeting"])))
            while self.early_audio:
                await ws.send(rt.append_audio(self.early_audio.popleft()))
            self.upstream = ws
            async for text in ws:
                await self._on_upstream(text)
            if not self.ending:
                log.warning("call %s: OpenAI closed the session (%s)", self._sid, ws.close_code)
                self._event("error", f"OpenAI closed the session ({ws.close_code})")
        except ConnectionClosed as exc:
            if self.ending:
                return
            log.warning("call %s: OpenAI connection lost (%s)", self._sid, exc.rcvd.code if exc.rcvd else "no close")
            self._event("error", "OpenAI connection lost")
        except rt.ProtocolError as exc:
            log.error("call %s: unreadable OpenAI event: %s", self._sid, exc.reason)
            self._event("error", f"unreadable OpenAI event: {exc.reason}")
        finally:
            self.upstream = None
            await ws.close()
        await self._end(reason)

    async def _on_upstream(self, text: str | bytes) -> None:
        event = rt.parse_server_event(text)
        kind = event.type
        if kind == "response.output_audio.delta":  # the hot path downstream
            item_id = event.item_id
            if item_id == self.suppressed_item or self.closed:
                return  # audio of an item the caller already interrupted
            mark = self.playback.on_audio_sent(item_id, tw.b64_audio_len(event.delta))
            await self.send(text_data=tw.media_message(self.stream_sid, event.delta))
            await self.send(text_data=tw.mark_message(self.stream_sid, mark))
            return
        data = event.data
        if kind == "input_audio_buffer.speech_started":
            await self._barge_in()
        elif kind == "response.created":
            self.response_active = True
            self.response_idle.clear()
        elif kind == "response.done":
            self._on_response_done(data.get("response") or {})
        elif kind == "response.function_call_arguments.done":
            self._spawn(self._run_tool(data.get("call_id", ""), data.get("name", ""), data.get("arguments", "")))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._event("caller", data.get("transcript", ""), {"item_id": data.get("item_id")})
        elif kind == "response.output_audio_transcript.done":
            self._event("agent", data.get("transcript", ""), {"item_id": data.get("item_id")})
        elif kind == "error":
            await self._on_error(data.get("error") or {})

    def _on_response_done(self, response: dict[str, Any]) -> None:
        self.response_active = False
        self.response_idle.set()
        usage = response.get("usage")
        if isinstance(usage, dict):
            _add_usage(self.usage, usage)
        if response.get("status") == "failed":
            details = (response.get("status_details") or {}).get("error") or {}
            self._event("error", f"response failed: {details.get('message', 'unknown')}", {"details": details})

    async def _on_error(self, error: dict[str, Any]) -> None:
        code, message = error.get("code") or "", error.get("message") or ""
        if code == "response_cancel_not_active":
            return  # a race with the server's own cancel on barge-in: harmless
        self._event("error", f"OpenAI error {code or error.get('type', '')}: {message}"[:500],
                    {"type": error.get("type"), "code": code})
        log.warning("call %s: OpenAI error %s %s", self._sid, error.get("type"), code)
        if error.get("type") in FATAL_ERROR_TYPES:
            await self._end(Call.EndReason.UPSTREAM_ERROR)

    # --- barge-in ---------------------------------------------------------------------------------------
    async def _barge_in(self, cancel: bool = False) -> None:
        """The caller talks over the agent: stop playback at Twilio and tell the model what was heard.
        With server VAD (interrupt_response) the server cancels its response itself; `cancel` is for
        interruptions it cannot see, such as a keypress."""
        if not self.snapshot.get("turn_detection", {}).get("interrupt_response", True) and not cancel:
            return
        if cancel and self.response_active and self.upstream is not None:
            await self.upstream.send(rt.to_text(rt.response_cancel()))
        point = self.playback.on_barge_in()
        if point is None:
            return
        self.suppressed_item = point.item_id
        await self.send(text_data=tw.clear_message(self.stream_sid))
        if self.upstream is not None:
            await self.upstream.send(rt.to_text(rt.truncate(point.item_id, point.truncate_point_ms)))
        self._event("barge_in", "", {"item_id": point.item_id, "heard_ms": point.truncate_point_ms})

    async def _on_dtmf(self, digit: str) -> None:
        self._event("dtmf", digit)
        if self.upstream is None:
            return
        await self._barge_in(cancel=True)
        await self.upstream.send(rt.to_text(rt.user_text(f"(The caller pressed {digit} on the keypad.)")))
        await self.response_idle.wait()
        if self.upstream is not None and not self.ending:
            await self.upstream.send(rt.to_text(rt.response_create()))

    # --- tools ------------------------------------------------------------------------------------------
    async def _run_tool(self, call_id: str, name: str, arguments: str) -> None:
        self._event("tool_call", name, {"call_id": call_id, "arguments": arguments[:2000]})
        spec = next((t for t in self.snapshot.get("tools", []) if t.get("name") == name), None)
        if spec is not None and spec.get("kind") == "builtin" and name in ("end_call", "transfer_call"):
            reason = Call.EndReason.AGENT_ENDED if name == "end_call" else Call.EndReason.TRANSFERRED
            self._event("tool_result", name, {"call_id": call_id, "output": "call ending"})
            await self.response_idle.wait()  # let the model finish its goodbye first
            await self._end(reason, after_playback=True)
            return
        if spec is None or spec.get("kind") != "http":
            output = json.dumps({"ok": False, "error": f"unknown tool {name!r}"})
        else:
            context = ToolCallContext(call_sid=self._sid, config_id=self.snapshot.get("config_id"), call_id=call_id)
            output = await run_http_tool(spec, arguments, context)
        self._event("tool_result", name, {"call_id": call_id, "output": output[:2000]})
        if self.upstream is None or self.ending:
            return
        await self.upstream.send(rt.to_text(rt.function_call_output(call_id, output)))
        await self.response_idle.wait()  # a response.create during a live response is rejected
        if self.upstream is not None and not self.ending:
            await self.upstream.send(rt.to_text(rt.response_create()))

    # --- ending -----------------------------------------------------------------------------------------
    async def end_politely(self, reason: str) -> None:
        """Used by the drain: the Connect action then tells the caller why the call ends."""
        await self._end(reason)

    async def _time_limit(self, seconds: int) -> None:
        await asyncio.sleep(seconds)
        await self._end(Call.EndReason.MAX_DURATION, after_playback=True)

    async def _end(self, reason: str, after_playback: bool = False, close_twilio: bool = True) -> None:
        """End the call once: record why, close the upstream session, then close Twilio's socket so that
        Twilio asks the webhook's Connect action what to say or do next (apology, transfer, hang-up)."""
        if self.ending or self.call is None:
            return
        self.ending = reason
        with call_span("call.end", parent=self.trace_span, call_sid=self._sid, end_reason=reason,
                       duration_s=int(time.monotonic() - self.t0)):
            await self._finish(reason, after_playback, close_twilio)

    async def _finish(self, reason: str, after_playback: bool, close_twilio: bool) -> None:
        if after_playback and self.playback.is_playing and not self.closed:
            await self.send(text_data=tw.mark_message(self.stream_sid, "end"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.end_mark_played.wait(), END_PLAYBACK_WAIT_S)
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            await upstream.close()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        try:
            await database_sync_to_async(services.finish_call)(self.call.pk, reason, self.usage or None)
        except DatabaseError:
            log.exception("call %s: could not record the end (%s)", self._sid, reason)
        log.info("call %s ended: %s after %ds", self._sid, reason, int(time.monotonic() - self.t0))
        self._event("status", f"call ended: {reason}", {"end_reason": reason, "usage": self.usage})
        sink.publish(self._live("ended"))
        state.discard(self)
        if close_twilio and not self.closed:
            self.closed = True
            await self.close(code=1000)

    async def _reject(self, code: int, reason: str) -> None:
        log.warning("stream %s closed: %s", self.stream_sid or "(no start)", reason)
        if self.call is not None:
            self._event("error", f"stream closed: {reason}")
            self.closed = True
            await self._end(Call.EndReason.PROTOCOL_ERROR, close_twilio=False)
        self.closed = True
        await self.close(code=code, reason=reason[:120])

    # --- helpers ----------------------------------------------------------------------------------------
    @property
    def _sid(self) -> str:
        return self.call.twilio_call_sid if self.call else ""

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _event(self, kind: str, text: str = "", data: dict[str, Any] | None = None) -> None:
        if self.call is None:
            return
        self.seq += 1
        event = {"seq": self.seq, "kind": kind, "t_ms": int((time.monotonic() - self.t0) * 1000),
                 "text": text, "data": data or {}}
        sink.add(self.call.pk, event, self._live("event", event))

    def _live(self, what: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
        call = self.call
        assert call is not None
        return {
            "type": "call.update", "call_id": call.pk, "what": what, "event": event,
            "call": {
                "id": call.pk, "sid": call.twilio_call_sid, "from": services.mask_phone(call.from_number),
                "to": call.to_number, "config": self.snapshot.get("name", ""),
                "status": "completed" if self.ending else "in_progress",
                "started_at": call.started_at.isoformat() if call.started_at else None,
                "end_reason": self.ending,
            },
        }


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    """Sum response.done usage objects, nested token details included."""
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            _add_usage(total.setdefault(key, {}), value)
