"""call_span: lifecycle spans for the bridge with safe attributes; nothing when tracing is off."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from calls import tracing

CALLER = "+14155550123"
CALL_SID = "CA" + "0123456789abcdef" * 2


def exported_text(exporter: InMemorySpanExporter) -> str:
    return "\n".join(span.to_json() for span in exporter.get_finished_spans())


def test_call_span_records_the_step_with_its_attributes(spans: InMemorySpanExporter) -> None:
    with tracing.call_span("call.start", call_sid=CALL_SID, config_id=7, model="gpt-realtime") as span:
        span.set_attribute("call.accepted", True)

    [recorded] = spans.get_finished_spans()
    assert recorded.name == "call.start"
    assert recorded.kind is SpanKind.INTERNAL
    assert dict(recorded.attributes) == {
        "call_sid": CALL_SID, "config_id": 7, "model": "gpt-realtime", "call.accepted": True,
    }
    assert recorded.status.status_code is StatusCode.UNSET
    assert recorded.resource.attributes["service.name"] == "voiceops"


def test_phone_numbers_are_masked_and_secrets_dropped(spans: InMemorySpanExporter) -> None:
    with tracing.call_span(
        "call.start",
        call_sid=CALL_SID,
        caller=CALLER,
        to_number="+442071838750",
        note=f"transfer requested to {CALLER}",
        api_key="sk-live-0123456789abcdef",
        stream_token="eyJhbGciOi.secret.value",
        tool_authorization="Bearer abc",
    ):
        pass

    [recorded] = spans.get_finished_spans()
    assert dict(recorded.attributes) == {
        "call_sid": CALL_SID,
        "caller": "+1415•••0123",
        "to_number": "+4420•••8750",
        "note": "transfer requested to +1415•••0123",
    }
    text = exported_text(spans)
    for leaked in (CALLER, "4155550123", "2071838750", "sk-live", "eyJhbGciOi", "Bearer abc"):
        assert leaked not in text


def test_an_error_marks_the_span_without_leaking_its_message(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ConnectionError), tracing.call_span("openai.connect", kind=SpanKind.CLIENT):
        raise ConnectionError(f"refused for {CALLER} with Bearer sk-proj-abcdefghijklmnop")

    [recorded] = spans.get_finished_spans()
    assert recorded.kind is SpanKind.CLIENT
    assert recorded.status.status_code is StatusCode.ERROR
    assert recorded.attributes["error.type"] == "ConnectionError"
    [event] = recorded.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ConnectionError"
    assert event.attributes["exception.message"] == "refused for +1415•••0123 with Bearer ***"
    text = exported_text(spans)
    assert CALLER not in text
    assert "sk-proj" not in text


async def test_cancellation_is_not_an_error(spans: InMemorySpanExporter) -> None:
    async def tool_call() -> None:
        with tracing.call_span("tool.lookup_order", tool="lookup_order"):
            await asyncio.sleep(10)

    task = asyncio.create_task(tool_call())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [recorded] = spans.get_finished_spans()
    assert recorded.attributes["voiceops.cancelled"] is True
    assert recorded.status.status_code is not StatusCode.ERROR


async def test_steps_of_one_call_share_a_trace_and_calls_stay_apart(spans: InMemorySpanExporter) -> None:
    """Two calls at once on one bridge: each call's later steps hang under its own first span."""

    async def one_call(call_sid: str) -> None:
        with tracing.call_span("call.start", call_sid=call_sid) as start:
            await asyncio.sleep(0)
        with tracing.call_span("openai.connect", parent=start, kind=SpanKind.CLIENT):
            await asyncio.sleep(0)
            with tracing.call_span("session.update"):
                await asyncio.sleep(0)
        with tracing.call_span("call.end", parent=start, end_reason="caller_hangup"):
            pass

    await asyncio.gather(one_call("CA1"), one_call("CA2"))

    finished = spans.get_finished_spans()
    assert len(finished) == 8
    starts = {s.attributes["call_sid"]: s for s in finished if s.name == "call.start"}
    assert starts["CA1"].context.trace_id != starts["CA2"].context.trace_id
    for start in starts.values():
        in_trace = [s for s in finished if s.context.trace_id == start.context.trace_id]
        assert sorted(s.name for s in in_trace) == ["call.end", "call.start", "openai.connect", "session.update"]
        by_name = {s.name: s for s in in_trace}
        assert start.parent is None
        assert by_name["openai.connect"].parent.span_id == start.context.span_id
        assert by_name["call.end"].parent.span_id == start.context.span_id
        assert by_name["session.update"].parent.span_id == by_name["openai.connect"].context.span_id


def test_off_call_span_is_a_no_op_even_with_a_parent() -> None:
    with tracing.call_span("call.start", caller=CALLER) as start:
        assert not start.is_recording()
        start.set_attribute("anything", 1)  # callers need no "if tracing" around this
    with tracing.call_span("call.end", parent=start) as end:
        assert not end.is_recording()


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"from": "+14155550123"}, {"from": "+1415•••0123"}),
        ({"From": "client:alice"}, {"From": "•••"}),
        ({"phone_numbers": ["+14155550123", "+14155550199"]}, {"phone_numbers": ["+1415•••0123", "+1415•••0199"]}),
        ({"caller": 14155550123}, {"caller": "14155•••0123"}),
        ({"date": "2026-10-01", "sid": "CA14155550123"}, {"date": "2026-10-01", "sid": "CA14155550123"}),
        ({"tags": ["a", "+14155550123"]}, {"tags": ["a", "+1415•••0123"]}),
        ({"usage": {"input": 3}}, {"usage": json.dumps({"input": 3}).replace('"', "'")}),
        ({"transcript": "x" * 1000}, {"transcript": "x" * 255 + "…"}),
        ({"password": "hunter2", "db.secret_arn": "arn:…", "missing": None}, {}),
        ({"duration_s": 1.5, "ok": False}, {"duration_s": 1.5, "ok": False}),
    ],
)
def test_safe_attributes(attributes: dict[str, object], expected: dict[str, object]) -> None:
    assert tracing.safe_attributes(attributes) == expected
