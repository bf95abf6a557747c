"""The dashboard's live path in a real browser: daphne serves the app with the `/dashboard/live` WebSocket,
the test plays the bridge by publishing `call.update` messages, and the page updates without polling."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from calls.models import Call
from tests.servers import ROOT, free_port, subprocess_env, wait_http
from tests.web.helpers import logged_in_page, make_call

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class LiveApp:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def publish(self, update: dict[str, Any]) -> None:
        """What the bridge does: a `call.update` to the call's groups (in the server's channel layer)."""
        request = urllib.request.Request(
            f"{self.url}/__publish__", data=json.dumps({"type": "call.update", **update}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204


@contextmanager
def serve_live_app(tmp_path: Path, **env: str) -> Iterator[LiveApp]:
    port = free_port()
    log_path = tmp_path / "daphne.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tests.web.live_asgi:application"],
            cwd=ROOT,
            env=subprocess_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/admin/login/")
        yield LiveApp(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.environ.get("VOICEOPS_SHOW_SERVER_LOG"):
            print(log_path.read_text())


@pytest.fixture
def live_app(transactional_db: Any, tmp_path: Path) -> Iterator[LiveApp]:
    with serve_live_app(tmp_path) as app:
        yield app


HEARTBEAT_S = 1


@pytest.fixture
def live_app_quick_heartbeat(transactional_db: Any, tmp_path: Path) -> Iterator[LiveApp]:
    """The live app sending its feed's heartbeat every second (production: every LIVE_FEED_HEARTBEAT_S, 20 s)."""
    with serve_live_app(tmp_path, LIVE_FEED_HEARTBEAT_S=str(HEARTBEAT_S)) as app:
        yield app


def call_info(call: Call, status: str = "in_progress", end_reason: str = "") -> dict[str, Any]:
    return {
        "id": call.pk,
        "sid": call.twilio_call_sid,
        "from": "+1415•••0123",
        "to": call.to_number,
        "config": "Front desk",
        "status": status,
        "started_at": call.started_at.isoformat(),
        "end_reason": end_reason,
    }


def test_live_transcript_arrives_over_the_websocket(
    browser: Any, live_app: LiveApp, admin_user: Any, front_desk: Any
) -> None:
    from playwright.sync_api import expect

    call = make_call(front_desk, sid="CAlive0002", status=Call.Status.IN_PROGRESS, duration_s=None)
    page = logged_in_page(browser, live_app.url)
    page.goto(f"/dashboard/calls/{call.pk}/")
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")

    events = [
        {"seq": 0, "kind": "agent", "t_ms": 300, "text": "Hello, Acme Dental.", "data": {}},
        {"seq": 1, "kind": "caller", "t_ms": 2100, "text": "Hi, <i>is</i> Sam there?", "data": {}},
        {"seq": 2, "kind": "tool_call", "t_ms": 2500, "text": "", "data": {"name": "transfer_call"}},
    ]
    for event in events:
        live_app.publish({"call_id": call.pk, "what": "event", "call": call_info(call), "event": event})
    expect(page.locator(".vo-transcript > li")).to_have_count(3)
    expect(page.locator(".vo-turn.vo-caller p")).to_have_text("Hi, <i>is</i> Sam there?")  # text, not HTML
    expect(page.locator(".vo-turn.vo-agent time")).to_have_text("00:00")
    expect(page.locator(".vo-sys.vo-tool_call")).to_contain_text("transfer_call")
    # Nothing was stored: these lines came over the socket, not from polling the database.
    assert not call.events.exists()

    live_app.publish(
        {
            "call_id": call.pk,
            "what": "ended",
            "event": None,
            "call": call_info(call, status="completed", end_reason="transferred"),
        }
    )
    expect(page.locator("#call-status .status")).to_have_text("Completed")
    expect(page.locator("#call-end-reason")).to_have_text("Transferred")
    assert page.js_errors == []
    page.context.close()


def test_live_calls_list_refreshes_when_a_call_starts(
    browser: Any, live_app: LiveApp, admin_user: Any, front_desk: Any
) -> None:
    from playwright.sync_api import expect

    page = logged_in_page(browser, live_app.url)
    page.goto("/dashboard/")
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    call = make_call(front_desk, sid="CAlive0003", status=Call.Status.RINGING, duration_s=None)
    live_app.publish({"call_id": call.pk, "what": "started", "event": None, "call": call_info(call, "ringing")})
    row = page.locator(f"tr[data-call-id='{call.pk}']")
    expect(row).to_contain_text("Ringing", timeout=3000)  # well before the 5 s poll
    live_app.publish(
        {
            "call_id": call.pk,
            "what": "event",
            "call": call_info(call),
            "event": {"seq": 0, "kind": "caller", "t_ms": 900, "text": "Is anyone there?", "data": {}},
        }
    )
    expect(row.locator("[data-last-line]")).to_have_text("Caller: Is anyone there?")
    assert page.js_errors == []
    page.context.close()


def test_heartbeats_keep_the_feed_open_without_refreshing_the_page(
    browser: Any, live_app_quick_heartbeat: LiveApp, admin_user: Any, front_desk: Any
) -> None:
    """The feed's heartbeats are not updates: the live calls table is not fetched again for each of them."""
    from playwright.sync_api import expect

    page = logged_in_page(browser, live_app_quick_heartbeat.url)
    fetches: list[str] = []
    page.on("request", lambda request: fetches.append(request.url) if "/partials/live-calls" in request.url else None)
    frames: list[Any] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
    page.goto("/dashboard/")
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    page.wait_for_timeout(3500)
    heartbeats = [frame for frame in frames if json.loads(frame)["what"] == "heartbeat"]
    assert len(heartbeats) >= 2, frames
    assert len(fetches) == 1, fetches  # the catch-up when the socket opened, none per heartbeat
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    assert page.js_errors == []
    page.context.close()


def test_a_feed_whose_heartbeats_stop_is_dropped_and_opened_again(
    browser: Any, live_app_quick_heartbeat: LiveApp, admin_user: Any, front_desk: Any
) -> None:
    """A connection that dies on the way (a proxy dropping it, a laptop's network changing) may bring the page no
    close for minutes: when the heartbeats stop, the page opens a new socket by itself."""
    from playwright.sync_api import expect

    page = logged_in_page(browser, live_app_quick_heartbeat.url)
    opened: list[float] = []

    def route(socket: Any) -> None:
        server = socket.connect_to_server()
        opened.append(time.monotonic())
        if len(opened) == 1:  # the first socket goes silent after its first heartbeat, and is never closed
            passed: list[Any] = []

            def first_frame_only(message: Any) -> None:
                if not passed:
                    passed.append(message)
                    socket.send(message)

            server.on_message(first_frame_only)

    page.route_web_socket(re.compile(r"/dashboard/live"), route)
    page.goto("/dashboard/")
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    deadline = time.monotonic() + 4 * HEARTBEAT_S + 6
    while len(opened) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(opened) == 2, "the page kept a socket that carried no heartbeat for several intervals"
    # After about MISSED_HEARTBEATS (3) silent intervals, not before one was even due.
    assert opened[1] - opened[0] >= 3 * HEARTBEAT_S, opened
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    call = make_call(front_desk, sid="CAlive0004", status=Call.Status.RINGING, duration_s=None)
    live_app_quick_heartbeat.publish({"call_id": call.pk, "what": "started", "event": None,
                                      "call": call_info(call, "ringing")})
    expect(page.locator(f"tr[data-call-id='{call.pk}']")).to_contain_text("Ringing", timeout=3000)
    assert page.js_errors == []
    page.context.close()
