"""The dashboard's live path in a real browser: daphne serves the app with the `/dashboard/live` WebSocket,
the test plays the bridge by publishing `call.update` messages, and the page updates without polling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
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


@pytest.fixture
def live_app(transactional_db: Any, tmp_path: Path) -> Iterator[LiveApp]:
    port = free_port()
    log_path = tmp_path / "daphne.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tests.web.live_asgi:application"],
            cwd=ROOT,
            env=subprocess_env(),
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
