"""configure_tracing: off by default, on when the environment names an exporter, X-Ray-ready when on."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from calls import tracing

INSTRUMENTORS = (DjangoInstrumentor, PsycopgInstrumentor, RedisInstrumentor, BotocoreInstrumentor)
DJANGO_OTEL_MIDDLEWARE = DjangoInstrumentor._opentelemetry_middleware
ADOT_SIDECAR = "http://127.0.0.1:4317"  # what the CDK app sets on ECS


def exporters_of(provider: TracerProvider) -> list[object]:
    """The exporters behind the provider's processors (SDK internals: there is no public accessor)."""
    found = []
    for processor in provider._active_span_processor._span_processors:
        inner = processor.inner
        assert isinstance(inner, BatchSpanProcessor)
        found.append(inner._batch_processor._exporter)
    return found


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ADOT_SIDECAR}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ADOT_SIDECAR}, False),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ADOT_SIDECAR}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ADOT_SIDECAR}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
    ],
)
def test_tracing_requested_reads_the_standard_variables(environ: dict[str, str], expected: bool) -> None:
    assert tracing.tracing_requested(environ) is expected


def test_off_without_environment_installs_nothing() -> None:
    middleware_before = list(settings.MIDDLEWARE)

    assert tracing.configure_tracing() is False

    assert not tracing.tracing_enabled()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert not any(cls().is_instrumented_by_opentelemetry for cls in INSTRUMENTORS)
    assert list(settings.MIDDLEWARE) == middleware_before
    with tracing.call_span("call.start", call_sid="CA1") as span:
        assert not span.is_recording()


def test_on_with_the_ecs_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ADOT_SIDECAR)
    monkeypatch.setenv("VOICEOPS_COMPONENT", "bridge")
    monkeypatch.setenv("VOICEOPS_STAGE", "prod")

    assert tracing.configure_tracing() is True

    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "voiceops-bridge"
    assert provider.resource.attributes["deployment.environment"] == "prod"
    assert isinstance(provider.id_generator, AwsXRayIdGenerator)
    [exporter] = exporters_of(provider)
    assert isinstance(exporter, GrpcExporter)
    # X-Ray trace ids start with the epoch seconds of the trace.
    trace_id_seconds = provider.id_generator.generate_trace_id() >> 96
    assert abs(trace_id_seconds - time.time()) < 60
    assert AwsXRayPropagator in {type(p) for p in propagate.get_global_textmap()._propagators}
    assert all(cls().is_instrumented_by_opentelemetry for cls in INSTRUMENTORS)
    assert settings.MIDDLEWARE[0] == DJANGO_OTEL_MIDDLEWARE
    assert tracing.configure_tracing() is True  # idempotent: still one middleware
    assert list(settings.MIDDLEWARE).count(DJANGO_OTEL_MIDDLEWARE) == 1


def test_shutdown_removes_the_instrumentation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ADOT_SIDECAR)
    assert tracing.configure_tracing() is True

    tracing.shutdown_tracing()

    assert not tracing.tracing_enabled()
    assert not any(cls().is_instrumented_by_opentelemetry for cls in INSTRUMENTORS)
    assert DJANGO_OTEL_MIDDLEWARE not in settings.MIDDLEWARE


def test_http_protocol_and_console_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")

    assert tracing.configure_tracing() is True

    assert [type(e) for e in exporters_of(trace.get_tracer_provider())] == [HttpExporter, ConsoleSpanExporter]


def test_a_bad_setting_leaves_tracing_off_instead_of_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ADOT_SIDECAR)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")

    assert tracing.configure_tracing() is False

    assert not tracing.tracing_enabled()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert not DjangoInstrumentor().is_instrumented_by_opentelemetry


def test_an_existing_auto_instrumentation_provider_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """As under the ADOT Lambda layer: the wrapper installed a provider before our code ran."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    theirs = TracerProvider()
    theirs.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(theirs)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ADOT_SIDECAR)

    assert tracing.configure_tracing() is True

    assert trace.get_tracer_provider() is theirs
    assert not DjangoInstrumentor().is_instrumented_by_opentelemetry  # theirs to instrument
    with tracing.call_span("call.start"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["call.start"]


@pytest.mark.parametrize(
    ("environ", "service_name"),
    [
        ({}, "voiceops"),
        ({"VOICEOPS_COMPONENT": "all"}, "voiceops"),
        ({"VOICEOPS_COMPONENT": "web"}, "voiceops-web"),
        ({"VOICEOPS_COMPONENT": "web", "OTEL_SERVICE_NAME": "custom"}, "custom"),
    ],
)
def test_service_name(environ: dict[str, str], service_name: str) -> None:
    assert tracing.build_resource(environ).attributes["service.name"] == service_name


def test_stage_and_extra_resource_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=voice")
    resource = tracing.build_resource({"VOICEOPS_COMPONENT": "web", "VOICEOPS_STAGE": "dev"})
    assert resource.attributes["deployment.environment"] == "dev"
    assert resource.attributes["service.namespace"] == "voiceops"
    assert resource.attributes["team"] == "voice"
