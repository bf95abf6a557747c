"""The one ASGI application: HTTP → Django; WebSocket → the media bridge (and the dashboard's live feed)."""

import os

import django
from django.core.asgi import get_asgi_application

from calls.tracing import configure_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
django.setup(set_prefix=False)  # logging configured first, so tracing can say whether it is on
# Off unless OTEL_* asks; before the handler is built, as the Django instrumentation adds a middleware.
configure_tracing()
django_asgi_app = get_asgi_application()  # sets Django up before the consumers import models

from typing import Any  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from bridge.consumer import MediaStreamConsumer  # noqa: E402
from calls.consumers import DashboardConsumer  # noqa: E402

# What the bridge answers over HTTP (its host, bridge.<domain>, is the call path: no admin, no dashboard).
BRIDGE_HTTP_PATHS = frozenset({"/healthz", "/readyz"})


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Django; but a bridge process (VOICEOPS_COMPONENT=bridge) answers nothing over HTTP but its health."""
    if settings.COMPONENT == "bridge" and scope["path"] not in BRIDGE_HTTP_PATHS:
        body = b"not found"
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": URLRouter(
            [
                # Twilio sends no Origin header and no cookies: no session or origin middleware here.
                path("media-stream", MediaStreamConsumer.as_asgi()),
                # Staff browsers: session auth; the consumer checks permission and origin itself.
                path("dashboard/live", AuthMiddlewareStack(DashboardConsumer.as_asgi())),
            ]
        ),
    }
)
