"""The sans-I/O request handling (ndintake.server.handler): routes, APM Server's answers, hooks."""

from __future__ import annotations

import base64
import json
import queue
import zlib
from typing import Any

import pytest

import ndintake
from ndintake.server.handler import Batcher
from ndintake.server.responses import go_json
from ndintake.server import (
    READ,
    Authenticator,
    Deliver,
    Intake,
    RateLimiter,
    Sleep,
    TokenBucket,
)

from test_conformance import EXACT_MESSAGES
from httpkit import (
    NDJSON,
    FakeClock,
    Recorder,
    body_of,
    cut,
    drive,
    expected,
    gz,
    request,
    scenario,
)

ERRORS = body_of("intake-v2/errors.ndjson")
RATELIMIT = body_of("intake-v2/ratelimit.ndjson")
ITEM = b'{"usr": {"id": "u"}, "application": {"id": "a"}, "event": {"name": "e"}, "type": "server"}'
JSON = {"content-type": "application/json"}
MISSING_AUTH = scenario("no Authorization header")["body"]["error"]


def errors_of(body: dict) -> list[dict]:
    """A scenario's errors as APM Server writes them (no empty document)."""
    return [{k: v for k, v in e.items() if v} for e in body]


# -- routes -----------------------------------------------------------------------------


def test_unknown_path_is_404() -> None:
    out = drive(Intake(), request("GET", "/nope"))
    assert out.response.status == 404
    assert out.response.body == b'{"error":"404 page not found"}\n'
    assert out.response.header("Connection") == "Close"


def test_root_answers_server_information() -> None:
    out = drive(Intake(), request("GET", "/", {"Accept": "application/json"}))
    assert out.response.status == 200
    info = out.json
    assert info["version"] == "8.15.0" and info["publish_ready"] is True
    assert set(info) == {"build_date", "build_sha", "publish_ready", "version"}
    assert out.response.body.endswith(b"\n}\n")  # pretty, Go's trailing newline


def test_root_head_has_headers_but_no_body() -> None:
    get = drive(Intake(), request("GET", "/")).response
    head = drive(Intake(), request("HEAD", "/")).response
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(len(get.body)) != "0"


def test_root_hides_details_from_anonymous_clients_when_credentials_are_configured() -> None:
    intake = Intake(authenticator=Authenticator(secret_token="s3cr3t"))
    anonymous = drive(intake, request("GET", "/")).response
    assert (anonymous.status, anonymous.body) == (200, b"")
    wrong = drive(intake, request("GET", "/", {"Authorization": "Bearer nope"})).response
    assert (wrong.status, wrong.body) == (200, b"")
    known = drive(intake, request("GET", "/", {"Authorization": "Bearer s3cr3t"})).response
    assert json.loads(known.body)["version"] == "8.15.0"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_agent_config_is_empty_and_cacheable(method: str) -> None:
    out = drive(Intake(), request(method, "/config/v1/agents", {"Accept": "application/json"}, query="service.name=x"))
    assert (out.response.status, out.json) == (200, {})
    etag = out.response.header("Etag")
    assert etag and "max-age=30" in (out.response.header("Cache-Control") or "")
    again = drive(Intake(), request(method, "/config/v1/agents", {"If-None-Match": etag})).response
    assert (again.status, again.body) == (304, b"")


def test_agent_config_refuses_other_methods_and_needs_credentials() -> None:
    assert drive(Intake(), request("PUT", "/config/v1/agents")).response.status == 405
    intake = Intake(authenticator=Authenticator(secret_token="t"))
    out = drive(intake, request("GET", "/config/v1/agents"))
    assert (out.response.status, out.json) == (401, {"error": MISSING_AUTH})


def test_rum_paths_use_the_rum_profile() -> None:
    routes = Intake().routes
    assert routes["/intake/v2/rum/events"].profile == routes["/intake/v3/rum/events"].profile == "rum"
    assert routes["/intake/v2/events"].profile == "apm"
    assert routes["/api/v2/prodlytics"].profile == "prodlytics"


@pytest.mark.parametrize("path", ["/intake/v2/rum/events", "/intake/v3/rum/events"])
def test_rum_paths_take_rum_bodies(path: str) -> None:
    sink = Recorder()
    out = drive(
        Intake(sink=sink), request("POST", path, NDJSON, query="verbose"), [body_of("intake-v3/rum_events.ndjson")]
    )
    assert (out.response.status, out.json) == (202, {"accepted": 11})
    assert len(sink.events) == 11


