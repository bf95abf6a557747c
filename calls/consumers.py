"""The dashboard's live feed: forwards the bridge's `call.update` messages to staff browsers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from redis.exceptions import RedisError

from calls import live_feed
from calls.live_feed import ALL_CALLS_GROUP, call_group

log = logging.getLogger(__name__)

VIEW_CALLS = "calls.view_call"
FORBIDDEN = 4403
BAD_REQUEST = 4400
UNAVAILABLE = 4503  # the channel layer (Redis) is down: the page polls, then reconnects
UNAVAILABLE_REASON = "live feed unavailable"


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """`/dashboard/live` (every call) or `/dashboard/live?call=<id>` (one call). Staff only; receive-only."""

    group: str | None = None
    refused = False  # closed at connect for want of Redis: nothing more to send
    heartbeats: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Without Redis there is no live feed: close with 4503 and a reason, so that the page polls instead,
        rather than a 500 handshake or a 1011 with a traceback per open dashboard."""
        try:
            await super().__call__(scope, receive, send)
        except (RedisError, OSError) as exc:
            if self.refused:
                return  # the channel receive failing too, after the refusal: already closed and logged
            log.warning("dashboard live feed closed: channel layer unavailable (%s)", type(exc).__name__)
            await send({"type": "websocket.close", "code": UNAVAILABLE, "reason": UNAVAILABLE_REASON})
        finally:
            self._stop_heartbeats()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user is not None and user.is_authenticated and user.is_active and user.is_staff):
            await self.close(code=FORBIDDEN)
            return
        if not await database_sync_to_async(user.has_perm)(VIEW_CALLS):
            await self.close(code=FORBIDDEN)  # the same permission the dashboard pages need
            return
        if not self._same_origin():
            # The session cookie rides along on cross-site WebSocket handshakes: refuse other origins.
            await self.close(code=FORBIDDEN)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        call = query.get("call", [""])[0]
        if call and not call.isdigit():
            await self.close(code=BAD_REQUEST)
            return
        group = call_group(int(call)) if call else ALL_CALLS_GROUP
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except (RedisError, OSError) as exc:
            log.warning("dashboard live feed refused: channel layer unavailable (%s)", type(exc).__name__)
            self.refused = True
            await self.accept()  # a refused handshake could not say why
            await self.close(code=UNAVAILABLE, reason=UNAVAILABLE_REASON)
            return
        self.group = group
        await self.accept()
        self.heartbeats = asyncio.get_running_loop().create_task(self._send_heartbeats())

    async def _send_heartbeats(self) -> None:
        """A quiet line sends nothing: without these, a proxy or load balancer with an idle timeout shorter than
        the ASGI server's WebSocket pings cuts the socket. The page also reconnects when they stop coming."""
        interval_s = settings.LIVE_FEED_HEARTBEAT_S
        message = live_feed.heartbeat(interval_s)
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.send_json(message)
            except OSError:  # the browser went away between two heartbeats: the disconnect follows
                return

    def _stop_heartbeats(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.cancel()
            self.heartbeats = None

    def _same_origin(self) -> bool:
        headers = dict(self.scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is None:
            return True  # not a browser (tests, tools): the session check above still applies
        domain, _port = split_domain_port(urlsplit(origin.decode("latin-1")).netloc)
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG:
            allowed += [".localhost", "127.0.0.1", "[::1]"]
        return bool(domain) and validate_host(domain, allowed)

    async def disconnect(self, code: int) -> None:
        self._stop_heartbeats()
        if self.group:
            with contextlib.suppress(RedisError, OSError):  # Redis down: the membership expires by itself
                await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """The feed is one-way: anything the browser sends (even non-JSON) is ignored."""

    async def call_update(self, message: dict[str, Any]) -> None:
        await self.send_json(live_feed.for_browser(message))
