"""The dashboard in Debian's chromium, as an operator uses it: pages that keep up after a call ends, the
"cannot answer" banner, why a call failed, the export links, and narrow screens that do not overflow.

`VOICEOPS_SCREENSHOTS=docs/screenshots` refreshes the README's screenshots from this scene."""

from __future__ import annotations

from typing import Any

import pytest

from calls import services
from calls.models import Call, CallEvent
from tests.web.helpers import add_conversation, make_call, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def overflow_px(page: Any) -> int:
    return page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")


@pytest.fixture
def scene(front_desk: Any, settings: Any) -> dict[str, Call]:
    """A day of calls: finished, failed (OpenAI refused the key), a load-test call, and one live."""
    settings.OPENAI_API_KEY = ""  # so the banner shows
    done = make_call(front_desk, sid="CA" + "a" * 32)
    add_conversation(done)
    failed = make_call(front_desk, sid="CA" + "b" * 32, status=Call.Status.FAILED, duration_s=2,
                       end_reason=Call.EndReason.UPSTREAM_ERROR, input_tokens=0, output_tokens=0,
                       from_number="+442071838750")
    services.add_events(failed.pk, [{"seq": 0, "kind": "error", "t_ms": 350,
                                     "text": "OpenAI connect failed: InvalidStatus",
                                     "data": {"code": "invalid_api_key"}}])
    make_call(front_desk, sid="CA" + "c" * 32, is_test=True, from_number="+15005550001")
    live = make_call(front_desk, sid="CA" + "d" * 32, status=Call.Status.IN_PROGRESS, duration_s=None,
                     from_number="+447700900123")
    services.add_events(live.pk, [{"seq": 0, "kind": "agent", "t_ms": 300, "text": "Hello, Acme Dental!"}])
    return {"done": done, "failed": failed, "live": live}


def test_dashboard_banner_figures_and_screenshots(page: Any, scene: dict[str, Call]) -> None:
    from playwright.sync_api import expect

    page.goto("/dashboard/")
    expect(page.locator("#answering-banner")).to_contain_text("OPENAI_API_KEY is not set")
    expect(page.locator("#test-calls-note")).to_contain_text("1 test or load call")
    expect(page.locator(f"tr[data-call-id='{scene['live'].pk}']")).to_contain_text("+4477•••0123")
    screenshot(page, "dashboard.png")

    page.goto(f"/dashboard/calls/{scene['failed'].pk}/")
    expect(page.locator("#call-failure")).to_contain_text("OpenAI connection failed")
    expect(page.locator("#call-failure")).to_contain_text("invalid_api_key")
    expect(page.locator(".vo-transcript")).not_to_contain_text("No transcript yet")

    page.goto(f"/dashboard/calls/{scene['done'].pk}/")
    expect(page.locator(".vo-turn.vo-caller")).to_contain_text("move my appointment")
    screenshot(page, "dashboard-call.png")


def test_call_page_catches_up_after_the_call_ends(page: Any, scene: dict[str, Call]) -> None:
    from playwright.sync_api import expect

    live = scene["live"]
    page.goto(f"/dashboard/calls/{live.pk}/")
    expect(page.locator("#call-tokens")).to_have_text("0 in · 0 out")
    # Twilio's status callback lands first, the bridge's own record of the end (tokens, reason) a moment later.
    services.apply_status_callback(live.twilio_call_sid, "completed", 42)
    expect(page.locator("#call-status .status")).to_have_text("Completed", timeout=15_000)
    services.finish_call(live.pk, Call.EndReason.CALLER_HANGUP, {"input_tokens": 321, "output_tokens": 123})
    expect(page.locator("#call-tokens")).to_have_text("321 in · 123 out", timeout=15_000)
    expect(page.locator("#call-end-reason")).to_have_text("Caller hung up")
    expect(page.locator("#call-duration")).to_have_text("00:42")


def test_history_rows_catch_up_when_a_call_ends(page: Any, scene: dict[str, Call]) -> None:
    from playwright.sync_api import expect

    live = scene["live"]
    page.goto("/dashboard/calls/")
    row = page.locator(f"tr[data-call-id='{live.pk}']")
    expect(row.locator(".status")).to_have_text("In progress")
    services.finish_call(live.pk, Call.EndReason.AGENT_ENDED, {"input_tokens": 50, "output_tokens": 25})
    expect(row.locator(".status")).to_have_text("Completed", timeout=15_000)
    expect(row.locator("[data-field='end_reason']")).to_have_text("Agent ended the call")
    expect(row.locator("[data-field='tokens']")).to_have_text("75")


def test_history_refuses_an_impossible_range_and_offers_the_export(page: Any, scene: dict[str, Call]) -> None:
    from playwright.sync_api import expect

    page.goto("/dashboard/calls/?q=friday")
    expect(page.locator("table.grid tbody tr")).to_have_count(1)  # found by what the caller said
    with page.expect_download() as download:
        page.click("text=CSV")
    assert download.value.suggested_filename.endswith(".csv")

    page.goto("/dashboard/calls/?since=2026-11-20&until=2026-11-01")
    expect(page.locator("#filter-error")).to_be_visible()
    expect(page.locator("table.grid")).to_contain_text("No calls match these filters.")


@pytest.mark.parametrize("width", [320, 390, 768])
def test_narrow_screens_do_not_overflow(page: Any, scene: dict[str, Call], front_desk: Any, width: int) -> None:
    front_desk.name = "Front desk for the downtown clinic and the Harbour Street annex"  # a long <option>
    front_desk.save()
    page.set_viewport_size({"width": width, "height": 800})
    for url in ("/dashboard/", "/dashboard/calls/", f"/dashboard/calls/{scene['failed'].pk}/",
                f"/dashboard/calls/{scene['done'].pk}/", "/dashboard/test-call/"):
        page.goto(url)
        page.wait_for_load_state("load")
        assert overflow_px(page) <= 0, f"{url} is {overflow_px(page)}px wider than a {width}px screen"


def test_favicon_is_served(page: Any, scene: dict[str, Call]) -> None:
    page.goto("/dashboard/")
    href = page.get_attribute("link[rel=icon]", "href")
    assert page.request.get(href).status == 200
    assert CallEvent.objects.exists()
