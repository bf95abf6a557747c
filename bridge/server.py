"""uvicorn (uvloop, httptools, websockets-sansio) with the bridge's own SIGTERM/SIGINT handling: drain live calls
before the process exits.

uvicorn serves the bridge because it measured best for this workload (docs/perf.md, tests/benchmarks/
server_compare.py): about half daphne's CPU per call and a fraction of its tail latency.

Plain uvicorn starts its shutdown on SIGTERM at once, cutting every call off mid-sentence. Here the first SIGTERM
(or Ctrl-C) turns the bridge not-ready (`/readyz` 503, new streams refused), waits for the live calls to end for up
to the drain timeout, ends the rest politely (`BridgeState.drain`), then stops uvicorn: the process exits 0. A
second signal stops at once (exit 1); a third exits without cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.protocol import State

from bridge.lifecycle import BridgeState
from bridge.lifecycle import state as bridge_state
from bridge.media_path import MEDIA_PATH_EXTENSION, WRITE_BUFFER_LIMIT_BYTES, MediaPath, TextHandler
from bridge.ws_frames import FrameSplitter, Reader, text_frame

log = logging.getLogger(__name__)

PING_INTERVAL_S = 20  # keeps the ALB (idle timeout 3600 s) and NATs from dropping a quiet stream
PING_TIMEOUT_S = 30
# Twilio's largest message (`start`, with the custom parameters) is a few KB and a media frame ~250 bytes;
# anything near this is not Twilio: it gets a 1009 close with a reason.
MAX_MESSAGE_BYTES = 64 * 1024
CLOSE_REASON_BYTES = 123  # the WebSocket protocol's limit for a close frame's reason
FORCED_STOP_GRACE_S = 5.0  # after the stop starts, how long connections and tasks get before a hard exit

EXIT_DRAINED = 0
EXIT_FORCED = 1

Asgi = Callable[..., Any]


def limit_close_reasons(app: Asgi) -> Asgi:
    """The bridge's close reasons tell Twilio's logs (and tests) why a stream was refused; a reason longer than
    the protocol allows would make the server fail the close, so cut it to 123 bytes of UTF-8."""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return

        async def send_with_short_reason(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.close" and message.get("reason"):
                message = {**message, "reason": _truncate_utf8(str(message["reason"]), CLOSE_REASON_BYTES)}
            await send(message)

        await app(scope, receive, send_with_short_reason)

    return application


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so that a taken port is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise OSError(f"could not listen on {host}:{port}: {exc.strerror or exc}") from exc


INVALID_UTF8_REASON = "invalid UTF-8 in a text message"
CLOSE_LINGER_S = 1.0  # after refusing a bad frame, how long its remaining bytes are read and discarded


class _MediaStreamsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with the `voiceops.media_path` extension (`bridge.media_path`): the
    media consumer takes each text message as it arrives and writes at once. uvicorn's own path costs, per
    message, a dict, a queue hop, a task switch, pausing and resuming reads (two system calls) and an awaited send.
    Once the connection is open, whole text frames are split off by `bridge.ws_frames.FrameSplitter`; every other
    frame goes whole to the websockets library, which keeps the protocol's rules (control frames, fragments, limits).

    And two mends, neither on the per-message path:
    - its 1007 close for a text message with invalid UTF-8 carries no reason: the peer is told why;
    - when a bad frame (too big, invalid) arrives in the same read as good ones before it, uvicorn drops the good
      ones: a `start` followed at once by an oversized frame left a call that never started and was never
      finalised. Here the messages before the bad frame reach the app first, then the close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.text_handler: TextHandler | None = None
        self._frames = FrameSplitter(masked=True, max_size=MAX_MESSAGE_BYTES)
        send_close = self.conn.send_close

        def send_close_with_reason(code: int | None = None, reason: str = "") -> None:
            send_close(code, reason or (INVALID_UTF8_REASON if code == 1007 else ""))

        self.conn.send_close = send_close_with_reason  # type: ignore[method-assign]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            media_path: MediaPath = {"set_text_handler": self.set_text_handler, "send_now": self.send_now}
            self.scope["extensions"][MEDIA_PATH_EXTENSION] = media_path  # type: ignore[index]

    def set_text_handler(self, handler: TextHandler | None) -> None:
        self.text_handler = handler

    def handle_text(self, event: Frame) -> None:
        """A text frame the library read (before the scanner took over, or a fragmented message's first)."""
        if not (event.fin and self._take_text(event.data)):
            super().handle_text(event)  # a fragment, or invalid UTF-8: uvicorn's path (1007 for the latter)

    def _take_text(self, payload: Any) -> bool:
        """Hand a whole text message to the app: to the media path's handler at once when nothing is queued
        before it and the handler takes it, else to the queue as uvicorn does. False for invalid UTF-8."""
        try:
            text = str(payload, "utf-8")
        except UnicodeDecodeError:
            return False
        if self.close_sent:
            return True  # the app is past `websocket.close`: discarded, as uvicorn does
        handler = self.text_handler
        if handler is not None and self.queue.empty():
            try:
                if handler(text):
                    return True
            except Exception:  # a defect in the handler: the app's own path gets the message and fails there
                log.exception("media path handler failed")
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        return True

    def send_now(self, *texts: str) -> bool:
        """Write text messages at once, in one write; False when the socket is closing or its buffer is full."""
        if self.close_sent or self.conn.state is not State.OPEN:
            return False
        transport = self.transport
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT_BYTES:
            return False
        transport.write(b"".join([text_frame(text.encode()) for text in texts]))
        return True

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if frames.reader is Reader.HANDSHAKE:
            if self.conn.state is not State.OPEN:
                if self.handshake_initiated:  # bytes before our 101 (a client must wait for it): the library's
                    frames.hand_over()
                self._library_reads(data)
                return
            frames.open()  # uvicorn handed over the upgrade request alone: a frame starts here
        elif self.conn.state is not State.OPEN:
            frames.hand_over()  # the close has begun (ours)
        for payload, frame in frames.split(data):
            if payload is not None and self._take_text(payload):
                continue
            self._library_reads(frame)  # a control frame, a fragment, bad input; or all of it, handed over
            if self.conn.state is not State.OPEN or self.conn.parser_exc is not None:
                frames.hand_over()

    def _library_reads(self, data: bytes) -> None:
        self.conn.receive_data(data)
        if self.conn.parser_exc is not None:
            if not self.close_sent:  # later data of a failed connection: the parser discards it
                self.handle_events()  # what arrived before the bad frame
                self._fail()
            return
        self.handle_events()

    def _fail(self) -> None:
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        # Closing now, with the rest of the peer's bad message still arriving, resets the connection (RST) and
        # the peer may never read the close frame: read and discard for a moment, then close.
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        asyncio.get_running_loop().call_later(CLOSE_LINGER_S, self.transport.close)


class _UvicornServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The bridge handles SIGTERM/SIGINT itself (BridgeServer._on_signal), on the event loop."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


class BridgeServer:
    def __init__(
        self,
        application: Asgi,
        *,
        host: str,
        port: int,
        drain_timeout_s: float,
        state: BridgeState = bridge_state,
        on_start: Iterable[Callable[[], object]] = (),
        on_stop: Iterable[Callable[[], object]] = (),
        root_path: str = "",
    ) -> None:
        self.host, self.port = host, port
        self.drain_timeout_s = drain_timeout_s
        self.state = state
        self.on_start = list(on_start)
        self.on_stop = list(on_stop)
        self.exit_code = EXIT_DRAINED
        self._signals = 0
        self._drain_task: asyncio.Task[None] | None = None
        self._stopping = False
        config = uvicorn.Config(
            limit_close_reasons(application),
            loop="uvloop",
            http="httptools",
            ws=_MediaStreamsProtocol,
            lifespan="off",  # Channels' router has no lifespan; nothing needs start-up events
            # Behind the ALB: the client address and scheme come from its X-Forwarded-* headers.
            proxy_headers=True,
            forwarded_allow_ips="*",
            ws_ping_interval=PING_INTERVAL_S,
            ws_ping_timeout=PING_TIMEOUT_S,
            ws_max_size=MAX_MESSAGE_BYTES,
            ws_per_message_deflate=False,  # μ-law base64 barely compresses; deflate would cost CPU per frame
            root_path=root_path,
            timeout_graceful_shutdown=FORCED_STOP_GRACE_S / 2,
            server_header=False,
            headers=[("server", "voiceops")],
            access_log=False,
            log_config=None,  # Django's LOGGING configures the loggers
        )
        self.uvicorn = _UvicornServer(config, on_started=self._started)

    def run(self) -> int:
        """Serve until a signal ends it; returns the process exit code. Raises OSError when it cannot listen."""
        sock = listen(self.host, self.port)
        with asyncio.Runner(loop_factory=self.uvicorn.config.get_loop_factory()) as runner:
            runner.run(self._serve(sock))
        return self.exit_code

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        await self.uvicorn.serve(sockets=[sock])

    def _started(self) -> None:
        log.info("bridge serving on %s:%d (pid %d; SIGTERM drains calls for up to %ss)", self.host, self.port,
                 os.getpid(), self.drain_timeout_s)
        _run_hooks(self.on_start, "start")

    # --- shutdown -------------------------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_stop(name))
        elif self._signals == 2:
            log.warning("%s again: stopping now, cutting off %d live call(s)", name, self.state.active_calls)
            self.exit_code = EXIT_FORCED
            self.uvicorn.force_exit = True
            self._stop()
        else:
            _hard_exit(EXIT_FORCED)

    async def _drain_then_stop(self, signal_name: str) -> None:
        started = time.monotonic()
        live = self.state.active_calls
        self.state.draining = True  # before the first await: /readyz and new streams see it at once
        log.info("%s: draining started, %d live call(s), waiting up to %ss (signal again to stop now)",
                 signal_name, live, self.drain_timeout_s)
        ended_by_drain = 0
        try:
            ended_by_drain = await self.state.drain(self.drain_timeout_s)
        except Exception:
            log.exception("drain failed; stopping anyway")
        log.info("draining ended after %.1fs: %d call(s) were live, %d ended by the drain, %d left; stopping",
                 time.monotonic() - started, live, ended_by_drain, self.state.active_calls)
        self._stop()

    def _stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        # Stopping waits for connections and cancelled calls to unwind; never longer than this.
        asyncio.get_running_loop().call_later(FORCED_STOP_GRACE_S, lambda: _hard_exit(self.exit_code))
        drain = self._drain_task
        if drain is not None and not drain.done() and drain is not asyncio.current_task():
            drain.cancel()
        _run_hooks(self.on_stop, "stop")
        self.uvicorn.should_exit = True


def _run_hooks(hooks: Iterable[Callable[[], object]], when: str) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:
            log.exception("bridge %s hook %r failed", when, hook)


def _hard_exit(code: int) -> None:
    log.error("bridge did not stop in time: exiting without cleanup")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
