"""ndintake.aiohttp: the ASGI app's answers under a real aiohttp server on 127.0.0.1,
with the official Python agent's gzip bodies and with deflate bodies."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web

from ndintake.aiohttp import IntakeAiohttp
from ndintake.server import Authenticator

from httpkit import APM, NDJSON, Recorder, call_asgi, python_agent_traffic
from ndintake.asgi import IntakeASGI

PAYLOADS = sorted((APM / "intake-v2").glob("*.ndjson"))


class AiohttpServer:
    """An aiohttp app on a free 127.0.0.1 port, in a thread with its own loop."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = app
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


@pytest.fixture
def served() -> Iterator[tuple[IntakeAiohttp, Recorder, AiohttpServer]]:
    sink = Recorder()
    intake = IntakeAiohttp(sink=sink)
    server = AiohttpServer(intake.application())
    try:
        yield intake, sink, server
    finally:
        server.stop()


@pytest.mark.e2e
def test_the_python_agents_gzip_bodies_are_all_accepted(served: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, sink, server = served
    with caplog.at_level("INFO", logger="ndintake.server"):
        python_agent_traffic(f"http://127.0.0.1:{server.port}", "aiohttp-shop")
    kinds = [event.kind for event in sink.events]
    assert {"transaction", "span", "error", "metricset"} <= set(kinds)
    assert (kinds.count("transaction"), kinds.count("span"), kinds.count("error")) == (4, 8, 5), kinds
    assert not [r for r in caplog.records if r.name == "ndintake.server"]  # no answer other than 202


@pytest.mark.e2e
@pytest.mark.parametrize("coding", ["identity", "gzip", "deflate"])
def test_answers_are_the_asgi_apps_for_the_upstream_payloads(served: Any, coding: str) -> None:
    _, _, server = served
    for path in PAYLOADS:
        raw = path.read_bytes()
        body = {"identity": raw, "gzip": gzip.compress(raw), "deflate": zlib.compress(raw)}[coding]
        headers = {**NDJSON, "Accept": "application/json"}
        if coding != "identity":
            headers["Content-Encoding"] = coding
        status, got_headers, answer = server.request("POST", "/intake/v2/events?verbose", body, headers)
        want = call_asgi(IntakeASGI(), body=body, headers=headers, query="verbose")
        assert (status, answer) == (want.status, want.body), path.name
        assert got_headers["content-type"] == want.header("content-type")
        if status >= 400:
            assert got_headers.get("connection", "").lower() == "close"


@pytest.mark.e2e
def test_auth_rate_limit_and_other_routes_are_the_asgi_apps() -> None:
    from ndintake.server import RateLimiter

    def options() -> dict[str, Any]:  # each app its own limiter
        return {"authenticator": Authenticator(secret_token="s3cr3t"), "rate_limiter": RateLimiter(1, burst=1)}

    server = AiohttpServer(IntakeAiohttp(**options()).application())
    asgi = IntakeASGI(**options())
    body = (APM / "intake-v2" / "errors.ndjson").read_bytes()
    try:
        cases = [
            ("POST", "/intake/v2/events", NDJSON),
            ("POST", "/intake/v2/events", {**NDJSON, "Authorization": "Bearer wrong"}),
            ("POST", "/intake/v2/events", {**NDJSON, "Authorization": "Bearer s3cr3t"}),
            ("POST", "/intake/v2/rum/events", NDJSON),
            ("POST", "/intake/v2/rum/events", NDJSON),  # the anonymous rate limit, up front
            ("GET", "/", {}),
            ("GET", "/config/v1/agents", {"Authorization": "Bearer s3cr3t"}),
            ("GET", "/healthz", {}),
            ("GET", "/nowhere", {}),
        ]
        for method, path, headers in cases:
            status, _, answer = server.request(method, path, body if method == "POST" else b"", headers)
            want = call_asgi(asgi, method=method, path=path, body=body if method == "POST" else b"", headers=headers)
            assert (status, answer) == (want.status, want.body), (method, path, headers)
    finally:
        server.stop()


@pytest.mark.e2e
def test_mounted_in_an_application_of_ones_own_under_a_prefix(tmp_path: Path) -> None:
    sink = Recorder()
    intake = IntakeAiohttp(sink=sink)
    app = web.Application(handler_args={"auto_decompress": False})
    intake.add_routes(app, prefix="/apm")
    server = AiohttpServer(app)
    try:
        raw = (APM / "intake-v2" / "errors.ndjson").read_bytes()
        status, _, answer = server.request(
            "POST", "/apm/intake/v2/events?verbose", gzip.compress(raw), {**NDJSON, "Content-Encoding": "gzip"}
        )
        assert (status, answer) == (202, b'{"accepted":5}\n')
        assert len(sink.events) == 5
    finally:
        server.stop()


@pytest.mark.e2e
def test_a_decompressing_server_is_refused_loudly_not_misread() -> None:
    intake = IntakeAiohttp()
    app = web.Application()  # auto_decompress on: aiohttp would hand over inflated bytes
    intake.add_routes(app)
    server = AiohttpServer(app)
    try:
        raw = (APM / "intake-v2" / "errors.ndjson").read_bytes()
        status, _, answer = server.request(
            "POST", "/intake/v2/events", gzip.compress(raw), {**NDJSON, "Content-Encoding": "gzip"}
        )
        assert status == 500 and b"auto_decompress" in answer
        status, _, _ = server.request("POST", "/intake/v2/events", raw, NDJSON)  # identity bodies are fine
        assert status == 202
    finally:
        server.stop()


@pytest.mark.e2e
def test_a_client_going_away_mid_body_is_abandoned_and_metrics_are_served() -> None:
    import socket
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from ndintake.server import Metrics

    intake = IntakeAiohttp(metrics=Metrics())
    server = AiohttpServer(intake.application())
    try:
        raw = (APM / "intake-v2" / "errors.ndjson").read_bytes()
        with socket.create_connection(("127.0.0.1", server.port)) as conn:
            conn.sendall(b"POST /intake/v2/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + raw[:300])
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status, headers, text = server.request("GET", "/metrics")
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text.decode())
                for s in family.samples
            }
            gone = samples.get(("ndintake_refusals_total", (("reason", "client_closed"),)), 0)
            if gone:
                break
            time.sleep(0.1)
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert gone == 1
        assert samples[("ndintake_http_requests_total", (("route", "/intake/v2/events"), ("status", "499")))] == 1
        assert intake.active == 0
    finally:
        server.stop()
