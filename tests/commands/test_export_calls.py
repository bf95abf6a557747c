from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from calls import services
from calls.models import AgentConfig, Call

pytestmark = pytest.mark.django_db


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


def test_jsonl_one_record_per_call_with_events_in_order(make_call, run, default_config):
    call = make_call(
        from_number="+14155550123",
        duration_s=42,
        input_tokens=120,
        output_tokens=80,
        usage={"input_tokens": 120, "output_tokens": 80},
        end_reason=Call.EndReason.CALLER_HANGUP,
        cost_usd=Decimal("0.0123"),
    )
    # A later batch carries earlier seq numbers: the export orders by seq, not by insertion.
    services.add_events(call.pk, [{"seq": 5, "kind": "agent", "t_ms": 5000, "text": "Goodbye."}])
    services.add_events(
        call.pk,
        [
            {"seq": 3, "kind": "caller", "t_ms": 3000, "text": "Thanks, bye."},
            {"seq": 4, "kind": "tool_call", "t_ms": 4000, "data": {"name": "end_call"}},
        ],
    )
    make_call()

    out, err = run("export_calls", "--format", "jsonl")

    records = jsonl(out)
    assert len(records) == 2
    record = next(r for r in records if r["call_sid"] == call.twilio_call_sid)
    assert [e["seq"] for e in record["events"]] == [3, 4, 5]
    assert record["events"][1] == {
        "seq": 4,
        "kind": "tool_call",
        "t_ms": 4000,
        "text": "",
        "data": {"name": "end_call"},
    }
    assert record["transcript"] == "caller: Thanks, bye.\nagent: Goodbye."
    assert record["from_number"] == "+14155550123"
    assert record["config"] == {
        "id": default_config.pk,
        "name": "Front desk",
        "revision": 1,
        "model": "gpt-realtime-2.1",
    }
    assert record["status"] == "completed"
    assert record["end_reason"] == "caller_hangup"
    assert record["duration_s"] == 42
    assert (record["input_tokens"], record["output_tokens"]) == (120, 80)
    assert record["usage"] == {"input_tokens": 120, "output_tokens": 80}
    assert record["cost_usd"] == 0.0123
    assert next(r for r in records if r["call_sid"] != call.twilio_call_sid)["cost_usd"] is None
    assert datetime.fromisoformat(record["created_at"]) == call.created_at
    assert "exported 2 call(s)" in err


def test_export_keeps_the_config_as_it_was_when_the_call_came_in(make_call, run, default_config):
    call = make_call()
    other = AgentConfig.objects.create(name="Replacement", instructions="x")
    Call.objects.filter(pk=call.pk).update(agent_config=other)
    default_config.name = "Renamed later"
    default_config.save()

    (record,) = jsonl(run("export_calls")[0])

    assert record["config"]["name"] == "Front desk"
    assert record["config"]["id"] == default_config.pk


def test_since_and_until_select_by_creation_time(make_call, run):
    make_call(created=datetime(2026, 1, 10, 12, tzinfo=UTC))
    jan_20 = make_call(created=datetime(2026, 1, 20, 23, 30, tzinfo=UTC))
    make_call(created=datetime(2026, 1, 21, 0, 0, tzinfo=UTC))

    out, _ = run("export_calls", "--since", "2026-01-15", "--until", "2026-01-20")
    assert [r["call_sid"] for r in jsonl(out)] == [jan_20.twilio_call_sid]  # a bare --until includes that day

    out, _ = run("export_calls", "--since", "2026-01-20T23:31Z")
    assert len(jsonl(out)) == 1


def test_csv_has_a_transcript_column(make_call, run):
    make_call(events=[("caller", "Hi, is the office open?"), ("agent", "Yes, until 6, pm."), ("error", "x")],
              cost_usd=Decimal("0.2031"))

    out, _ = run("export_calls", "--format", "csv")

    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    assert rows[0]["transcript"] == "caller: Hi, is the office open?\nagent: Yes, until 6, pm."
    assert rows[0]["event_count"] == "3"
    assert rows[0]["config_name"] == "Front desk"
    assert json.loads(rows[0]["usage"]) == {}
    assert rows[0]["cost_usd"] == "0.2031"


def test_mask_numbers(make_call, run):
    make_call(from_number="+14155550123", to_number="+442071234567")

    (record,) = jsonl(run("export_calls", "--mask-numbers")[0])

    assert record["from_number"] == "+1415•••0123"
    assert "5550123" not in json.dumps(record)


def test_output_file(make_call, run, tmp_path):
    make_call(events=[("caller", "Grüß Gott")])
    target = tmp_path / "calls.jsonl"

    out, err = run("export_calls", "--output", str(target))

    assert out == ""
    assert "Grüß Gott" in target.read_text(encoding="utf-8")
    assert str(target) in err


def test_export_streams_in_a_bounded_number_of_queries(make_call, run, django_assert_max_num_queries):
    for _ in range(12):
        make_call(events=[("caller", "hello"), ("agent", "hi")])

    with django_assert_max_num_queries(4):  # calls + their events per chunk, not one query per call
        out, _ = run("export_calls")

    assert len(jsonl(out)) == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not a date"),
        (["--until", "2026-02-30"], "--until '2026-02-30' is not a date"),
        (["--since", "2026-03-01", "--until", "2026-02-01"], "must be before"),
    ],
)
def test_bad_dates_are_clear_errors(run, args, message):
    with pytest.raises(CommandError, match=message):
        run("export_calls", *args)


def test_unwritable_output_is_a_command_error(make_call, run, tmp_path):
    make_call()
    with pytest.raises(CommandError, match="cannot write"):
        run("export_calls", "--output", str(tmp_path / "missing" / "calls.jsonl"))


def test_jsonl_and_csv_carry_the_direction_engine_and_the_recording_when_present(make_call, run):
    inbound = make_call()
    outbound = make_call(direction=Call.Direction.OUTBOUND, recording="recordings/2026/11/call.wav", engine="live")

    out, _ = run("export_calls", "--format", "jsonl")

    records = {r["call_sid"]: r for r in jsonl(out)}
    assert records[inbound.twilio_call_sid]["direction"] == "inbound"
    assert records[inbound.twilio_call_sid]["engine"] == "realtime"  # a call from before engines: Realtime
    assert records[outbound.twilio_call_sid]["engine"] == "live"
    assert "recording" not in records[inbound.twilio_call_sid]
    assert records[outbound.twilio_call_sid]["direction"] == "outbound"
    assert records[outbound.twilio_call_sid]["recording"] == "recordings/2026/11/call.wav"

    out, _ = run("export_calls", "--format", "csv")
    rows = {row["call_sid"]: row for row in csv.DictReader(io.StringIO(out))}
    assert rows[outbound.twilio_call_sid]["direction"] == "outbound"
    assert rows[outbound.twilio_call_sid]["engine"] == "live"
