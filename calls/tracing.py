"""OpenTelemetry tracing for the web and bridge processes, exported over OTLP to the ADOT collector sidecar,
which forwards to AWS X-Ray. Off unless the environment asks for it (see `tracing_requested`).

The webhook Lambda is traced by the ADOT Lambda layer instead (`AWS_LAMBDA_EXEC_WRAPPER=/opt/otel-instrument`);
if such an auto-instrumentation already installed a tracer provider, `configure_tracing` leaves it alone.

The bridge is traced per call lifecycle step (stream start, OpenAI connect, tool calls, call end) through
`call_span`, never per audio frame: the WebSocket path has no automatic instrumentation at all.
Span attributes never carry phone numbers (masked) or secrets (dropped); see `safe_attributes`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource, get_aggregated_resources
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from voiceops import redact
from voiceops.redact import mask_phone

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

TRACER_NAME = "voiceops"
# Where the ADOT collector sidecar listens (gRPC); the CDK app sets OTEL_EXPORTER_OTLP_ENDPOINT to this.
DEFAULT_PROTOCOL = "grpc"
# Load balancer health checks would otherwise make a trace every few seconds per task.
DEFAULT_EXCLUDED_URLS = "healthz,readyz"
MAX_ATTRIBUTE_LENGTH = 256
FLUSH_TIMEOUT_MS = 3000

# Scopes whose root spans (no request or call around them) are background polling, not work: channels_redis
# blocks on BZPOPMIN every few seconds per consumer, and connection health checks query the database.
_ORPHAN_NOISE_SCOPES = frozenset(
    {"opentelemetry.instrumentation.redis", "opentelemetry.instrumentation.psycopg"}
)

# Attribute-name parts that mean "a phone number" (masked) or "a secret" (dropped). Names are split on . _ -
_PHONE_NAME_PARTS = frozenset({"phone", "caller", "callee", "from", "to", "number", "msisdn"})
_SECRET_NAME_PARTS = frozenset(
    {"token", "secret", "password", "passwd", "key", "apikey", "authorization", "auth", "signature",
     "credential", "credentials", "cookie"}
)
_NAME_SPLIT = re.compile(r"[._\-]")

_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
_instrumentors: list[Any] = []
_exit_hook_registered = False


# --- configuration ------------------------------------------------------------------------------------
def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment asks for traces: an OTLP endpoint is set, or OTEL_TRACES_EXPORTER names
    `otlp` or `console`. OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(env)
    if "none" in exporters:
        return False
    if exporters:
        return bool(exporters & {"otlp", "console"})
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure_tracing(*, span_processor: SpanProcessor | None = None) -> bool:
    """Install a tracer provider that exports to X-Ray through the ADOT collector, and instrument Django,
    psycopg, redis and botocore (each only if its instrumentation package is installed).

    Returns True when tracing is on. Never raises: a broken tracing setup must not stop calls.
    Call it before Django builds its request handler (the Django instrumentation adds a middleware).
    `span_processor` replaces the batching OTLP export the environment describes (tests).
    """
    global _provider, _tracer, _exit_hook_registered
    with _lock:
        if _provider is not None or _tracer is not None:
            return True
        if span_processor is None and not tracing_requested():
            return False
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            # Auto-instrumentation (opentelemetry-instrument, the ADOT Lambda layer) got here first: use its
            # provider for call spans, and leave its exporters and instrumentation as they are.
            _tracer = trace.get_tracer(TRACER_NAME)
            log.info("tracing: using the tracer provider installed by auto-instrumentation")
            return True
        try:
            provider = _build_provider(span_processor)
        except Exception:
            log.exception("tracing: setup failed; running without traces")
            return False
        trace.set_tracer_provider(provider)
        _set_propagators()
        _provider, _tracer = provider, provider.get_tracer(TRACER_NAME)
        _instrument_libraries(provider)
        if not _exit_hook_registered:
            # Instead of the SDK's own exit hook, which can wait 10 s and more on a missing collector.
            atexit.register(shutdown_tracing)
            _exit_hook_registered = True
        log.info("tracing on: service %s, instrumented %s", provider.resource.attributes.get("service.name"),
                 ", ".join(type(i).__name__ for i in _instrumentors) or "nothing")
        return True


def tracing_enabled() -> bool:
    return _tracer is not None


def shutdown_tracing(timeout_ms: int = FLUSH_TIMEOUT_MS) -> None:
    """Export what is buffered (bounded by `timeout_ms`), stop exporting and remove the instrumentation.
    Runs at interpreter exit (daphne and runbridge both exit normally after SIGTERM and the drain)."""
    global _provider, _tracer
    with _lock:
        provider, _provider, _tracer = _provider, None, None
        for instrumentor in reversed(_instrumentors):
            with contextlib.suppress(Exception):
                instrumentor.uninstrument()
        _instrumentors.clear()
    if provider is None:
        return
    # The SDK's flush ignores its timeout, and a missing collector is retried for OTEL_EXPORTER_OTLP_TIMEOUT
    # (10 s): bound the wait here. Shutting down exports what is still queued.
    worker = threading.Thread(target=_shutdown_provider, args=(provider,), name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_ms / 1000)
    if worker.is_alive():
        log.warning("tracing: spans not exported within %d ms at stop; giving up on them", timeout_ms)


def _shutdown_provider(provider: TracerProvider) -> None:
    try:
        provider.shutdown()
    except Exception:
        log.exception("tracing: shutdown failed")


def _exporter_names(env: Mapping[str, str]) -> set[str]:
    return {name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()}


def _build_provider(span_processor: SpanProcessor | None) -> TracerProvider:
    from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    provider = TracerProvider(resource=build_resource(), id_generator=AwsXRayIdGenerator(), shutdown_on_exit=False)
    if span_processor is not None:
        provider.add_span_processor(_DropOrphanNoise(span_processor))
        return provider
    for exporter in build_exporters():
        provider.add_span_processor(_DropOrphanNoise(BatchSpanProcessor(exporter)))
    return provider


def build_resource(environ: Mapping[str, str] | None = None) -> Resource:
    """service.name from OTEL_SERVICE_NAME, else from VOICEOPS_COMPONENT (`voiceops-bridge`, `voiceops-web`);
    deployment.environment from VOICEOPS_STAGE; on ECS, the task's own attributes (cluster, task, log group)
    so X-Ray can link traces to logs. OTEL_RESOURCE_ATTRIBUTES fills in the rest."""
    env = os.environ if environ is None else environ
    component = env.get("VOICEOPS_COMPONENT", "").strip()
    attributes: dict[str, str] = {
        "service.name": env.get("OTEL_SERVICE_NAME", "").strip()
        or (f"voiceops-{component}" if component and component != "all" else "voiceops"),
        "service.namespace": "voiceops",
    }
    stage = env.get("VOICEOPS_STAGE", "").strip()
    if stage:
        attributes["deployment.environment"] = stage
        attributes["deployment.environment.name"] = stage
    resource = Resource.create(attributes)
    if env.get("ECS_CONTAINER_METADATA_URI_V4"):
        from opentelemetry.sdk.extension.aws.resource.ecs import AwsEcsResourceDetector

        # The task metadata endpoint is local to the task; a failure only loses these attributes.
        resource = get_aggregated_resources([AwsEcsResourceDetector()], initial_resource=resource, timeout=3)
    return resource


def build_exporters(environ: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (default `otlp`). OTLP speaks gRPC unless
    OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL says `http/protobuf`; the exporters read their endpoint, headers and
    timeout from the standard OTEL_EXPORTER_OTLP_* variables themselves. Creating them opens no connection."""
    env = os.environ if environ is None else environ
    names = _exporter_names(env) or {"otlp"}
    exporters: list[SpanExporter] = []
    if "otlp" in names:
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or DEFAULT_PROTOCOL
        ).strip().lower()
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            exporters.append(GrpcExporter())
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            exporters.append(HttpExporter())
        else:
            raise ValueError(f"unsupported OTLP protocol {protocol!r} (use grpc or http/protobuf)")
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporters.append(ConsoleSpanExporter())
    return exporters


