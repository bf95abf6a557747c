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

from bridge.call_config import CallConfig
from bridge.engine import Engine
from bridge.live_engine import LiveEngine
from bridge.media_path import WRITE_BUFFER_LIMIT_BYTES
from bridge.realtime_engine import RealtimeEngine
from bridge.ws_frames import FrameSplitter, MaskKeys, Reader, text_frame
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
    lock per message. Once the connection is open, whole text frames are split off by
    `bridge.ws_frames.FrameSplitter`; every other frame goes whole to websockets, which keeps the protocol's rules
    (pings, the close, fragments, limits).

    Until `activate` names the callback, text messages are held (a handover's new session speaks before the call
    moves to it); `activate` hands them over first, in order. The callback runs in the context `activate` was
    called in (the call's log fields and trace span), not the socket's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_text: Callable[[str], None] | None = None
        self._context = contextvars.Context()
        self._held: list[str] = []
        self._fragments: list[bytes] = []  # a text message split over frames (OpenAI does not, but may)
        self._frames = FrameSplitter(masked=False, max_size=self.protocol.max_message_size or MAX_EVENT_BYTES)
        self._pending = b""  # the handshake's response, until its headers are whole
        self._mask_keys = MaskKeys()
        self.failure = ""  # why the call stopped reading this socket (an unreadable event), if it did

    def activate(self, on_text: Callable[[str], None]) -> None:
        held, self._held = self._held, []
        self._context = contextvars.copy_context()
        self.on_text = on_text
        for text in held:
            on_text(text)

    # --- reading ------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if frames.reader is Reader.HANDSHAKE:
            # websockets reads the response alone; frames that follow it in the same read are the splitter's.
            head = self._pending + data
            end = head.find(b"\r\n\r\n")
            if end < 0 and len(head) <= MAX_RESPONSE_HEAD_BYTES:
                self._pending = head
                return
            self._pending = b""
            end = len(head) if end < 0 else end + 4  # no end of headers in sight: websockets refuses it
            super().data_received(head[:end])
            if self.protocol.state is State.OPEN:
                frames.open()
            else:
                frames.hand_over()
            data = head[end:]
        elif self.protocol.state is not State.OPEN:
            frames.hand_over()  # the close has begun
        for payload, frame in frames.split(data):
            if payload is None:
                super().data_received(frame)  # a ping, the close, a fragment, bad input; or all of it, handed over
            else:
                self._text_message(payload)
            if self.protocol.state is not State.OPEN:
                frames.hand_over()

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
        self.transport.write(text_frame(text.encode(), self._mask_keys.next()))
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
