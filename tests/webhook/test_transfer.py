"""Transfers, webhook side: warm (<Dial><Number url=whisper>, the person answering hears why the caller is
transferred) or cold per config, and what happens when nobody answers (the <Dial> action): the caller goes back
to the agent on a new stream of the same call, or (per config, or when that cannot help) hears so and the call
ends. The Call row is finalised once, at the call's real end."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from calls import services, stream_token
from calls.models import AgentConfig, Call
from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN
from tests.webhook.test_voice_webhook import CALL_SID, _params, signed_post

pytestmark = pytest.mark.django_db

CHILD_SID = "CA" + "5" * 32


USAGE_1 = {"input_tokens": 1000, "output_tokens": 400, "input_token_details": {"audio_tokens": 900}}


@pytest.fixture
def transferred(client, twilio_settings, default_config) -> Call:
    """A call whose agent transferred it: the bridge claimed the stream and ended it for the transfer, as it
    does (services.claim_stream, services.finish_call)."""
    default_config.transfer_number = "+14155550199"
    default_config.save()
    signed_post(client, "/twilio/voice", _params())
    call = services.claim_stream(CALL_SID, "MZ" + "1" * 32, "bridge-1")
    services.add_events(call.pk, [
        {"seq": 1, "kind": "agent", "t_ms": 500, "text": "Hello!"},
        {"seq": 2, "kind": "caller", "t_ms": 2500, "text": "Can I talk to someone about my bill?"},
        {"seq": 3, "kind": "tool_call", "t_ms": 4000, "text": "transfer_call",
         "data": {"call_id": "c1", "arguments": json.dumps({"reason": "a question about a bill"})}},
    ])
    services.finish_call(call.pk, Call.EndReason.TRANSFERRED, USAGE_1)
    return Call.objects.get(pk=call.pk)


def transfer_ended(client, dial_status: str, **extra: str) -> ET.Element:
    response = signed_post(client, "/twilio/transfer-ended", _params(**{
        "CallStatus": "in-progress", "DialCallStatus": dial_status, "DialCallSid": CHILD_SID,
        "DialCallDuration": "0", **extra}))
    assert response.status_code == 200
    return ET.fromstring(response.content)


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


def test_the_stream_ending_for_a_transfer_leaves_the_call_live(transferred):
    assert transferred.is_live and transferred.status == Call.Status.IN_PROGRESS
    assert (transferred.end_reason, transferred.ended_at, transferred.duration_s) == ("", None, None)
    assert transferred.transfer_state == Call.TransferState.DIALING
    assert transferred.usage == USAGE_1
    assert transferred.agent_seconds is not None and transferred.cost_usd is not None  # the agent's part so far


@pytest.mark.parametrize("dial_status", ["completed", "answered"])
def test_an_answered_transfer_hangs_up_after_the_conversation_and_ends_the_call(client, transferred, dial_status):
    assert [child.tag for child in transfer_ended(client, dial_status, DialCallDuration="95")] == ["Hangup"]
    call = Call.objects.get()
    assert call.status == Call.Status.COMPLETED and call.end_reason == Call.EndReason.TRANSFERRED
    assert call.transfer_state == Call.TransferState.ANSWERED and call.transfer_dial_status == dial_status
    assert call.ended_at is not None and call.duration_s is not None
    event = call.events.order_by("-seq").first()
    assert (event.kind, event.text) == ("status", "Transfer answered")
    assert event.data == {"dial_status": dial_status, "duration_s": "95", "mode": "warm"}


@pytest.mark.parametrize(("dial_status", "why"), [
    ("no-answer", "nobody answered"), ("busy", "the line was busy"),
    ("failed", "the call to the colleague could not be placed"),
    ("canceled", "the call to the colleague was cancelled before anyone answered"),
])
def test_nobody_answering_brings_the_caller_back_to_the_agent_on_a_new_stream(client, transferred, dial_status,
                                                                              why, default_config):
    default_config.consent_message = "This call is recorded."
    default_config.save()
    Call.objects.update(config_snapshot={**transferred.config_snapshot, "consent_message": "This call is recorded."})
    root = transfer_ended(client, dial_status)
    assert root.find("Say") is None  # the agent says it is back; the consent was said once, at the start
    connect = root.find("Connect")
    assert connect.get("action") == "https://hooks.example.com/twilio/stream-ended"
    stream = connect.find("Stream")
    assert stream.get("url") == "wss://bridge.example.com/media-stream"
    token = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}["token"]
    grant = stream_token.verify(token, CALL_SID)
    assert (grant.config_id, grant.stream) == (default_config.pk, 2)  # a fresh token, for the call's second stream
    call = Call.objects.get()
    # Not finalised: the caller is still on the line, waiting for the agent.
    assert call.is_live and (call.end_reason, call.ended_at, call.duration_s) == ("", None, None)
    assert call.transfer_state == Call.TransferState.RETURNING and call.transfer_dial_status == dial_status
    event = call.events.order_by("-seq").first()
    assert (event.kind, event.text) == ("status", f"Transfer not answered ({why}): back to the agent")
    assert event.data == {"dial_status": dial_status, "duration_s": "0", "mode": "warm", "why": why,
                          "back_to_agent": True}
    assert event.seq == services.AFTER_STREAM_SEQ and event.t_ms == 4000
    # A batch the bridge writes late (seq 4) still lands: the webhook's seqs never collide with the bridge's.
    services.add_events(transferred.pk, [{"seq": 4, "kind": "agent", "t_ms": 4100, "text": "Connecting you."}])
    assert transferred.events.filter(seq=4, kind="agent").exists()


def test_the_returning_stream_is_claimed_once_and_carries_the_conversation(client, transferred):
    transfer_ended(client, "no-answer")
    first_stream_token = stream_token.mint(CALL_SID, transferred.agent_config_id)
    # A token minted for the first stream (the bridge passes its stream number) cannot claim the second one.
    assert services.claim_stream(CALL_SID, "MZ" + "0" * 32, "bridge-9", stream_number=1) is None
    assert services.claim_stream(CALL_SID, "MZ" + "0" * 32, "bridge-9") is None  # a claim names its stream: 1
    assert stream_token.verify(first_stream_token, CALL_SID).stream == 1
    call = services.claim_stream(CALL_SID, "MZ" + "2" * 32, "bridge-2", stream_number=2)
    assert call is not None and call.transfer_state == Call.TransferState.RETURNED
    assert (call.stream_count, call.stream_sid, call.bridge_instance) == (2, "MZ" + "2" * 32, "bridge-2")
    assert call.started_at == transferred.started_at and call.stream_started_at > transferred.started_at
    assert [(e.kind, e.text) for e in call.conversation] == [
        ("agent", "Hello!"), ("caller", "Can I talk to someone about my bill?")]
    # Once: a replay is refused.
    assert services.claim_stream(CALL_SID, "MZ" + "3" * 32, "bridge-3") is None
    assert services.claim_stream(CALL_SID, "MZ" + "3" * 32, "bridge-3", stream_number=2) is None


def test_a_repeated_dial_callback_answers_the_same_and_records_once(client, transferred):
    first = transfer_ended(client, "no-answer")
    again = transfer_ended(client, "no-answer")
    assert first.find("Connect/Stream") is not None and again.find("Connect/Stream") is not None
    assert Call.objects.get().transfer_state == Call.TransferState.RETURNING
    assert transferred.events.filter(kind="status", text__startswith="Transfer not answered").count() == 1


def test_back_with_the_agent_the_call_ends_once_with_the_whole_duration_and_the_agents_seconds(
    client, transferred, monkeypatch
):
    """Stream 1: 60 s; the <Dial> rings 30 s; stream 2: 45 s. Duration 135 s, the agent's 105 s; the usage is the
    session's running total; one end, at the real end."""
    t0 = timezone.now() - timedelta(hours=1)
    Call.objects.update(started_at=t0, stream_started_at=t0, agent_seconds=None, transfer_state="",
                        usage={}, cost_usd=None)
    clock = [t0 + timedelta(seconds=60)]
    monkeypatch.setattr(services.timezone, "now", lambda: clock[0])
    services.finish_call(transferred.pk, Call.EndReason.TRANSFERRED, USAGE_1)
    clock[0] = t0 + timedelta(seconds=90)
    transfer_ended(client, "busy")
    services.claim_stream(CALL_SID, "MZ" + "2" * 32, "bridge-2", stream_number=2)
    clock[0] = t0 + timedelta(seconds=135)
    total = {"input_tokens": 2500, "output_tokens": 900, "input_token_details": {"audio_tokens": 2200}}
    ended = services.finish_call(transferred.pk, Call.EndReason.AGENT_ENDED, total)
    assert ended.status == Call.Status.COMPLETED and ended.end_reason == Call.EndReason.AGENT_ENDED
    assert ended.ended_at == t0 + timedelta(seconds=135) and ended.duration_s == 135
    assert ended.agent_seconds == 105 and ended.usage == total
    assert ended.transfer_state == Call.TransferState.RETURNED
    # The cost counts the agent's seconds (the transcription estimate), not the ringing.
    assert ended.cost_usd == services.call_cost_usd(ended)
    ended.agent_seconds = None
    assert services.call_cost_usd(ended) > Decimal(str(ended.cost_usd))  # with the ringing it would cost more
    # A repeated end (the bridge retried) changes nothing.
    clock[0] = t0 + timedelta(seconds=200)
    again = services.finish_call(transferred.pk, Call.EndReason.CALLER_HANGUP, total)
    assert (again.end_reason, again.duration_s, again.agent_seconds) == (Call.EndReason.AGENT_ENDED, 135, 105)