def test_rum_cors_preflight_and_origin() -> None:
    pre = drive(Intake(), request("OPTIONS", "/intake/v2/rum/events", {"Origin": "https://shop.example"})).response
    assert pre.status == 200 and pre.body == b""
    assert pre.header("Access-Control-Allow-Origin") == "https://shop.example"
    assert "POST" in (pre.header("Access-Control-Allow-Methods") or "")
    post = drive(Intake(), request("POST", "/intake/v2/rum/events", {"Origin": "https://shop.example"}), [ERRORS])
    assert post.response.status == 202
    assert post.response.header("Access-Control-Allow-Origin") == "https://shop.example"
    backend = drive(Intake(), request("POST", "/intake/v2/events", {"Origin": "https://shop.example"}), [ERRORS])
    assert backend.response.header("Access-Control-Allow-Origin") is None


# -- APM Server's handler rules ----------------------------------------------------------


def test_get_is_refused_with_400_as_upstream() -> None:
    out = drive(Intake(), request("GET"))
    exp = scenario("GET request")
    assert out.response.status == exp["status"] == 400
    assert out.json == {"accepted": 0, "errors": errors_of(exp["errors"])}


def test_head_on_the_intake_route_gets_the_status_without_a_body() -> None:
    out = drive(Intake(), request("HEAD"))
    assert (out.response.status, out.response.body) == (400, b"")


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 400),
        ("application/ndjson", 400),
        ("text/plain", 400),
        ("application/x-ndjson", 202),
        ("application/x-ndjson; charset=utf-8", 202),
        (None, 202),
    ],
)
def test_content_type_must_contain_x_ndjson_when_present(content_type: str | None, status: int) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    out = drive(Intake(), request("POST", headers=headers), [ERRORS])
    assert out.response.status == status
    if status == 400:
        assert out.json == {"accepted": 0, "errors": [{"message": f"invalid content type: '{content_type}'"}]}
    if content_type == "application/json":
        exp = scenario("Content-Type: application/json")
        assert out.json == {"accepted": 0, "errors": errors_of(exp["errors"])}


def test_202_has_no_body_unless_verbose() -> None:
    plain = drive(Intake(), request(headers=NDJSON), [ERRORS]).response
    assert (plain.status, plain.body, plain.header("Content-Type")) == (202, b"", None)
    assert plain.header("Content-Length") == "0"
    assert plain.header("X-Content-Type-Options") == "nosniff"
    assert plain.header("Connection") is None
    for query in ("verbose", "verbose=", "verbose=false", "a=1&verbose"):
        verbose = drive(Intake(), request(headers=NDJSON, query=query), [ERRORS])
        assert (verbose.response.status, verbose.json) == (202, {"accepted": 5})


@pytest.mark.parametrize(
    ("accept", "content_type", "pretty"),
    [
        ("application/json", "application/json", True),
        ("*/*", "application/json", True),
        ("text/html, application/json;q=0.9", "application/json", True),
        ("text/plain", "text/plain; charset=utf-8", False),
        (None, "text/plain; charset=utf-8", False),
    ],
)
def test_accept_chooses_pretty_json_or_plain_text(accept: str | None, content_type: str, pretty: bool) -> None:
    headers = {**NDJSON, **({"Accept": accept} if accept else {})}
    out = drive(Intake(), request(headers=headers), [body_of("intake-v2/invalid-event-type.ndjson")])
    response = out.response
    assert response.status == 400
    assert response.header("Content-Type") == content_type
    assert response.header("Connection") == "Close"
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Content-Length") == str(len(response.body))
    assert response.body.endswith(b"\n")
    assert (b'\n  "accepted": 0' in response.body) is pretty
    assert json.loads(response.body) == out.exchange.result.to_json()  # type: ignore[union-attr]


