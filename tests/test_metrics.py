"""GET /metrics (parsed as Prometheus text), GET /healthz, and the one log line per non-202 answer."""

from __future__ import annotations

import glob
import gzip
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ndintake.server.metrics import REASONS, Metrics
from ndintake.asgi import IntakeASGI
from ndintake.server import READ, Admit, Authenticator, Intake, Response
from ndintake.wsgi import IntakeWSGI
from ndintake import Limits

from httpkit import NDJSON, FakeClock, Recorder, body_of, call_asgi, call_wsgi, drive, request
from servekit import LOOPBACK, ServeProcess, get, post

ERRORS = body_of("intake-v2/errors.ndjson")  # 5 errors
EVENTS = body_of("intake-v2/events.ndjson")  # events of 4 kinds
INVALID = body_of("intake-v2/invalid-event.ndjson")
TOKEN = {**NDJSON, "authorization": "Bearer t"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_asgi(app: IntakeASGI) -> Samples:
    reply = call_asgi(app, method="GET", path="/metrics")
    assert reply.status == 200
    assert reply.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    return parse(reply.body.decode())


def test_metrics_after_known_traffic() -> None:
    sink = Recorder()
    app = IntakeASGI(sink=sink, metrics=Metrics(), authenticator=Authenticator(secret_token="t"))
    assert call_asgi(app, body=gzip.compress(ERRORS), headers={**TOKEN, "content-encoding": "gzip"}).status == 202
    assert call_asgi(app, body=EVENTS, headers=TOKEN).status == 202
    assert call_asgi(app, body=INVALID, headers=TOKEN).status == 400
    assert call_asgi(app, body=ERRORS, headers=NDJSON).status == 401
    assert call_asgi(app, body=ERRORS, headers={**TOKEN, "content-encoding": "gzip"}).status == 400  # not gzip
    assert call_asgi(app, method="GET", path="/nowhere").status == 404
    s = scrape_asgi(app)

    assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="202") == 2
    assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="400") == 2
    assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="401") == 1
    assert value(s, "ndintake_http_requests_total", route="other", status="404") == 1
    assert value(s, "ndintake_http_request_duration_seconds_count", route="/intake/v2/events") == 5
    kinds = Counter(event.kind for event in sink.events)
    assert kinds["error"] == 5 + 1 and len(kinds) == 4
    for kind, count in kinds.items():
        assert value(s, "ndintake_events_accepted_total", profile="apm", kind=kind) == count
    accepted = sum(v for (name, _), v in s.items() if name == "ndintake_events_accepted_total")
    assert accepted == len(sink.events)
    assert value(s, "ndintake_events_invalid_total", profile="apm") == 1
    assert value(s, "ndintake_decoded_bytes_total", encoding="gzip") == len(ERRORS)
    assert value(s, "ndintake_decoded_bytes_total", encoding="none") == len(EVENTS) + len(INVALID)
    assert value(s, "ndintake_refusals_total", reason="auth") == 1
    assert value(s, "ndintake_refusals_total", reason="decode_error") == 1
    assert {labels[0][1] for (name, labels) in s if name == "ndintake_refusals_total"} == set(REASONS)
    assert value(s, "ndintake_sink_latency_seconds_count") == 2 + 1  # the steps that delivered
    assert value(s, "ndintake_http_requests_in_flight") == 1  # the scrape itself
    assert value(s, "ndintake_admission_waiting") == 0


def test_sink_refusals_and_too_large_bodies() -> None:
    metrics = Metrics()
    app = IntakeASGI(sink=Recorder(full_from=0), metrics=metrics)
    assert call_asgi(app, body=ERRORS, headers=NDJSON).status == 503
    small = IntakeASGI(metrics=metrics, limits={"apm": Limits(max_body_size=100)})
    assert call_asgi(small, body=ERRORS, headers=NDJSON).status == 413
    failing = IntakeASGI(sink=Recorder(fail_with=RuntimeError("boom")), metrics=metrics)
    assert call_asgi(failing, body=ERRORS, headers=NDJSON).status == 500
    s = scrape_asgi(app)
    assert value(s, "ndintake_refusals_total", reason="queue_full") == 1
    assert value(s, "ndintake_refusals_total", reason="too_large") == 1
    assert value(s, "ndintake_refusals_total", reason="sink_error") == 1
    assert value(s, "ndintake_sink_failures_total", reason="queue_full") == 1
    assert value(s, "ndintake_sink_failures_total", reason="error") == 1
    assert value(s, "ndintake_events_accepted_total", profile="apm", kind="error") == 0


