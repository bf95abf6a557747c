"""A whole call through the real bridge process (`manage.py runbridge`) with tracing on: the call's lifecycle
steps arrive at the collector as one trace, with no per-frame spans and no phone numbers; the last spans
are exported at stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from django.db import connection
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from calls.models import AgentConfig, Tool
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script, ToolCall
from tests.bridge_tools.conftest import TlsFiles, tls_files, tool_server  # noqa: F401 - shared fixtures
from tests.e2e.conftest import (  # noqa: F401
    agent,
    bridge_env,
    engine,
    fresh_sim,
    only_realtime,
    orm_in_async_tests,
    sim,
)
from tests.e2e.test_call_flow import open_stream
from tests.servers import ServerProcess, run_bridge
from tests.tracing.otlp_collector import FakeCollector, running_collector

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CALLER = "+14155550100"  # what open_stream sends as From


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    with running_collector() as collector:
        yield collector


@pytest.fixture
def traced_bridge(sim: RealtimeSimulator, tls_files: TlsFiles, collector: FakeCollector,  # noqa: F811
                  django_db_blocker, tmp_path) -> Iterator[ServerProcess]:
    env = bridge_env(
        # "all": the test posts the Twilio webhook to this same process, which a bridge-only process refuses
        # (its host serves /media-stream and health only); the service name is the bridge's all the same.
        sim, tls_files, VOICEOPS_COMPONENT="all", OTEL_SERVICE_NAME="voiceops-bridge", VOICEOPS_STAGE="dev",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="600000",  # nothing leaves before the stop: the stop must flush
    )
    with django_db_blocker.unblock(), run_bridge(tmp_path, **env) as server:
        yield server


@only_realtime  # the spans are the bridge's, whichever the engine
async def test_a_call_is_one_trace_of_lifecycle_steps(
    traced_bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig,  # noqa: F811
    collector: FakeCollector, tool_server,  # noqa: F811
) -> None:
    tool = await asyncio.to_thread(
        Tool.objects.create, name="lookup_order", description="Look up an order.", url=tool_server.url("/echo"),
        timeout_s=3, parameters={"type": "object", "properties": {"order": {"type": "string"}}},
    )
    await asyncio.to_thread(agent.tools.add, tool)
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=300), ToolCall("lookup_order", {"order": "A-17"}),
                                     Reply("It ships today.", audio_ms=300)])
    params, call = await open_stream(traced_bridge)
    async with call:
        await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
        before = len(call.result.agent_audio)
        await call.say(audio.speech_like(600) + audio.silence(800))
        await call.wait_for_reply(since_bytes=before, start_timeout=15, quiet_ms=400, finish_timeout=10)
    await asyncio.sleep(0.5)  # the bridge records the hang-up
    assert collector.spans() == []  # batched: nothing exported yet

    traced_bridge.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(traced_bridge.proc.wait, 30)

    spans = collector.spans()
    assert {s.service for s in spans} == {"voiceops-bridge"}
    by_name = {s.name: s for s in spans}
    start = by_name["call.start"]
    webhook = by_name["POST twilio/voice"]
    # The webhook passed its traceparent in the stream's parameters: the call continues the webhook's trace.
    assert start.trace_id == webhook.trace_id and start.parent_span_id == webhook.span_id
    assert start.attributes["call_sid"] == params["CallSid"]
    in_call = [s for s in spans if s.trace_id == start.trace_id]
    names = {s.name for s in in_call}
    assert {"call.start", "openai.connect", "tool.lookup_order", "call.end"} <= names
    assert by_name["openai.connect"].kind == SpanProto.SPAN_KIND_CLIENT
    assert by_name["openai.connect"].parent_span_id == start.span_id
    assert by_name["tool.lookup_order"].attributes["tool.ok"] is True
    assert by_name["call.end"].parent_span_id == start.span_id
    assert by_name["call.end"].attributes["end_reason"] == "caller_hangup"
    if connection.vendor == "postgresql":  # SQLite is not instrumented
        # Database work at stream start and end hangs under the call, not in traces of its own.
        assert any(s.attributes.get("db.system") == "postgresql" for s in in_call)
    # Lifecycle only, and background work (the event sink's batched writes) in no call's trace: the only
    # root is the webhook request, the call hanging under it. One span per audio frame would be hundreds.
    assert sorted(s.name for s in spans if not s.parent_span_id) == ["POST twilio/voice"]
    assert len(spans) < 40, sorted(s.name for s in spans)
    assert not any(CALLER[1:].encode() in s.raw for s in spans)