def test_bodies_are_escaped_like_go() -> None:
    assert go_json({"d": "<a&b>\u2028"}, pretty=False) == b'{"d":"\\u003ca\\u0026b\\u003e\\u2028"}\n'
    line = b'{"tennis-court": {"name": "<Centre> & Court"}}'
    body = body_of("intake-v2/errors.ndjson").split(b"\n")[0] + b"\n" + line + b"\n"
    out = drive(Intake(), request(headers=NDJSON), [body])
    assert b"\\u003cCentre\\u003e \\u0026 Court" in out.response.body
    assert json.loads(out.response.body)["errors"][0]["document"] == line.decode()


@pytest.mark.parametrize("name", sorted(expected()["files"]))
@pytest.mark.parametrize("chunk", [None, 7, 4096])
def test_every_payload_answers_as_apm_server_does(name: str, chunk: int | None) -> None:
    """Expectations from upstream (derived-results.json), not from ndintake.validate."""
    want = expected()["files"][name]
    body = body_of(name)
    sink = Recorder()
    out = drive(Intake(sink=sink), request(headers=NDJSON, query="verbose"), cut(body, chunk))
    assert out.response.status == want["status"]
    assert out.json["accepted"] == want["accepted"] == len(sink.events)
    errors = out.json.get("errors", [])
    assert len(errors) == len(want["errors"])
    for got, exp in zip(errors, want["errors"]):
        document = body.decode() if exp.get("document") == "<the whole single line>" else exp.get("document")
        assert got.get("document") == document
        if exp["message"] in EXACT_MESSAGES:
            assert got["message"] == exp["message"]
        else:  # worded by Go's decoder upstream (README: "Where ndintake differs")
            assert got["message"].startswith(("decode error: ", "validation error: "))


@pytest.mark.parametrize(
    ("name", "coding", "compress"),
    [
        ("gzip, gzip-compressed", "gzip", gz),
        ("deflate, zlib-compressed", "deflate", zlib.compress),
        ("gzip, body not compressed", "gzip", None),
        ("deflate, body not compressed", "deflate", None),
    ],
)
def test_content_encoding_scenarios(name: str, coding: str, compress: Any) -> None:
    exp = scenario(name)
    body = compress(ERRORS) if compress else ERRORS
    out = drive(Intake(), request(headers={**NDJSON, "Content-Encoding": coding}, query="verbose"), cut(body, 10))
    assert out.response.status == exp["status"]
    assert out.json["accepted"] == exp["accepted"]
    assert out.json.get("errors", []) == errors_of(exp["errors"])


def test_a_content_encoding_of_hundreds_of_codings_is_415() -> None:
    # once a RecursionError out of the request handler
    coding = ", ".join(["identity"] * 500)
    out = drive(Intake(), request(headers={**NDJSON, "Content-Encoding": coding}), cut(ERRORS, 100))
    assert out.response.status == 415
    assert out.json == {
        "accepted": 0,
        "errors": [{"message": "unsupported content encoding: 500 codings, at most 8 are accepted"}],
    }


def test_empty_body_is_202() -> None:
    out = drive(Intake(), request(headers=NDJSON, query="verbose"), [])
    assert (out.response.status, out.json) == (202, {"accepted": 0})


def test_limits_per_profile() -> None:
    intake = Intake(limits={"apm": ndintake.Limits(max_event_size=10)})
    out = drive(intake, request(headers=NDJSON), [ERRORS])
    exp = scenario("max_event_size=10")
    assert (out.response.status, out.json["errors"]) == (exp["status"], errors_of(exp["errors"]))


# -- batching and the sink -----------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 1, 13, 500])
def test_batches_hold_the_events_of_ten_lines(chunk: int | None) -> None:
    sink = Recorder()
    out = drive(Intake(sink=sink), request(headers=NDJSON), cut(RATELIMIT, chunk))
    assert out.response.status == 202
    assert sink.sizes == [10, 9]
    assert [e.line for e in sink.batches[0]] == list(range(2, 12))
    batch = sink.batches[0]
    assert batch.profile == "apm" and batch.path == "/intake/v2/events"
    assert batch.metadata == json.loads(RATELIMIT.split(b"\n")[0])["metadata"]


def test_blank_and_bad_lines_count_towards_a_batch() -> None:
    lines = RATELIMIT.split(b"\n")
    body = b"\n".join([lines[0], b"", b'{"tennis-court": {}}', *lines[1:]])
    sink = Recorder()
    drive(Intake(sink=sink), request(headers=NDJSON), [body])
    assert sink.sizes == [8, 10, 1]


