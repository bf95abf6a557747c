"""Dashboard rough edges an operator meets: the "calls cannot be answered" banner, why a call failed, an
impossible date range, transcript search, test calls kept out of the figures, CSV/JSONL export, the favicon."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from calls.models import Call, CallEvent
from tests.web.helpers import make_call

pytestmark = pytest.mark.django_db


def test_banner_when_calls_cannot_be_answered(admin_client, settings, front_desk):
    settings.OPENAI_API_KEY = ""
    html = admin_client.get(reverse("dashboard:index")).content.decode()
    assert 'id="answering-banner"' in html and "OPENAI_API_KEY is not set" in html


def test_banner_when_openai_is_unreachable(admin_client, settings, front_desk):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_REALTIME_URL = "wss://127.0.0.1:1/v1/realtime"  # nothing listens on port 1
    html = admin_client.get(reverse("dashboard:history")).content.decode()
    assert 'id="answering-banner"' in html and "127.0.0.1:1 unreachable" in html


def test_no_banner_when_calls_can_be_answered(admin_client, settings, front_desk, live_server):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_REALTIME_URL = live_server.url.replace("http", "ws") + "/v1/realtime"  # something listens
    html = admin_client.get(reverse("dashboard:index")).content.decode()
    assert 'id="answering-banner"' not in html


def test_a_failed_call_says_why(admin_client, front_desk):
    call = make_call(front_desk, status=Call.Status.FAILED, end_reason=Call.EndReason.UPSTREAM_ERROR)
    CallEvent.objects.create(
        call=call,
        seq=0,
        t_ms=900,
        kind=CallEvent.Kind.ERROR,
        text="OpenAI connect failed: InvalidStatus",
        data={"code": "invalid_api_key"},
    )
    html = admin_client.get(reverse("dashboard:call", args=[call.pk])).content.decode()
    assert 'id="call-failure"' in html
    assert "OpenAI connection failed" in html  # the end reason's label
    assert "OpenAI connect failed: InvalidStatus" in html and "invalid_api_key" in html
    assert "No transcript yet" not in html


def test_an_ended_call_without_a_conversation_does_not_wait_for_a_transcript(admin_client, front_desk):
    call = make_call(front_desk, status=Call.Status.FAILED, end_reason=Call.EndReason.NOT_CONFIGURED)
    html = admin_client.get(reverse("dashboard:call", args=[call.pk])).content.decode()
    assert "No transcript yet" not in html and "No conversation was recorded" in html
    assert "Not configured" in html or call.get_end_reason_display() in html


def test_an_impossible_date_range_lists_nothing_and_says_so(admin_client, finished_call):
    response = admin_client.get(reverse("dashboard:history"), {"since": "2026-11-20", "until": "2026-11-01"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="filter-error"' in html and "“Until” is before “From”." in html
    assert list(response.context["page"].object_list) == []


def test_an_invalid_date_lists_nothing(admin_client, finished_call):
    response = admin_client.get(reverse("dashboard:history"), {"since": "2026-13-45"})
    assert list(response.context["page"].object_list) == []
    assert 'id="filter-error"' in response.content.decode()


def test_search_covers_what_was_said(admin_client, finished_call, front_desk):
    other = make_call(front_desk, sid="CA" + "2" * 32)
    CallEvent.objects.create(
        call=other, seq=0, t_ms=0, kind=CallEvent.Kind.CALLER, text="I need to reschedule my cleaning"
    )
    response = admin_client.get(reverse("dashboard:history"), {"q": "RESCHEDULE"})
    assert [c.pk for c in response.context["page"].object_list] == [other.pk]


def test_test_calls_are_flagged_and_kept_out_of_the_figures(admin_client, finished_call, front_desk):
    make_call(front_desk, sid="CA" + "3" * 32, is_test=True, status=Call.Status.FAILED)
    response = admin_client.get(reverse("dashboard:index"))
    day = response.context["day"]
    assert (day["total"], day["failed"], day["test_calls"]) == (1, 0, 1)
    html = response.content.decode()
    assert "Not counted above: 1 test or load call." in html
    assert 'class="tag-test"' in html


def test_signed_webhook_with_the_test_parameter_marks_the_call(client, twilio_settings, front_desk):
    from twilio.request_validator import RequestValidator

    from calls.services import TEST_CALL_PARAM
    from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN

    for sid, extra in (("CA" + "4" * 32, {TEST_CALL_PARAM: "1"}), ("CA" + "5" * 32, {})):
        params = {
            "CallSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": "+14155550100",
            "To": "+15005550006",
            "CallStatus": "ringing",
            **extra,
        }
        signature = RequestValidator(TWILIO_TOKEN).compute_signature("https://hooks.example.com/twilio/voice", params)
        assert client.post("/twilio/voice", params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200
    assert dict(Call.objects.values_list("twilio_call_sid", "is_test")) == {
        "CA" + "4" * 32: True,
        "CA" + "5" * 32: False,
    }


def test_export_csv_and_jsonl_follow_the_filters(admin_client, finished_call, front_desk):
    make_call(front_desk, sid="CA" + "6" * 32, status=Call.Status.FAILED, end_reason=Call.EndReason.UPSTREAM_ERROR)
    url = reverse("dashboard:export", args=["csv"])
    response = admin_client.get(url, {"status": "completed"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="voiceops-calls-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["call_sid"] for row in rows] == [finished_call.twilio_call_sid]

    response = admin_client.get(reverse("dashboard:export", args=["jsonl"]))
    records = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert {r["call_sid"] for r in records} == {finished_call.twilio_call_sid, "CA" + "6" * 32}
    assert records[0]["events"] is not None

    assert admin_client.get(reverse("dashboard:export", args=["xml"])).status_code == 404
    bad = admin_client.get(url, {"since": "2026-11-20", "until": "2026-11-01"})
    assert bad.status_code == 400


def test_export_needs_the_view_call_permission(client, finished_call):
    assert client.get(reverse("dashboard:export", args=["csv"])).status_code == 302


def test_history_links_to_the_export_with_the_filters(admin_client, finished_call):
    html = admin_client.get(reverse("dashboard:history"), {"status": "completed"}).content.decode()
    assert f'href="{reverse("dashboard:export", args=["csv"])}?status=completed"' in html


def test_pages_have_a_favicon(admin_client, finished_call):
    html = admin_client.get(reverse("dashboard:index")).content.decode()
    assert 'rel="icon"' in html and "voiceops/favicon.svg" in html


def test_events_feed_carries_the_tokens(admin_client, finished_call):
    payload = admin_client.get(reverse("dashboard:call_events", args=[finished_call.pk])).json()
    assert (payload["call"]["input_tokens"], payload["call"]["output_tokens"]) == (1200, 800)