def _set_propagators() -> None:
    """W3C trace context and baggage, plus X-Ray's own header (what the ALB and Lambda speak).
    An explicit OTEL_PROPAGATORS was already applied by the API at import; keep it."""
    if os.environ.get("OTEL_PROPAGATORS"):
        return
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.propagators.aws import AwsXRayPropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator(), AwsXRayPropagator()])
    )


def _instrument_libraries(provider: TracerProvider) -> None:
    excluded_urls = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or DEFAULT_EXCLUDED_URLS
    candidates: list[tuple[str, str, dict[str, Any]]] = [
        ("opentelemetry.instrumentation.django", "DjangoInstrumentor", {"excluded_urls": excluded_urls}),
        # Statements only, never their parameters (phone numbers and transcripts are parameters).
        ("opentelemetry.instrumentation.psycopg", "PsycopgInstrumentor", {"capture_parameters": False}),
        ("opentelemetry.instrumentation.redis", "RedisInstrumentor", {}),
        ("opentelemetry.instrumentation.botocore", "BotocoreInstrumentor", {}),
    ]
    for module_name, class_name, options in candidates:
        try:
            module = __import__(module_name, fromlist=[class_name])
        except ImportError:
            continue  # that instrumentation is not installed in this image
        instrumentor = getattr(module, class_name)()
        try:
            instrumentor.instrument(tracer_provider=provider, **options)
        except Exception:
            log.exception("tracing: %s failed; continuing without it", class_name)
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            _instrumentors.append(instrumentor)


