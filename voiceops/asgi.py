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

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bridge.consumer import MediaStreamConsumer  # noqa: E402
from calls.consumers import DashboardConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
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