def test_batcher_by_count_for_items() -> None:
    batcher = Batcher(by_line=False)
    events = [ndintake.Event("prodlytics", {}, b"{}", 0) for _ in range(25)]
    ready = batcher.add(events)
    assert [len(b) for b in ready] == [10, 10]
    assert [len(b) for b in batcher.flush()] == [5]
    assert batcher.flush() == []


def test_queue_full_on_the_first_batch_is_503_accepted_0() -> None:
    out = drive(Intake(sink=Recorder(full_from=0)), request(headers=NDJSON), [ERRORS])
    exp = scenario("publisher queue full")
    assert (out.response.status, out.json) == (exp["status"], {"accepted": 0, "errors": errors_of(exp["errors"])})
    assert out.response.header("Connection") == "Close"


@pytest.mark.parametrize("chunk", [None, 50])
def test_queue_full_on_the_second_batch_counts_only_the_first(chunk: int | None) -> None:
    sink = Recorder(full_from=1)
    out = drive(Intake(sink=sink), request(headers=NDJSON), cut(RATELIMIT, chunk))
    assert out.response.status == 503
    assert out.json == {
        "accepted": 10,
        "errors": [{"message": "cannot handle stream: cannot process batch: queue is full"}],
    }
    assert len(sink.events) == 10


def test_a_bounded_queue_as_sink() -> None:
    q: queue.Queue = queue.Queue(maxsize=1)
    out = drive(Intake(sink=q), request(headers=NDJSON), [RATELIMIT])
    assert out.response.status == 503 and out.json["accepted"] == 10
    assert len(q.get_nowait()) == 10


def test_queue_full_stops_reading_the_body() -> None:
    chunks = cut(RATELIMIT, 100)
    out = drive(Intake(sink=Recorder(full_from=0)), request(headers=NDJSON), chunks)
    reads = sum(1 for effect in out.effects if effect is READ)
    assert out.response.status == 503 and reads < len(chunks)


def test_queue_full_on_events_completed_by_close() -> None:
    """A body whose last line has no newline: its events come from close(); a
    refusal then must still un-count them (the result is amended)."""
    body = ERRORS.rstrip(b"\n")
    sink = Recorder(full_from=0)
    out = drive(Intake(sink=sink), request(headers=NDJSON), [body])
    assert out.response.status == 503 and out.json["accepted"] == 0
    prod = drive(Intake(sink=Recorder(full_from=0)), request(path="/api/v2/prodlytics", headers=JSON), [ITEM])
    assert prod.response.status == 503
    assert prod.json == {
        "errors": [
            {
                "status": "503",
                "title": "Service Unavailable",
                "detail": "cannot handle stream: cannot process batch: queue is full",
            }
        ]
    }
    assert prod.exchange.result is not None and prod.exchange.result.accepted == 0


def test_a_failing_sink_is_500_and_its_batch_not_counted() -> None:
    out = drive(Intake(sink=Recorder(fail_with=RuntimeError("disk on fire"))), request(headers=NDJSON), [ERRORS])
    assert out.response.status == 500
    assert out.json == {
        "accepted": 0,
        "errors": [{"message": "cannot handle stream: cannot process batch: internal error"}],
    }


def test_events_before_a_fatal_error_are_delivered() -> None:
    body = gz(RATELIMIT)[:-30]  # truncated gzip: the stream ends with a fatal error
    sink = Recorder()
    out = drive(Intake(sink=sink), request(headers={**NDJSON, "Content-Encoding": "gzip"}), [body])
    core = ndintake.validate(body, content_encoding="gzip")
    assert out.response.status == core.status >= 400
    assert out.json["accepted"] == core.accepted == len(sink.events) > 0


def test_no_sink_still_counts() -> None:
    out = drive(Intake(), request(headers=NDJSON, query="verbose"), [RATELIMIT])
    assert out.json == {"accepted": 19}
    assert not any(isinstance(e, Deliver) for e in out.effects)


# -- authentication -------------------------------------------------------------------------


def apikey(text: str) -> str:
    return "ApiKey " + base64.b64encode(text.encode()).decode()


