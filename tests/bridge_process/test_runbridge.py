"""`manage.py runbridge` as a real process on loopback: health, static files, proxy headers, the SIGTERM
drain (with a stub live call standing in for the media bridge), no ECS task protection, and EMF metrics."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from bridge.server import FORCED_STOP_GRACE_S, MAX_MESSAGE_BYTES
from tests.bridge_process.conftest import BridgeProcess, FakeAgent, get

pytestmark = pytest.mark.e2e
StartBridge = Callable[..., BridgeProcess]


@contextmanager
def open_call(bridge: BridgeProcess) -> Iterator[ClientConnection]:
    with connect(bridge.ws, open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "live"  # the stub counted it as a live call
        yield ws


def wait_status(url: str, status: int, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code, body = get(url)
        if code == status:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {timeout_s}s")


def check_emf_line(doc: dict) -> None:
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "VoiceOps" and directive["Dimensions"] == [["Stage"]]
    assert isinstance(doc["ActiveCalls"], int) and isinstance(doc["Stage"], str)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_exits_promptly_when_idle(start_bridge: StartBridge, signum: int) -> None:
    bridge = start_bridge("--host", "127.0.0.1", "--metrics", DRAIN_TIMEOUT_S="30")
    assert get(f"{bridge.http}/healthz") == (200, {"status": "ok", "active_calls": 0, "pending_events": 0})
    assert get(f"{bridge.http}/readyz") == (200, {"status": "ready", "active_calls": 0})
    with urllib.request.urlopen(f"{bridge.http}/static/admin/css/base.css", timeout=3) as response:
        assert response.status == 200 and b"{" in response.read()  # DEBUG: static files are served

    sent = time.monotonic()
    bridge.signal(signum)
    assert bridge.wait_exit(10) == 0
    assert time.monotonic() - sent < 5  # no live call: no waiting for the 30 s drain timeout
    log = bridge.stderr()
    assert f"{signal.Signals(signum).name}: draining started, 0 live call(s), waiting up to 30s" in log
    assert "draining ended after" in log and "0 call(s) were live, 0 ended by the drain" in log
    assert "Traceback" not in log

    docs = bridge.emf_lines()
    assert len(docs) >= 2  # the first periodic line and the last one at shutdown
    for doc in docs:
        check_emf_line(doc)
        assert doc["Stage"] == "local" and doc["ActiveCalls"] == 0


def test_production_defaults(start_bridge: StartBridge) -> None:
    """DEBUG off: listens on all interfaces, publishes metrics without being asked."""
    bridge = start_bridge(
        stub=True, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 20 + "-Prod-Secret-Key-For-Tests-0123456789",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost", VOICEOPS_STAGE="dev",
    )
    assert f"bridge serving on 0.0.0.0:{bridge.port}" in bridge.wait_log("bridge serving on")
    assert get(f"{bridge.http}/readyz")[0] == 200
    bridge.wait_log('"Stage":"dev"', stream="stdout")
    bridge.signal()
    assert bridge.wait_exit(10) == 0


def test_proxy_headers_from_the_load_balancer_are_honoured(start_bridge: StartBridge) -> None:
    bridge = start_bridge(stub=True)
    request = urllib.request.Request(
        f"{bridge.http}/stub/scope", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.2", "X-Forwarded-Proto": "https"}
    )
    with urllib.request.urlopen(request, timeout=3) as response:
        scope = json.loads(response.read())
    assert scope["client"][0] == "203.0.113.9" and scope["scheme"] == "https"
    assert get(f"{bridge.http}/stub/scope")[1]["client"][0] == "127.0.0.1"  # without them: the peer


def test_port_in_use_fails_loudly(start_bridge: StartBridge) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bridge = start_bridge(wait=False, port=taken.getsockname()[1])
        assert bridge.wait_exit(30) != 0
    assert "could not listen" in bridge.stderr()


def test_drain_waits_for_the_live_call(start_bridge: StartBridge) -> None:
    bridge = start_bridge(stub=True, DRAIN_TIMEOUT_S="30")
    with open_call(bridge) as ws:
        bridge.signal()
        assert wait_status(f"{bridge.http}/readyz", 503) == {"status": "draining", "active_calls": 1}
        assert get(f"{bridge.http}/healthz")[0] == 200  # alive while draining
        with pytest.raises(InvalidStatus), connect(bridge.ws, open_timeout=5):  # no new calls while draining
            pass
        time.sleep(1.0)
        assert bridge.proc.poll() is None  # still serving the live call

        hung_up = time.monotonic()
        ws.send("hangup")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert bridge.wait_exit(10) == 0
        assert time.monotonic() - hung_up < 5
        log = bridge.stderr()
        assert "SIGTERM: draining started, 1 live call(s), waiting up to 30s" in log
        assert "1 call(s) were live, 0 ended by the drain, 0 left" in log


def test_drain_timeout_ends_calls_politely(start_bridge: StartBridge) -> None:
    bridge = start_bridge(stub=True, DRAIN_TIMEOUT_S="1")
    with open_call(bridge) as ws:
        signalled = time.monotonic()
        bridge.signal()
        assert ws.recv(timeout=10) == "ending:drained"  # the call was told why, not cut off
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "drained")
        assert bridge.wait_exit(10) == 0
        assert 0.9 <= time.monotonic() - signalled < 10
        assert "1 call(s) were live, 1 ended by the drain, 0 left" in bridge.stderr()


@pytest.mark.parametrize(("reason", "expected"), [
    ("stream token expired", "stream token expired"),
    ("é" * 100, "é" * 61),  # the protocol allows 123 bytes; a split character is dropped
])
def test_close_reasons_reach_the_client(start_bridge: StartBridge, reason: str, expected: str) -> None:
    bridge = start_bridge(stub=True)
    with open_call(bridge) as ws:
        ws.send(f"close:{reason}")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, expected)


def test_second_signal_stops_at_once(start_bridge: StartBridge) -> None:
    bridge = start_bridge(stub=True, DRAIN_TIMEOUT_S="60")
    with open_call(bridge):
        bridge.signal(signal.SIGTERM)
        bridge.wait_log("draining started")
        stopped = time.monotonic()
        bridge.signal(signal.SIGINT)
        assert bridge.wait_exit(FORCED_STOP_GRACE_S + 5) == 1
        assert time.monotonic() - stopped < FORCED_STOP_GRACE_S + 5
        assert "SIGINT again: stopping now, cutting off 1 live call(s)" in bridge.stderr()


def test_metrics_follow_calls(start_bridge: StartBridge) -> None:
    bridge = start_bridge("--metrics", stub=True)
    with open_call(bridge) as ws:
        bridge.wait_log('"ActiveCalls":1', stream="stdout", timeout_s=3)  # on change, not a minute later
        ws.send("hangup")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        bridge.wait_log('"CallsEnded":1', stream="stdout", timeout_s=3)
        docs = bridge.emf_lines()
        for doc in docs:
            check_emf_line(doc)
        assert sum(d["CallsStarted"] for d in docs) == 1
        assert max(d["ActiveCalls"] for d in docs) == 1 and docs[-1]["ActiveCalls"] == 0
        # The lines a change triggered carry counters, not ActiveCalls data points (a periodic line could
        # also carry a counter if its mid-minute slot fell within the test: hence "any").
        assert any(
            [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["CallsStarted", "CallsEnded"]
            for doc in docs if doc["CallsStarted"] or doc["CallsEnded"]
        )


def test_metrics_are_off_by_default_in_debug(start_bridge: StartBridge) -> None:
    bridge = start_bridge(stub=True)
    bridge.signal()
    assert bridge.wait_exit(10) == 0
    assert bridge.emf_lines() == []


def test_bridge_on_ecs_never_asks_for_task_protection(start_bridge: StartBridge, fake_agent: FakeAgent) -> None:
    """Issue 7 items 3/7: a task protected while it has calls blocks deployments and stays registered, so it
    keeps taking new calls; the bridge drains by ALB deregistration instead (deploy/cdk/tests/test_drain_model.py)."""
    bridge = start_bridge(stub=True, ECS_AGENT_URI=fake_agent.url)
    with open_call(bridge) as ws:
        time.sleep(0.5)  # the old code sent protection ON at once
        ws.send("hangup")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    time.sleep(0.5)
    bridge.signal()
    assert bridge.wait_exit(10) == 0
    assert fake_agent.seen() == []


def test_an_oversized_message_closes_the_stream_and_the_bridge_lives_on(start_bridge: StartBridge) -> None:
    bridge = start_bridge(stub=True)
    with open_call(bridge) as ws:
        ws.send("x" * (MAX_MESSAGE_BYTES + 1))  # a Media Streams frame is under 1 KB
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    with open_call(bridge) as ws:  # the next call is served as usual
        ws.send("hangup")
    assert get(f"{bridge.http}/healthz")[0] == 200
