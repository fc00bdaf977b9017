"""End to end: the official agents and clients talk to a real server on 127.0.0.1.

* the Elastic APM Python agent (``elastic-apm``) and the Node.js agent
  (``elastic-apm-node``, installed with npm into a temporary folder; skipped
  when node or npm is missing or the install fails), against the ASGI app on
  uvicorn in a thread, with a tee recording what went over the wire;
* Datadog's Python client (``datadog-api-client``) on the prodlytics route;
* ``ndintake serve`` itself as a subprocess: secret token, JSON Lines sink,
  graceful shutdown on SIGTERM and SIGINT.

Every event an agent sent must arrive in the sink (APM Server's silently
dropped internal metricsets aside), counted, and every intake request must get
202. All traffic stays on the loopback interface.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import uvicorn

from ndintake.asgi import IntakeASGI
from ndintake.server import Authenticator

from httpkit import Recorder, body_of, python_agent_traffic
from servekit import ServeProcess, post

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOOPBACK = "127.0.0.1"
KINDS = ("transaction", "span", "error", "metricset", "log")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents honour proxy variables; keep every request on the loopback interface."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", f"{LOOPBACK},localhost")
    monkeypatch.setenv("no_proxy", f"{LOOPBACK},localhost")


# -- a live server with a tee -----------------------------------------------------------------


@dataclass
class Seen:
    """One request as it went over the wire."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    messages: int
    status: int | None = None

    def lines(self) -> list[bytes]:
        body = gzip.decompress(self.body) if self.headers.get("content-encoding") == "gzip" else self.body
        return [line for line in body.split(b"\n") if line.strip()]


