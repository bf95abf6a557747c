"""sync_twilio_numbers against a fake Twilio REST API: the twilio library's own Client runs unchanged and
only its HTTP client is replaced, serving JSON pages shaped like the real
/2010-04-01/Accounts/AC…/IncomingPhoneNumbers.json and recording the update POSTs."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management.base import CommandError
from twilio.http import HttpClient
from twilio.http.response import Response

from calls.models import AgentConfig, PhoneNumber

pytestmark = pytest.mark.django_db

ACCOUNT = "AC" + "1" * 32
TOKEN = "twilio-test-token-0123456789abcdef"
LIST_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json"


def number_record(sid: str, number: str, **overrides: Any) -> dict[str, Any]:
    record = {
        "account_sid": ACCOUNT,
        "address_requirements": "none",
        "api_version": "2010-04-01",
        "beta": False,
        "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
        "date_created": "Thu, 30 Jul 2025 20:12:31 +0000",
        "date_updated": "Thu, 30 Jul 2025 20:12:33 +0000",
        "emergency_status": "Inactive",
        "friendly_name": f"({number[2:5]}) {number[5:8]}-{number[8:]}",
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": number,
        "sid": sid,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": "",
        "status_callback": "",
        "status_callback_method": "POST",
        "trunk_sid": None,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{sid}.json",
        "voice_application_sid": "",
        "voice_caller_id_lookup": False,
        "voice_fallback_method": "POST",
        "voice_fallback_url": None,
        "voice_method": "POST",
        "voice_url": "https://demo.twilio.com/welcome/voice/",
        "status": "in-use",
        "bundle_sid": None,
        "type": "local",
    }
    record.update(overrides)
    return record


class FakeTwilioApi(HttpClient):
    """Serves the number list in pages of `page_size` and applies/records the update POSTs."""

    def __init__(self, numbers: list[dict[str, Any]], page_size: int = 2, fail_updates: bool = False) -> None:
        super().__init__(logger=logging.getLogger("fake-twilio"), is_async=False)
        self.numbers = {n["sid"]: n for n in numbers}
        self.page_size = page_size
        self.fail_updates = fail_updates
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.updates: list[tuple[str, dict[str, Any]]] = []

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        url = urlsplit(uri)
        assert url.scheme == "https" and url.hostname == "api.twilio.com"
        if auth != (ACCOUNT, TOKEN):
            return self._json(401, {"code": 20003, "message": "Authenticate", "status": 401})
        self.requests.append((method, url.path, dict(data or {})))
        if method == "GET" and url.path == LIST_PATH:
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            query.update({k: str(v) for k, v in (params or {}).items()})
            return self._page(int(query.get("Page", 0)))
        prefix = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/"
        if method == "POST" and url.path.startswith(prefix) and url.path.endswith(".json"):
            sid = url.path[len(prefix) : -len(".json")]
            if self.fail_updates:
                return self._json(400, {"code": 21402, "message": "VoiceUrl is not valid", "status": 400})
            if sid not in self.numbers:
                return self._json(404, {"code": 20404, "message": "not found", "status": 404})
            self.updates.append((sid, dict(data or {})))
            record = self.numbers[sid]
            for field, key in (
                ("voice_url", "VoiceUrl"),
                ("voice_method", "VoiceMethod"),
                ("status_callback", "StatusCallback"),
                ("status_callback_method", "StatusCallbackMethod"),
            ):
                if key in (data or {}):
                    record[field] = data[key]
            return self._json(200, record)
        return self._json(404, {"code": 20404, "message": f"no route {method} {url.path}", "status": 404})

    def _page(self, page: int) -> Response:
        records = list(self.numbers.values())
        chunk = records[page * self.page_size : (page + 1) * self.page_size]
        has_next = (page + 1) * self.page_size < len(records)
        page_uri = f"{LIST_PATH}?PageSize={self.page_size}&Page={{}}"
        return self._json(
            200,
            {
                "first_page_uri": page_uri.format(0),
                "end": page * self.page_size + max(len(chunk) - 1, 0),
                "previous_page_uri": page_uri.format(page - 1) if page else None,
                "incoming_phone_numbers": chunk,
                "uri": page_uri.format(page),
                "page_size": self.page_size,
                "start": page * self.page_size,
                "page": page,
                "next_page_uri": page_uri.format(page + 1) + "&PageToken=PAPN" + "9" * 32
                if has_next
                else None,
            },
        )

    @staticmethod
    def _json(status: int, body: dict[str, Any]) -> Response:
        return Response(status, json.dumps(body), headers={"Content-Type": "application/json"})


@pytest.fixture
def twilio(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_WEBHOOK_BASE_URL = "https://hooks.example.com"
    return settings


@pytest.fixture
def api() -> FakeTwilioApi:
    return FakeTwilioApi(
        [
            number_record("PN" + "a" * 32, "+14155550101"),
            number_record("PN" + "b" * 32, "+14155550102", friendly_name="Sales line"),
            number_record(
                "PN" + "c" * 32,
                "+14155550103",
                voice_url="https://hooks.example.com/twilio/voice",
                status_callback="https://hooks.example.com/twilio/status",
            ),
            number_record("PN" + "d" * 32, "+14155550104", capabilities={"voice": False, "sms": True}),
        ]
    )


def test_creates_new_numbers_on_the_default_config_and_keeps_existing_routing(
    run, twilio, api, default_config
):
    sales = AgentConfig.objects.create(name="Sales", instructions="x")
    PhoneNumber.objects.create(number="+14155550102", agent_config=sales, label="")
    PhoneNumber.objects.create(number="+14155550199", agent_config=sales, twilio_sid="PN" + "e" * 32)

    out, _ = run("sync_twilio_numbers", http_client=api)

    rows = {p.number: p for p in PhoneNumber.objects.select_related("agent_config")}
    assert rows["+14155550101"].agent_config == default_config
    assert rows["+14155550101"].twilio_sid == "PN" + "a" * 32
    assert rows["+14155550101"].label == "(415) 555-0101"
    assert rows["+14155550102"].agent_config == sales  # routing kept
    assert rows["+14155550102"].twilio_sid == "PN" + "b" * 32
    assert rows["+14155550102"].label == "Sales line"
    assert "+14155550104" not in rows  # no voice capability
    assert "+14155550104: skipped, no voice capability" in out
    assert "+14155550199: no longer in the Twilio account" in out
    assert "2 created, 1 updated" in out
    # Both pages were read; nothing was written to Twilio without --set-webhooks.
    assert [r[0] for r in api.requests] == ["GET", "GET"]
    assert api.updates == []


def test_second_run_changes_nothing(run, twilio, api, default_config):
    run("sync_twilio_numbers", http_client=api)
    out, _ = run("sync_twilio_numbers", http_client=api)
    assert "0 created, 0 updated" in out
    assert PhoneNumber.objects.count() == 3


def test_set_webhooks_updates_only_numbers_that_differ(run, twilio, api, default_config):
    out, _ = run("sync_twilio_numbers", "--set-webhooks", http_client=api)

    expected = {
        "VoiceUrl": "https://hooks.example.com/twilio/voice",
        "VoiceMethod": "POST",
        "StatusCallback": "https://hooks.example.com/twilio/status",
        "StatusCallbackMethod": "POST",
    }
    assert api.updates == [
        ("PN" + "a" * 32, expected),
        ("PN" + "b" * 32, expected),
    ]
    assert "+14155550103: webhooks already set" in out
    assert "2 webhook update(s)" in out

    api.updates.clear()
    out, _ = run("sync_twilio_numbers", "--set-webhooks", http_client=api)
    assert api.updates == []
    assert "0 webhook update(s)" in out


def test_dry_run_changes_nothing_anywhere(run, twilio, api, default_config):
    out, _ = run("sync_twilio_numbers", "--dry-run", "--set-webhooks", http_client=api)

    assert PhoneNumber.objects.count() == 0
    assert api.updates == []
    assert all(method == "GET" for method, _, _ in api.requests)
    assert "[dry run] 3 would be created, 0 would be updated, 2 webhook update(s)" in out
    assert (
        "+14155550101: [dry run] set webhooks (voice_url was https://demo.twilio.com/welcome/voice/)" in out
    )


def test_numbers_routed_to_a_trunk_are_flagged(run, twilio, default_config):
    api = FakeTwilioApi([number_record("PN" + "f" * 32, "+14155550105", trunk_sid="TK" + "1" * 32)])

    out, _ = run("sync_twilio_numbers", "--set-webhooks", http_client=api)

    assert "SIP trunk TK" in out


def test_missing_credentials(run, settings, api, default_config):
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_AUTH_TOKEN = ""
    with pytest.raises(CommandError, match="TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"):
        run("sync_twilio_numbers", http_client=api)
    assert api.requests == []


def test_wrong_token_is_a_clear_error(run, twilio, api, default_config):
    twilio.TWILIO_AUTH_TOKEN = "wrong"
    with pytest.raises(CommandError, match=r"Twilio refused the number list: HTTP 401 Authenticate$"):
        run("sync_twilio_numbers", http_client=api)
    assert PhoneNumber.objects.count() == 0


def test_refused_webhook_update_is_a_clear_error(run, twilio, default_config):
    api = FakeTwilioApi([number_record("PN" + "a" * 32, "+14155550101")], fail_updates=True)
    with pytest.raises(CommandError, match="refused the webhook update for \\+14155550101: HTTP 400"):
        run("sync_twilio_numbers", "--set-webhooks", http_client=api)


def test_new_numbers_need_a_default_config(run, twilio, api, db):
    with pytest.raises(CommandError, match="no default agent config"):
        run("sync_twilio_numbers", http_client=api)
    assert PhoneNumber.objects.count() == 0


def test_set_webhooks_needs_an_https_base(run, twilio, api, default_config):
    twilio.PUBLIC_WEBHOOK_BASE_URL = "http://127.0.0.1:8000"
    with pytest.raises(CommandError, match="must be https"):
        run("sync_twilio_numbers", "--set-webhooks", http_client=api)
    assert api.requests == []