class _DropOrphanNoise(SpanProcessor):
    """Passes spans on to `inner`, except root spans of the database and Redis instrumentations: with no
    request or call around them they are background polling, and would each become an X-Ray trace."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Any) -> None:
        self.inner._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if span.parent is None and scope is not None and scope.name in _ORPHAN_NOISE_SCOPES:
            return
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# --- call spans -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def call_span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: Span | None = None, **attributes: Any
) -> Iterator[Span]:
    """A span around one step of a call's lifecycle (`call.start`, `openai.connect`, `tool.<name>`,
    `call.end`), current for what runs inside it (database queries become its children).

    When tracing is off it yields a non-recording span at the cost of one check, so callers may
    `span.set_attribute(...)` unconditionally. `parent` links a later step to the call's first span:
    the steps of one call run in different handlers, so no single `with` can enclose the whole call.
    Attributes pass through `safe_attributes`. An exception marks the span as an error (its message
    scrubbed) and propagates; cancellation (the call ended) is recorded as such, not as an error."""
    tracer = _tracer
    if tracer is None:
        yield INVALID_SPAN
        return
    context = trace.set_span_in_context(parent) if parent is not None else None
    with tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=safe_attributes(attributes),
        record_exception=False, set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            _record_error(span, exc)
            raise
        except BaseException:
            # asyncio.CancelledError and friends: the call ended while this step ran.
            span.set_attribute("voiceops.cancelled", True)
            raise


def remote_parent(traceparent: str) -> Span | None:
    """The span a W3C `traceparent` names (e.g. the webhook's, passed as a stream parameter), to continue its
    trace; None when there is none or it is malformed."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent:
        return None
    span = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    return span if span.get_span_context().is_valid else None


def _record_error(span: Span, exc: BaseException) -> None:
    import traceback

    kind = type(exc).__qualname__
    span.record_exception(
        exc,
        attributes={
            "exception.message": scrub_text(str(exc)),
            "exception.stacktrace": scrub_text("".join(traceback.format_exception(exc)), limit=4096),
        },
    )
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, kind))


# --- attribute hygiene ----------------------------------------------------------------------------------
def scrub_text(text: str, limit: int = MAX_ATTRIBUTE_LENGTH) -> str:
    """Masks E.164 numbers and bearer/OpenAI keys in free text, and caps its length."""
    return redact.scrub_text(text, limit)


def safe_attributes(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Span attributes fit for X-Ray: secrets by name are dropped, phone numbers by name are masked,
    E.164 numbers inside any string are masked, None is dropped, other values become short strings."""
    clean: dict[str, AttributeValue] = {}
    for name, value in attributes.items():
        if value is None:
            continue
        parts = set(_NAME_SPLIT.split(name.lower()))
        if parts & _SECRET_NAME_PARTS:
            continue
        if parts & _PHONE_NAME_PARTS:
            clean[name] = [mask_phone(v) for v in value] if isinstance(value, list | tuple) else mask_phone(value)
        elif isinstance(value, bool | int | float):
            clean[name] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            clean[name] = [scrub_text(v) for v in value]
        else:
            clean[name] = scrub_text(str(value))
    return clean
