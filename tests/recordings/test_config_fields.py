"""The config's consent announcement (Twilio says it before <Connect>) and keypad menu (validated in admin,
carried in the call's snapshot)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from calls import outbound, services
from calls.models import AgentConfig, Call
from calls.validators import validate_dtmf_actions
from tests.conftest import ACCOUNT_SID
from tests.outbound.conftest import CALLEE
from tests.outbound.test_outbound_webhooks import answered
from tests.web.helpers import config_post_data
from tests.webhook.test_transfer import CHILD_SID
from tests.webhook.test_voice_webhook import _params, signed_post

pytestmark = pytest.mark.django_db


def test_the_consent_announcement_is_said_before_the_stream(client, twilio_settings, default_config):
    default_config.consent_message = "This call is recorded for quality & training."
    default_config.save()
    root = ET.fromstring(signed_post(client, "/twilio/voice", _params()).content)
    assert [child.tag for child in root] == ["Say", "Connect"]
    assert root.find("Say").text == "This call is recorded for quality & training."


def test_no_consent_message_no_say(client, twilio_settings, default_config):
    root = ET.fromstring(signed_post(client, "/twilio/voice", _params()).content)
    assert [child.tag for child in root] == ["Connect"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["0", "end"], "must be a JSON object"),
        ({"10": "end"}, "10 is not a keypad key"),
        ({"a": "end"}, "a is not a keypad key"),
        ({"1": "dance"}, "dance is not an action"),
        ({"1": ["end"]}, "is not an action"),
    ],
)
def test_bad_keypad_menus_are_refused(value, message):
    with pytest.raises(ValidationError, match=message):
        validate_dtmf_actions(value)


def test_a_good_keypad_menu_passes():
    validate_dtmf_actions({"0": "transfer", "9": "repeat", "#": "end", "*": "model"})


def change_url(config: AgentConfig) -> str:
    return reverse("admin:calls_agentconfig_change", args=[config.pk])


def test_admin_saves_the_keypad_menu_and_consent(admin_client, default_config):
    menu = {"9": "repeat", "#": "end"}
    data = config_post_data(default_config, dtmf_actions=json.dumps(menu), consent_message="This call is recorded.",
                            record_calls="on")
    response = admin_client.post(change_url(default_config), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    default_config.refresh_from_db()
    assert default_config.dtmf_actions == menu and default_config.record_calls
    assert default_config.consent_message == "This call is recorded."
    revision = default_config.revisions.order_by("-number").first()
    assert {"dtmf_actions", "consent_message", "record_calls"} <= set(revision.changed_fields)
    html = admin_client.get(change_url(default_config)).content.decode()
    assert "Keypad menu" in html and "repeat" in html


@pytest.mark.parametrize(
    ("menu", "message"),
    [
        ('{"1": "dance"}', "dance is not an action"),
        ('{"1": "end",}', "This is not valid JSON"),
        ('{"0": "transfer"}', "A keypad transfer needs a transfer number"),
    ],
)
def test_admin_refuses_a_bad_keypad_menu(admin_client, default_config, menu, message):
    response = admin_client.post(change_url(default_config), config_post_data(default_config, dtmf_actions=menu))
    assert response.status_code == 200
    assert message in response.content.decode()
    default_config.refresh_from_db()
    assert default_config.dtmf_actions == {}


def test_the_snapshot_carries_the_menu_and_recording_flag(default_config):
    default_config.dtmf_actions = {"0": "transfer", "1": "model", "#": "end"}
    default_config.record_calls = True
    snapshot = services.config_snapshot(default_config)
    assert snapshot["record_calls"] is True
    assert snapshot["dtmf_actions"] == {"#": "end"}  # no transfer number; "model" is the default anyway
    default_config.transfer_number = "+14155550199"
    assert services.config_snapshot(default_config)["dtmf_actions"] == {"0": "transfer", "#": "end"}


def test_an_outbound_call_hears_the_consent_when_it_is_answered(client, twilio_rest, outbound_config):
    outbound_config.consent_message = "This call is recorded."
    outbound_config.save()
    call = outbound.place_call(CALLEE)
    outbound_config.consent_message = "Changed after the call was placed."
    outbound_config.save()
    root = ET.fromstring(signed_post(client, "/twilio/outbound", answered(call)).content)
    assert [child.tag for child in root] == ["Say", "Connect"]
    assert root.find("Say").text == "This call is recorded."  # as frozen when the call was placed


def test_the_whisper_says_the_summary_the_bridge_stored(client, transferred):
    Call.objects.filter(pk=transferred.pk).update(
        transfer_summary="A call transferred by the Front desk assistant. Reason: billing. The caller said: “Hi.”")
    response = signed_post(client, f"/twilio/whisper?call={transferred.twilio_call_sid}",
                           {"CallSid": CHILD_SID, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress"})
    assert ET.fromstring(response.content).find("Say").text == (
        "A call transferred by the Front desk assistant. Reason: billing. The caller said: “Hi.” Connecting you now.")
