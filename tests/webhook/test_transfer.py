"""Transfers, webhook side: warm (<Dial><Number url=whisper>, the person answering hears why the caller is
transferred) or cold per config, and what happens when nobody answers (the <Dial> action)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from calls import services
from calls.models import AgentConfig, Call
from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN
from tests.webhook.test_voice_webhook import CALL_SID, _params, signed_post

pytestmark = pytest.mark.django_db

CHILD_SID = "CA" + "5" * 32


@pytest.fixture
def transferred(client, twilio_settings, default_config) -> Call:
    default_config.transfer_number = "+14155550199"
    default_config.save()
    signed_post(client, "/twilio/voice", _params())
    call = Call.objects.get()
    services.add_events(call.pk, [
        {"seq": 0, "kind": "agent", "t_ms": 500, "text": "Hello!"},
        {"seq": 1, "kind": "tool_call", "t_ms": 4000, "text": "transfer_call",
         "data": {"call_id": "c1", "arguments": json.dumps({"reason": "a question about a bill"})}},
    ])
    Call.objects.update(end_reason=Call.EndReason.TRANSFERRED)
    return call


def stream_ended(client) -> ET.Element:
    response = signed_post(client, "/twilio/stream-ended", _params(CallStatus="in-progress"))
    assert response.status_code == 200
    return ET.fromstring(response.content)


def test_warm_transfer_dials_with_a_whisper_and_an_action(client, transferred):
    dial = stream_ended(client).find("Dial")
    assert dial.get("action") == "https://hooks.example.com/twilio/transfer-ended"
    assert dial.get("callerId") == "+15005550006"  # the number the caller dialled
    assert int(dial.get("timeout")) > 0
    number = dial.find("Number")
    assert number.text == "+14155550199"
    whisper = urlsplit(number.get("url"))
    assert f"{whisper.scheme}://{whisper.netloc}{whisper.path}" == "https://hooks.example.com/twilio/whisper"
    assert parse_qs(whisper.query) == {"call": [CALL_SID]}


def test_the_whisper_tells_the_person_why(client, transferred):
    path = f"/twilio/whisper?call={CALL_SID}"
    # Twilio signs the URL with its query string; the request is about the new leg (its own CallSid).
    response = signed_post(client, path, {"CallSid": CHILD_SID, "AccountSid": ACCOUNT_SID,
                                          "CallStatus": "in-progress", "To": "+14155550199"})
    assert response.status_code == 200
    say = ET.fromstring(response.content).find("Say")
    assert "Front desk assistant" in say.text and "a question about a bill" in say.text
    assert "+1415" not in say.text


def test_whisper_needs_the_signature_and_a_call(client, transferred):
    params = {"CallSid": CHILD_SID, "AccountSid": ACCOUNT_SID}
    assert signed_post(client, f"/twilio/whisper?call={CALL_SID}", params, token="wrong").status_code == 403
    # The query is part of what Twilio signs: a signature for another call's whisper does not fit this one.
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        f"https://hooks.example.com/twilio/whisper?call={CHILD_SID}", params)
    response = client.post(f"/twilio/whisper?call={CALL_SID}", params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403
    assert signed_post(client, "/twilio/whisper?call=nope", params).status_code == 400


def test_whisper_without_a_reason_still_says_something(client, transferred):
    transferred.events.filter(kind="tool_call").update(data={"arguments": "not json"})
    response = signed_post(client, f"/twilio/whisper?call={CALL_SID}", {"CallSid": CHILD_SID,
                                                                       "AccountSid": ACCOUNT_SID})
    assert "asked for a person" in ET.fromstring(response.content).find("Say").text


def test_cold_transfer_dials_without_a_whisper(client, transferred, default_config):
    Call.objects.update(config_snapshot={**transferred.config_snapshot,
                                         "transfer_mode": AgentConfig.TransferMode.COLD})
    number = stream_ended(client).find("Dial/Number")
    assert number.text == "+14155550199" and number.get("url") is None


@pytest.mark.parametrize(("dial_status", "verbs"), [
    ("completed", ["Hangup"]), ("answered", ["Hangup"]),
    ("no-answer", ["Say", "Hangup"]), ("busy", ["Say", "Hangup"]), ("failed", ["Say", "Hangup"]),
])
def test_transfer_outcome_is_recorded_and_nobody_answering_gets_a_message(client, transferred, dial_status, verbs):
    response = signed_post(client, "/twilio/transfer-ended", _params(
        CallStatus="in-progress", DialCallStatus=dial_status, DialCallSid=CHILD_SID, DialCallDuration="0"))
    assert [child.tag for child in ET.fromstring(response.content)] == verbs
    event = transferred.events.order_by("-seq").first()
    assert event.kind == "status" and event.data["dial_status"] == dial_status and event.t_ms == 4000
    # A batch the bridge writes late (seq 2, 3) still lands: the webhook's seqs never collide with the bridge's.
    services.add_events(transferred.pk, [{"seq": 2, "kind": "agent", "t_ms": 4100, "text": "Connecting you."}])
    assert transferred.events.filter(seq=2, kind="agent").exists() and event.seq > 2
    assert event.data["mode"] == "warm"