def test_the_config_can_say_so_and_hang_up_instead(client, transferred):
    Call.objects.update(config_snapshot={**transferred.config_snapshot,
                                         "on_failed_transfer": AgentConfig.FailedTransfer.HANG_UP})
    assert [child.tag for child in transfer_ended(client, "no-answer")] == ["Say", "Hangup"]
    call = Call.objects.get()
    assert call.status == Call.Status.COMPLETED and call.end_reason == Call.EndReason.TRANSFERRED
    assert call.transfer_state == Call.TransferState.UNANSWERED and call.ended_at is not None
    event = call.events.order_by("-seq").first()
    assert event.text == "Transfer not answered (nobody answered): the call ends"
    assert event.data["back_to_agent"] is False
    assert event.data["not_back_because"] == "the config hangs up after a failed transfer"


@pytest.mark.parametrize(("setup", "because"), [
    ("caller_gone", "the caller hung up"),
    ("time_up", "the call's time limit is reached"),
    ("no_key", "no agent can answer"),
])
def test_the_caller_is_not_brought_back_when_it_cannot_help(client, transferred, settings, setup, because):
    extra = {}
    if setup == "caller_gone":
        extra["CallStatus"] = "completed"
    elif setup == "time_up":
        limit = transferred.config_snapshot["max_call_seconds"]
        Call.objects.update(started_at=timezone.now() - timedelta(seconds=limit - 10))
    else:
        settings.OPENAI_API_KEY = ""
    assert [child.tag for child in transfer_ended(client, "no-answer", **extra)] == ["Say", "Hangup"]
    call = Call.objects.get()
    assert call.transfer_state == Call.TransferState.UNANSWERED and not call.is_live
    assert call.events.order_by("-seq").first().data["not_back_because"] == because


