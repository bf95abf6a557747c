"""`manage.py runbridge` with a stub WebSocket app in place of the media bridge, for the drain tests.

Run as `python -m tests.bridge_process.stub_bridge <runbridge arguments>`. HTTP is the real Django app
(`/healthz`, `/readyz`, admin static); a WebSocket is a fake live call registered in `bridge.lifecycle.state`:
it is refused while draining, says "live" once counted, ends when the client sends "hangup", and answers
`end_politely` with "ending:<reason>" before closing, like the real consumer does; "close:<reason>" makes
it close with code 4001 and that reason.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")

import django

django.setup()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.management import call_command  # noqa: E402

import voiceops.asgi  # noqa: E402
from bridge.lifecycle import state  # noqa: E402


class StubCall:
    def __init__(self, send: Any) -> None:
        self.send = send

    async def end_politely(self, reason: str) -> None:
        await self.send({"type": "websocket.send", "text": f"ending:{reason}"})
        await self.send({"type": "websocket.close", "code": 4000, "reason": reason})
        state.discard(self)


async def stub_call_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    call: StubCall | None = None
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            if state.draining:
                await send({"type": "websocket.close", "code": 4503})
                return
            await send({"type": "websocket.accept"})
            call = StubCall(send)
            state.add(call)
            await send({"type": "websocket.send", "text": "live"})
        elif kind == "websocket.receive" and message.get("text") == "hangup":
            if call is not None:
                state.discard(call)
            await send({"type": "websocket.close", "code": 1000})
        elif kind == "websocket.receive" and (message.get("text") or "").startswith("close:"):
            await send({"type": "websocket.close", "code": 4001, "reason": message["text"][len("close:"):]})
        elif kind == "websocket.disconnect":
            if call is not None:
                state.discard(call)
            return


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Django, plus /stub/scope: what the server made of the client's address and scheme (proxy headers)."""
    if scope["path"] != "/stub/scope":
        await voiceops.asgi.django_asgi_app(scope, receive, send)
        return
    body = json.dumps({"client": scope.get("client"), "scheme": scope.get("scheme")}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


voiceops.asgi.application = ProtocolTypeRouter({"http": http_app, "websocket": stub_call_app})

if __name__ == "__main__":
    call_command("runbridge", *sys.argv[1:])
