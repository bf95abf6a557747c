"""The Twilio webhooks through Django's test client: signatures, routing, TwiML, status callbacks."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.db import DatabaseError
from twilio.request_validator import RequestValidator

from calls import services, stream_token
from calls.models import AgentConfig, Call, PhoneNumber
from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN

pytestmark = pytest.mark.django_db

CALL_SID = "CA" + "1" * 32


def _params(**extra: str) -> dict[str, str]:
    base = {"CallSid": CALL_SID, "AccountSid": ACCOUNT_SID, "From": "+14155550100", "To": "+15005550006",
            "CallStatus": "ringing", "Direction": "inbound"}
    base.update(extra)
    return base


def signed_post(client, path: str, params: dict[str, str], token: str = TWILIO_TOKEN, url_base: str | None = None):
    url = (url_base or "https://hooks.example.com") + path
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.fixture
def default_config(db) -> AgentConfig:
    config = AgentConfig.objects.create(name="Default", instructions="Be helpful.", greeting="Hello!", is_default=True)
    config.tools.set(services.ensure_builtin_tools())
    return config


def test_signed_call_gets_connect_stream_with_a_token(client, twilio_settings, default_config):
    response = signed_post(client, "/twilio/voice", _params())
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    connect = root.find("Connect")
    assert connect is not None and connect.get("action") == "https://hooks.example.com/twilio/stream-ended"
    stream = connect.find("Stream")
    assert stream.get("url") == "wss://bridge.example.com/media-stream"
    assert stream.get("statusCallback") == "https://hooks.example.com/twilio/status"
    token = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}["token"]
    grant = stream_token.verify(token, CALL_SID)
    assert grant.config_id == default_config.pk
    call = Call.objects.get(twilio_call_sid=CALL_SID)
    assert call.agent_config == default_config
    assert call.config_snapshot["instructions"] == "Be helpful."
    assert call.from_number == "+14155550100"
    # Secrets never reach TwiML.
    assert b"sk-test-key" not in response.content and TWILIO_TOKEN.encode() not in response.content


def test_number_route_wins_over_default(client, twilio_settings, default_config):
    sales = AgentConfig.objects.create(name="Sales", instructions="Sell.")
    PhoneNumber.objects.create(number="+15005550006", agent_config=sales)
    signed_post(client, "/twilio/voice", _params())
    assert Call.objects.get().agent_config == sales


@pytest.mark.parametrize("signature", [None, "forged", "wrong-token"])
def test_unsigned_or_forged_is_refused_without_side_effects(client, twilio_settings, default_config, signature):
    if signature is None:
        response = client.post("/twilio/voice", _params())
    elif signature == "wrong-token":
        response = signed_post(client, "/twilio/voice", _params(), token="not-the-token")
    else:
        response = client.post("/twilio/voice", _params(), HTTP_X_TWILIO_SIGNATURE="Zm9yZ2Vk")
    assert response.status_code == 403
    assert not Call.objects.exists()


def test_signature_is_checked_against_the_public_url_not_the_host_header(client, twilio_settings, default_config):
    # Signed for the internal host the function sees: must fail, since Twilio signs the public URL.
    response = signed_post(client, "/twilio/voice", _params(), url_base="http://testserver")
    assert response.status_code == 403
    # A stage path in the public base URL is part of what Twilio signed.
    twilio_settings.PUBLIC_WEBHOOK_BASE_URL = "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    response = signed_post(client, "/twilio/voice", _params(),
                           url_base="https://abc.execute-api.eu-west-1.amazonaws.com/prod")
    assert response.status_code == 200


def test_tampered_parameter_is_refused(client, twilio_settings, default_config):
    params = _params()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature("https://hooks.example.com/twilio/voice", params)
    params["To"] = "+19999999999"
    response = client.post("/twilio/voice", params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403


def test_other_account_and_bad_call_sid_are_4xx(client, twilio_settings, default_config):
    assert signed_post(client, "/twilio/voice", _params(AccountSid="AC" + "9" * 32)).status_code == 403
    assert signed_post(client, "/twilio/voice", _params(CallSid="nope")).status_code == 400
    assert client.get("/twilio/voice").status_code == 405
    assert not Call.objects.exists()


def test_no_openai_key_apologises_and_hangs_up(client, twilio_settings, default_config):
    twilio_settings.OPENAI_API_KEY = ""
    response = signed_post(client, "/twilio/voice", _params())
    root = ET.fromstring(response.content)
    assert root.find("Say") is not None and root.find("Hangup") is not None and root.find("Connect") is None
    call = Call.objects.get()
    assert call.end_reason == Call.EndReason.NOT_CONFIGURED and call.status == Call.Status.FAILED


def test_no_config_apologises(client, twilio_settings):
    response = signed_post(client, "/twilio/voice", _params())
    root = ET.fromstring(response.content)
    assert root.find("Say") is not None and root.find("Hangup") is not None


def test_database_down_apologises_instead_of_500(client, twilio_settings, default_config, monkeypatch):
    def down(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(services, "resolve_config", down)
    response = signed_post(client, "/twilio/voice", _params())
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert root.find("Say") is not None and root.find("Hangup") is not None


def test_retried_webhook_reuses_the_call_row(client, twilio_settings, default_config):
    signed_post(client, "/twilio/voice", _params())
    signed_post(client, "/twilio/voice", _params())
    assert Call.objects.count() == 1


def test_status_callbacks_are_idempotent_and_never_go_backwards(client, twilio_settings, default_config):
    signed_post(client, "/twilio/voice", _params())
    done = _params(CallStatus="completed", CallDuration="42", Timestamp="Tue, 24 Nov 2026 16:00:42 +0000")
    assert signed_post(client, "/twilio/status", done).status_code == 204
    assert signed_post(client, "/twilio/status", done).status_code == 204
    late = _params(CallStatus="in-progress", Timestamp="Tue, 24 Nov 2026 16:00:01 +0000")
    assert signed_post(client, "/twilio/status", late).status_code == 204
    call = Call.objects.get()
    assert call.status == Call.Status.COMPLETED
    assert call.duration_s == 42
    assert call.twilio_status == "completed"


def test_status_callback_bad_input(client, twilio_settings, default_config):
    assert signed_post(client, "/twilio/status", _params(CallStatus="exploded")).status_code == 400
    params = _params()
    del params["CallStatus"]
    assert signed_post(client, "/twilio/status", params).status_code == 400
    assert client.post("/twilio/status", _params(CallStatus="completed")).status_code == 403


def test_stream_status_callback_is_accepted(client, twilio_settings, default_config):
    params = {"CallSid": CALL_SID, "AccountSid": ACCOUNT_SID, "StreamSid": "MZ" + "2" * 32,
              "StreamEvent": "stream-error", "StreamError": "boom"}
    assert signed_post(client, "/twilio/status", params).status_code == 204


@pytest.mark.parametrize(
    ("reason", "expect"),
    [("agent_ended", "Hangup"), ("transferred", "Dial"), ("upstream_error", "Say"), ("max_duration", "Say"),
     ("drained", "Say"), ("", "Say")],
)
def test_stream_ended_action_follows_the_end_reason(client, twilio_settings, default_config, reason, expect):
    default_config.transfer_number = "+14155550199"
    default_config.save()
    signed_post(client, "/twilio/voice", _params())
    Call.objects.update(end_reason=reason)
    response = signed_post(client, "/twilio/stream-ended", _params(CallStatus="in-progress"))
    root = ET.fromstring(response.content)
    assert root.find(expect) is not None
    if expect == "Dial":
        assert root.find("Dial/Number").text == "+14155550199"


def test_local_mode_without_token_accepts_unsigned_only_in_debug(client, settings, default_config):
    settings.TWILIO_AUTH_TOKEN = ""
    settings.OPENAI_API_KEY = "sk-test"
    settings.DEBUG = True
    assert client.post("/twilio/voice", _params()).status_code == 200
    settings.DEBUG = False
    assert client.post("/twilio/voice", _params(CallSid="CA" + "3" * 32)).status_code == 403


def test_the_stream_carries_the_webhooks_traceparent_only_when_a_span_is_active():
    from opentelemetry.sdk.trace import TracerProvider

    from lambda_webhook import twiml

    assert twiml.current_traceparent() == ""
    plain = twiml.connect_stream("wss://b.example.com/media-stream", "tok", "https://h/s", "https://h/e")
    assert "traceparent" not in plain
    with TracerProvider().get_tracer("test").start_as_current_span("POST twilio/voice") as span:
        traceparent = twiml.current_traceparent()
        body = twiml.connect_stream("wss://b.example.com/media-stream", "tok", "https://h/s", "https://h/e",
                                    traceparent)
    context = span.get_span_context()
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert f'<Parameter name="traceparent" value="{traceparent}" />' in body
