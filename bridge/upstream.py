"""The OpenAI side of one call: the engine codec for its config, and the WebSocket it talks over."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from opentelemetry.trace import SpanKind
from websockets.asyncio.client import ClientConnection, connect

from bridge.call_config import CallConfig
from bridge.engine import Engine
from bridge.live_engine import LiveEngine
from bridge.realtime_engine import RealtimeEngine
from calls.tracing import call_span

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


async def open_upstream(config: CallConfig, open_timeout_s: float = 10.0) -> ClientConnection:
    """Connect with the bearer key. Compression is off: μ-law base64 barely compresses and deflate would
    cost CPU on every audio frame."""
    url = upstream_url(config)
    # The handshake only: the session's frames are not traced.
    with call_span("openai.connect", kind=SpanKind.CLIENT, server_address=urlsplit(url).hostname,
                   model=config.model, engine=config.engine):
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
