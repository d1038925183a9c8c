"""Optional OpenTelemetry spans: one per LLM call, sandbox evaluation and search expansion.

Off by default and free when off (one ``None`` check per call). ``enable`` (or ``cwm --otel console|otlp``)
installs a tracer; spans carry the structlog context (``run_id``, ...) as attributes, so a trace backend
groups them by run exactly as the run's trace file does. Needs the ``otel`` extra.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import structlog

from cwm.errors import CwmError

P = ParamSpec("P")
R = TypeVar("R")


class _State:
    tracer: Any = None


_state = _State()  # process-wide like logging's configuration: which exporter this process reports to


def enable(provider: Any = None, exporter: str | None = None) -> None:
    """Record spans with ``provider`` (an SDK TracerProvider), or build one exporting to ``exporter``
    (``console`` or ``otlp``, the latter configured by the standard OTEL_EXPORTER_OTLP_* variables)."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        raise CwmError("OpenTelemetry is not installed", hint="pip install 'cwm[otel]'") from exc
    if provider is None:
        provider = TracerProvider()
        if exporter == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise CwmError("the OTLP exporter is not installed",
                               hint="pip install opentelemetry-exporter-otlp-proto-http") from exc
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    _state.tracer = provider.get_tracer("cwm")


def disable() -> None:
    _state.tracer = None


def traced(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Wrap an async function in a span named ``name`` while telemetry is enabled."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            tracer = _state.tracer
            if tracer is None:
                return await fn(*args, **kwargs)
            attrs = {f"cwm.{k}": v for k, v in structlog.contextvars.get_contextvars().items()
                     if isinstance(v, (str, int, float, bool))}
            with tracer.start_as_current_span(name, attributes=attrs):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate
