"""Fixtures for the tracing tests: a clean OpenTelemetry state per test and an in-memory exporter.

OpenTelemetry lets a process set its global tracer provider once; tests put the globals back afterwards
so each test starts as a fresh process would."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from calls import tracing

TRACING_ENV_PREFIXES = ("OTEL_", "VOICEOPS_COMPONENT", "VOICEOPS_STAGE", "ECS_CONTAINER_METADATA_URI")


def _reset_global_tracer_provider() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture(autouse=True)
def clean_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(TRACING_ENV_PREFIXES):
            monkeypatch.delenv(name)
    textmap = propagate.get_global_textmap()
    tracing.shutdown_tracing()
    _reset_global_tracer_provider()
    yield
    tracing.shutdown_tracing(timeout_ms=100)
    _reset_global_tracer_provider()
    propagate.set_global_textmap(textmap)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Tracing on, exporting synchronously into memory (no network, nothing batched)."""
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(span_processor=SimpleSpanProcessor(exporter)) is True
    return exporter
