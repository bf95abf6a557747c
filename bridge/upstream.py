"""The OpenAI Realtime WebSocket for one call (GA protocol; no OpenAI-Beta header)."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from opentelemetry.trace import SpanKind
from websockets.asyncio.client import ClientConnection, connect

from calls.tracing import call_span


def realtime_url(model: str) -> str:
    base = settings.OPENAI_REALTIME_URL
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'model': model})}"


async def open_realtime(model: str, open_timeout_s: float = 10.0) -> ClientConnection:
    """Connect with the bearer key. Compression is off: μ-law base64 barely compresses and deflate would
    cost CPU on every audio frame."""
    url = realtime_url(model)
    # The handshake only: the session's frames are not traced.
    with call_span("openai.connect", kind=SpanKind.CLIENT, server_address=urlsplit(url).hostname, model=model):
        return await connect(
            url,
            additional_headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
            open_timeout=open_timeout_s,
            compression=None,
            max_size=2**22,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            user_agent_header="voiceops-bridge",
        )
