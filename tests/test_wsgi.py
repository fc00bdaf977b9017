"""The WSGI app: parity with the ASGI app, reading wsgi.input, shutdown, real WSGI servers."""

from __future__ import annotations

import base64
import gzip
import http.client
import queue
import threading
import time
import zlib
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from ndintake.asgi import IntakeASGI
from ndintake.server import Authenticator, RateLimiter
from ndintake.wsgi import IntakeWSGI, request_from_environ, status_line

from httpkit import (
    NDJSON,
    Recorder,
    body_of,
    call_asgi,
    call_wsgi,
    call_wsgi_environ,
    wsgi_environ,
)

ERRORS = body_of("intake-v2/errors.ndjson")
RATELIMIT = body_of("intake-v2/ratelimit.ndjson")
ITEM = b'{"usr": {"id": "u"}, "application": {"id": "a"}, "event": {"name": "e"}, "type": "server"}'
JSON = {"content-type": "application/json"}
TOKEN = {"Authorization": "Bearer s3cr3t"}

# (id, method, path, headers, query, body, chunk, app options)
REQUESTS: list[tuple[str, str, str, dict[str, str], str, bytes, int | None, dict[str, Any]]] = [
    ("ok", "POST", "/intake/v2/events", NDJSON, "", ERRORS, None, {}),
    ("ok-verbose", "POST", "/intake/v2/events", NDJSON, "verbose", ERRORS, 5, {}),
    (
        "ok-accept-json",
        "POST",
        "/intake/v2/events",
        {**NDJSON, "Accept": "application/json"},
        "verbose",
        RATELIMIT,
        99,
        {},
    ),
    (
        "gzip",
        "POST",
        "/intake/v2/events",
        {**NDJSON, "Content-Encoding": "gzip"},
        "verbose",
        gzip.compress(RATELIMIT),
        7,
        {},
    ),
    (
        "deflate",
        "POST",
        "/intake/v2/events",
        {**NDJSON, "Content-Encoding": "deflate"},
        "verbose",
        zlib.compress(ERRORS),
        None,
        {},
    ),
    ("bad-gzip", "POST", "/intake/v2/events", {**NDJSON, "Content-Encoding": "gzip"}, "", ERRORS, None, {}),
    ("bad-event", "POST", "/intake/v2/events", NDJSON, "", body_of("intake-v2/invalid-event.ndjson"), 10, {}),
    (
        "bad-metadata",
        "POST",
        "/intake/v2/events",
        {"Accept": "*/*"},
        "",
        body_of("intake-v2/invalid-metadata.ndjson"),
        None,
        {},
    ),
    ("get", "GET", "/intake/v2/events", {}, "", b"", None, {}),
    ("content-type", "POST", "/intake/v2/events", JSON, "", ERRORS, None, {}),
    ("empty", "POST", "/intake/v2/events", NDJSON, "verbose", b"", None, {}),
    (
        "rum-v2",
        "POST",
        "/intake/v2/rum/events",
        {**NDJSON, "Origin": "https://a.example"},
        "verbose",
        body_of("intake-v2/errors_rum.ndjson"),
        33,
        {},
    ),
    ("rum-v3", "POST", "/intake/v3/rum/events", NDJSON, "verbose", body_of("intake-v3/rum_events.ndjson"), None, {}),
    ("preflight", "OPTIONS", "/intake/v3/rum/events", {"Origin": "https://a.example"}, "", b"", None, {}),
    ("root", "GET", "/", {"Accept": "application/json"}, "", b"", None, {}),
    ("root-head", "HEAD", "/", {}, "", b"", None, {}),
    ("config", "POST", "/config/v1/agents", JSON, "", b'{"service": {"name": "x"}}', None, {}),
    ("404", "GET", "/favicon.ico", {}, "", b"", None, {}),
    ("prodlytics", "POST", "/api/v2/prodlytics", JSON, "", ITEM, None, {}),
    ("prodlytics-bad", "POST", "/api/v2/prodlytics", JSON, "", ITEM.replace(b"server", b"client"), None, {}),
    ("prodlytics-array", "POST", "/api/v2/prodlytics", JSON, "", b"[" + b",".join([ITEM] * 12) + b"]", 50, {}),
    ("prodlytics-415", "POST", "/api/v2/prodlytics", NDJSON, "", ITEM, None, {}),
    ("prodlytics-405", "GET", "/api/v2/prodlytics", {}, "", b"", None, {}),
    (
        "auth-missing",
        "POST",
        "/intake/v2/events",
        NDJSON,
        "",
        ERRORS,
        None,
        {"authenticator": Authenticator(secret_token="s3cr3t")},
    ),
    (
        "auth-ok",
        "POST",
        "/intake/v2/events",
        {**NDJSON, **TOKEN},
        "verbose",
        ERRORS,
        None,
        {"authenticator": Authenticator(secret_token="s3cr3t")},
    ),
    (
        "auth-apikey",
        "POST",
        "/intake/v2/events",
        {"Authorization": "ApiKey " + base64.b64encode(b"i:k").decode()},
        "",
        ERRORS,
        None,
        {"authenticator": Authenticator(api_keys=["i:k"])},
    ),
    (
        "auth-dd-403",
        "POST",
        "/api/v2/prodlytics",
        {**JSON, "DD-API-KEY": "x"},
        "",
        ITEM,
        None,
        {"authenticator": Authenticator(api_keys=["k"])},
    ),
    (
        "ratelimit-front",
        "POST",
        "/intake/v2/events",
        NDJSON,
        "",
        ERRORS,
        None,
        {"rate_limiter": RateLimiter(1, burst=0)},
    ),
    (
        "ratelimit-wait",
        "POST",
        "/intake/v2/events",
        NDJSON,
        "verbose",
        RATELIMIT,
        None,
        {"rate_limiter": RateLimiter(100, burst=12)},
    ),
    (
        "ratelimit-batch",
        "POST",
        "/intake/v2/events",
        NDJSON,
        "",
        RATELIMIT,
        40,
        {"rate_limiter": RateLimiter(0, burst=12)},
    ),
    ("queue-full", "POST", "/intake/v2/events", NDJSON, "", RATELIMIT, None, {"sink": "full-from-1"}),
    ("queue-full-prodlytics", "POST", "/api/v2/prodlytics", JSON, "", ITEM, None, {"sink": "full-from-0"}),
    ("limits", "POST", "/intake/v2/events", NDJSON, "", ERRORS, None, {"limits": "tiny"}),
]