def test_waiting_for_admission_is_a_gauge_and_a_refusal() -> None:
    metrics = Metrics()
    intake = Intake(metrics=metrics, max_concurrent_decoders=1)
    exchange = intake.exchange(request(headers=NDJSON))
    assert isinstance(exchange.step(), Admit)
    assert metrics.waiting._value.get() == 1
    answer = exchange.step(False)
    assert isinstance(answer, Response) and answer.status == 503
    assert metrics.waiting._value.get() == 0
    assert parse(metrics.render().decode())[("ndintake_refusals_total", (("reason", "admission"),))] == 1
    # an exchange dropped while it waits does not leave the gauge up
    exchange = intake.exchange(request(headers=NDJSON))
    exchange.step()
    exchange.timed_out()
    assert metrics.waiting._value.get() == 0


def test_the_wsgi_app_and_the_sans_io_handler_record_too() -> None:
    metrics = Metrics()
    app = IntakeWSGI(metrics=metrics)
    assert call_wsgi(app, body=ERRORS, headers=NDJSON).status == 202
    outcome = drive(Intake(metrics=metrics), request(headers=NDJSON), [EVENTS])
    assert outcome.response.status == 202
    s = parse(call_wsgi(app, method="GET", path="/metrics").body.decode())
    assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="202") == 2


def test_no_metrics_no_route_and_nothing_imported() -> None:
    assert call_asgi(IntakeASGI(), method="GET", path="/metrics").status == 404
    assert Intake().metrics is None
    outcome = drive(Intake(), request(headers=NDJSON), [ERRORS])
    assert outcome.response.status == 202


# -- /healthz -----------------------------------------------------------------------


class Flaky:
    healthy = True

    def __call__(self, batch: Any) -> None:
        pass


def test_healthz_transitions() -> None:
    sink = Flaky()
    app = IntakeASGI(sink=sink)
    ready = call_asgi(app, method="GET", path="/healthz")
    assert (ready.status, ready.json) == (200, {"ready": True})
    sink.healthy = False
    down = call_asgi(app, method="GET", path="/healthz")
    assert (down.status, down.json) == (503, {"ready": False, "reason": "sink unavailable"})
    sink.healthy = True
    assert call_asgi(app, method="GET", path="/healthz").status == 200
    app.begin_shutdown()
    draining = call_asgi(app, method="GET", path="/healthz")
    assert (draining.status, draining.json) == (503, {"ready": False, "reason": "server is shutting down"})
    assert call_asgi(IntakeASGI(), method="POST", path="/healthz").status == 405


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@pytest.mark.e2e
def test_a_broker_sink_that_cannot_reach_its_broker_is_not_healthy() -> None:
    import asyncio

    from ndintake.sinks import open_sink

    async def main() -> tuple[bool, bool, int]:
        down = open_sink(f"redis://{LOOPBACK}:{_closed_port()}?stream=ndintake-healthz")
        up = open_sink(f"redis://{LOOPBACK}:6379?stream=ndintake-healthz&maxlen=10")
        await down.start()
        await up.start()
        try:
            return down.healthy, up.healthy, drive(Intake(sink=down), request("GET", "/healthz")).response.status
        finally:
            await down.aclose()
            await up.aclose()

    down, up, refused = asyncio.run(main())
    assert (down, up, refused) == (False, True, 503)


# -- logs -----------------------------------------------------------------------------


def test_every_non_202_answer_is_logged_exactly_once(caplog: pytest.LogCaptureFixture) -> None:
    app = IntakeASGI(metrics=Metrics())
    with caplog.at_level("INFO", logger="ndintake.server"):
        assert call_asgi(app, body=INVALID, headers=NDJSON).status == 400
        assert call_asgi(app, body=ERRORS, headers=NDJSON).status == 202
        assert call_asgi(app, method="GET", path="/metrics").status == 200
    records = [r for r in caplog.records if r.name == "ndintake.server"]
    assert len(records) == 1
    (record,) = records
    assert (record.route, record.client, record.status, record.accepted) == (  # type: ignore[attr-defined]
        "/intake/v2/events",
        "127.0.0.1",
        400,
        1,
    )
    assert record.error.startswith("validation error")  # type: ignore[attr-defined]
    assert record.getMessage().startswith("/intake/v2/events 127.0.0.1: 400, 1 accepted: validation error")


