"""Prometheus metrics for an intake server: what :class:`~ndintake.server.handler.Exchange` reports.

:class:`Metrics` defines the metrics (with ``prometheus-client``, imported only
when one is made) and records what the sans-I/O handler tells it. Pass one to
``Intake(metrics=Metrics())`` (``IntakeASGI``, ``IntakeWSGI``, the aiohttp
adapter): the handler then answers ``GET /metrics`` in Prometheus's text
format. With ``metrics=None`` (the default) nothing is recorded and nothing is
imported.

Multi-process: when ``PROMETHEUS_MULTIPROC_DIR`` is set before
``prometheus_client`` is first imported, every process writes its values
there and ``/metrics`` in any of them reports the sum over all of them
(prometheus-client's multiprocess mode; ``ndintake serve --workers N`` sets it
up). Gauges then add up the live processes only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..sinks.hooks import Batch

#: Buckets of the request duration histogram, in seconds (the default
#: timeout is 30 s).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Buckets of the sink latency histogram, in seconds (a broker's ack timeout is 5 s).
SINK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Why a request was refused or stopped (the ``reason`` label of ``ndintake_refusals_total``).
REASONS = (
    "shutting_down",  # 503 while shutting down
    "auth",  # 401 / 403
    "rate_limit",  # 429, up front or on a batch
    "bad_request",  # method or content type refused
    "admission",  # 503: no decoder slot freed in time
    "too_large",  # 413: body too large after decompression
    "decode_error",  # the content coding could not be decoded (or is unknown)
    "invalid_body",  # a fatal error in the body itself (metadata missing or bad)
    "queue_full",  # 503: the sink is full, slow or down
    "sink_error",  # 500: the sink raised
    "timeout",  # 503 (prodlytics 408): the request took too long
    "client_closed",  # the client went away mid-body
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_dir() -> str | None:
    """Where prometheus-client's multiprocess mode keeps its files, if it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The intake server's Prometheus metrics (all named ``ndintake_...``).

    ``registry``: where the metrics are registered (a new
    :class:`~prometheus_client.CollectorRegistry` by default, so several apps
    in one process do not collide; pass ``prometheus_client.REGISTRY`` to have
    them in the process's default one). :meth:`render` gives the text
    exposition of that registry, or in multiprocess mode of every process's
    values.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ndintake_http_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.duration = Histogram(
            "ndintake_http_request_duration_seconds",
            "Time from a request's headers to its answer, by route",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "ndintake_http_requests_in_flight", "HTTP requests being handled", registry=r, multiprocess_mode="livesum"
        )
        self.waiting = Gauge(
            "ndintake_admission_waiting",
            "Intake requests waiting for a decoder slot (max_concurrent_decoders)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.accepted = Counter(
            "ndintake_events_accepted", "Events taken by the sink, by profile and kind", ["profile", "kind"], registry=r
        )
        self.invalid = Counter(
            "ndintake_events_invalid", "Lines or items refused with an error, by profile", ["profile"], registry=r
        )
        self.dropped = Counter(
            "ndintake_events_dropped",
            "Valid events discarded without an error (as APM Server does), by profile",
            ["profile"],
            registry=r,
        )
        self.decoded = Counter(
            "ndintake_decoded_bytes",
            "Body bytes after decompression, by the request's Content-Encoding",
            ["encoding"],
            registry=r,
        )
        self.refusals = Counter(
            "ndintake_refusals", "Requests refused or stopped early, by reason", ["reason"], registry=r
        )
        self.sink_latency = Histogram(
            "ndintake_sink_latency_seconds",
            "Time the sink took to take one step's batches (acks included)",
            buckets=SINK_BUCKETS,
            registry=r,
        )
        self.sink_failures = Counter(
            "ndintake_sink_failures",
            "Deliveries the sink refused (queue_full, unavailable) or failed (error)",
            ["reason"],
            registry=r,
        )
        for reason in REASONS:  # every reason shows, at 0, from the start
            self.refusals.labels(reason)

    # -- what the handler reports --------------------------------------------------

    def answered(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.duration.labels(route).observe(seconds)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def delivered(self, batches: Iterable[Batch]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for batch in batches:
            for event in batch:
                key = (batch.profile, event.kind)
                counts[key] = counts.get(key, 0) + 1
        for (profile, kind), count in counts.items():
            self.accepted.labels(profile, kind).inc(count)

    def body_done(self, profile: str, encoding: str, decoded: int, invalid: int, dropped: int) -> None:
        if decoded:
            self.decoded.labels(encoding).inc(decoded)
        if invalid:
            self.invalid.labels(profile).inc(invalid)
        if dropped:
            self.dropped.labels(profile).inc(dropped)

    def sink_took(self, seconds: float, failure: str | None = None) -> None:
        self.sink_latency.observe(seconds)
        if failure is not None:
            self.sink_failures.labels(failure).inc()

    # -- the exposition ------------------------------------------------------------

    def render(self) -> bytes:
        """The metrics in Prometheus's text format (all processes' in multiprocess mode)."""
        from prometheus_client import CollectorRegistry, generate_latest

        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    """Multiprocess mode: forget a process's live gauges (it exited)."""
    path = multiprocess_dir()
    if path is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