AUTH_CASES = [
    # (authorization header, status, error message or None)
    (None, 401, MISSING_AUTH),
    ("Bearer", 401, MISSING_AUTH),
    ("Bearer wrong", 401, "authentication failed"),
    ("Bearer s3cr3t", 202, None),
    (
        "bearer s3cr3t",
        401,
        "authentication failed: unknown Authentication header bearer: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'",
    ),
    (
        "Basic dXNlcjpwYXNz",
        401,
        "authentication failed: unknown Authentication header Basic: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'",
    ),
    (apikey("id1:key1"), 202, None),
    (apikey("id2:key2"), 202, None),  # configured already encoded
    (apikey("id1:nope"), 401, "authentication failed"),
    (
        apikey("no-colon"),
        401,
        "authentication failed: improperly formatted ApiKey credentials: expected base64(ID:APIKey)",
    ),
    (
        "ApiKey %%%",
        401,
        "authentication failed: improperly encoded ApiKey credentials: expected base64(ID:APIKey): illegal base64 data at input byte 0",
    ),
]


@pytest.mark.parametrize(("header", "status", "message"), AUTH_CASES)
def test_apm_authentication(header: str | None, status: int, message: str | None) -> None:
    auth = Authenticator(secret_token="s3cr3t", api_keys=["id1:key1", base64.b64encode(b"id2:key2").decode()])
    headers = {**NDJSON, **({"Authorization": header} if header else {})}
    sink = Recorder()
    out = drive(Intake(sink=sink, authenticator=auth), request(headers=headers), [ERRORS])
    assert out.response.status == status
    if message is not None:
        assert out.json == {"error": message}
        assert sink.events == [] and not any(e is READ for e in out.effects)  # refused before reading


def test_missing_header_scenario_matches_upstream_exactly() -> None:
    exp = scenario("no Authorization header")
    out = drive(Intake(authenticator=Authenticator(secret_token="x")), request(headers=NDJSON), [ERRORS])
    assert (out.response.status, out.json) == (exp["status"], exp["body"])


def test_authentication_runs_before_the_method_check() -> None:
    intake = Intake(authenticator=Authenticator(secret_token="t"))
    out = drive(intake, request("GET", headers={"Authorization": "Bearer t"}))
    assert out.json == {"accepted": 0, "errors": [{"message": "only POST requests are supported"}]}
    assert drive(intake, request("GET")).response.status == 401


def test_api_key_without_keys_configured_fails() -> None:
    out = drive(
        Intake(authenticator=Authenticator(secret_token="t")),
        request(headers={"Authorization": apikey("a:b")}),
        [ERRORS],
    )
    assert (out.response.status, out.json) == (401, {"error": "authentication failed"})


@pytest.mark.parametrize("anonymous_rum", [True, False])
def test_rum_requests_without_credentials(anonymous_rum: bool) -> None:
    intake = Intake(authenticator=Authenticator(secret_token="t", anonymous_rum=anonymous_rum, allow_agent=()))
    out = drive(intake, request(path="/intake/v2/rum/events", headers=NDJSON), [ERRORS])
    assert out.response.status == (202 if anonymous_rum else 401)
    wrong = drive(intake, request(path="/intake/v2/rum/events", headers={"Authorization": "Bearer x"}), [ERRORS])
    assert wrong.response.status == 401


@pytest.mark.parametrize(
    ("key", "status", "detail"),
    [
        (None, 401, "missing API key: expected header 'DD-API-KEY: <api key>'"),
        ("wrong", 403, "invalid API key"),
        ("dd-key-0001", 202, None),
        ("s3cr3t", 202, None),
    ],
)
def test_datadog_api_key(key: str | None, status: int, detail: str | None) -> None:
    intake = Intake(authenticator=Authenticator(secret_token="s3cr3t", api_keys=["dd-key-0001"]))
    headers = {**JSON, **({"DD-API-KEY": key} if key else {})}
    out = drive(intake, request(path="/api/v2/prodlytics", headers=headers), [ITEM])
    assert out.response.status == status
    if detail is None:
        assert out.json == {}
    else:
        title = {401: "Unauthorized", 403: "Forbidden"}[status]
        assert out.json == {"errors": [{"status": str(status), "title": title, "detail": detail}]}


# -- rate limiting ----------------------------------------------------------------------------


def test_rate_limit_up_front() -> None:
    out = drive(Intake(rate_limiter=RateLimiter(300, burst=0)), request(headers=NDJSON), [ERRORS])
    assert (out.response.status, out.json) == (429, {"error": "too many requests: rate limit exceeded"})
    assert out.response.header("Connection") == "Close"