# -- ndintake serve ----------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_with_two_workers_counts_add_up_and_logs_are_json() -> None:
    server = ServeProcess("--workers", "2", "--sink", "null", "--log-format", "json", log_level="info")
    try:
        gzipped = gzip.compress(ERRORS)
        for _ in range(24):  # a new connection each: both workers take some
            assert post(server.port, "/intake/v2/events", gzipped, {**NDJSON, "Content-Encoding": "gzip"})[0] == 202
        for _ in range(3):
            assert post(server.port, "/intake/v2/events", INVALID, NDJSON)[0] == 400
        time.sleep(0.2)
        for _ in range(4):  # whichever worker answers, it reports every worker's counts
            status, text = get(server.port, "/metrics")
            assert status == 200
            s = parse(text.decode())
            assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="202") == 24
            assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="400") == 3
            assert value(s, "ndintake_events_accepted_total", profile="apm", kind="error") == 24 * 5
            assert value(s, "ndintake_decoded_bytes_total", encoding="gzip") == 24 * len(ERRORS)
        # the request asking is in flight; the one before it, answered by the other worker,
        # may not have left the gauge yet on a loaded machine: it settles to 1
        deadline = time.monotonic() + 5
        while value(parse(get(server.port, "/metrics")[1].decode()), "ndintake_http_requests_in_flight") != 1:
            assert time.monotonic() < deadline, "requests in flight did not settle to the one asking"
            time.sleep(0.1)
        assert get(server.port, "/healthz") == (200, b'{"ready":true}')
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    logs = [line for line in server.lines if line.startswith("{")]
    records = [json.loads(line) for line in logs]  # every one parses
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert len(access) >= 24 + 3 + 4 + 1
    assert {"client", "method", "path", "status"} <= set(access[0])
    assert len({r["pid"] for r in access}) == 2  # both workers answered some
    refused = [r for r in records if r["logger"] == "ndintake.server" and r.get("status") == 400]
    assert len(refused) == 3
    assert refused[0]["route"] == "/intake/v2/events" and refused[0]["accepted"] == 1


@pytest.mark.e2e
def test_serve_no_metrics() -> None:
    server = ServeProcess("--sink", "null", "--no-metrics")
    try:
        assert get(server.port, "/metrics")[0] == 404
        assert get(server.port, "/healthz")[0] == 200
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()


def test_a_client_going_away_and_a_timeout_are_counted() -> None:
    metrics = Metrics()
    clock = FakeClock()
    intake = Intake(metrics=metrics, max_concurrent_decoders=None, timeout=1, clock=clock)
    gone = intake.exchange(request(headers=NDJSON))
    assert gone.step() is READ
    gone.step(ERRORS[:100])
    gone.abandon()
    slow = intake.exchange(request(headers=NDJSON))
    assert slow.step() is READ
    clock.advance(2)
    answer = slow.step(ERRORS[:100])
    assert isinstance(answer, Response) and answer.status == 503
    s = parse(metrics.render().decode())
    assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="499") == 1
    assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="503") == 1
    assert value(s, "ndintake_refusals_total", reason="client_closed") == 1
    assert value(s, "ndintake_refusals_total", reason="timeout") == 1


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_killed_mid_request_leave_no_gauge_behind_and_their_counts_stay() -> None:
    pattern = os.path.join(tempfile.gettempdir(), "ndintake-metrics-*")
    before = set(glob.glob(pattern))
    server = ServeProcess("--workers", "2", "--sink", "null")
    slow = socket.create_connection((LOOPBACK, server.port))
    try:
        for _ in range(4):
            assert post(server.port, "/intake/v2/events", ERRORS, NDJSON)[0] == 202
        slow.sendall(b"POST /intake/v2/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + ERRORS[:200])
        time.sleep(0.5)
        s = parse(get(server.port, "/metrics")[1].decode())
        assert value(s, "ndintake_http_requests_in_flight") == 2  # the slow upload and the scrape
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        (metrics_dir,) = set(glob.glob(pattern)) - before  # the supervisor's multiprocess directory
        assert any(name.startswith("counter_") for name in os.listdir(metrics_dir))
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(set(_children(server.proc.pid)) - set(workers)) < 2:
            time.sleep(0.1)
        time.sleep(1.0)  # the new workers listening
        s = parse(get(server.port, "/metrics")[1].decode())
        assert value(s, "ndintake_http_requests_in_flight") == 1  # the dead workers' gauges are gone
        assert value(s, "ndintake_http_requests_total", route="/intake/v2/events", status="202") == 4
        assert server.stop(signal.SIGTERM) == 0
        assert not os.path.exists(metrics_dir)  # the supervisor removed it
    finally:
        slow.close()
        server.kill()
