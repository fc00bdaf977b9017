"""The README's "Serving HTTP" recipes, run: Starlette/FastAPI Mount, the aiohttp adapter, Flask.

The recipes are taken from README.md itself (``readme_recipe``) and run with the
names they leave open filled in, so the README cannot drift from what is tested.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ndintake.asgi import IntakeASGI

from conftest import readme_recipe
from httpkit import NDJSON, Recorder, body_of, cut, python_agent_traffic

ERRORS = body_of("intake-v2/errors.ndjson")


pytestmark = pytest.mark.e2e


def test_starlette_mount_with_a_python_agent_behind_a_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mounted under /apm; the official agent, given server_url .../apm, finds every route."""
    import uvicorn

    monkeypatch.chdir(tmp_path)  # the recipe's JsonLinesSink writes events.jsonl here
    recipe: dict[str, Any] = {}
    exec(compile(readme_recipe('Mount("/apm", app=intake)'), "README.md", "exec"), recipe)
    app, intake = recipe["app"], recipe["intake"]

    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/apm"
        client = python_agent_traffic(url, "mounted", metrics=False)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert client.server_version == (8, 15, 0)
    kinds = {json.loads(line)["kind"] for line in (tmp_path / "events.jsonl").read_text().splitlines()}
    assert {"transaction", "span", "error"} <= kinds
    assert intake.draining  # the parent's lifespan shut it down


def test_aiohttp_adapter_with_gzip_bodies() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    published: list[Any] = []

    async def publish(batch: Any) -> None:
        published.extend(batch)

    recipe: dict[str, Any] = {"publish": publish}
    exec(compile(readme_recipe("IntakeAiohttp(sink=publish)"), "README.md", "exec"), recipe)
    app = recipe["app"]

    async def main() -> tuple[int, Any, int]:
        async def body() -> Any:
            for piece in cut(gzip.compress(ERRORS), 40):
                yield piece

        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            gzipped = {**NDJSON, "Content-Encoding": "gzip"}
            verbose = await client.post("/intake/v2/events?verbose", data=body(), headers=gzipped)
            plain = await client.post(
                "/intake/v2/events", data=body_of("intake-v2/invalid-event-type.ndjson"), headers=NDJSON
            )
            return verbose.status, json.loads(await verbose.read()), plain.status

    status, answer, bad = asyncio.run(asyncio.wait_for(main(), 15))
    assert (status, answer, bad) == (202, {"accepted": 5}, 400)
    assert [e.kind for e in published] == ["error"] * 5


def test_flask_dispatcher_middleware() -> None:
    from werkzeug.test import Client

    sink = Recorder()
    recipe: dict[str, Any] = {"my_sink": sink}
    exec(compile(readme_recipe("DispatcherMiddleware(shop.wsgi_app"), "README.md", "exec"), recipe)
    shop, intake = recipe["shop"], recipe["intake"]
    shop.add_url_rule("/", "index", lambda: "shop")
    client = Client(shop)
    response = client.post("/apm/intake/v2/events?verbose", data=ERRORS, headers=NDJSON)
    assert (response.status_code, json.loads(response.get_data())) == (202, {"accepted": 5})
    assert client.get("/").get_data() == b"shop"
    assert json.loads(client.get("/apm/").get_data())["version"] == "8.15.0"
    assert len(sink.events) == 5
    assert intake.shutdown(timeout=1) is True
    assert client.post("/apm/intake/v2/events", data=ERRORS, headers=NDJSON).status_code == 503


def test_hooks_recipe_builds_an_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe: dict[str, Any] = {}
    exec(compile(readme_recipe("rate_limiter=RateLimiter()"), "README.md", "exec"), recipe)
    assert isinstance(recipe["app"], IntakeASGI)
    assert recipe["app"].authenticator.enabled
