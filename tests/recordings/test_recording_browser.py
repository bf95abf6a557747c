"""The recording player in chromium: it loads the stereo WAV through the staff-only view, and a click on a line of
the conversation plays the recording from that line's moment (dashboard call page and admin)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.recording import CallRecorder
from calls import services
from calls.models import AgentConfig, Call
from calls.simulators import audio
from tests.web.conftest import browser  # noqa: F401 - a fixture
from tests.web.helpers import add_conversation, logged_in_page, make_call
from tests.web.test_browser import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def call_with_recording(front_desk: AgentConfig) -> Call:
    recorder = CallRecorder()
    frame = base64.b64encode(audio.tone(600, 20)).decode()
    for ms in range(3200, 5000, 20):  # the caller's line at 3.2 s
        recorder.caller(frame, ms)
    call = make_call(front_desk)
    add_conversation(call)  # its lines sit at 0.4 s, 3.2 s, … 66 s
    wav = io.BytesIO()
    recorder.write_wav(wav, 70_000)
    services.save_recording(call.pk, wav.getvalue())
    call.refresh_from_db()
    return call


@pytest.fixture
def page(browser: Any, live_server: Any, admin_user: Any) -> Iterator[Any]:  # noqa: F811
    tab = logged_in_page(browser, live_server.url)
    yield tab
    tab.context.close()
    assert tab.js_errors == [], f"JavaScript errors: {tab.js_errors}"


@pytest.mark.parametrize("where", ["dashboard", "admin"])
def test_clicking_a_line_plays_the_recording_from_there(page: Any, call_with_recording: Call, where: str) -> None:
    from playwright.sync_api import expect

    path = (f"/dashboard/calls/{call_with_recording.pk}/" if where == "dashboard"
            else f"/admin/calls/call/{call_with_recording.pk}/change/")
    page.goto(path)
    player = page.locator("#vo-recording")
    expect(player).to_be_visible()
    page.wait_for_function("document.getElementById('vo-recording').duration > 69")  # the WAV's metadata loaded
    page.locator(".vo-turn.vo-caller .vo-bubble").first.click()
    page.wait_for_function("Math.abs(document.getElementById('vo-recording').currentTime - 3.2) < 0.5")
    page.wait_for_function("!document.getElementById('vo-recording').paused")
    page.locator(".vo-turn.vo-agent .vo-bubble").last.click()  # "Done — see you Friday", at 65 s
    page.wait_for_function("Math.abs(document.getElementById('vo-recording').currentTime - 65) < 0.5")
    screenshot(page, f"{where}-call-recording.png")
