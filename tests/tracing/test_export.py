"""The real OTLP/gRPC export path, as on ECS: spans reach a collector on loopback (a stand-in for the ADOT
sidecar at 127.0.0.1:4317), and a missing collector never holds the process up at stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calls import tracing
from tests.tracing.otlp_collector import FakeCollector, running_collector

ROOT = Path(__file__).resolve().parents[2]
# A process that traces one step and exits normally, as daphne and runbridge do after SIGTERM.
ONE_SPAN_AND_EXIT = """
import time
from calls import tracing
assert tracing.configure_tracing()
with tracing.call_span("call.end", end_reason="caller_hangup"):
    pass
print(time.time(), flush=True)  # the script is done: what follows is the interpreter's exit
"""


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
    assert span.attributes == {"call_sid": "CA1", "caller": "+1415•••0123"}
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


def run_and_exit(endpoint: str) -> float:
    """Runs the script in a fresh interpreter; returns how long its exit took (after the script's last line),
    so that start-up time on a busy machine does not count."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(
        DJANGO_SETTINGS_MODULE="voiceops.settings", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="600000",  # no periodic export: only the exit can send the span
    )
    done = subprocess.run([sys.executable, "-c", ONE_SPAN_AND_EXIT], cwd=ROOT, env=env, check=True, timeout=60,
                          capture_output=True, text=True)
    return time.time() - float(done.stdout.split()[-1])


def test_a_normal_exit_exports_the_last_spans(collector: FakeCollector) -> None:
    run_and_exit(collector.endpoint)

    assert [s.name for s in collector.spans()] == ["call.end"]


def test_a_normal_exit_with_no_collector_is_not_held_up() -> None:
    with_collector_missing = run_and_exit(f"http://127.0.0.1:{closed_port()}")

    # At most FLUSH_TIMEOUT_MS (plus the interpreter's own teardown); the SDK's own exit hook would retry for 10 s.
    assert with_collector_missing < 1.5 + tracing.FLUSH_TIMEOUT_MS / 1000
