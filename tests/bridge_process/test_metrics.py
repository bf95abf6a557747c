"""The call metrics: CloudWatch Embedded Metric Format lines, on change (rate-limited) and once per period."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from bridge import metrics as bm
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


# --- the lifecycle metrics (CallStats), published with the periodic line --------------------------------------

EMF_UNITS = {"Count", "Milliseconds"}


def check_emf_spec(document: dict[str, Any]) -> None:
    """The EMF specification's rules for a document with value arrays: every dimension of every dimension set
    a string member of the root, every metric a number or an array of at most 100 numbers at the root, at most
    30 dimensions a set and 100 metrics a directive, and no other members in `_aws`."""
    meta = document["_aws"]
    assert set(meta) == {"Timestamp", "CloudWatchMetrics"}
    assert isinstance(meta["Timestamp"], int)
    for directive in meta["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert len(directive["Metrics"]) <= 100
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(document[name], str) and document[name]
        for metric in directive["Metrics"]:
            assert metric["Unit"] in EMF_UNITS
            value = document[metric["Name"]]
            if isinstance(value, list):
                assert 0 < len(value) <= 100 and all(isinstance(v, int | float) for v in value)
            else:
                assert isinstance(value, int | float)


def test_lifecycle_metrics_go_out_with_the_periodic_line_only() -> None:
    lines = Lines()
    stats = bm.CallStats()
    m = metrics(lines, stats=stats, min_interval_s=0.0)
    stats.count(bm.CALLS_ENDED, EndReason="caller_hangup")
    stats.count(bm.CALLS_ENDED, EndReason="caller_hangup")
    stats.count(bm.CALLS_ENDED, EndReason="upstream_error")
    stats.timing(bm.OPENAI_CONNECT_MS, 231.6, Engine="realtime")
    stats.timing(bm.OPENAI_CONNECT_MS, 180, Engine="live")
    stats.count(bm.BARGE_INS)
    stats.timing(bm.TIME_TO_FIRST_AGENT_AUDIO_MS, 900)
    stats.timing(bm.TIME_TO_FIRST_AGENT_AUDIO_MS, 1100)
    stats.count(bm.FRAMES_DROPPED, 3, Direction="agent")
    m.on_change(1)  # a change line: counters of starts/ends only
    assert len(lines.docs) == 1
    m.emit()
    docs = lines.docs[1:]
    for doc in docs:
        check_emf_spec(doc)
        assert doc["Stage"] == "prod" and doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "VoiceOps"
    by_dims = {tuple(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]): [] for doc in docs}
    for doc in docs:
        by_dims[tuple(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])].append(doc)
    assert set(by_dims) == {("Stage",), ("Stage", "Direction"), ("Stage", "EndReason"), ("Stage", "Engine")}
    plain = [doc for doc in by_dims[("Stage",)] if "BargeIns" in doc]
    assert len(plain) == 1 and plain[0]["BargeIns"] == 1 and plain[0]["TimeToFirstAgentAudioMs"] == [900, 1100]
    units = {m["Name"]: m["Unit"] for m in plain[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"BargeIns": "Count", "TimeToFirstAgentAudioMs": "Milliseconds"}
    ended = {doc["EndReason"]: doc["CallsEnded"] for doc in by_dims[("Stage", "EndReason")]}
    assert ended == {"caller_hangup": 2, "upstream_error": 1}
    connect = {doc["Engine"]: doc["OpenAIConnectMs"] for doc in by_dims[("Stage", "Engine")]}
    assert connect == {"realtime": [232], "live": [180]}
    (dropped,) = by_dims[("Stage", "Direction")]
    assert dropped["Direction"] == "agent" and dropped["FramesDropped"] == 3
    # Flushed: the next periodic line carries no lifecycle documents.
    count = len(lines.raw)
    m.emit()
    assert len(lines.raw) == count + 1


def test_more_than_100_timings_split_into_several_documents() -> None:
    lines = Lines()
    stats = bm.CallStats()
    m = metrics(lines, stats=stats)
    for ms in range(250):
        stats.timing(bm.REPLY_LATENCY_MS, ms)
    stats.count(bm.TOOL_ERRORS)
    m.emit()
    docs = lines.docs[1:]
    assert [len(doc["ReplyLatencyMs"]) for doc in docs] == [100, 100, 50]
    assert [doc.get("ToolErrors") for doc in docs] == [1, None, None]  # counted once
    assert [ms for doc in docs for ms in doc["ReplyLatencyMs"]] == list(range(250))
    for doc in docs:
        check_emf_spec(doc)


def test_stats_record_nothing_until_published() -> None:
    stats = bm.CallStats()
    stats.count(bm.BARGE_INS)
    stats.timing(bm.TOOL_LATENCY_MS, 5)
    assert stats.documents("VoiceOps", "dev", 0) == []