def options(spec: dict[str, Any]) -> dict[str, Any]:
    """Fresh hook objects per app, so the two apps start from the same state."""
    out = dict(spec)
    if "sink" in out:
        out["sink"] = Recorder(full_from=int(out["sink"].rsplit("-", 1)[1]))
    else:
        out["sink"] = Recorder()
    if "rate_limiter" in out:
        limiter = out["rate_limiter"]
        out["rate_limiter"] = RateLimiter(limiter.events_per_second, burst=limiter.burst)
    if out.get("limits") == "tiny":
        import ndintake

        out["limits"] = {"apm": ndintake.Limits(max_event_size=10)}
    return out


@pytest.mark.parametrize(
    ("name", "method", "path", "headers", "query", "body", "chunk", "spec"), REQUESTS, ids=[r[0] for r in REQUESTS]
)
def test_wsgi_answers_like_asgi(
    name: str,
    method: str,
    path: str,
    headers: dict[str, str],
    query: str,
    body: bytes,
    chunk: int | None,
    spec: dict[str, Any],
) -> None:
    asgi_options, wsgi_options = options(spec), options(spec)
    a = call_asgi(IntakeASGI(**asgi_options), method, path, body, headers, query, chunk)
    w = call_wsgi(IntakeWSGI(**wsgi_options), method, path, body, headers, query, chunk)
    assert w.comparable() == a.comparable()
    assert w.header("connection") is None  # hop-by-hop: the WSGI server's business
    assert (a.header("connection") == "Close") is (a.status >= 400)
    assert [[e.raw for e in b] for b in wsgi_options["sink"].batches] == [
        [e.raw for e in b] for b in asgi_options["sink"].batches
    ]


def test_the_table_covers_every_kind_of_answer() -> None:
    statuses = set()
    for _, method, path, headers, query, body, chunk, spec in REQUESTS:
        statuses.add(call_wsgi(IntakeWSGI(**options(spec)), method, path, body, headers, query, chunk).status)
    assert statuses >= {200, 202, 400, 401, 403, 404, 405, 415, 429, 503}


def test_content_length_is_respected() -> None:
    environ = wsgi_environ(
        body=ERRORS + b"garbage that is not part of the body", headers=NDJSON, query="verbose", chunk=16
    )
    environ["CONTENT_LENGTH"] = str(len(ERRORS))
    reply = call_wsgi_environ(IntakeWSGI(), environ)
    assert (reply.status, reply.json) == (202, {"accepted": 5})
    assert environ["wsgi.input"].consumed == len(ERRORS)


def test_chunked_input_is_read_to_the_end_when_terminated() -> None:
    environ = wsgi_environ(
        body=RATELIMIT, headers=NDJSON, query="verbose", chunk=100, content_length=False, terminated=True
    )
    assert call_wsgi_environ(IntakeWSGI(), environ).json == {"accepted": 19}


def test_no_length_and_not_terminated_means_no_body() -> None:
    environ = wsgi_environ(body=RATELIMIT, headers=NDJSON, query="verbose", content_length=False)
    assert call_wsgi_environ(IntakeWSGI(), environ).json == {"accepted": 0}
    assert environ["wsgi.input"].consumed == 0


