"""Drives Debian's chromium through the admin and the dashboard against a live (threaded WSGI) server.

The live server speaks no WebSocket, so these tests also prove the dashboard's polling fallback."""

from __future__ import annotations

from typing import Any

import pytest

from calls import services
from calls.models import Call
from tests.web.helpers import add_conversation, make_call, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_edit_prompt_see_diff_and_restore(page: Any, front_desk: Any) -> None:
    from playwright.sync_api import expect

    original = front_desk.instructions
    page.goto(f"/admin/calls/agentconfig/{front_desk.pk}/change/")
    expect(page.locator(".field-session_preview pre")).to_contain_text("Acme Dental")
    screenshot(page, "admin-config.png")

    page.fill("#id_instructions", original.replace("Be brief and friendly.", "Be brief, warm and friendly."))
    page.fill("#id_change_note", "warmer tone")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("Saved as revision 2")

    page.click(".vo-revisions a:text('r2')")
    expect(page.locator("h2").first).to_contain_text("Changes since revision 1")
    expect(page.locator(".vo-diff-text ins")).to_contain_text("warm")
    expect(page.locator(".vo-revision-meta")).to_contain_text("warmer tone")
    screenshot(page, "admin-revision.png")

    page.click("text=← r1")
    page.click("text=Restore this revision…")
    expect(page.locator("#content-main")).to_contain_text("What will change")
    page.click("input[type=submit][value^='Yes, restore']")
    expect(page.locator(".messagelist")).to_contain_text("Restored revision 1")
    expect(page.locator("#id_instructions")).to_have_value(original)
    front_desk.refresh_from_db()
    assert front_desk.instructions == original
    assert front_desk.revisions.order_by("-number").first().comment == "Restored revision 1"


def test_dashboard_shows_a_calls_transcript(page: Any, finished_call: Call) -> None:
    from playwright.sync_api import expect

    page.goto("/dashboard/")
    expect(page.locator("h1")).to_have_text("Live calls")
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "polling")  # no WebSocket on WSGI
    expect(page.locator("table.grid").last).to_contain_text("+1415•••0123")
    screenshot(page, "dashboard.png")

    page.click(f"a[href='/dashboard/calls/{finished_call.pk}/']")
    caller = page.locator(".vo-turn.vo-caller .vo-bubble")
    agent = page.locator(".vo-turn.vo-agent .vo-bubble")
    expect(caller).to_contain_text("move my appointment to Friday")
    expect(agent.first).to_contain_text("Thanks for calling Acme Dental")
    expect(page.locator(".vo-sys.vo-tool_call")).to_contain_text("lookup_appointment")
    expect(agent.last.locator("time")).to_have_text("01:05")
    # The caller's bubble sits left of the agent's.
    assert caller.bounding_box()["x"] < agent.first.bounding_box()["x"]
    screenshot(page, "dashboard-call.png")


def test_live_call_updates_without_a_reload(page: Any, front_desk: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/dashboard/")
    expect(page.locator("#live-calls")).to_contain_text("No calls right now.")
    call = make_call(
        front_desk, sid="CAlive0001", status=Call.Status.IN_PROGRESS, duration_s=None, from_number="+447700900123"
    )
    expect(page.locator(f"tr[data-call-id='{call.pk}']")).to_contain_text("+4477•••0123", timeout=15_000)

    page.click(f"tr[data-call-id='{call.pk}'] a")
    expect(page.locator(".vo-transcript")).to_contain_text("No transcript yet.")
    add_conversation(call)
    expect(page.locator(".vo-turn.vo-caller")).to_contain_text("move my appointment", timeout=15_000)
    expect(page.locator(".vo-transcript > li")).to_have_count(6)
    expect(page.locator(".vo-sys.vo-error")).to_contain_text("upstream hiccup")

    services.finish_call(call.pk, Call.EndReason.CALLER_HANGUP)
    expect(page.locator("#call-status .status")).to_have_text("Completed", timeout=15_000)
    expect(page.locator("#call-end-reason")).to_have_text("Caller hung up")
    expect(page.locator("#feed-state")).to_have_attribute("data-state", "ended")


def test_config_page_leads_to_the_browser_test_call(page: Any, front_desk: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"/admin/calls/agentconfig/{front_desk.pk}/change/")
    page.click(".object-tools a:text('Test call')")
    expect(page.locator("#tc-config")).to_have_value(str(front_desk.pk))
    expect(page.locator("#tc-start")).to_be_visible()
    expect(page.locator("#tc-state")).to_have_attribute("data-state", "idle")
    expect(page.locator("#command")).to_have_count(0)  # no more simulate_call command to copy


def test_place_a_call_from_the_dashboard(page: Any, front_desk: Any, settings: Any) -> None:
    from playwright.sync_api import expect

    from calls.models import PhoneNumber
    from calls.simulators.twilio_rest import TwilioRestFake
    from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN

    fake = TwilioRestFake(ACCOUNT_SID, TWILIO_TOKEN)
    settings.TWILIO_API_BASE_URL = fake.start_in_thread()
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = ACCOUNT_SID, TWILIO_TOKEN
    front_desk.calling_hours_start, front_desk.calling_hours_end = 0, 24
    front_desk.save()
    PhoneNumber.objects.create(number="+15005550006", label="Main", agent_config=front_desk)
    try:
        page.goto("/dashboard/")
        page.click(".mainnav a:text('Place a call')")
        page.fill("#id_to", "+1 (500) 555-0003")  # Twilio's test number for a geo-permission refusal
        page.click("#place-call-form button[type=submit]")
        expect(page.locator("#place-call-error")).to_contain_text("error 21215")
        screenshot(page, "dashboard-place-call-refused.png")

        page.fill("#id_to", "+14155550123")
        page.click("#place-call-form button[type=submit]")
        expect(page.locator(".messages")).to_contain_text("Calling +14155550123")
        assert len(fake.calls) == 1
        page.goto("/dashboard/outbound/")
        expect(page.locator("table.grid tbody tr")).to_have_count(2)  # the refused one and the placed one
        screenshot(page, "dashboard-place-call.png")
    finally:
        fake.stop()
