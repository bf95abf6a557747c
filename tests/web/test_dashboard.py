"""The staff dashboard: access, live calls, history filters and paging, transcript, events feed, test call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from calls import stream_token
from calls.models import AgentConfig, Call, CallEvent
from calls.templatetags.voiceops import duration, mmss
from tests.web.helpers import make_call

pytestmark = pytest.mark.django_db

PAGES = ["dashboard:index", "dashboard:history", "dashboard:test_call", "dashboard:live_calls"]


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_a_staff_login(client, django_user_model, name):
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(django_user_model.objects.create_user("customer", password="pw-123456789"))
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_the_view_call_permission(client, django_user_model, editor, name):
    client.force_login(django_user_model.objects.create_user("intern", password="pw-123456789", is_staff=True))
    assert client.get(reverse(name)).status_code == 403
    client.force_login(editor)  # prompt editors may view calls
    assert client.get(reverse(name)).status_code == 200


def test_call_pages_need_a_staff_login(client, finished_call):
    for url in (
        reverse("dashboard:call", args=[finished_call.pk]),
        reverse("dashboard:call_events", args=[finished_call.pk]),
    ):
        assert client.get(url).status_code == 302


def test_index_lists_live_calls_masked_and_recent_calls(admin_client, finished_call, front_desk):
    live = make_call(front_desk, sid="CAlive", status=Call.Status.IN_PROGRESS, from_number="+447700900123")
    response = admin_client.get(reverse("dashboard:index"))
    assert response.status_code == 200
    assert [c.pk for c in response.context["live_calls"]] == [live.pk]
    html = response.content.decode()
    assert "+4477•••0123" in html and "+447700900123" not in html
    assert "+1415•••0123" in html and "+14155550123" not in html
    assert reverse("dashboard:call", args=[live.pk]) in html
    assert response.context["day"]["total"] == 2 and response.context["day"]["tokens"] == 2000
    assert '<td class="num right" data-field="cost">$0.1234</td>' in html  # the finished call's estimated cost
    assert 'data-live-url="/dashboard/partials/live-calls"' in html


def test_live_calls_partial_has_no_page_chrome(admin_client, front_desk):
    make_call(front_desk, sid="CAlive", status=Call.Status.RINGING)
    html = admin_client.get(reverse("dashboard:live_calls")).content.decode()
    assert "<html" not in html and 'data-call-id="' in html and "Ringing" in html


def test_live_calls_partial_when_quiet(admin_client, db):
    assert "No calls right now." in admin_client.get(reverse("dashboard:live_calls")).content.decode()


@pytest.fixture
def many_calls(front_desk):
    other = AgentConfig.objects.create(name="After hours", instructions="Closed.")
    base = timezone.now()
    for i in range(30):
        call = make_call(
            front_desk if i % 2 else other,
            sid=f"CA{i:032d}",
            to_number="+15550001111" if i % 3 else "+15550002222",
            status=Call.Status.FAILED if i % 5 == 0 else Call.Status.COMPLETED,
        )
        Call.objects.filter(pk=call.pk).update(created_at=base - timedelta(days=i))
    return other


def sids(response) -> set[str]:
    return {c.twilio_call_sid for c in response.context["page"].object_list}


def test_history_is_paginated_newest_first(admin_client, many_calls):
    first = admin_client.get(reverse("dashboard:history"))
    assert first.context["page"].paginator.count == 30 and len(first.context["page"].object_list) == 25
    assert first.context["page"].object_list[0].twilio_call_sid == f"CA{0:032d}"
    second = admin_client.get(reverse("dashboard:history") + "?page=2")
    assert len(second.context["page"].object_list) == 5


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("status=failed", 6),
        ("to=%2B1+555+000+2222", 10),
        ("q=CA00000000000000000000000000000007", 1),
        ("end_reason=caller_hangup", 30),
        ("end_reason=transferred", 0),
    ],
)
def test_history_filters(admin_client, many_calls, query, count):
    response = admin_client.get(reverse("dashboard:history") + "?" + query)
    assert response.status_code == 200
    assert response.context["page"].paginator.count == count


def test_history_filters_by_config_and_dates(admin_client, many_calls):
    today = timezone.localdate()
    url = reverse("dashboard:history")
    response = admin_client.get(f"{url}?config={many_calls.pk}")
    assert response.context["page"].paginator.count == 15
    response = admin_client.get(f"{url}?since={today - timedelta(days=2)}&until={today}")
    assert response.context["page"].paginator.count == 3


def test_history_keeps_filters_across_pages(admin_client, many_calls):
    response = admin_client.get(reverse("dashboard:history") + "?q=CA&page=1")
    assert "q=CA&amp;page=2" in response.content.decode()


def test_history_bad_filters_are_explained_not_500(admin_client, many_calls):
    response = admin_client.get(reverse("dashboard:history") + "?since=yesterday&status=exploded&page=zz")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid date." in html and "Select a valid choice." in html


def test_call_detail_shows_the_conversation(admin_client, finished_call):
    response = admin_client.get(reverse("dashboard:call", args=[finished_call.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-live="0"' in html and 'data-last-seq="5"' in html
    assert html.index("Thanks for calling Acme Dental") < html.index("move my appointment")
    assert '<li class="vo-sys vo-tool_call" data-seq="2">' in html and "lookup_appointment" in html
    assert "&lt;b&gt;Bye&lt;/b&gt;" in html
    assert "+14155550123" in html  # the full number on the detail page; masked only in lists
    assert '<script id="vo-labels" type="application/json">' in html
    assert '<dd id="call-cost" class="num" title="Estimated OpenAI cost, from calls/prices.toml">$0.1234</dd>' in html


def test_call_detail_shows_the_median_reply_latency(admin_client, finished_call):
    url = reverse("dashboard:call", args=[finished_call.pk])
    assert '<dd id="call-reply" class="num"' in (html := admin_client.get(url).content.decode())
    assert ">—</dd>" in html.split('id="call-reply"')[1][:200]  # no measured reply: a dash
    last = finished_call.events.order_by("seq").last().seq
    for n, ms in enumerate([900, 400, 1300, 700]):
        CallEvent.objects.create(call=finished_call, seq=last + 1 + n, kind=CallEvent.Kind.AGENT, t_ms=90000 + n,
                                 text="Sure.", data={"item_id": f"i{n}", "reply_ms": ms})
    html = admin_client.get(url).content.decode()
    assert ">800 ms</dd>" in html.split('id="call-reply"')[1][:200]  # the median of 400, 700, 900, 1300


def test_unknown_call_is_404(admin_client, db):
    assert admin_client.get(reverse("dashboard:call", args=[424242])).status_code == 404


def test_events_feed_returns_events_after_a_seq(admin_client, finished_call):
    url = reverse("dashboard:call_events", args=[finished_call.pk])
    payload = admin_client.get(url + "?after=3").json()
    assert [e["seq"] for e in payload["events"]] == [4, 5]
    assert payload["events"][0] == {
        "seq": 4,
        "kind": "agent",
        "t_ms": 65000,
        "text": "Done — see you Friday at ten. <b>Bye</b>",
        "data": {},
        "label": "Agent said",
        "is_turn": True,
        "summary": "Done — see you Friday at ten. <b>Bye</b>",
    }
    assert payload["call"]["from"] == "+1415•••0123" and payload["call"]["is_live"] is False
    assert payload["call"]["cost_usd"] == "0.1234"
    assert len(admin_client.get(url).json()["events"]) == 6
    assert admin_client.get(url + "?after=x").status_code == 400


def test_tool_call_summary_comes_from_its_data(admin_client, finished_call):
    payload = admin_client.get(reverse("dashboard:call_events", args=[finished_call.pk]) + "?after=1").json()
    assert payload["events"][0]["summary"] == 'lookup_appointment · {"name": "Sam"}'


def test_test_call_page_offers_the_browser_call_for_the_chosen_config(admin_client, front_desk):
    other = AgentConfig.objects.create(name="Spanish line", instructions="Habla español.")
    response = admin_client.get(reverse("dashboard:test_call") + f"?config={other.pk}")
    assert response.status_code == 200 and response.context["config"] == other
    page = response.content.decode()
    assert reverse("dashboard:test_call_start", args=[other.pk]) in page
    assert "simulate_call" not in page  # the browser call replaced the command line
    assert admin_client.get(reverse("dashboard:test_call")).context["config"] == front_desk  # the default first
    assert admin_client.get(reverse("dashboard:test_call") + "?config=999").status_code == 404


def test_test_call_page_without_configs(admin_client, db):
    assert "There is no agent config yet." in admin_client.get(reverse("dashboard:test_call")).content.decode()


def test_starting_a_test_call_makes_a_test_call_and_a_browser_token(admin_client, front_desk, settings):
    settings.BRIDGE_PUBLIC_URL = "wss://bridge.example.com/media-stream"
    response = admin_client.post(reverse("dashboard:test_call_start", args=[front_desk.pk]))
    assert response.status_code == 201
    info = response.json()
    call = Call.objects.get(pk=info["call_id"])
    assert call.is_test and call.agent_config == front_desk and call.twilio_call_sid == info["call_sid"]
    assert call.config_snapshot["instructions"] == front_desk.instructions and call.placed_by == "user:admin"
    assert stream_token.verify(info["token"], call.twilio_call_sid).config_id == front_desk.pk
    assert info["stream_url"].startswith("wss://bridge.example.com/media-stream?token=")
    scope = {"query_string": info["stream_url"].split("?", 1)[1].encode()}
    assert stream_token.is_browser_call(scope)
    assert info["live_path"] == f"/dashboard/live?call={call.pk}"


def test_starting_a_test_call_needs_staff_and_post(client, admin_client, front_desk, django_user_model):
    url = reverse("dashboard:test_call_start", args=[front_desk.pk])
    assert admin_client.get(url).status_code == 405
    assert client.post(url).status_code == 302  # to the login
    client.force_login(django_user_model.objects.create_user("intern", password="pw-123456789", is_staff=True))
    assert client.post(url).status_code == 403
    assert admin_client.post(reverse("dashboard:test_call_start", args=[999])).status_code == 404
    assert not Call.objects.exists()


def test_phone_call_tokens_do_not_open_a_browser_handshake(front_desk):
    token = stream_token.mint("CA" + "2" * 32, front_desk.pk)
    assert not stream_token.is_browser_call({"query_string": f"token={token}".encode()})
    assert not stream_token.is_browser_call({"query_string": b"token=forged"})
    assert not stream_token.is_browser_call({"query_string": b""})


def test_test_calls_stay_out_of_the_headline_figures(admin_client, front_desk):
    make_call(front_desk)
    make_call(front_desk, sid="CA" + "9" * 32, is_test=True)
    day = admin_client.get(reverse("dashboard:index")).context["day"]
    assert day["total"] == 1 and day["completed"] == 1


def test_time_filters():
    assert (mmss(0), mmss(5320), mmss(65_000), mmss(3_725_000), mmss(None)) == (
        "00:00",
        "00:05",
        "01:05",
        "1:02:05",
        "",
    )
    assert (duration(83), duration(None)) == ("01:23", "")


def test_admin_links_to_the_dashboard(admin_client, front_desk):
    assert 'href="/dashboard/"' in admin_client.get(reverse("admin:index")).content.decode()
