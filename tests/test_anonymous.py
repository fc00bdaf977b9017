"""APM Server's anonymous access (``auth.anonymous``), RUM origins, and
credentials compared as bytes: in the sans-I/O core and over real HTTP."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import http.client
import http.server
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ndintake.server.auth import Authenticator
from ndintake.server.handler import Intake

from httpkit import NDJSON, Recorder, body_of, drive, python_agent_traffic, request
from servekit import LOOPBACK, ServeProcess, post

RUM_V2 = body_of("intake-v2/errors_rum.ndjson")  # agent rum-js
RUM_V3 = body_of("intake-v3/rum_events.ndjson")  # agent js-base
BACKEND = body_of("intake-v2/errors.ndjson")  # agent elastic-node
RUM_PATH = "/intake/v2/rum/events"
DENIED_NODE = (
    'cannot handle stream: cannot process batch: unauthorized: anonymous access not permitted for agent "elastic-node"'
)

# APM Server's systemtest/rum_test.go TestRUMAllowServiceNames, body and answer
ALLOWED_METADATA = (
    b'{"metadata":{"service":{"name":"allowed","version":"1.0.0","agent":{"name":"rum-js","version":"0.0.0"}}}}\n'
)
OVERRIDDEN = b'{"transaction":{"trace_id":"x","id":"y","type":"z","duration":0,"span_count":{"started":1},"context":{"service":{"name":"disallowed"}}}}\n'
PLAIN = b'{"transaction":{"trace_id":"x","id":"y","type":"z","duration":0,"span_count":{"started":1}}}\n'
UPSTREAM_403 = '{"accepted":0,"errors":[{"message":"cannot handle stream: cannot process batch: unauthorized: anonymous access not permitted for service \\"disallowed\\""}]}\n'


def rum(intake: Intake, body: bytes, headers: dict[str, str] | None = None, path: str = RUM_PATH) -> Any:
    return drive(intake, request(path=path, headers={**NDJSON, **(headers or {})}), [body])


@pytest.mark.parametrize(("body", "path"), [(RUM_V2, RUM_PATH), (RUM_V3, "/intake/v3/rum/events")])
def test_rum_agents_are_let_in_anonymously(body: bytes, path: str) -> None:
    sink = Recorder()
    out = rum(Intake(sink=sink, authenticator=Authenticator(secret_token="t")), body, path=path)
    assert out.response.status == 202
    assert sink.events


def test_a_backend_agent_on_the_rum_route_gets_403_and_nothing_is_delivered() -> None:
    sink = Recorder()
    out = rum(Intake(sink=sink, authenticator=Authenticator(secret_token="t")), BACKEND)
    assert out.response.status == 403
    assert out.json == {"accepted": 0, "errors": [{"message": DENIED_NODE}]}
    assert out.response.header("Connection") == "Close"
    assert sink.events == []


def test_the_upstream_allow_service_case_answers_byte_for_byte() -> None:
    intake = Intake(authenticator=Authenticator(secret_token="abc123", allow_service=["allowed"]))
    out = rum(intake, ALLOWED_METADATA + OVERRIDDEN)
    assert out.response.status == 403
    assert out.response.body.decode() == UPSTREAM_403


def test_the_check_is_per_batch_and_service_comes_before_agent() -> None:
    sink = Recorder()
    intake = Intake(sink=sink, authenticator=Authenticator(secret_token="t", allow_service=["allowed"]))
    # ten allowed events (one batch), then a batch whose second event names another service and agent
    other = json.loads(OVERRIDDEN)
    other["transaction"]["context"]["service"]["agent"] = {"name": "python"}
    body = ALLOWED_METADATA + PLAIN * 11 + json.dumps(other).encode() + b"\n" + PLAIN
    out = rum(intake, body)
    assert out.response.status == 403
    assert out.json["accepted"] == 10 and sink.sizes == [10]
    assert out.json["errors"][-1]["message"].endswith('not permitted for service "disallowed"')
    agent_only = Intake(authenticator=Authenticator(secret_token="t"))
    message = rum(agent_only, ALLOWED_METADATA + json.dumps(other).encode() + b"\n").json["errors"][0]["message"]
    assert message.endswith('anonymous access not permitted for agent "python"')


def test_rum_v3_events_are_checked_by_their_short_keys() -> None:
    intake = Intake(authenticator=Authenticator(secret_token="t", allow_service=["apm-a-rum-test-e2e-general-usecase"]))
    assert rum(intake, RUM_V3, path="/intake/v3/rum/events").response.status == 202
    lines = RUM_V3.split(b"\n")
    event = json.loads(lines[1])
    event["x"].setdefault("c", {})["se"] = {"n": "elsewhere"}
    body = b"\n".join([lines[0], json.dumps(event).encode(), b""])
    out = rum(intake, body, path="/intake/v3/rum/events")
    assert out.response.status == 403
    assert out.json["errors"][0]["message"].endswith('not permitted for service "elsewhere"')


def test_empty_allow_lists_let_every_agent_in() -> None:
    intake = Intake(authenticator=Authenticator(secret_token="t", allow_agent=()))
    assert rum(intake, BACKEND).response.status == 202


def test_credentials_and_no_auth_skip_the_anonymous_check() -> None:
    with_token = Intake(authenticator=Authenticator(secret_token="t"))
    assert rum(with_token, BACKEND, {"Authorization": "Bearer t"}).response.status == 202
    assert rum(Intake(), BACKEND).response.status == 202  # no credentials configured: anyone


def test_anonymous_access_off_is_401() -> None:
    intake = Intake(authenticator=Authenticator(secret_token="t", anonymous_rum=False))
    out = rum(intake, RUM_V2)
    assert out.response.status == 401
    assert out.json["error"].startswith("authentication failed: missing or improperly formatted Authorization header")


def test_allowed_origins() -> None:
    intake = Intake(allow_origins=["https://*.example.com", "http://localhost:8000"])
    ok = rum(intake, RUM_V2, {"Origin": "https://app.example.com"})
    assert ok.response.status == 202 and ok.response.header("Access-Control-Allow-Origin") == "https://app.example.com"
    refused = rum(intake, RUM_V2, {"Origin": "https://evil.test"})
    assert (refused.response.status, refused.json) == (403, {"error": "origin: 'https://evil.test' is not allowed"})
    assert rum(intake, RUM_V2).response.status == 403  # no Origin: '' is not allowed either (APM Server)
    preflight = drive(intake, request("OPTIONS", RUM_PATH, {"Origin": "https://evil.test"})).response
    assert preflight.status == 200 and preflight.header("Access-Control-Allow-Origin") is None
    everyone = rum(Intake(), RUM_V2, {"Origin": "https://evil.test"})
    assert everyone.response.header("Access-Control-Allow-Origin") == "https://evil.test"
    assert rum(Intake(), RUM_V2).response.status == 202


def test_allowed_headers_come_first_in_the_preflight() -> None:
    """APM Server's rum.allow_headers: the configured names, then the three it always allows
    (apm-server internal/beater/middleware/cors_middleware.go at 7c4e4d4e)."""
    preflight = {"Origin": "https://app.test", "Access-Control-Request-Method": "POST"}
    default = drive(Intake(), request("OPTIONS", RUM_PATH, preflight)).response
    assert default.header("Access-Control-Allow-Headers") == "Content-Type, Content-Encoding, Accept"
    intake = Intake(allow_headers=["Authorization", "X-Custom"])
    answer = drive(intake, request("OPTIONS", RUM_PATH, preflight)).response
    assert answer.status == 200
    assert answer.header("Access-Control-Allow-Headers") == "Authorization, X-Custom, Content-Type, Content-Encoding, Accept"
    assert answer.header("Access-Control-Allow-Origin") == "https://app.test"


def wire(text: str) -> str:
    """A header value as an ASGI or WSGI server hands it over: UTF-8 bytes decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


