"""A test-only ASGI app: Django over HTTP plus the dashboard's live WebSocket mounted as voiceops.asgi mounts it,
and a `/__publish__` endpoint so a test can put a `call.update` on this process's in-memory channel layer
(playing the bridge's part). Served by daphne in a subprocess by test_browser_live.py."""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
django_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from calls.consumers import DashboardConsumer  # noqa: E402


async def publish(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    update = json.loads(body)
    layer = get_channel_layer()
    await layer.group_send("voiceops.calls", update)
    await layer.group_send(f"voiceops.call.{update['call_id']}", update)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


static_app = ASGIStaticFilesHandler(django_app)


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/__publish__" and scope["method"] == "POST":
        await publish(scope, receive, send)
    else:
        await static_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AuthMiddlewareStack(URLRouter([path("dashboard/live", DashboardConsumer.as_asgi())])),
    }
)