def test_rate_limit_denies_the_second_batch_as_upstream() -> None:
    clock = FakeClock()
    sink = Recorder()
    intake = Intake(sink=sink, rate_limiter=RateLimiter(6, burst=12, clock=clock), clock=clock)
    out = drive(intake, request(headers=NDJSON), cut(RATELIMIT, 64), clock=clock)
    exp = scenario("limiter denies the 2nd batch")
    assert (out.response.status, out.json) == (
        exp["status"],
        {"accepted": exp["accepted"], "errors": errors_of(exp["errors"])},
    )
    assert sink.sizes == [10]


def test_rate_limit_waits_up_to_a_second_for_tokens() -> None:
    clock = FakeClock()
    intake = Intake(sink=Recorder(), rate_limiter=RateLimiter(10, burst=12, clock=clock), clock=clock)
    out = drive(intake, request(headers=NDJSON, query="verbose"), [RATELIMIT], clock=clock)
    sleeps = [e.seconds for e in out.effects if isinstance(e, Sleep)]
    assert sleeps == [pytest.approx(0.8)]  # 12 - 1 - 10 = 1 token left, 9 needed: 8 at 10/s
    assert (out.response.status, out.json) == (202, {"accepted": 19})


def test_rate_limit_is_per_client_ip() -> None:
    clock = FakeClock()
    intake = Intake(rate_limiter=RateLimiter(1, burst=6, clock=clock), clock=clock)
    first = drive(intake, request(headers=NDJSON, client="10.0.0.1"), [ERRORS])
    again = drive(intake, request(headers=NDJSON, client="10.0.0.1"), [ERRORS])
    other = drive(intake, request(headers=NDJSON, client="10.0.0.2"), [ERRORS])
    assert first.response.status == 202  # 1 + 5 tokens of 6
    assert again.response.status == 429 and again.json == {"error": "too many requests: rate limit exceeded"}
    assert other.response.status == 202


def test_authenticated_requests_are_not_rate_limited() -> None:
    intake = Intake(authenticator=Authenticator(secret_token="t"), rate_limiter=RateLimiter(1, burst=0))
    out = drive(intake, request(headers={**NDJSON, "Authorization": "Bearer t"}), [ERRORS])
    assert out.response.status == 202
    rum = drive(intake, request(path="/intake/v2/rum/events", headers=NDJSON), [ERRORS])
    assert rum.response.status == 429


def test_token_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 5, clock)
    assert bucket.reserve(6, 10) is None  # more than the burst
    assert bucket.reserve(5, 0) == 0.0
    assert bucket.reserve(1, 0.05) is None  # 0.1 s away
    assert bucket.reserve(1, 0.2) == pytest.approx(0.1)
    clock.advance(0.1)
    assert not bucket.allow()
    clock.advance(10)
    assert bucket.allow(5) and not bucket.allow()
    assert TokenBucket(0, 3, clock).reserve(4, 100) is None


def test_rate_limiter_forgets_the_least_recent_client_but_keeps_its_bucket() -> None:
    limiter = RateLimiter(1, burst=2, max_clients=2)
    a, b = limiter.bucket("a"), limiter.bucket("b")
    assert limiter.bucket("a") is a
    c = limiter.bucket("c")  # evicts b, whose bucket c takes over
    assert c is b
    assert limiter.bucket("b") is a  # then b evicts a
    assert RateLimiter().burst == 900 and RateLimiter().events_per_second == 300


# -- timeout, shutdown -------------------------------------------------------------------------


def test_timeout_between_chunks() -> None:
    clock = FakeClock()
    sink = Recorder()
    intake = Intake(sink=sink, timeout=5, clock=clock)
    out = drive(intake, request(headers=NDJSON), cut(RATELIMIT, 1000), between=lambda i: clock.advance(2 if i else 0))
    # the events the sink took before the timeout are counted, and only those
    assert out.response.status == 503 and out.json["errors"][-1] == {"message": "request timed out"}
    assert out.json["accepted"] == len(sink.events) > 0
    assert out.response.header("Connection") == "Close"
    prod = drive(
        Intake(timeout=1, clock=clock),
        request(path="/api/v2/prodlytics", headers=JSON),
        [ITEM],
        between=lambda i: clock.advance(2),
    )
    assert prod.response.status == 408
    assert prod.json["errors"][0]["detail"] == "request timed out"


