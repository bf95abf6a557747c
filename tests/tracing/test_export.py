"""The real OTLP/gRPC export path, as on ECS: spans reach a collector on loopback (a stand-in for the ADOT
sidecar at 127.0.0.1:4317), and a missing collector never holds the process up at stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.tracing.otlp_collector import FakeCollector, running_collector
from voiceops import tracing


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    with running_collector() as collector:
        yield collector


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_spans_reach_the_collector_with_xray_ids(collector: FakeCollector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("VOICEOPS_COMPONENT", "bridge")
    monkeypatch.setenv("VOICEOPS_STAGE", "dev")
    assert tracing.configure_tracing() is True

    with tracing.call_span("call.start", call_sid="CA1", caller="+14155550123"):
        pass
    tracing.shutdown_tracing()  # exports what is queued

    [span] = collector.spans()
    assert span.service == "voiceops-bridge"
    assert span.name == "call.start"
    assert span.attributes == {"call_sid": "CA1", "caller": "***23"}
    assert abs(int(span.trace_id[:8], 16) - time.time()) < 60  # X-Ray ids: epoch seconds first
    assert b"4155550123" not in span.raw
    [request] = collector.requests
    resource = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert resource["deployment.environment"] == "dev"


def test_a_missing_collector_does_not_hold_up_the_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert tracing.configure_tracing() is True
    with tracing.call_span("call.start"):
        pass

    started = time.monotonic()
    tracing.shutdown_tracing(timeout_ms=500)

    assert time.monotonic() - started < 2
