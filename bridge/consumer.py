"""One phone call's sockets: the Twilio Media Streams WebSocket ⇄ one OpenAI WebSocket (Realtime or GPT-Live).

The call's logic is `bridge.session.CallSession` (no I/O); this adapter owns the sockets, the database and the
tasks, feeds the session what arrives and runs the actions it returns.

The audio path does no per-frame logging, database or channel-layer work, and never decodes audio: Twilio's
base64 μ-law payload goes upstream as-is, the model's base64 μ-law deltas go to Twilio as-is. Everything
else (transcripts, tool calls, usage) leaves through the event sink, off the audio path.

Both sockets hand their messages over as they arrive and take writes at once: Twilio's through runbridge's
`voiceops.media_path` ASGI extension (`bridge/media_path.py`), OpenAI's through `UpstreamConnection`. A frame goes
through parse, session and write in one callback, with no task switch, queue or lock, and the session's actions
run without awaiting, so they never interleave with another message's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import tempfile
import time
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from twilio.request_validator import RequestValidator
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake

from bridge import session as cs
from bridge import twilio_media as tw
from bridge.call_config import CallConfig
from bridge.engine import AgentAudio, ProtocolError
from bridge.event_sink import sink
from bridge.lifecycle import state
from bridge.media_path import MEDIA_PATH_EXTENSION, MediaPath
from bridge.metrics import CALLS_ENDED, OPENAI_CONNECT_MS, call_stats
from bridge.recording import CallRecorder
from bridge.tools import ToolCallContext, run_http_tool
from bridge.upstream import UpstreamConnection, engine_for, open_upstream
from calls import services, stream_token
from calls.models import Call
from calls.tracing import INVALID_SPAN, call_span, remote_parent

log = logging.getLogger(__name__)

# Close codes Twilio's socket gets (4000-4999 are ours); the reason text says what was wrong.
CLOSE_PROTOCOL = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNAVAILABLE = 4503
END_PLAYBACK_WAIT_S = 15.0  # how long a goodbye may play before the call is closed anyway
UPSTREAM_CLOSE_WAIT_S = 5.0  # how long an engine that says goodbye upstream (GPT-Live) may take to confirm


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
        self.session: cs.CallSession | None = None
        self.stream_sid = ""
        self.upstream: UpstreamConnection | None = None
        self.closed = False  # Twilio's socket
        self.end_mark_played = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.end_task: asyncio.Task[None] | None = None
        self.trace_span = INVALID_SPAN  # the call's first span; later steps hang under it
        if state.draining:
            log.info("stream refused: bridge is draining")
            await self.close(code=CLOSE_UNAVAILABLE, reason="bridge is draining")
            return
        if settings.TWILIO_AUTH_TOKEN and not (self._handshake_signed() or stream_token.is_browser_call(self.scope)):
            log.warning("stream refused: missing or invalid X-Twilio-Signature on the handshake")
            await self.close(code=CLOSE_UNAUTHORIZED, reason="invalid signature")
            return
        media_path: MediaPath | None = self.scope.get("extensions", {}).get(MEDIA_PATH_EXTENSION)
        if media_path is None:  # another ASGI server (e.g. the web app's daphne) cannot write at once
            log.error("stream refused: media streams are served by `manage.py runbridge`")
            await self.close(code=CLOSE_UNAVAILABLE, reason="media streams are served by manage.py runbridge")
            return
        self._media_path = media_path
        self._send_twilio = media_path["send_now"]
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
        """What `_twilio_text` leaves: `start` (it waits for the database), anything before it, and bad input."""
        if self.closed:
            return  # what the peer sent after our close (a refused start, say): a second close would be an error
        if text_data is None:
            await self._reject(CLOSE_PROTOCOL, "binary frames are not part of the Media Streams protocol")
            return
        if self._twilio_text(text_data):
            return
        try:
            message = tw.parse(text_data)
        except tw.ProtocolError as exc:
            await self._reject(CLOSE_PROTOCOL, exc.reason)
            return
        if type(message) is tw.Start:
            await self._on_start(message)
        elif type(message) is tw.Media:
            await self._reject(CLOSE_PROTOCOL, "media before start")
        # else: connected, or a stray mark/dtmf/stop before start: nothing to act on

    def _twilio_text(self, text: str) -> bool:
        """Handle one Twilio message of a started call now, without awaiting; False leaves it to `receive` (a
        malformed message, a second `start`, anything before the call started). The server calls this as a
        message arrives when none is queued before it."""
        session = self.session
        if session is None:
            return False
        try:
            message = tw.parse(text)
        except tw.ProtocolError:
            return False
        kind = type(message)
        if kind is tw.Media:  # the hot path: 50 per second
            upstream_text = session.caller_audio(message.payload_b64, message.timestamp_ms)
            if upstream_text is not None and (self.upstream is None or not self.upstream.send_now(upstream_text)):
                session.caller_frames_dropped += 1  # the socket is closing or not reading
        elif kind is tw.Mark:
            if session.on_mark(message.name):
                self.end_mark_played.set()
        elif kind is tw.Dtmf:
            self._run(session.on_dtmf(message.digit, time.monotonic()))
        elif kind is tw.Stop:
            self._run(session.end(Call.EndReason.CALLER_HANGUP, time.monotonic(), close_twilio=False))
        elif kind is tw.Start:
            return False
        return True

    async def disconnect(self, code: int) -> None:
        """Twilio hung up (or the socket dropped): stop the upstream session at once, it is billed."""
        self.closed = True
        if self.session is not None:
            self.session.twilio_closed()
            self._run(self.session.end(Call.EndReason.CALLER_HANGUP, time.monotonic(), close_twilio=False))
            await self._ended()

    # --- call start -------------------------------------------------------------------------------------
    async def _on_start(self, start: tw.Start) -> None:
        # The call continues the webhook's trace (its `traceparent` stream parameter) when there is one. Tasks
        # spawned in here (the OpenAI session, hence tool calls) inherit this span as their parent.
        parent = remote_parent(start.custom_parameters.get("traceparent", ""))
        with call_span("call.start", parent=parent, call_sid=start.call_sid, stream_sid=start.stream_sid) as span:
            if self.session is None:
                self.trace_span = span
            await self._start(start)

    async def _start(self, start: tw.Start) -> None:
        received = time.monotonic()  # the stream's start: Twilio's media timestamps count from here
        if self.session is not None:
            await self._reject(CLOSE_PROTOCOL, "second start on one stream")
            return
        try:
            grant = stream_token.verify(start.custom_parameters.get("token"), start.call_sid)
        except stream_token.TokenRejected as exc:
            await self._reject(CLOSE_UNAUTHORIZED, exc.reason)
            return
        try:
            # The token's stream number: a token minted for an earlier stream of the call cannot claim a later one.
            call = await database_sync_to_async(services.claim_stream)(
                start.call_sid, start.stream_sid, settings.BRIDGE_INSTANCE_ID, stream_number=grant.stream
            )
        except DatabaseError:
            log.exception("call %s: database unavailable at stream start", start.call_sid)
            await self._reject(CLOSE_UNAVAILABLE, "database unavailable")
            return
        if call is None:
            await self._reject(CLOSE_UNAUTHORIZED, "stream token already used")
            return
        config = CallConfig.from_snapshot(call.config_snapshot, settings.OPENAI_REALTIME_MODEL)
        now = received
        self.stream_sid = start.stream_sid
        recorder = CallRecorder(settings.RECORDING_MAX_MINUTES * 60_000) if config.record_calls else None
        self.session = cs.CallSession(call, config, engine_for(config), now,
                                      handover_after_s=settings.OPENAI_REALTIME_HANDOVER_S, recorder=recorder)
        state.add(self)
        log.info("call %s stream %s started (config %s, %s)", call.twilio_call_sid, start.stream_sid,
                 config.config_id, config.engine)
        # From now on Twilio's messages are taken as they arrive, in the call's context (its log fields and trace
        # span, which the tasks they spawn inherit), not the socket's.
        self._media_path["set_text_handler"](partial(contextvars.copy_context().run, self._twilio_text))
        self._run(self.session.start(now, api_key_set=bool(settings.OPENAI_API_KEY)))

    # --- running the session's actions --------------------------------------------------------------------
    def _run(self, actions: list[cs.Action]) -> None:
        """Carry out the session's actions in order and at once: writes go out now, longer work gets a task."""
        for action in actions:
            kind = type(action)
            if kind is cs.SendUpstream:
                if self.upstream is not None:  # a closing socket drops it: its reader sees the close
                    self.upstream.send_now(action.text)
            elif kind is cs.SendTwilio:
                if not self.closed:
                    self._send_twilio(action.text)
            elif kind is cs.Record:
                sink.add(self.session.call.pk, action.event, action.live)
            elif kind is cs.Publish:
                sink.publish(action.live)
            elif kind is cs.RunTool:
                self._spawn(self._run_tool(action))
            elif kind is cs.OpenUpstream:
                self._spawn(self._upstream_loop())
            elif kind is cs.FlushEarlyAudio:
                self._flush_early_audio()
            elif kind is cs.StartTimer:
                self._spawn(self._timer(action.name, action.seconds))
            elif kind is cs.HandOver:
                self._spawn(self._hand_over())
            elif kind is cs.Measure:
                if action.timing:
                    call_stats.timing(action.name, action.value, **dict(action.dimensions))
                else:
                    call_stats.count(action.name, int(action.value), **dict(action.dimensions))
            elif kind is cs.EndCall:
                # Its own task: the upstream reader (which may be what asked for the end) must keep reading
                # while the end waits for the goodbye to play and for an engine's close confirmation.
                self.end_task = self._spawn(self._end(action))

    def _flush_early_audio(self) -> None:
        session = self.session
        while (text := session.pop_early_audio()) is not None:
            if self.upstream is not None:
                self.upstream.send_now(text)

    async def _timer(self, name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._run(self.session.on_timer(name, time.monotonic()))

    async def _run_tool(self, tool: cs.RunTool) -> None:
        session = self.session
        context = ToolCallContext(call_sid=self._sid, config_id=session.config.config_id, call_id=tool.call_id)
        output = await run_http_tool(tool.spec, tool.arguments, context)
        self._run(session.tool_done(tool.call_id, tool.name, output, time.monotonic()))

    # --- upstream ---------------------------------------------------------------------------------------
    async def _connect_upstream(self) -> UpstreamConnection | None:
        config = self.session.config
        try:
            started = time.monotonic()
            ws = await open_upstream(config)
            call_stats.timing(OPENAI_CONNECT_MS, (time.monotonic() - started) * 1000, Engine=config.engine)
            return ws
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            log.error("call %s: OpenAI connect failed: %s", self._sid, type(exc).__name__)
            detail = f"OpenAI connect failed: {type(exc).__name__}"
            self._run(self.session.upstream_lost(time.monotonic(), detail))
            return None

    async def _upstream_loop(self) -> None:
        ws = await self._connect_upstream()
        if ws is None:
            return
        session = self.session
        if session.ending:
            await ws.close()
            return
        self.upstream = ws
        self._run(session.upstream_open())
        await self._read_upstream(ws)

    async def _read_upstream(self, ws: UpstreamConnection) -> None:
        """Take one upstream socket's messages (in `_upstream_text`) until it closes; a close that the call did
        not ask for ends the call."""
        session = self.session
        ws.activate(partial(self._upstream_text, ws))
        try:
            await ws.wait_closed()
        finally:
            await ws.close()
        if ws.failure:
            detail = ws.failure
        elif isinstance(ws.protocol.close_exc, ConnectionClosedOK):
            detail = f"OpenAI closed the session ({ws.close_code})"
        else:
            detail = "OpenAI connection lost"
            if ws is self.upstream and not session.ending:
                rcvd = ws.protocol.close_rcvd
                log.warning("call %s: OpenAI connection lost (%s)", self._sid, rcvd.code if rcvd else "no close")
        if ws is not self.upstream:
            return  # a socket the call has moved away from (handover) or already closed (the end)
        self.upstream = None
        if not session.ending and detail.startswith("OpenAI closed"):
            log.warning("call %s: %s", self._sid, detail)
        self._run(session.upstream_lost(time.monotonic(), detail))

    def _upstream_text(self, ws: UpstreamConnection, text: str) -> None:
        """One OpenAI event, as it arrives."""
        if ws.failure:
            return  # the rest of a socket the call stopped reading
        session = self.session
        try:
            event = session.engine.parse(text)
            if type(event) is AgentAudio:  # the hot path downstream
                frames = session.agent_audio(event, time.monotonic())
                if frames is not None and not self.closed:
                    mark, media = frames  # a mark every MARK_EVERY_MS of audio
                    if not (self._send_twilio(media) if mark is None else self._send_twilio(mark, media)):
                        session.agent_frames_dropped += 1  # Twilio's socket is closing or not reading
                    if session.awaiting_agent_audio:  # a bool per frame; the rest once per reply
                        self._run(session.agent_audio_sent(time.monotonic()))
            elif event is not None:
                self._run(session.on_event(event, time.monotonic()))
        except ProtocolError as exc:
            log.error("call %s: unreadable OpenAI event: %s", self._sid, exc.reason)
            self._stop_reading(ws, f"unreadable OpenAI event: {exc.reason}")
        except Exception:  # a defect: this runs in the socket's callback, which must not raise
            log.exception("call %s: OpenAI event handling failed", self._sid)
            self._stop_reading(ws, "bridge error handling an OpenAI event")

    def _stop_reading(self, ws: UpstreamConnection, failure: str) -> None:
        ws.failure = failure
        self._spawn(ws.close())

    async def _hand_over(self) -> None:
        """Move the call onto a fresh upstream session before the current one reaches its time limit. Caller
        audio keeps flowing to the old session until the new one has its configuration and history."""
        session = self.session
        ws: UpstreamConnection | None = None
        try:
            ws = await open_upstream(session.config)
            for text in session.handover_opening():
                await ws.send(text)
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
            if ws is not None:
                await ws.close()
            self._run(session.handover_failed(time.monotonic(), type(exc).__name__))
            return
        except asyncio.CancelledError:  # the call ended meanwhile: the new session must not outlive it
            if ws is not None:
                ws.transport.abort()
            raise
        if session.ending:
            await ws.close()
            return
        old, self.upstream = self.upstream, ws
        if old is not None:
            await old.close()
        log.info("call %s: moved to a fresh OpenAI session", self._sid)
        self._spawn(self._read_upstream(ws))
        self._run(session.handed_over(time.monotonic()))

    # --- ending -----------------------------------------------------------------------------------------
    async def end_politely(self, reason: str) -> None:
        """Used by the drain: the Connect action then tells the caller why the call ends."""
        if self.session is not None:
            self._run(self.session.end(reason, time.monotonic()))
            await self._ended()

    async def _end(self, end: cs.EndCall) -> None:
        session = self.session
        with call_span("call.end", parent=self.trace_span, call_sid=self._sid, end_reason=end.reason,
                       duration_s=int(time.monotonic() - session.t0)):
            if end.wait_for_playback and not self.closed:
                self._send_twilio(tw.mark_message(self.stream_sid, cs.END_MARK))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.end_mark_played.wait(), END_PLAYBACK_WAIT_S)
            ended_ms = session.t_ms(time.monotonic())  # the recording's length: up to the last audio played
            await self._close_upstream()
            for task in self.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            stored = None
            try:
                stored = await database_sync_to_async(services.finish_call)(
                    session.call.pk, end.reason, session.usage or None, transfer_summary=end.transfer_summary)
            except DatabaseError:
                log.exception("call %s: could not record the end (%s)", self._sid, end.reason)
            log.info("call %s ended: %s after %ds", self._sid, end.reason, int(time.monotonic() - session.t0))
            call_stats.count(CALLS_ENDED, EndReason=end.reason)
            self._run(session.finished(time.monotonic(), stored))
            if end.close_twilio and not self.closed:
                self.closed = True
                session.twilio_closed()
                await self.close(code=1000)
            if session.recorder is not None:  # after Twilio moved on; the drain still waits for it
                await self._save_recording(session.recorder, ended_ms)
                session.recorder = None
            state.discard(self)

    async def _save_recording(self, recorder: CallRecorder, ended_ms: int) -> None:
        """Write the WAV and store it (S3 or local files) in a worker thread of its own: never on the event loop,
        and never in the thread the calls' other database work shares (an upload takes seconds)."""
        if recorder.is_empty:
            return
        try:
            name = await sync_to_async(_store_recording, thread_sensitive=False)(
                self.session.call.pk, recorder, ended_ms)
        except Exception:  # the storage's own errors (S3, disk, database) are many: the call is over; log, go on
            log.exception("call %s: the recording could not be saved", self._sid)
            return
        log.info("call %s: recording saved as %s", self._sid, name)

    async def _close_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is None:
            return
        goodbye = self.session.engine.close()
        if goodbye:  # an engine that confirms the end (and its final usage) before it closes the socket
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                for text in goodbye:
                    await upstream.send(text)
                # The reading task goes on meanwhile and hands the final events to the session.
                await asyncio.wait_for(upstream.wait_closed(), UPSTREAM_CLOSE_WAIT_S)
        await upstream.close()

    async def _reject(self, code: int, reason: str) -> None:
        log.warning("stream %s closed: %s", self.stream_sid or "(no start)", reason)
        self.closed = True
        if self.session is not None:
            self.session.twilio_closed()
            self._run(self.session.stream_error(reason, time.monotonic()))
        await self.close(code=code, reason=reason[:120])
        await self._ended()

    # --- helpers ----------------------------------------------------------------------------------------
    @property
    def _sid(self) -> str:
        return self.session.call.twilio_call_sid if self.session else ""

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _ended(self) -> None:
        """Wait for the call's end to be recorded (the drain and the hang-up wait for it)."""
        if self.end_task is not None and self.end_task is not asyncio.current_task():
            await asyncio.shield(self.end_task)


def _store_recording(call_id: int, recorder: CallRecorder, ended_ms: int) -> str:
    close_old_connections()  # this worker thread's connection may have gone stale since its last use
    with tempfile.TemporaryFile() as wav:
        recorder.write_wav(wav, ended_ms)
        wav.seek(0)
        return services.save_recording(call_id, wav)