def test_reading_stops_at_a_fatal_error() -> None:
    body = b'{"not": "metadata"}\n' + RATELIMIT * 50
    environ = wsgi_environ(body=body, headers=NDJSON, chunk=1000)
    reply = call_wsgi_environ(IntakeWSGI(), environ)
    assert reply.status == 400
    assert environ["wsgi.input"].consumed < len(body)


def test_async_sinks_are_refused() -> None:
    async def sink(batch: Any) -> None:
        pass

    with pytest.raises(TypeError):
        IntakeWSGI(sink=sink)
    IntakeWSGI(sink=queue.Queue())  # a thread queue is fine


def test_thread_queue_full() -> None:
    q: queue.Queue = queue.Queue(maxsize=1)
    reply = call_wsgi(IntakeWSGI(sink=q), body=RATELIMIT, headers=NDJSON)
    assert reply.status == 503 and reply.json["accepted"] == 10


def test_request_from_environ() -> None:
    environ = wsgi_environ(
        "post",
        "/intake/v2/events",
        b"x",
        {"Content-Type": "application/x-ndjson", "X-Forwarded-For": "1.2.3.4"},
        "verbose",
    )
    req = request_from_environ(environ)
    assert (req.method, req.path, req.query, req.client) == ("POST", "/intake/v2/events", "verbose", "127.0.0.1")
    assert req.headers["content-type"] == "application/x-ndjson"
    assert req.headers["content-length"] == "1"
    assert req.headers["x-forwarded-for"] == "1.2.3.4"
    assert status_line(202) == "202 Accepted" and status_line(299) == "299 Unknown"


class _BlockingInput:
    """A wsgi.input that gives its first part, then waits for ``release``."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.parts = [first, rest]
        self.release = threading.Event()
        self.waiting = threading.Event()

    def read(self, n: int = -1) -> bytes:
        if not self.parts:
            return b""
        if len(self.parts) == 1:
            self.waiting.set()
            assert self.release.wait(5)
        return self.parts.pop(0)


def test_graceful_shutdown() -> None:
    sink = Recorder()
    app = IntakeWSGI(sink=sink)
    blocking = _BlockingInput(RATELIMIT[:500], RATELIMIT[500:])
    environ = wsgi_environ(body=RATELIMIT, headers=NDJSON, query="verbose")
    environ["wsgi.input"] = blocking
    replies: dict[str, Any] = {}
    inflight = threading.Thread(target=lambda: replies.update(first=call_wsgi_environ(app, environ)))
    inflight.start()
    assert blocking.waiting.wait(5)
    assert app.active == 1
    assert app.shutdown(timeout=0.1) is False  # still in flight
    late = call_wsgi(app, body=ERRORS, headers=NDJSON)
    assert (late.status, late.json) == (503, {"error": "server is shutting down"})
    blocking.release.set()
    assert app.shutdown(timeout=5) is True
    inflight.join(5)
    assert (replies["first"].status, replies["first"].json) == (202, {"accepted": 19})
    assert len(sink.events) == 19


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_under_wsgiref_which_checks_hop_by_hop_headers() -> None:
    sink = Recorder()
    server = make_server("127.0.0.1", 0, IntakeWSGI(sink=sink), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        for body, status in ((ERRORS, 202), (body_of("intake-v2/invalid-event.ndjson"), 400)):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn.request("POST", "/intake/v2/events?verbose", body=body, headers=NDJSON)
            response = conn.getresponse()
            assert response.status == status
            assert response.getheader("X-Content-Type-Options") == "nosniff"
            response.read()
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert len(sink.events) == 6


class _SlowInput:
    """A wsgi.input that takes ``delay`` seconds per read of ``size`` bytes."""

    def __init__(self, data: bytes, size: int, delay: float) -> None:
        self.data, self.size, self.delay = data, size, delay
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        time.sleep(self.delay)
        out, self.data = self.data[: self.size], self.data[self.size :]
        return out


def test_timeout_is_checked_between_chunks() -> None:
    environ = wsgi_environ(body=RATELIMIT, headers=NDJSON)
    slow = environ["wsgi.input"] = _SlowInput(RATELIMIT, 200, 0.1)
    reply = call_wsgi_environ(IntakeWSGI(timeout=0.25), environ)
    assert reply.status == 503 and reply.json["errors"][-1] == {"message": "request timed out"}
    assert reply.json["accepted"] == 0  # the few lines read were still waiting for their batch of ten
    # stopped after the read that passed the timeout (each read takes at least 0.1 s),
    # long before the end of the body, however slow the machine
    assert len(RATELIMIT) > 20 * 200
    assert 3 <= slow.reads < 10 and slow.data
