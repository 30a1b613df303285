"""Operations: Prometheus metrics, OpenTelemetry traces and the one log line per request.

Infrastructure like ``kit``: it imports no domain, and domains call it with one line where a
figure is born (a decision's effect, a batch of audit records). The request metrics, the request
log line and the trace context are set by ``middleware.ObservabilityMiddleware``.
"""
