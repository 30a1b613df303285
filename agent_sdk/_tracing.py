"""W3C Trace Context (``traceparent``) from the active OpenTelemetry span, when there is one.

OpenTelemetry is optional: without ``opentelemetry-api`` installed, or without a valid active
span, nothing is sent and nothing is recorded.
"""

from __future__ import annotations

try:  # pragma: no branch
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    _otel_trace = None  # type: ignore[assignment]


def current_traceparent() -> str | None:
    """``00-<trace id>-<span id>-<flags>`` for the active span, or None."""
    if _otel_trace is None:
        return None
    context = _otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def trace_id_of(traceparent: str) -> str:
    """The 32-hex trace id of a ``traceparent`` value."""
    return traceparent.split("-")[1]
