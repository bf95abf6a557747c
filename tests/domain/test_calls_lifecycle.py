"""Status callbacks, the single-use stream claim, finishing a call and storing its events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from calls import services
from calls.models import Call, CallEvent
from tests.conftest import DETAILED_USAGE, new_call_sid

pytestmark = pytest.mark.django_db


T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_start_call_is_idempotent_for_a_retried_webhook(config):
    sid = new_call_sid()
    first = services.start_call(sid, "AC" + "0" * 32, "+14155550100", "+14155550199", config)
    again = services.start_call(sid, "AC" + "0" * 32, "+14155550100", "+14155550199", config)

    assert first.pk == again.pk
    assert Call.objects.count() == 1
    assert first.config_snapshot["name"] == "Front desk"
    assert first.status == Call.Status.RINGING


def test_status_callbacks_move_a_call_forward(call):
    services.apply_status_callback(call.twilio_call_sid, "ringing", at=T0)
    services.apply_status_callback(call.twilio_call_sid, "in-progress", at=T0 + timedelta(seconds=2))
    updated = services.apply_status_callback(
        call.twilio_call_sid, "completed", 63, at=T0 + timedelta(seconds=65)
    )

    assert updated.status == Call.Status.COMPLETED
    assert updated.twilio_status == "completed"
    assert updated.ended_at == T0 + timedelta(seconds=65)
    assert updated.duration_s == 63
    call.refresh_from_db()
    assert (call.status, call.duration_s) == (Call.Status.COMPLETED, 63)


def test_duplicate_status_callbacks_change_nothing(call):
    services.apply_status_callback(call.twilio_call_sid, "completed", 30, at=T0)
    call.refresh_from_db()
    before = (call.status, call.twilio_status, call.twilio_status_at, call.ended_at, call.duration_s)

    services.apply_status_callback(call.twilio_call_sid, "completed", 30, at=T0)

    call.refresh_from_db()
    assert (call.status, call.twilio_status, call.twilio_status_at, call.ended_at, call.duration_s) == before


def test_out_of_order_callbacks_never_move_a_call_backwards(call):
    services.apply_status_callback(call.twilio_call_sid, "completed", 40, at=T0 + timedelta(seconds=45))
    # Delivered late: older events of the same call.
    services.apply_status_callback(call.twilio_call_sid, "in-progress", at=T0 + timedelta(seconds=5))
    services.apply_status_callback(call.twilio_call_sid, "ringing", at=T0)

    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED
    assert call.twilio_status == "completed"
    assert call.twilio_status_at == T0 + timedelta(seconds=45)
    assert call.ended_at == T0 + timedelta(seconds=45)


@pytest.mark.parametrize(
    ("twilio_status", "status"),
    [
        ("busy", Call.Status.BUSY),
        ("no-answer", Call.Status.NO_ANSWER),
        ("canceled", Call.Status.CANCELED),
        ("failed", Call.Status.FAILED),
    ],
)
def test_terminal_statuses(call, twilio_status, status):
    services.apply_status_callback(call.twilio_call_sid, twilio_status, at=T0)
    call.refresh_from_db()
    assert call.status == status
    assert call.ended_at == T0
    assert not call.is_live


def test_unknown_status_and_unknown_call(call):
    with pytest.raises(ValueError, match="unknown CallStatus"):
        services.apply_status_callback(call.twilio_call_sid, "exploded")
    assert services.apply_status_callback(new_call_sid(), "completed") is None


def test_claim_stream_is_single_use(call):
    claimed = services.claim_stream(call.twilio_call_sid, "MZ" + "1" * 32, "bridge-a")

    assert claimed is not None
    assert claimed.stream_sid == "MZ" + "1" * 32
    assert claimed.bridge_instance == "bridge-a"
    assert claimed.status == Call.Status.IN_PROGRESS
    assert claimed.started_at is not None and claimed.stream_token_used_at is not None

    assert services.claim_stream(call.twilio_call_sid, "MZ" + "2" * 32, "bridge-b") is None
    call.refresh_from_db()
    assert (call.stream_sid, call.bridge_instance) == ("MZ" + "1" * 32, "bridge-a")


def test_claim_stream_of_an_unknown_call(db):
    assert services.claim_stream(new_call_sid(), "MZ" + "1" * 32, "bridge-a") is None


def test_finish_call_is_idempotent(call):
    services.claim_stream(call.twilio_call_sid, "MZ" + "1" * 32, "bridge-a")
    Call.objects.filter(pk=call.pk).update(started_at=T0)
    usage = {"input_tokens": 900, "output_tokens": 300, "input_token_details": {"audio_tokens": 800}}

    services.finish_call(call.pk, Call.EndReason.CALLER_HANGUP, usage)
    call.refresh_from_db()
    first = (call.end_reason, call.ended_at, call.duration_s, call.status)

    services.finish_call(call.pk, Call.EndReason.UPSTREAM_ERROR)
    call.refresh_from_db()

    assert (call.end_reason, call.ended_at, call.duration_s, call.status) == first
    assert call.end_reason == Call.EndReason.CALLER_HANGUP
    assert call.status == Call.Status.COMPLETED
    assert call.duration_s == int((call.ended_at - T0).total_seconds())
    assert (call.input_tokens, call.output_tokens) == (900, 300)
    assert call.usage == usage


def test_finish_call_keeps_twilios_duration_and_status(call):
    services.apply_status_callback(call.twilio_call_sid, "completed", 42, at=T0)

    services.finish_call(call.pk, Call.EndReason.AGENT_ENDED)

    call.refresh_from_db()
    assert (call.status, call.duration_s, call.ended_at) == (Call.Status.COMPLETED, 42, T0)
    assert call.end_reason == Call.EndReason.AGENT_ENDED



def test_finish_call_stores_the_realtime_cost(call):
    services.apply_status_callback(call.twilio_call_sid, "in-progress", at=T0)
    Call.objects.filter(pk=call.pk).update(duration_s=60)

    services.finish_call(call.pk, Call.EndReason.CALLER_HANGUP, DETAILED_USAGE)

    call.refresh_from_db()
    # gpt-realtime-2.1 tokens $0.04212 (tests/domain/test_pricing.py) + 40 % of 60 s transcribed at $0.003/min.
    assert call.cost_usd == Decimal("0.0433")


def test_finish_call_stores_the_live_cost_from_billed_seconds(call):
    Call.objects.filter(pk=call.pk).update(
        engine="live", duration_s=200, config_snapshot={**call.config_snapshot, "model": "gpt-live-1.1"}
    )

    services.finish_call(call.pk, Call.EndReason.CALLER_HANGUP, {"seconds": 90.0})

    call.refresh_from_db()
    assert call.cost_usd == Decimal("0.0750")  # 1.5 billed minutes x $0.05, not the 200 s on the line


def test_a_model_missing_from_the_price_table_leaves_the_cost_empty(call, caplog):
    Call.objects.filter(pk=call.pk).update(config_snapshot={**call.config_snapshot, "model": "gpt-9-realtime"})

    with caplog.at_level(logging.WARNING, logger="calls.services"):
        services.finish_call(call.pk, Call.EndReason.CALLER_HANGUP, DETAILED_USAGE)

    call.refresh_from_db()
    assert call.cost_usd is None
    assert "no price for Realtime model 'gpt-9-realtime'" in caplog.text


def test_a_call_that_never_reached_openai_costs_nothing(call):
    services.finish_call(call.pk, Call.EndReason.NOT_CONFIGURED)
    call.refresh_from_db()
    assert call.cost_usd == 0


@pytest.mark.parametrize(
    "reason", [Call.EndReason.UPSTREAM_ERROR, Call.EndReason.NOT_CONFIGURED, Call.EndReason.PROTOCOL_ERROR]
)
def test_failures_end_as_failed(call, reason):
    services.finish_call(call.pk, reason)
    call.refresh_from_db()
    assert call.status == Call.Status.FAILED
    assert call.duration_s is None  # the stream never started


def test_add_events_skips_sequence_numbers_already_stored(call):
    batch = [
        {"seq": 0, "kind": "caller", "t_ms": 100, "text": "Hi"},
        {"seq": 1, "kind": "agent", "t_ms": 900, "text": "Hello, how can I help?"},
    ]
    services.add_events(call.pk, batch)
    services.add_events(call.pk, batch)  # a retried batch
    services.add_events(
        call.pk, [batch[1], {"seq": 2, "kind": "caller", "t_ms": -5, "text": "Opening hours?"}]
    )

    events = list(
        CallEvent.objects.filter(call=call).order_by("seq").values_list("seq", "kind", "t_ms", "text")
    )
    assert events == [
        (0, "caller", 100, "Hi"),
        (1, "agent", 900, "Hello, how can I help?"),
        (2, "caller", 0, "Opening hours?"),  # a clock skew never stores a negative offset
    ]


def test_purge_service_keeps_live_calls(config):
    old = T0 - timedelta(days=365)
    ended = services.start_call(new_call_sid(), "", "", "", config)
    live = services.start_call(new_call_sid(), "", "", "", config)
    Call.objects.filter(pk=ended.pk).update(created_at=old, status=Call.Status.COMPLETED)
    Call.objects.filter(pk=live.pk).update(created_at=old, status=Call.Status.IN_PROGRESS)

    services.purge_calls(timedelta(days=90))

    assert list(Call.objects.values_list("pk", flat=True)) == [live.pk]


@pytest.mark.parametrize(
    ("number", "masked"),
    [("+14155550123", "+1415•••0123"), ("", ""), ("12345", "•••••"), ("+442071234567", "+4420•••4567"),
     ("client:alice", "•••"), ("sip:bob@example.com", "•••")],
)
def test_mask_phone(number, masked):
    assert services.mask_phone(number) == masked
