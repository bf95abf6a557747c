"""The dashboard's live feed through a real proxy (HAProxy on loopback) whose idle timeouts are short: a feed left
open on a quiet line stays open for several times the proxy's idle timeout, and still carries the bridge's updates.

A proxy or load balancer cuts a WebSocket that carries no frame for its idle timeout (HAProxy: `timeout tunnel`,
or `timeout client/server` when it is unset; the ALB: its idle timeout, 60 s by default). The ASGI server's own
WebSocket pings (every 20 s) come too late for a shorter one: before the live feed had its heartbeat
(calls/live_feed.py), this socket was cut after exactly the proxy's 2 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from calls import live_feed
from calls.models import AgentConfig
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from tests.bridge_tools.conftest import TlsFiles
from tests.e2e.conftest import bridge_env
from tests.e2e.test_call_flow import open_stream
from tests.faults.conftest import PrivateRedis, bridge_process
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PROXY_IDLE_TIMEOUT_S = 2
HEARTBEAT_S = 1  # the bridge's LIVE_FEED_HEARTBEAT_S in this test: inside the proxy's idle timeout
HOLD_S = 3 * PROXY_IDLE_TIMEOUT_S


async def test_an_idle_live_feed_stays_open_through_a_proxy_with_short_idle_timeouts(
    fresh_sim: RealtimeSimulator, private_redis: PrivateRedis, agent: AgentConfig, admin_user: Any,
    tls_files: TlsFiles, tmp_path: Path, haproxy_for: Any,
) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=300)])
    port = free_port()
    # No `timeout tunnel`: the client and server timeouts go on applying to the upgraded connection.
    idle = f"{PROXY_IDLE_TIMEOUT_S}s"
    proxy = haproxy_for({"a": port}, {"client": idle, "server": idle, "tunnel": None})
    client = Client()
    client.force_login(admin_user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    env = bridge_env(fresh_sim, tls_files, REDIS_URL=private_redis.url, LIVE_FEED_HEARTBEAT_S=str(HEARTBEAT_S))
    with bridge_process(tmp_path, port=port, **env) as bridge:
        await asyncio.to_thread(proxy.wait_states, {"a": "UP"})
        # A browser sends nothing on this socket and never pings: neither does this client.
        feed = await connect(f"{proxy.ws}/dashboard/live", additional_headers={"Cookie": cookie},
                             ping_interval=None, open_timeout=5)
        opened = time.monotonic()
        frames: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            async with asyncio.timeout(HOLD_S):
                async for raw in feed:
                    frames.append(json.loads(raw))
        open_for_s = time.monotonic() - opened
        assert feed.close_code is None, (
            f"the idle feed was cut after {open_for_s:.1f}s (proxy idle timeout {PROXY_IDLE_TIMEOUT_S}s): "
            f"close {feed.close_code} {feed.close_reason!r}")
        # Only heartbeats on a quiet line, in the contract's shape, about one a second.
        assert frames and all(frame == live_feed.heartbeat(HEARTBEAT_S) for frame in frames), frames
        assert len(frames) >= HOLD_S // HEARTBEAT_S - 1, frames

        # Still a live feed, not just an open socket: a call's start reaches it through the proxy.
        params, call = await open_stream(bridge)
        async with call, asyncio.timeout(10):
            while True:
                update = json.loads(await feed.recv())
                if update["what"] != live_feed.HEARTBEAT and update["call"]["sid"] == params["CallSid"]:
                    break
        assert update["what"] == "started"
        await feed.close()
