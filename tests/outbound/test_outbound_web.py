"""Placing calls from the dashboard (permission) and from other systems (the token API, rate-limited),
and the admin of the do-not-call list and API tokens."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from calls import api
from calls.models import ApiToken, Call, DoNotCallNumber
from tests.outbound.conftest import CALLEE

pytestmark = pytest.mark.django_db


@pytest.fixture
def caller_staff(django_user_model):
    user = django_user_model.objects.create_user("agent-lead", password="pw-123456789", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"),
                              Permission.objects.get(codename="place_call"))
    return user


def test_dashboard_form_needs_the_place_call_permission(client, django_user_model, twilio_rest, outbound_config):
    viewer = django_user_model.objects.create_user("viewer", password="pw-123456789", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(viewer)
    assert client.get(reverse("dashboard:place_call")).status_code == 403
    assert client.post(reverse("dashboard:place_call"), {"to": CALLEE, "config": outbound_config.pk}).status_code == 403
    assert "Place a call" not in client.get(reverse("dashboard:index")).content.decode()
    assert not twilio_rest.calls and not Call.objects.exists()


def test_dashboard_form_places_the_call_and_opens_it(client, caller_staff, twilio_rest, outbound_config):
    client.force_login(caller_staff)
    assert "Place a call" in client.get(reverse("dashboard:index")).content.decode()

    response = client.post(reverse("dashboard:place_call"), {"to": "+1 415-555-0123", "config": outbound_config.pk})

    call = Call.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:call", args=[call.pk])
    assert call.twilio_call_sid in twilio_rest.calls
    assert call.placed_by == "user:agent-lead" and call.to_number == CALLEE
    page = client.get(response["Location"]).content.decode()
    assert f"Calling {CALLEE}" in page


def test_dashboard_form_shows_refusals_and_links_the_failed_call(client, caller_staff, twilio_rest, outbound_config):
    client.force_login(caller_staff)
    DoNotCallNumber.objects.create(number=CALLEE)
    response = client.post(reverse("dashboard:place_call"), {"to": CALLEE, "config": outbound_config.pk})
    assert response.status_code == 200 and "do-not-call list" in response.content.decode()

    response = client.post(reverse("dashboard:place_call"), {"to": "+15005550003", "config": outbound_config.pk})
    page = response.content.decode()
    assert "error 21215" in page
    failed = Call.objects.get(to_number="+15005550003")
    assert reverse("dashboard:call", args=[failed.pk]) in page


# --- the API --------------------------------------------------------------------------------------

def post_call(client, token: str | None, body: object, **headers: str):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post("/api/v1/calls", json.dumps(body), content_type="application/json", **headers)


def test_api_places_a_call_with_a_valid_token(client, twilio_rest, outbound_config):
    token, raw = api.issue_token("crm")

    response = post_call(client, raw, {"to": CALLEE, "config": "Reminders"})

    assert response.status_code == 201
    data = response.json()
    assert data["call_sid"] in twilio_rest.calls and data["direction"] == "outbound" and data["status"] == "ringing"
    assert Call.objects.get().placed_by == "api:crm"
    token.refresh_from_db()
    assert token.last_used_at is not None and token.token_sha256 != raw and raw not in token.prefix + "…"

    status = client.get(f"/api/v1/calls/{data['call_sid']}", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert status.status_code == 200 and status.json()["call_sid"] == data["call_sid"]
    _, other = api.issue_token("other-system")
    assert client.get(f"/api/v1/calls/{data['call_sid']}", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 404


@pytest.mark.parametrize("auth", [None, "Bearer vo_not-a-token", "Basic dXNlcjpwdw==", "Bearer "])
def test_api_needs_a_valid_token(client, twilio_rest, outbound_config, auth):
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    response = client.post("/api/v1/calls", json.dumps({"to": CALLEE}), content_type="application/json", **headers)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"
    assert not twilio_rest.calls


def test_api_refuses_a_revoked_token(client, twilio_rest, outbound_config):
    token, raw = api.issue_token("crm")
    ApiToken.objects.filter(pk=token.pk).update(is_active=False)
    assert post_call(client, raw, {"to": CALLEE}).status_code == 401


@pytest.mark.parametrize(
    "body", ["not json", [], {"to": 4155550123}, {"config": "Reminders"}, {"to": CALLEE, "config": 3}],
)
def test_api_bad_input_is_a_400_with_a_reason(client, twilio_rest, outbound_config, body):
    _, raw = api.issue_token("crm")
    if body == "not json":
        response = client.post("/api/v1/calls", "not json", content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {raw}")
    else:
        response = post_call(client, raw, body)
    assert response.status_code == 400 and response.json()["message"]
    assert not twilio_rest.calls


def test_api_maps_refusals_to_statuses(client, twilio_rest, outbound_config):
    _, raw = api.issue_token("crm", calls_per_minute=50)
    assert post_call(client, raw, {"to": "415"}).json()["error"] == "invalid_number"
    DoNotCallNumber.objects.create(number="+14155550999")
    assert post_call(client, raw, {"to": "+14155550999"}).status_code == 422
    refused = post_call(client, raw, {"to": "+15005550001"})
    assert refused.status_code == 502
    assert refused.json()["twilio_code"] == 21217 and refused.json()["call"]["status"] == "failed"
    assert post_call(client, raw, {"to": CALLEE, "config": "Nope"}).status_code == 400


def test_api_is_rate_limited_per_token(client, twilio_rest, outbound_config):
    outbound_config.max_concurrent_outbound = 50
    outbound_config.save()
    _, raw = api.issue_token("crm", calls_per_minute=3)
    statuses = [post_call(client, raw, {"to": f"+1415555010{i}"}).status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited = post_call(client, raw, {"to": CALLEE})
    assert limited.status_code == 429 and limited["Retry-After"] == "60"
    _, other = api.issue_token("another", calls_per_minute=3)
    assert post_call(client, other, {"to": CALLEE}).status_code == 201  # the limit is per token
    assert len(twilio_rest.calls) == 4


def test_api_concurrency_limit_is_a_429(client, twilio_rest, outbound_config):
    _, raw = api.issue_token("crm")
    for i in range(2):
        assert post_call(client, raw, {"to": f"+1415555010{i}"}).status_code == 201
    response = post_call(client, raw, {"to": CALLEE})
    assert response.status_code == 429 and response.json()["error"] == "too_many_calls"


# --- admin ----------------------------------------------------------------------------------------

def test_admin_creates_a_token_and_shows_it_once(admin_client, twilio_rest, outbound_config):
    response = admin_client.post(reverse("admin:calls_apitoken_add"), {"name": "crm", "calls_per_minute": "5"},
                                 follow=True)
    page = response.content.decode()
    raw = re.search(r"<code>(vo_[\w-]+)</code>", page).group(1)
    token = ApiToken.objects.get()
    assert token.prefix == raw[:10] and raw not in token.token_sha256
    assert post_call(admin_client, raw, {"to": CALLEE}).status_code == 201
    change = admin_client.get(reverse("admin:calls_apitoken_change", args=[token.pk])).content.decode()
    assert raw not in change


def test_admin_adds_a_do_not_call_number(admin_client, admin_user):
    response = admin_client.post(reverse("admin:calls_donotcallnumber_add"),
                                 {"number": "+1 (415) 555-0123", "reason": "asked on the phone"})
    assert response.status_code == 302
    entry = DoNotCallNumber.objects.get()
    assert entry.number == CALLEE and entry.added_by == admin_user
    bad = admin_client.post(reverse("admin:calls_donotcallnumber_add"), {"number": "4155550123"})
    assert bad.status_code == 200 and "E.164" in bad.content.decode()


def test_config_form_checks_the_outbound_settings(admin_client, outbound_config):
    from tests.web.helpers import config_post_data

    url = reverse("admin:calls_agentconfig_change", args=[outbound_config.pk])
    response = admin_client.post(url, config_post_data(outbound_config, machine_detection="voicemail",
                                                       voicemail_message=" "))
    assert "Write the message to leave" in response.content.decode()
    response = admin_client.post(url, config_post_data(outbound_config, calling_hours_start="9",
                                                       calling_hours_end="9"))
    assert "use 0 and 24" in response.content.decode()
    response = admin_client.post(url, config_post_data(outbound_config, calling_time_zone="Mars/Olympus"))
    assert "is not a time zone name" in response.content.decode()
    response = admin_client.post(url, config_post_data(
        outbound_config, machine_detection="voicemail", voicemail_message="Please call us back.",
        calling_hours_start="9", calling_hours_end="17", calling_time_zone="Europe/Paris", transfer_mode="cold"))
    assert response.status_code == 302
    outbound_config.refresh_from_db()
    assert (outbound_config.calling_time_zone, outbound_config.transfer_mode) == ("Europe/Paris", "cold")
    assert outbound_config.revisions.order_by("-number").first().data["voicemail_message"] == "Please call us back."
