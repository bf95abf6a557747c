"""place_call against the local fake of Twilio's REST API, through the real `twilio` library: the request
Twilio gets, the Call row, the guards, and Twilio's refusals as clean errors with a failed row."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from calls import outbound
from calls.models import AgentConfig, Call, DoNotCallNumber
from tests.outbound.conftest import CALLEE, CALLER_ID

pytestmark = pytest.mark.django_db


def place(*args: str) -> str:
    out = StringIO()
    call_command("place_call", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def test_place_call_asks_twilio_and_records_the_outbound_call(twilio_rest, outbound_config):
    sid = place("--to", "+1 (415) 555-0123")

    fake_call = twilio_rest.calls[sid]
    assert fake_call.param("To") == CALLEE and fake_call.param("From") == CALLER_ID
    assert fake_call.param("Url") == "https://hooks.example.com/twilio/outbound"
    assert fake_call.param("Method") == "POST"
    assert fake_call.param("StatusCallback") == "https://hooks.example.com/twilio/status"
    assert fake_call.params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert "MachineDetection" not in fake_call.params  # detection is off for this config
    call = Call.objects.get(twilio_call_sid=sid)
    assert call.direction == Call.Direction.OUTBOUND
    assert (call.from_number, call.to_number, call.agent_config) == (CALLER_ID, CALLEE, outbound_config)
    assert call.status == Call.Status.RINGING and call.twilio_status == "queued"
    assert call.placed_by == "manage.py place_call"
    assert call.config_snapshot["instructions"] == outbound_config.instructions


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(AgentConfig.MachineDetection.VOICEMAIL, "DetectMessageEnd"), (AgentConfig.MachineDetection.HANG_UP, "Enable")],
)
def test_answering_machine_detection_is_asynchronous_per_config(twilio_rest, outbound_config, mode, expected):
    outbound_config.machine_detection = mode
    outbound_config.voicemail_message = "Please call us back."
    outbound_config.save()

    sid = place("--to", CALLEE, "--config", "Reminders")

    fake_call = twilio_rest.calls[sid]
    assert fake_call.param("MachineDetection") == expected
    assert fake_call.param("AsyncAmd") == "true"
    assert fake_call.param("AsyncAmdStatusCallback") == "https://hooks.example.com/twilio/amd"
    snapshot = Call.objects.get(twilio_call_sid=sid).config_snapshot
    assert snapshot["outbound"] == {"machine_detection": mode, "voicemail_message": "Please call us back."}


@pytest.mark.parametrize(
    ("to", "code", "words"),
    [
        ("+15005550001", 21217, "does not appear to be valid"),
        ("+15005550002", 21214, "cannot be reached"),
        ("+15005550003", 21215, "Geo permissions"),
        ("+88212345678", 21215, "international permissions"),
        ("+15005550004", 21216, "blocked"),
    ],
)
def test_twilio_refusing_gives_a_clear_error_and_a_failed_call(twilio_rest, outbound_config, to, code, words, caplog):
    with pytest.raises(CommandError) as excinfo:
        place("--to", to)

    message = str(excinfo.value)
    assert f"error {code}" in message and words in message
    call = Call.objects.get(to_number=to)
    assert call.status == Call.Status.FAILED and call.ended_at is not None
    assert call.direction == Call.Direction.OUTBOUND
    event = call.events.get()
    assert event.kind == "error" and event.data["twilio_code"] == code
    assert to not in caplog.text  # the number is masked in logs


def test_a_number_e164_allows_but_twilio_does_not_is_21211(twilio_rest, outbound_config):
    # E.164 by shape, but a +1 number needs ten digits: Twilio checks each country's numbering plan.
    with pytest.raises(outbound.OutboundRefused, match="error 21211") as excinfo:
        outbound.place_call("+1415555012", None)
    assert excinfo.value.refusal == outbound.Refusal.TWILIO_REFUSED and excinfo.value.twilio_code == 21211
    assert excinfo.value.call.status == Call.Status.FAILED


def test_wrong_credentials_or_a_suspended_account_is_20003(twilio_rest, outbound_config, settings):
    twilio_rest.suspended = True
    with pytest.raises(CommandError, match=r"error 20003.*suspended"):
        place("--to", CALLEE)
    twilio_rest.suspended = False
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    with pytest.raises(CommandError, match="error 20003"):
        place("--to", CALLEE)
    assert Call.objects.filter(status=Call.Status.FAILED).count() == 2
    assert "not-the-token" not in "".join(e.text for c in Call.objects.all() for e in c.events.all())


def test_twilio_unreachable_is_a_clean_error(twilio_rest, outbound_config, settings):
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(CommandError, match="Could not reach Twilio"):
        place("--to", CALLEE)
    assert Call.objects.get().status == Call.Status.FAILED


@pytest.mark.parametrize("bad", ["4155550123", "+0123456789", "+1 415 CALL NOW", ""])
def test_numbers_must_be_e164(twilio_rest, outbound_config, bad):
    with pytest.raises(CommandError, match=r"not an E\.164 number"):
        place("--to", bad)
    assert not Call.objects.exists() and not twilio_rest.calls


def test_do_not_call_list_is_honoured(twilio_rest, outbound_config):
    DoNotCallNumber.objects.create(number=CALLEE, reason="asked not to be called")
    with pytest.raises(CommandError, match="do-not-call"):
        place("--to", "+1 415 555 0123")
    assert not Call.objects.exists() and not twilio_rest.calls


def test_calling_hours_are_in_the_config_time_zone(twilio_rest, outbound_config):
    outbound_config.calling_hours_start, outbound_config.calling_hours_end = 9, 17
    outbound_config.save()
    # 13:30 UTC is 08:30 in New York (EST, UTC-5): too early there.
    with pytest.raises(outbound.OutboundRefused, match=r"09:00-17:00 America/New_York") as excinfo:
        outbound.place_call(CALLEE, now=datetime(2026, 11, 30, 13, 30, tzinfo=UTC))
    assert excinfo.value.refusal == outbound.Refusal.OUTSIDE_HOURS
    call = outbound.place_call(CALLEE, now=datetime(2026, 11, 30, 14, 30, tzinfo=UTC))  # 09:30 there
    assert call.twilio_call_sid in twilio_rest.calls


def test_calling_hours_may_span_midnight(outbound_config):
    outbound_config.calling_hours_start, outbound_config.calling_hours_end = 22, 2
    outbound_config.calling_time_zone = "UTC"
    at = [datetime(2026, 11, 30, h, 0, tzinfo=UTC) for h in (21, 22, 23, 0, 1, 2)]
    assert [outbound.within_calling_hours(outbound_config, t) for t in at] == [False, True, True, True, True, False]


def test_concurrent_outbound_calls_are_capped_per_config(twilio_rest, outbound_config):
    place("--to", CALLEE)
    place("--to", "+14155550124")
    with pytest.raises(CommandError, match=r"already has 2 outbound call\(s\) under way"):
        place("--to", "+14155550125")
    assert len(twilio_rest.calls) == 2
    Call.objects.filter(to_number=CALLEE).update(status=Call.Status.COMPLETED)
    place("--to", "+14155550125")  # a slot is free again


def test_a_config_without_a_number_cannot_call(twilio_rest, outbound_config):
    outbound_config.phone_numbers.all().delete()
    with pytest.raises(CommandError, match="no active phone number to call from"):
        place("--to", CALLEE)


def test_an_unknown_config_is_a_clear_error(twilio_rest, outbound_config):
    with pytest.raises(CommandError, match="No active agent config named 'Nope'"):
        place("--to", CALLEE, "--config", "Nope")