def test_timeout_option_is_checked() -> None:
    with pytest.raises(ValueError):
        Intake(timeout=0)
    assert Intake(timeout=None).exchange(request()).remaining is None


def test_shutting_down_refuses_new_intake_requests() -> None:
    intake = Intake()
    intake.begin_shutdown()
    out = drive(intake, request(headers=NDJSON), [ERRORS])
    assert (out.response.status, out.json) == (503, {"error": "server is shutting down"})
    prod = drive(intake, request(path="/api/v2/prodlytics", headers=JSON), [ITEM])
    assert prod.response.status == 503 and prod.json["errors"][0]["detail"] == "server is shutting down"
    assert drive(intake, request("GET", "/")).response.status == 200


# -- prodlytics ------------------------------------------------------------------------------


def test_prodlytics_accepts_the_client_captures() -> None:
    from httpkit import DATADOG

    for capture in sorted(DATADOG.glob("*.request.json")):
        meta = json.loads(capture.read_text())
        headers = {name: value for name, value in meta["headers"]}
        body = (DATADOG / meta["body_file"]).read_bytes()
        sink = Recorder()
        out = drive(Intake(sink=sink), request(path=meta["path"], headers=headers), [body])
        assert (out.response.status, out.response.body) == (202, b"{}")
        assert out.response.header("Content-Type") == "application/json"
        assert len(sink.events) == 1 and sink.batches[0].metadata is None
        assert sink.batches[0].profile == "prodlytics"


def test_prodlytics_refusals() -> None:
    get = drive(Intake(), request("GET", "/api/v2/prodlytics"))
    assert get.response.status == 405 and get.response.header("Allow") == "POST"
    assert get.json == {
        "errors": [{"status": "405", "title": "Method Not Allowed", "detail": "only POST requests are supported"}]
    }
    for content_type in (None, "application/x-ndjson", "text/plain"):
        headers = {"Content-Type": content_type} if content_type else {}
        out = drive(Intake(), request(path="/api/v2/prodlytics", headers=headers), [ITEM])
        assert out.response.status == 415
        assert out.json["errors"][0]["detail"] == f"invalid content type: '{content_type or ''}'"
    ok = drive(
        Intake(),
        request(path="/api/v2/prodlytics", headers={"Content-Type": "application/json; charset=utf-8"}),
        [ITEM],
    )
    assert ok.response.status == 202


def test_prodlytics_bad_item_and_batches() -> None:
    bad = ITEM.replace(b'"server"', b'"client"')
    out = drive(Intake(), request(path="/api/v2/prodlytics", headers=JSON), [bad])
    assert out.response.status == 400
    assert out.json == ndintake.validate(bad, profile="prodlytics").to_json()
    assert out.response.header("Connection") == "Close"
    sink = Recorder()
    array = b"[" + b",".join([ITEM] * 25) + b"]"
    many = drive(Intake(sink=sink), request(path="/api/v2/prodlytics", headers=JSON), cut(array, 333))
    assert many.response.status == 202 and sink.sizes == [10, 10, 5]


@pytest.mark.slow
def test_a_chunk_that_inflates_a_lot_is_delivered_in_bounded_steps() -> None:
    """One 64 KiB gzip chunk holding ~15 MB of valid events: batches go out while
    it is decoded, so the request never holds all its events at once."""
    import gzip
    import tracemalloc

    line = b'{"log": {"message": "' + b"m" * 150 + b'"}}\n'
    events = line * (15_000_000 // len(line))
    body = gzip.compress(ERRORS.split(b"\n", 1)[0] + b"\n" + events, compresslevel=9)
    assert len(body) < 64 * 1024
    delivered = []
    intake = Intake(sink=lambda batch: delivered.append(len(batch)))
    tracemalloc.start()
    try:
        out = drive(intake, request(headers={**NDJSON, "Content-Encoding": "gzip"}), [body], record=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.response.status == 202
    assert sum(delivered) == events.count(b"\n") == out.exchange.result.accepted
    assert peak < 24 * 1024 * 1024, peak  # holding them all takes about 60 MB
