"""The OpenAI side of one call: the engine codec for its config, and the WebSocket it talks over."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from opentelemetry.trace import SpanKind
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State

from bridge import ws_frames
from bridge.call_config import CallConfig
from bridge.engine import Engine
from bridge.live_engine import LiveEngine
from bridge.media_path import WRITE_BUFFER_LIMIT_BYTES
from bridge.realtime_engine import RealtimeEngine
from bridge.ws_frames import Reader
from calls.tracing import call_span

log = logging.getLogger(__name__)

_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
MAX_EVENT_BYTES = 2**22  # the largest OpenAI event taken (a long transcript, a tool call's arguments)
MAX_RESPONSE_HEAD_BYTES = 64 * 1024  # the handshake response's status line and headers

ENGINES: dict[str, type[RealtimeEngine] | type[LiveEngine]] = {"realtime": RealtimeEngine, "live": LiveEngine}


def engine_for(config: CallConfig) -> Engine | None:
    """The codec for the config's engine; None when this bridge has none for it."""
    engine = ENGINES.get(config.engine)
    return engine(config.snapshot) if engine is not None else None


def realtime_url(model: str) -> str:
    base = settings.OPENAI_REALTIME_URL
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'model': model})}"


def upstream_url(config: CallConfig) -> str:
    # GPT-Live takes the model in session.start, never in the URL.
    return settings.OPENAI_LIVE_URL if config.engine == "live" else realtime_url(config.model)


class UpstreamConnection(ClientConnection):
    """websockets' client connection, with the call's text messages handed to a callback as they arrive instead of
    queued for `recv()`, and a send that writes at once: the audio path then costs no task switch, no queue and no
    lock per message. Once the connection is open, whole text frames are read by `bridge.ws_frames.scan`; every
    other frame goes whole to websockets, which keeps the protocol's rules (pings, the close, fragments, limits).

    Until `activate` names the callback, text messages are held (a handover's new session speaks before the call
    moves to it); `activate` hands them over first, in order. The callback runs in the context `activate` was
    called in (the call's log fields and trace span), not the socket's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_text: Callable[[str], None] | None = None
        self._context = contextvars.Context()
        self._held: list[str] = []
        self._fragments: list[bytes] = []  # a text message split over frames (OpenAI does not, but may)
        self._reader = Reader.HANDSHAKE
        self._pending = b""  # the handshake's response until whole, then the start of an incomplete frame
        self.failure = ""  # why the call stopped reading this socket (an unreadable event), if it did

    def activate(self, on_text: Callable[[str], None]) -> None:
        held, self._held = self._held, []
        self._context = contextvars.copy_context()
        self.on_text = on_text
        for text in held:
            on_text(text)

    # --- reading ------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is Reader.SCANNER:
            if self.protocol.state is State.OPEN:
                self._scan(data)
                return
            # The close has begun (ours): websockets takes over, from the start of any frame the scanner held.
            self._reader = Reader.LIBRARY
            data, self._pending = self._pending + data, b""
        elif reader is Reader.HANDSHAKE:
            # websockets reads the response alone; the frames that may follow it in the same read are the scanner's.
            head = self._pending + data
            end = head.find(b"\r\n\r\n")
            if end < 0 and len(head) <= MAX_RESPONSE_HEAD_BYTES:
                self._pending = head
                return
            self._pending = b""
            if end < 0:  # no end of headers in sight: websockets refuses it
                self._reader = Reader.LIBRARY
                super().data_received(head)
                return
            super().data_received(head[:end + 4])
            rest = head[end + 4:]
            if self.protocol.state is State.OPEN:
                self._reader = Reader.SCANNER
                if rest:
                    self._scan(rest)
                return
            self._reader = Reader.LIBRARY
            data = rest
            if not data:
                return
        super().data_received(data)

    def _scan(self, data: bytes) -> None:
        buf = self._pending + data if self._pending else data
        pos, size = 0, len(buf)
        limit = self.protocol.max_message_size or MAX_EVENT_BYTES
        while pos < size:
            end, payload = ws_frames.scan(buf, pos, False, limit)
            if end < 0:
                if end == ws_frames.TOO_BIG:  # websockets refuses it with 1009
                    self._reader, self._pending = Reader.LIBRARY, b""
                    super().data_received(buf[pos:])
                    return
                break
            if payload is None:
                super().data_received(buf[pos:end])  # one whole frame: a ping, the close, a fragment, bad input
                if self.protocol.state is not State.OPEN:
                    self._reader, self._pending = Reader.LIBRARY, b""
                    if end < size:
                        super().data_received(buf[end:])
                    return
            else:
                self._text_message(payload)
            pos = end
        self._pending = buf[pos:] if pos < size else b""

    def process_event(self, event: Event) -> None:
        """What websockets read: the handshake's response and control frames are its own; a data frame here is a
        fragment, a binary message, or any message before the scanner took over."""
        if type(event) is not Frame or event.opcode not in _DATA:
            super().process_event(event)
            return
        if event.opcode is Opcode.BINARY or (event.opcode is Opcode.CONT) is not bool(self._fragments):
            self._fail(CloseCode.UNSUPPORTED_DATA if event.opcode is Opcode.BINARY else CloseCode.PROTOCOL_ERROR,
                       "binary messages are not part of the protocol" if event.opcode is Opcode.BINARY
                       else "unexpected continuation frame")
            return
        if not event.fin:
            self._fragments.append(bytes(event.data))
            return
        data: Any = event.data
        if self._fragments:
            data = b"".join([*self._fragments, bytes(data)])
            self._fragments = []
        self._text_message(data)

    def _text_message(self, data: Any) -> None:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError:
            self._fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
            return
        if self.on_text is None:
            self._held.append(text)
        else:
            self._context.run(self.on_text, text)

    def _fail(self, code: CloseCode, reason: str) -> None:
        log.warning("OpenAI sent a message the bridge cannot read: %s", reason)
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)
            self.send_data()
        # websockets closes the socket when the peer confirms; a peer that never does is cut after the timeout.
        self.loop.call_later(self.close_timeout or 0, self.transport.abort)

    # --- writing ------------------------------------------------------------------------------------------
    def send_now(self, text: str) -> bool:
        """Write one text message at once; False when the socket is closing or its buffer is full (dropped)."""
        if self.protocol.state is not State.OPEN:
            return False
        if self.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT_BYTES:
            return False
        self.protocol.send_text(text.encode())
        self.send_data()
        return True


async def open_upstream(config: CallConfig, open_timeout_s: float = 10.0) -> UpstreamConnection:
    """Connect with the bearer key. Compression is off: μ-law base64 barely compresses and deflate would
    cost CPU on every audio frame."""
    url = upstream_url(config)
    # The handshake only: the session's frames are not traced.
    with call_span("openai.connect", kind=SpanKind.CLIENT, server_address=urlsplit(url).hostname,
                   model=config.model, engine=config.engine):
        return await connect(  # type: ignore[return-value]
            url,
            create_connection=UpstreamConnection,
            additional_headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
            open_timeout=open_timeout_s,
            compression=None,
            max_size=MAX_EVENT_BYTES,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            user_agent_header="voiceops-bridge",
        )