def test_the_caller_hanging_up_during_the_transfer_ends_the_call_once(client, transferred):
    response = signed_post(client, "/twilio/status", _params(CallStatus="completed", CallDuration="40"))
    assert response.status_code == 204
    call = Call.objects.get()
    assert call.status == Call.Status.COMPLETED and call.end_reason == Call.EndReason.CALLER_HANGUP
    assert call.duration_s == 40 and call.cost_usd is not None
    # The <Dial> action that follows finds the call over: nothing brings it back.
    assert [child.tag for child in transfer_ended(client, "no-answer", CallStatus="completed")] == ["Say", "Hangup"]
    assert Call.objects.get().end_reason == Call.EndReason.CALLER_HANGUP
    assert services.claim_stream(CALL_SID, "MZ" + "2" * 32, "bridge-2") is None


def test_a_call_a_bridge_from_before_ended_as_transferred_still_dials_and_gets_the_message(client, transferred):
    """During a release the bridge may still finalise the call at its stream's end (end reason transferred)."""
    Call.objects.update(transfer_state="", end_reason=Call.EndReason.TRANSFERRED, status=Call.Status.COMPLETED,
                        ended_at=timezone.now())
    assert stream_ended(client).find("Dial") is not None
    assert [child.tag for child in transfer_ended(client, "no-answer")] == ["Say", "Hangup"]
    event = transferred.events.order_by("-seq").first()
    assert event.data["dial_status"] == "no-answer" and event.data["not_back_because"] == "the call has already ended"
