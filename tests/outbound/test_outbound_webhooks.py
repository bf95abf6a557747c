"""/twilio/outbound and /twilio/amd through Django's test client, with the Twilio REST fake taking the
call updates an answering machine causes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from calls import outbound, stream_token
from calls.models import AgentConfig, Call
from tests.conftest import ACCOUNT_SID
from tests.outbound.conftest import CALLEE
from tests.webhook.test_voice_webhook import signed_post

pytestmark = pytest.mark.django_db


def answered(call: Call, **extra: str) -> dict[str, str]:
    return {"CallSid": call.twilio_call_sid, "AccountSid": ACCOUNT_SID, "From": call.from_number,
            "To": call.to_number, "CallStatus": "in-progress", "Direction": "outbound-api", **extra}


def test_the_answered_leg_connects_to_the_agent_of_the_placed_call(client, twilio_rest, outbound_config):
    call = outbound.place_call(CALLEE)

    response = signed_post(client, "/twilio/outbound", answered(call))

    assert response.status_code == 200
    stream = ET.fromstring(response.content).find("Connect/Stream")
    assert stream.get("url") == "wss://bridge.example.com/media-stream"
    token = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}["token"]
    assert stream_token.verify(token, call.twilio_call_sid).config_id == outbound_config.pk
    assert Call.objects.count() == 1  # the row place_call created, not a new one


def test_outbound_webhook_needs_a_valid_signature(client, twilio_rest, outbound_config):
    call = outbound.place_call(CALLEE)
    response = signed_post(client, "/twilio/outbound", answered(call), token="another-token")
    assert response.status_code == 403
    assert Call.objects.get().stream_token_used_at is None


def test_outbound_webhook_for_a_call_voiceops_did_not_place_hangs_up(client, twilio_settings, outbound_config):
    params = {"CallSid": "CA" + "7" * 32, "AccountSid": ACCOUNT_SID, "To": CALLEE, "From": "+15005550006"}
    response = signed_post(client, "/twilio/outbound", params)
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert [child.tag for child in root] == ["Hangup"]
    assert not Call.objects.exists()


def test_outbound_without_openai_key_apologises_and_ends_the_call(client, twilio_rest, outbound_config, settings):
    call = outbound.place_call(CALLEE)
    settings.OPENAI_API_KEY = ""
    response = signed_post(client, "/twilio/outbound", answered(call))
    assert b"<Say" in response.content
    call.refresh_from_db()
    assert call.end_reason == Call.EndReason.NOT_CONFIGURED


def _amd(client, call: Call, answered_by: str):
    return signed_post(client, "/twilio/amd", {"CallSid": call.twilio_call_sid, "AccountSid": ACCOUNT_SID,
                                               "AnsweredBy": answered_by, "MachineDetectionDuration": "2800"})


@pytest.mark.parametrize("verdict", ["machine_end_beep", "machine_end_silence", "machine_end_other"])
def test_a_machine_gets_the_voicemail_after_the_beep(client, twilio_rest, outbound_config, verdict):
    outbound_config.machine_detection = AgentConfig.MachineDetection.VOICEMAIL
    outbound_config.voicemail_message = "Hello, this is Acme Dental about your appointment. Please call us back."
    outbound_config.save()
    call = outbound.place_call(CALLEE)

    assert _amd(client, call, verdict).status_code == 204

    call.refresh_from_db()
    assert call.answered_by == verdict
    [update] = twilio_rest.calls[call.twilio_call_sid].updates
    root = ET.fromstring(update["Twiml"])
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root.find("Say").text == outbound_config.voicemail_message


def test_hang_up_mode_hangs_up_on_a_machine(client, twilio_rest, outbound_config):
    outbound_config.machine_detection = AgentConfig.MachineDetection.HANG_UP
    outbound_config.save()
    call = outbound.place_call(CALLEE)

    assert _amd(client, call, "machine_start").status_code == 204

    [update] = twilio_rest.calls[call.twilio_call_sid].updates
    assert [child.tag for child in ET.fromstring(update["Twiml"])] == ["Hangup"]


@pytest.mark.parametrize("verdict", ["human", "unknown"])
def test_a_person_keeps_the_agent(client, twilio_rest, outbound_config, verdict):
    outbound_config.machine_detection = AgentConfig.MachineDetection.VOICEMAIL
    outbound_config.voicemail_message = "Please call us back."
    outbound_config.save()
    call = outbound.place_call(CALLEE)

    assert _amd(client, call, verdict).status_code == 204

    assert twilio_rest.calls[call.twilio_call_sid].updates == []
    call.refresh_from_db()
    assert call.answered_by == verdict


def test_voicemail_decision_uses_the_config_as_it_was_when_the_call_was_placed(client, twilio_rest, outbound_config):
    outbound_config.machine_detection = AgentConfig.MachineDetection.VOICEMAIL
    outbound_config.voicemail_message = "The message when the call was placed."
    outbound_config.save()
    call = outbound.place_call(CALLEE)
    outbound_config.voicemail_message = "Edited later."
    outbound_config.save()

    _amd(client, call, "machine_end_beep")

    [update] = twilio_rest.calls[call.twilio_call_sid].updates
    assert "The message when the call was placed." in update["Twiml"]


def test_amd_needs_a_signature_and_a_verdict(client, twilio_rest, outbound_config):
    call = outbound.place_call(CALLEE)
    params = {"CallSid": call.twilio_call_sid, "AccountSid": ACCOUNT_SID, "AnsweredBy": "machine_start"}
    assert signed_post(client, "/twilio/amd", params, token="wrong").status_code == 403
    del params["AnsweredBy"]
    assert signed_post(client, "/twilio/amd", params).status_code == 400
    call.refresh_from_db()
    assert call.answered_by == ""


def test_amd_redirect_failing_keeps_the_call_going(client, twilio_rest, outbound_config, settings):
    outbound_config.machine_detection = AgentConfig.MachineDetection.HANG_UP
    outbound_config.save()
    call = outbound.place_call(CALLEE)
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"
    assert _amd(client, call, "machine_start").status_code == 204