def test_non_ascii_credentials_are_compared_as_utf8_bytes() -> None:
    auth = Authenticator(secret_token="sécret-☃", api_keys=["id:kéy"])
    assert auth.check_apm({"authorization": wire("Bearer sécret-☃")}).ok
    assert not auth.check_apm({"authorization": "Bearer sécret-☃".encode().decode("latin-1")[:-1]}).ok
    latin = Authenticator(secret_token="sécret")
    assert latin.check_apm({"authorization": wire("Bearer sécret")}).ok
    assert not latin.check_apm({"authorization": "Bearer s\xe9cret"}).ok  # a latin-1 é byte is not UTF-8 é
    encoded = base64.b64encode("id:kéy".encode()).decode()
    assert auth.check_apm({"authorization": f"ApiKey {encoded}"}).ok
    assert auth.check_datadog({"dd-api-key": wire("id:kéy")}).ok
    assert auth.check_datadog({"dd-api-key": wire("sécret-☃")}).ok
    assert auth.check_datadog({"dd-api-key": "id:k\xe9y"}).status == 403


# -- over real HTTP, against ndintake serve ---------------------------------------------------------


def raw_post(port: int, path: str, body: bytes, headers: dict[str, bytes | str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_non_ascii_token_over_http(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    server = ServeProcess("--sink", f"jsonl:{out}", "--secret-token", "sécret-☃")
    try:
        headers = {"Content-Type": "application/x-ndjson"}
        good = raw_post(
            server.port, "/intake/v2/events", BACKEND, {**headers, "Authorization": "Bearer sécret-☃".encode()}
        )
        assert good[0] == 202, good
        bad = raw_post(
            server.port, "/intake/v2/events", BACKEND, {**headers, "Authorization": b"Bearer s\xe9cret-\xe2\x98\x83"}
        )
        assert bad[0] == 401
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert len(out.read_text().splitlines()) == 5


class _Capture(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[dict[str, str], bytes]] = []

    def do_GET(self) -> None:  # the agent asks GET / for the server version
        self._answer(200, b'{"version": "8.15.0"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.bodies.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self._answer(202, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def python_agent_bodies() -> list[tuple[dict[str, str], bytes]]:
    """What the Elastic APM Python agent sends to /intake/v2/events (gzip bodies)."""
    _Capture.bodies = []
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        python_agent_traffic(f"http://{LOOPBACK}:{server.server_address[1]}", "anonymous-python", metrics=False)
    finally:
        server.shutdown()
        server.server_close()
    return list(_Capture.bodies)


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_answers_403_to_the_python_agents_body_on_the_rum_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    bodies = python_agent_bodies()
    assert bodies and all(headers.get("content-encoding") == "gzip" for headers, _ in bodies)
    out = tmp_path / "events.jsonl"
    server = ServeProcess("--sink", f"jsonl:{out}", "--secret-token", "t0k3n")
    try:
        for headers, body in bodies:
            sent = {"Content-Type": headers["content-type"], "Content-Encoding": "gzip"}
            status, answer = post(server.port, RUM_PATH, body, sent)
            assert status == 403, answer
            message = json.loads(answer)["errors"][-1]["message"]
            assert (
                message
                == 'cannot handle stream: cannot process batch: unauthorized: anonymous access not permitted for agent "python"'
            )
        # the same body with the token goes through on the backend route
        headers, body = bodies[0]
        status, _ = post(
            server.port, "/intake/v2/events", body, {"Content-Encoding": "gzip", "Authorization": "Bearer t0k3n"}
        )
        assert status == 202
        # and a real RUM body is let in without credentials
        status, _ = post(server.port, RUM_PATH, gzip.compress(RUM_V2), {"Content-Encoding": "gzip"})
        assert status == 202
    finally:
        assert server.stop(signal.SIGTERM) == 0
    routes = {json.loads(line)["route"] for line in out.read_text().splitlines()}
    assert routes == {"/intake/v2/events", RUM_PATH}  # nothing of the 403s reached the sink


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_rate_limits_anonymous_requests_by_default(tmp_path: Path) -> None:
    """With a token set, anonymous RUM requests get APM Server's limit (300 events/s,
    burst 900) without any --rate-limit: 50 requests of 60 events at once cannot all pass."""
    lines = RUM_V2.split(b"\n")
    body = lines[0] + b"\n" + (lines[1] + b"\n") * 60
    server = ServeProcess("--sink", "null", "--secret-token", "t0k3n", "--max-concurrent-decoders", "64")
    try:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(lambda _: post(server.port, RUM_PATH, body, dict(NDJSON))[0], range(50)))
        elapsed = time.monotonic() - started
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert set(statuses) <= {202, 429}
    assert statuses.count(429) > 0 and statuses.count(202) > 0
    # at most the burst plus what refilled meanwhile (each request also takes a token)
    assert statuses.count(202) * 61 <= 900 + 300 * elapsed


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_anonymous_off_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NDINTAKE_AUTH_ANONYMOUS_ENABLED", "false")
    monkeypatch.setenv("NDINTAKE_AUTH_SECRET_TOKEN", "t0k3n")
    server = ServeProcess("--sink", "null")
    try:
        status, answer = post(server.port, RUM_PATH, RUM_V2, dict(NDJSON))
        assert status == 401 and b"missing or improperly formatted Authorization header" in answer
    finally:
        assert server.stop(signal.SIGTERM) == 0