@dataclass
class Live:
    url: str
    port: int
    sink: Recorder
    seen: list[Seen] = field(default_factory=list)

    def intake(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/intake/")]


def internal_metricset(line: dict[str, Any]) -> bool:
    """APM Server drops a metricset with transaction fields and no span self-time samples."""
    data = line.get("metricset")
    if not isinstance(data, dict) or data.get("transaction") is None:
        return False
    samples = data.get("samples") or {}
    return data.get("span") is None or not ({"span.self_time.count", "span.self_time.sum.us"} & set(samples))


def sent_events(requests: list[Seen]) -> list[bytes]:
    """The event lines the agents sent, in order (metadata lines and dropped metricsets left out)."""
    out = []
    for request in requests:
        for line in request.lines()[1:]:
            if not internal_metricset(json.loads(line)):
                out.append(line)
    return out


def _tee(app: Any, seen: list[Seen]) -> Any:
    async def tee(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        parts: list[bytes] = []
        status: dict[str, int] = {}

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                parts.append(message.get("body", b""))
            return message

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await app(scope, recording_receive, recording_send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        seen.append(Seen(scope["method"], scope["path"], headers, b"".join(parts), len(parts), status.get("code")))

    return tee


@contextmanager
def serving(app: IntakeASGI) -> Iterator[Live]:
    """Run ``app`` on uvicorn in a thread, on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    live = Live(f"http://{LOOPBACK}:{port}", port, app.sink)  # type: ignore[arg-type]
    server = uvicorn.Server(
        uvicorn.Config(_tee(app, live.seen), lifespan="on", log_level="warning", timeout_graceful_shutdown=5)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def check_delivery(live: Live) -> list[bytes]:
    """Every intake request got 202 and every event sent is in the sink, in order."""
    intake = live.intake()
    assert intake, "the agent sent nothing"
    assert [s.status for s in intake] == [202] * len(intake)
    sent = sent_events(intake)
    assert [e.raw for e in live.sink.events] == sent
    return sent


def kinds(lines: list[bytes]) -> Counter[str]:
    return Counter(next(iter(json.loads(line))) for line in lines)


# -- the Elastic APM Python agent ----------------------------------------------------------------


def test_elastic_apm_python_agent() -> None:
    sink = Recorder()
    with serving(IntakeASGI(sink=sink, timeout=10)) as live:
        client = python_agent_traffic(live.url, "e2e-python")
    sent = check_delivery(live)
    counts = kinds(sent)
    assert counts["transaction"] == 4 and counts["span"] == 8 and counts["error"] == 5
    assert counts["metricset"] >= 1
    assert client.server_version == (8, 15, 0)  # it read GET /
    assert any(s.path == "/" and s.status == 200 for s in live.seen)
    assert all(s.headers.get("content-encoding") == "gzip" for s in live.intake())
    batch = sink.batches[0]
    assert batch.metadata["service"]["name"] == "e2e-python"
    assert batch.metadata["service"]["agent"]["name"] == "python"


# -- the Elastic APM Node.js agent ---------------------------------------------------------------

NODE_SCRIPT = r"""
const apm = require('elastic-apm-node').start({
  serviceName: 'e2e-node',
  serverUrl: process.env.APM_SERVER_URL,
  secretToken: process.env.APM_SECRET_TOKEN,
  metricsInterval: '1s',
  apiRequestTime: '2s',
  cloudProvider: 'none',
  captureExceptions: false,
  logLevel: 'warn',
})
async function main () {
  for (let i = 0; i < 3; i++) {
    const t = apm.startTransaction(`GET /items/${i}`, 'request')
    const s = t.startSpan('SELECT FROM shop', 'db', 'postgresql', 'query')
    await new Promise((resolve) => setTimeout(resolve, 5))
    s.end()
    apm.captureError(new Error(`boom ${i}`))
    t.end()
  }
  await new Promise((resolve) => setTimeout(resolve, 1200)) // one metrics collection
  await apm.flush()
  await apm.destroy()
  console.log('sent')
}
main().catch((err) => { console.error(err); process.exit(1) })
"""


@pytest.fixture(scope="module")
def node_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder with elastic-apm-node installed by npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the elastic-apm-node test (not installed here)")
    folder = tmp_path_factory.mktemp("node-agent")
    (folder / "package.json").write_text('{"name": "ndintake-e2e", "version": "0.0.0", "private": true}\n')
    command = [npm, "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", "elastic-apm-node@4"]
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install elastic-apm-node timed out (no network to the npm registry?)")
    if done.returncode != 0:
        pytest.skip(
            f"npm install elastic-apm-node failed (no network to the npm registry?): {done.stderr.strip()[-400:]}"
        )
    (folder / "agent.js").write_text(NODE_SCRIPT)
    return folder


def test_elastic_apm_node_agent(node_agent: Path) -> None:
    sink = Recorder()
    auth = Authenticator(secret_token="node-s3cr3t")
    with serving(IntakeASGI(sink=sink, authenticator=auth, timeout=10)) as live:
        env = {**os.environ, "APM_SERVER_URL": live.url, "APM_SECRET_TOKEN": "node-s3cr3t"}
        for name in [k for k in env if k.startswith(("ELASTIC_APM_", "NODE_OPTIONS"))]:
            del env[name]
        done = subprocess.run(["node", "agent.js"], cwd=node_agent, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    sent = check_delivery(live)
    counts = kinds(sent)
    assert counts["transaction"] == 3 and counts["span"] == 3 and counts["error"] == 3
    assert counts["metricset"] >= 1
    # the Node agent streams: chunked, gzip, more than one body message
    intake = live.intake()
    assert all(
        s.headers.get("transfer-encoding") == "chunked" and s.headers.get("content-encoding") == "gzip" for s in intake
    )
    assert any(s.messages > 1 for s in intake)
    assert all(s.headers.get("authorization") == "Bearer node-s3cr3t" for s in intake)
    assert {s.path for s in live.seen} >= {"/", "/config/v1/agents", "/intake/v2/events"}
    assert sink.batches[0].metadata["service"]["agent"]["name"] == "nodejs"


# -- Datadog's Python client on the prodlytics route ----------------------------------------------


def datadog_api(port: int, key: str) -> Any:
    from datadog_api_client import ApiClient, Configuration
    from datadog_api_client.v2.api.product_analytics_api import ProductAnalyticsApi

    config = Configuration()
    config.api_key["apiKeyAuth"] = key
    config.request_timeout = 10
    config.server_operation_index["submit_product_analytics_event"] = 1  # the {protocol}://{name} server
    config.server_operation_variables["submit_product_analytics_event"] = {
        "protocol": "http",
        "name": f"{LOOPBACK}:{port}",
    }
    return ProductAnalyticsApi(ApiClient(config))


def product_event(i: int, **identity: Any) -> Any:
    from datadog_api_client.v2.model.product_analytics_server_side_event_item import (
        ProductAnalyticsServerSideEventItem,
    )
    from datadog_api_client.v2.model.product_analytics_server_side_event_item_application import (
        ProductAnalyticsServerSideEventItemApplication,
    )
    from datadog_api_client.v2.model.product_analytics_server_side_event_item_event import (
        ProductAnalyticsServerSideEventItemEvent,
    )
    from datadog_api_client.v2.model.product_analytics_server_side_event_item_type import (
        ProductAnalyticsServerSideEventItemType,
    )
    from datadog_api_client.v2.model.product_analytics_server_side_event_item_usr import (
        ProductAnalyticsServerSideEventItemUsr,
    )

    if not identity:
        identity = {"usr": ProductAnalyticsServerSideEventItemUsr(id=f"user-{i}")}
    return ProductAnalyticsServerSideEventItem(
        application=ProductAnalyticsServerSideEventItemApplication(id="123abcde-123a-123b-1234-123456789abc"),
        event=ProductAnalyticsServerSideEventItemEvent(name="checkout.completed"),
        type=ProductAnalyticsServerSideEventItemType.SERVER,
        customer={"tier": "premium", "order": i},
        **identity,
    )


def test_datadog_api_client_prodlytics() -> None:
    from datadog_api_client.exceptions import ApiException

    sink = Recorder()
    auth = Authenticator(api_keys=["dd-loopback-key"])
    with serving(IntakeASGI(sink=sink, authenticator=auth, timeout=10)) as live:
        api = datadog_api(live.port, "dd-loopback-key")
        for i in range(3):
            assert api.submit_product_analytics_event(body=product_event(i)) == {}
        with pytest.raises(ApiException) as no_identity:  # the client sends it; the server must refuse it
            api.submit_product_analytics_event(body=_no_identity())
        with pytest.raises(ApiException) as wrong_key:
            datadog_api(live.port, "not-the-key").submit_product_analytics_event(body=product_event(7))
    assert no_identity.value.status == 400
    error = as_json(no_identity.value.body)["errors"][0]
    assert error["status"] == "400" and error["title"] == "Bad Request" and "item 0" in error["detail"]
    assert wrong_key.value.status == 403
    assert as_json(wrong_key.value.body) == {
        "errors": [{"status": "403", "title": "Forbidden", "detail": "invalid API key"}]
    }
    assert [e.data["usr"]["id"] for e in sink.events] == ["user-0", "user-1", "user-2"]
    assert sink.events[2].facets()["customer.order"] == 2
    posts = [s for s in live.seen if s.path == "/api/v2/prodlytics"]
    assert [s.status for s in posts] == [202, 202, 202, 400, 403]
    assert posts[0].headers["dd-api-key"] == "dd-loopback-key"


def as_json(body: Any) -> Any:
    """An ApiException's body: the client parses JSON bodies itself."""
    return body if isinstance(body, dict) else json.loads(body)


def _no_identity() -> Any:
    """An item with none of usr, account, session: Datadog's prose forbids it, its client sends it."""
    from datadog_api_client.v2.model.product_analytics_server_side_event_item import (
        ProductAnalyticsServerSideEventItem,
    )
    from datadog_api_client.v2.model.product_analytics_server_side_event_item_application import (
        ProductAnalyticsServerSideEventItemApplication,
    )
    from datadog_api_client.v2.model.product_analytics_server_side_event_item_event import (
        ProductAnalyticsServerSideEventItemEvent,
    )
    from datadog_api_client.v2.model.product_analytics_server_side_event_item_type import (
        ProductAnalyticsServerSideEventItemType,
    )

    return ProductAnalyticsServerSideEventItem(
        application=ProductAnalyticsServerSideEventItemApplication(id="a"),
        event=ProductAnalyticsServerSideEventItemEvent(name="e"),
        type=ProductAnalyticsServerSideEventItemType.SERVER,
    )


# -- ndintake serve, the command ---------------------------------------------------------------------


def test_ndintake_serve_with_agents_and_sigterm(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    server = ServeProcess("--sink", f"jsonl:{events}", "--secret-token", "s3cr3t", "--api-key", "dd-key")
    try:
        python_agent_traffic(server.url, "e2e-serve", secret_token="s3cr3t")
        api = datadog_api(server.port, "dd-key")
        assert api.submit_product_analytics_event(body=product_event(1)) == {}
        status, body = post(
            server.port,
            "/intake/v2/events",
            body_of("intake-v2/errors.ndjson"),
            {"Content-Type": "application/x-ndjson"},
        )
        assert status == 401 and json.loads(body)["error"].startswith("authentication failed: missing")
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    assert any("stopped" in line for line in server.lines), server.lines
    records = [json.loads(line) for line in events.read_text().splitlines()]
    apm = [r for r in records if r["kind"] in KINDS]
    prodlytics = [r for r in records if r["kind"] not in KINDS]
    assert Counter(r["kind"] for r in apm)["transaction"] == 4
    assert Counter(r["kind"] for r in apm)["span"] == 8
    assert all(r["metadata"]["service"]["name"] == "e2e-serve" and r["line"] >= 2 for r in apm)
    assert len(prodlytics) == 1 and "metadata" not in prodlytics[0]
    assert prodlytics[0]["data"]["usr"] == {"id": "user-1"}
    assert set(records[0]) >= {"kind", "line", "data"}


def test_ndintake_serve_finishes_a_request_in_flight_on_sigint(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    server = ServeProcess("--sink", f"jsonl:{events}")
    body = body_of("intake-v2/ratelimit.ndjson")
    conn = http.client.HTTPConnection(LOOPBACK, server.port, timeout=10)
    try:
        conn.putrequest("POST", "/intake/v2/events?verbose")
        conn.putheader("Content-Type", "application/x-ndjson")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:700])
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert server.proc.poll() is None  # waiting for the request in flight
        conn.send(body[700:])
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (202, {"accepted": 19})
        assert server.proc.wait(15) == 0
    finally:
        conn.close()
        server.kill()
    assert len(events.read_text().splitlines()) == 19
