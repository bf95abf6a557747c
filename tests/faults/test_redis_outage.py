"""Redis (a PRIVATE redis-server this test starts, stops and restarts) goes away mid-call: the calls go on and
are stored in full, the dashboard's live WebSocket feed stops while the polled live-calls table keeps working,
and the live feed works again once Redis is back.

The dashboard side is checked at the server, without a browser: the page's script (static/voiceops/dashboard.js)
polls `/dashboard/partials/live-calls` whenever its socket is not open and reconnects with backoff, so what
matters is that the socket ends cleanly (no crashed process), the polled table still lists the live call, and
a new socket after the outage receives the bridge's updates again. tests/web/test_browser_live.py covers the
page's own switch between the two in chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from calls import live_feed
from calls.models import AgentConfig, Call, CallEvent
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from tests.bridge_tools.conftest import TlsFiles
from tests.e2e.conftest import bridge_env
from tests.e2e.test_call_flow import open_stream, wait_for
from tests.faults.conftest import PrivateRedis, bridge_process, health, http_status
from tests.servers import ServerProcess

REDIS_DOWN_S = 5.0

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def staff_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def open_feed(bridge: ServerProcess, cookie: str) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{bridge.port}/dashboard/live", additional_headers={"Cookie": cookie},
                         open_timeout=5)


async def next_update(feed: ClientConnection, call_sid: str, what: str | None = None,
                      timeout_s: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            message = json.loads(await feed.recv())
            if message["what"] == live_feed.HEARTBEAT:
                continue
            if message["call"]["sid"] == call_sid and (what is None or message["what"] == what):
                return message


def polled_table(bridge: ServerProcess, cookie: str) -> tuple[int, str]:
    request = urllib.request.Request(bridge.http + "/dashboard/partials/live-calls", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read().decode()


async def test_redis_down_calls_go_on_and_the_live_view_degrades_to_polling_then_recovers(
    fresh_sim: RealtimeSimulator, private_redis: PrivateRedis, agent: AgentConfig, admin_user: Any,
    tls_files: TlsFiles, tmp_path: Path, loss_report: dict[str, Any],
) -> None:
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=1000), Reply("Still here.", audio_ms=1000)],
                              transcripts=["Are you there?", "And now?"])
    cookie = staff_cookie(admin_user)
    env = bridge_env(fresh_sim, tls_files, REDIS_URL=private_redis.url)
    with bridge_process(tmp_path, **env) as bridge:
        feed = await open_feed(bridge, cookie)
        params, call = await open_stream(bridge)
        await call.connect()
        started = await next_update(feed, params["CallSid"], "started")
        call_id = started["call_id"]
        await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)

        await asyncio.to_thread(private_redis.stop)
        down_at = time.monotonic()
        # The open feed ends (or goes quiet) instead of hanging the process; new feeds are refused cleanly.
        feed_closed = None
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await next_update(feed, params["CallSid"], timeout_s=3)
        feed_closed = feed.close_code
        with contextlib.suppress(Exception):
            await feed.close()
        refused: str
        try:
            async with await open_feed(bridge, cookie) as probe:
                await probe.recv()
                refused = "accepted"
        except InvalidStatus as exc:
            refused = f"handshake {exc.response.status_code}"
        except ConnectionClosed as exc:
            refused = f"closed {exc.rcvd.code if exc.rcvd else 1006}"
        # Calls go on: the live one holds a turn, a new one is answered, talks and ends, all stored.
        heard = len(call.result.agent_audio)
        await call.say(audio.speech_like(700) + audio.silence(800))
        await call.wait_for_reply(since_bytes=heard, start_timeout=10, quiet_ms=300, finish_timeout=10)
        talked_during_outage = len(call.result.agent_audio) > heard
        params_2, call_2 = await open_stream(bridge)
        async with call_2:
            second_call_heard = await call_2.wait_for_agent_audio(timeout=10)
        poll_status, table = await asyncio.to_thread(polled_table, bridge, cookie)
        polled_lists_live_call = f'data-call-id="{call_id}"' in table
        ready_during_outage = await asyncio.to_thread(wait_for, lambda: http_status(bridge.http + "/readyz"), 2)
        alive = (await asyncio.to_thread(health, bridge))["status"] == "ok"

        await asyncio.sleep(max(0.0, REDIS_DOWN_S - (time.monotonic() - down_at)))
        await asyncio.to_thread(private_redis.start)
        up_at = time.monotonic()
        # The page reconnects with backoff and polls meanwhile; so do we, until a new call's update arrives.
        recovered, attempts, late_calls = None, 0, []
        while recovered is None and time.monotonic() - up_at < 20:
            attempts += 1
            try:
                feed = await open_feed(bridge, cookie)
            except (InvalidStatus, OSError):
                await asyncio.sleep(0.5)
                continue
            params_n, call_n = await open_stream(bridge)
            late_calls.append(params_n["CallSid"])
            async with call_n:
                with contextlib.suppress(TimeoutError, ConnectionClosed):
                    await next_update(feed, params_n["CallSid"], "started", timeout_s=5)
                    recovered = time.monotonic() - up_at
        await call.stop()
        ended = await next_update(feed, params["CallSid"], "ended")
        await feed.close()
        await asyncio.to_thread(wait_for, lambda: health(bridge)["pending_events"] == 0, 10)
        tracebacks = bridge.log().count("Traceback")

    rows = {row.twilio_call_sid: row for row in Call.objects.filter(
        twilio_call_sid__in=[params["CallSid"], params_2["CallSid"], *late_calls])}
    lines = list(CallEvent.objects.filter(call=rows[params["CallSid"]], kind__in=["caller", "agent"])
                 .values_list("kind", "text"))
    loss_report.update(
        redis_down_s=round(up_at - down_at, 1), open_feed_close_code=feed_closed, new_feed_during_outage=refused,
        readyz_during_outage=ready_during_outage, bridge_alive=alive,
        live_call_talked_during_outage=talked_during_outage,
        second_call_answered_during_outage=second_call_heard, polled_table_status=poll_status,
        polled_table_lists_live_call=polled_lists_live_call, live_view_back_after_s=round(recovered, 2),
        attempts_until_live_update=attempts,
        transcript_lines_stored=len(lines),
        calls_left_in_progress=sum(row.ended_at is None for row in rows.values()), bridge_tracebacks=tracebacks,
    )
    assert alive and talked_during_outage and second_call_heard
    assert poll_status == 200 and polled_lists_live_call
    assert ready_during_outage == 503  # a load balancer stops sending new calls to a task without its Redis
    # The feed says why it ends (4503, unavailable), and the page falls back to polling; no 500, no traceback.
    assert feed_closed == 4503 and refused == "closed 4503"
    assert tracebacks == 0
    assert ended["call"]["status"] == "completed"
    assert ("caller", "Are you there?") in lines and ("agent", "Still here.") in lines
    assert all(row.ended_at is not None for row in rows.values())


async def test_an_idle_live_feed_stays_open(
    fresh_sim: RealtimeSimulator, private_redis: PrivateRedis, agent: AgentConfig, admin_user: Any,
    tls_files: TlsFiles, tmp_path: Path,
) -> None:
    """A quiet dashboard (no call for a while) keeps its feed: the channel layer's blocking read (5 s) must not
    trip the Redis client's own socket timeout (redis-py 8 made it 5 s by default), which tore every idle feed
    down every 5 s."""
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=300)])
    with bridge_process(tmp_path, **bridge_env(fresh_sim, tls_files, REDIS_URL=private_redis.url)) as bridge:
        feed = await open_feed(bridge, staff_cookie(admin_user))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feed.wait_closed(), 12)
        assert feed.close_code is None, (feed.close_code, feed.close_reason)
        params, call = await open_stream(bridge)
        async with call:
            await next_update(feed, params["CallSid"], "started")
        await feed.close()
