"""The call metrics: CloudWatch Embedded Metric Format lines, on change (rate-limited) and once per period."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from bridge.lifecycle import BridgeState
from bridge.metrics import CallMetrics


def check_emf(document: dict[str, Any]) -> None:
    """The EMF rules CloudWatch enforces: directive shape, every dimension and metric present at the root."""
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert abs(meta["Timestamp"] - time.time() * 1000) < 60_000
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(document[name], str)
        for metric in directive["Metrics"]:
            assert isinstance(document[metric["Name"]], int | float)
            assert metric["Unit"] == "Count"


class Lines:
    def __init__(self) -> None:
        self.raw: list[str] = []

    def __call__(self, line: str) -> None:
        assert "\n" not in line  # one JSON document per log event
        self.raw.append(line)

    @property
    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw]


def metrics(lines: Lines, **kw: Any) -> CallMetrics:
    return CallMetrics("VoiceOps", "prod", instance_id="abc123", write=lines, **kw)


def test_record_is_valid_emf() -> None:
    lines = Lines()
    m = metrics(lines)
    m.emit()
    (doc,) = lines.docs
    check_emf(doc)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "VoiceOps"
    assert directive["Dimensions"] == [["Stage"]]  # what the CDK's ActiveCalls metric and alarms select on
    assert [metric["Name"] for metric in directive["Metrics"]] == ["ActiveCalls", "CallsStarted", "CallsEnded"]
    assert doc["Stage"] == "prod" and doc["ActiveCalls"] == 0 and doc["Instance"] == "abc123"


async def test_change_publishes_at_once_then_rate_limited() -> None:
    lines = Lines()
    m = metrics(lines, min_interval_s=0.3)
    m.on_change(1)
    assert [d["ActiveCalls"] for d in lines.docs] == [1]
    m.on_change(2)
    m.on_change(3)
    m.on_change(2)
    assert len(lines.docs) == 1  # within the interval: held back
    await asyncio.sleep(0.45)
    docs = lines.docs
    assert len(docs) == 2  # one line carries the latest numbers
    assert docs[1]["ActiveCalls"] == 2
    assert docs[1]["CallsStarted"] == 2 and docs[1]["CallsEnded"] == 1
    for doc in docs:
        check_emf(doc)
        # Counters only: a gauge point per change would skew the per-minute Average target tracking uses.
        assert metric_names(doc) == ["CallsStarted", "CallsEnded"]


def metric_names(doc: dict[str, Any]) -> list[str]:
    return [metric["Name"] for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]


def test_gauge_on_change_when_asked() -> None:
    lines = Lines()
    m = metrics(lines, gauge_on_change=True)
    m.on_change(1)
    assert metric_names(lines.docs[0]) == ["ActiveCalls", "CallsStarted", "CallsEnded"]
    assert lines.docs[0]["ActiveCalls"] == 1


async def test_counters_count_since_the_previous_line() -> None:
    lines = Lines()
    m = metrics(lines, min_interval_s=0.0)
    m.on_change(1)
    m.on_change(2)
    m.on_change(1)
    m.on_change(0)
    assert [(d["ActiveCalls"], d["CallsStarted"], d["CallsEnded"]) for d in lines.docs] == [
        (1, 1, 0), (2, 1, 0), (1, 0, 1), (0, 0, 1),
    ]
    m.emit()
    assert (lines.docs[-1]["CallsStarted"], lines.docs[-1]["CallsEnded"]) == (0, 0)


async def test_periodic_line() -> None:
    lines = Lines()
    m = metrics(lines, period_s=0.1)
    m.start()
    await asyncio.sleep(0.35)
    m.stop()
    count = len(lines.raw)
    assert 3 <= count <= 5  # one at start, then one per period
    await asyncio.sleep(0.25)
    assert len(lines.raw) == count  # stopped
    assert all(d["ActiveCalls"] == 0 for d in lines.docs)
    assert all(metric_names(d) == ["ActiveCalls", "CallsStarted", "CallsEnded"] for d in lines.docs)


@pytest.mark.parametrize("period_s", [60.0, 0.1])
def test_periodic_points_fall_mid_period(period_s: float) -> None:
    """One gauge point per CloudWatch period: scheduled mid-period on the wall clock, so no drift, no doubles."""
    m = CallMetrics("VoiceOps", "prod", period_s=period_s, write=Lines())
    for _ in range(20):
        delay = m._until_next_slot()
        assert 0 < delay <= period_s
        phase = (time.time() + delay) % period_s
        assert abs(phase - period_s / 2) < period_s * 0.05


async def test_from_bridge_state() -> None:
    lines = Lines()
    state = BridgeState()
    m = metrics(lines, min_interval_s=0.0)
    state.on_change.append(m.on_change)

    class Call:
        async def end_politely(self, reason: str) -> None: ...

    call = Call()
    state.add(call)
    state.discard(call)
    assert [(d["ActiveCalls"], d["CallsStarted"], d["CallsEnded"]) for d in lines.docs] == [(1, 1, 0), (0, 0, 1)]


def test_on_change_only_mode_off() -> None:
    lines = Lines()
    m = metrics(lines, emit_on_change=False)
    m.on_change(1)
    assert lines.raw == []
    m.emit()
    assert lines.docs[0]["ActiveCalls"] == 1


def test_a_failing_writer_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken(line: str) -> None:
        raise OSError("stdout closed")

    m = CallMetrics("VoiceOps", "prod", write=broken)
    m.on_change(1)  # must not raise into the call path
    assert "could not write the metrics line" in caplog.text
    assert m.started == 1  # kept for the next successful line


def test_default_writer_is_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    CallMetrics("VoiceOps", "dev").emit()
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    check_emf(json.loads(out))
