"""Calls in the admin: filters, masked numbers, read-only detail with the conversation, delete permission."""

from __future__ import annotations

import pytest
from django.urls import reverse

from calls.models import Call
from tests.web.helpers import make_call

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:calls_call_changelist")


def test_list_masks_the_caller_and_shows_the_columns(admin_client, finished_call):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "+1415•••0123" in html and "+14155550123" not in html
    for column in (
        "when",
        "caller",
        "to",
        "agent_config",
        "status",
        "call_duration",
        "end_reason",
        "tokens",
        "cost",
    ):
        assert f"column-{column}" in html, column
    assert "01:23" in html and ">2000<" in html  # 83 s, 1200 + 800 tokens
    assert "$0.1234" in html  # the stored estimate


def test_detail_shows_the_cost_estimate(admin_client, finished_call):
    html = admin_client.get(reverse("admin:calls_call_change", args=[finished_call.pk])).content.decode()
    assert "Cost (est.)" in html and "$0.1234" in html
    Call.objects.filter(pk=finished_call.pk).update(cost_usd=None)
    html = admin_client.get(reverse("admin:calls_call_change", args=[finished_call.pk])).content.decode()
    assert "$0.1234" not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", {"CAfailed"}),
        ("to=%2B15550002222", {"CAfailed"}),
        ("end_reason__exact=caller_hangup", {"CA" + "1" * 32}),
        ("q=CAfail", {"CAfailed"}),
        ("q=%2B14155550123", {"CA" + "1" * 32}),
    ],
)
def test_filters_and_search(admin_client, finished_call, query, expected):
    make_call(
        None,
        sid="CAfailed",
        status=Call.Status.FAILED,
        to_number="+15550002222",
        from_number="+447700900123",
        end_reason=Call.EndReason.UPSTREAM_ERROR,
    )
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    assert {c.twilio_call_sid for c in response.context["cl"].result_list} == expected


def test_filter_sidebar_offers_status_date_number_config_and_end_reason(admin_client, finished_call):
    html = admin_client.get(CHANGELIST).content.decode()
    for title in ("By status", "By created at", "By dialled number", "By agent config", "By end reason"):
        assert title in html, title
    assert "+15550001111 (Main line)" in html


def test_detail_is_read_only_and_shows_the_conversation(admin_client, finished_call):
    url = reverse("admin:calls_call_change", args=[finished_call.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["adminform"].form.fields == {}  # every field is read-only
    assert 'name="_save"' not in html
    assert '<li class="vo-turn vo-caller" data-seq="1">' in html
    assert '<li class="vo-turn vo-agent" data-seq="0">' in html
    assert '<li class="vo-sys vo-tool_call" data-seq="2">' in html and "lookup_appointment" in html
    assert "01:05" in html  # t_ms 65 000 as mm:ss
    assert "&lt;b&gt;Bye&lt;/b&gt;" in html and "<b>Bye</b>" not in html  # transcript text is escaped
    assert "&quot;instructions&quot;" in html  # the snapshot, pretty-printed
    # Posting to the change page changes nothing.
    admin_client.post(url, {"status": "failed"})
    finished_call.refresh_from_db()
    assert finished_call.status == Call.Status.COMPLETED


def test_calls_cannot_be_added(admin_client):
    assert admin_client.get(reverse("admin:calls_call_add")).status_code == 403


def test_superuser_can_delete_a_call(admin_client, finished_call):
    response = admin_client.post(reverse("admin:calls_call_delete", args=[finished_call.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Call.objects.exists()


def test_prompt_editor_sees_calls_but_cannot_delete_them(client, editor, finished_call):
    client.force_login(editor)
    assert client.get(reverse("admin:calls_call_change", args=[finished_call.pk])).status_code == 200
    listing = client.get(CHANGELIST)
    assert listing.status_code == 200 and "delete_selected" not in listing.content.decode()
    delete_url = reverse("admin:calls_call_delete", args=[finished_call.pk])
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Call.objects.filter(pk=finished_call.pk).exists()
