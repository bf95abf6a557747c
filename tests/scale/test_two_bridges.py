"""Scale-out: two bridge processes behind HAProxy on loopback, sharing PostgreSQL and a (private) Redis channel
layer. Calls spread across both; one dashboard subscriber sees the updates of both; one bridge is drained with
SIGTERM while the other takes every new call; nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from calls import live_feed
from calls.models import AgentConfig, Call
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script
from calls.simulators.twilio_caller import MediaStreamCall, inbound_call_params, parse_twiml, signed_webhook_post
from tests.bridge_tools.conftest import TlsFiles
from tests.conftest import TWILIO_TOKEN
from tests.e2e.conftest import bridge_env
from tests.faults.conftest import SCALE_CALLS, PrivateRedis, bridge_process
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


async def place_call(base: str) -> tuple[str, MediaStreamCall]:
    """A call as Twilio places it: the webhook (through the proxy), then the stream it names (through the proxy)."""
    params = inbound_call_params(to="+15005550006", from_="+14155550100")
    status, body = await asyncio.to_thread(signed_webhook_post, base, "/twilio/voice", params, TWILIO_TOKEN)
    assert status == 200, body
    twiml = parse_twiml(body)
    assert twiml.kind == "stream", body
    call = MediaStreamCall(twiml.stream_url, parameters=twiml.parameters, auth_token=TWILIO_TOKEN,
                           account_sid=params["AccountSid"], call_sid=params["CallSid"])
    await call.connect()
    return params["CallSid"], call


async def test_two_bridges_behind_haproxy_spread_calls_share_the_dashboard_and_drain_one_at_a_time(
    fresh_sim: RealtimeSimulator, private_redis: PrivateRedis, agent: AgentConfig, admin_user: Any,
    tls_files: TlsFiles, tmp_path: Path, haproxy_for: Any, loss_report: dict[str, Any],
) -> None:
    fresh_sim.script = Script(turns=[Reply("A long answer " * 20, audio_ms=120_000)])
    ports = {"a": free_port(), "b": free_port()}
    proxy = haproxy_for(ports)
    client = Client()
    client.force_login(admin_user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    with contextlib.ExitStack() as stack:
        bridges = {
            name: stack.enter_context(bridge_process(
                tmp_path, port=port, public_base=proxy.http, BRIDGE_INSTANCE_ID=f"bridge-{name}",
                **bridge_env(fresh_sim, tls_files, REDIS_URL=private_redis.url, DRAIN_TIMEOUT_S="30")))
            for name, port in ports.items()
        }
        await asyncio.to_thread(proxy.wait_states, {"a": "UP", "b": "UP"})
        # One staff dashboard, on bridge b's process (the web service in production): it must see both bridges' calls.
        feed = await connect(f"ws://127.0.0.1:{ports['b']}/dashboard/live",
                             additional_headers={"Cookie": cookie})
        seen: dict[str, set[str]] = {}

        async def listen() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in feed:
                    message = json.loads(raw)
                    if message["what"] == live_feed.HEARTBEAT:
                        continue
                    seen.setdefault(message["call"]["sid"], set()).add(message["what"])

        listener = asyncio.get_running_loop().create_task(listen())

        first = dict(await asyncio.gather(*(place_call(proxy.http) for _ in range(SCALE_CALLS))))
        assert all(await asyncio.gather(*(call.wait_for_agent_audio(timeout=20) for call in first.values())))
        placement = dict(Call.objects.filter(twilio_call_sid__in=first).values_list("twilio_call_sid",
                                                                                      "bridge_instance"))
        on_a = [sid for sid, instance in placement.items() if instance == "bridge-a"]
        on_b = [sid for sid, instance in placement.items() if instance == "bridge-b"]

        bridges["a"].proc.send_signal(signal.SIGTERM)
        t_signal = time.monotonic()
        heard_at_signal = {sid: len(first[sid].result.agent_audio) for sid in on_a}
        marked_down_s = await asyncio.to_thread(proxy.wait_states, {"a": "DOWN", "b": "UP"})
        later = dict(await asyncio.gather(*(place_call(proxy.http) for _ in range(max(2, SCALE_CALLS // 2)))))
        later_heard = await asyncio.gather(*(call.wait_for_agent_audio(timeout=20) for call in later.values()))
        later_placement = set(Call.objects.filter(twilio_call_sid__in=later).values_list("bridge_instance",
                                                                                          flat=True))
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - t_signal)))
        kept_talking = [sid for sid in on_a if len(first[sid].result.agent_audio) > heard_at_signal[sid] + 8000]
        assert bridges["a"].proc.poll() is None, "the drained bridge quit while its calls were live"
        for sid in on_a:  # the drained bridge's callers hang up: then it exits
            await first[sid].stop()
        a_exit = await asyncio.to_thread(bridges["a"].proc.wait, 15)
        for sid, call in [*first.items(), *later.items()]:
            if sid not in on_a:
                await call.stop()
        deadline = time.monotonic() + 20
        everyone = [*first, *later]
        while not all("ended" in seen.get(sid, set()) for sid in everyone) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        listener.cancel()
        await feed.close()

    rows = list(Call.objects.filter(twilio_call_sid__in=everyone).values_list("twilio_call_sid", "ended_at"))
    dashboard_saw_both = {placement.get(sid) for sid in first if {"started", "ended"} <= seen.get(sid, set())}
    loss_report.update(
        calls_first=len(first), on_bridge_a=len(on_a), on_bridge_b=len(on_b),
        proxy_marked_a_down_after_sigterm_s=round(marked_down_s, 2),
        calls_after_drain_began=len(later), their_bridges=sorted(later_placement),
        calls_after_drain_that_failed=later_heard.count(False),
        drained_calls_that_kept_talking=f"{len(kept_talking)}/{len(on_a)}", drained_bridge_exit_code=a_exit,
        dashboard_updates_seen_for=f"{sum(1 for sid in everyone if {'started', 'ended'} <= seen.get(sid, set()))}"
                                   f"/{len(everyone)} calls",
        dashboard_missed={what: sum(what not in seen.get(sid, set()) for sid in everyone)
                          for what in ("started", "ended")},
        calls_left_in_progress=sum(ended is None for _, ended in rows), dashboard_feed_close_code=feed.close_code,
    )
    assert on_a and on_b, placement  # spread over both
    assert dashboard_saw_both == {"bridge-a", "bridge-b"}
    assert all(later_heard) and later_placement == {"bridge-b"}
    assert len(kept_talking) == len(on_a) and a_exit == 0
    assert all({"started", "ended"} <= seen.get(sid, set()) for sid in everyone), seen
    assert len(rows) == len(everyone) and all(ended is not None for _, ended in rows)
