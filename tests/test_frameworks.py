"""The README's "Serving HTTP" recipes, run: Starlette/FastAPI Mount, aiohttp, Flask.

The code below is the README's, with the names it leaves open filled in.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import ndintake
from ndintake.asgi import IntakeASGI
from ndintake.server import Authenticator
from ndintake.wsgi import IntakeWSGI

from httpkit import NDJSON, Recorder, body_of, cut, python_agent_traffic

ERRORS = body_of("intake-v2/errors.ndjson")


def test_starlette_mount_with_a_python_agent_behind_a_prefix() -> None:
    """Mounted under /apm; the official agent, given server_url .../apm, finds every route."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    sink = Recorder()
    intake = IntakeASGI(sink=sink, authenticator=Authenticator(secret_token="s3cr3t"))

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        await intake.shutdown(timeout=10)  # mounted apps get no lifespan events of their own

    app = Starlette(
        routes=[Route("/", lambda r: PlainTextResponse("shop")), Mount("/apm", app=intake)], lifespan=lifespan
    )

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
        client = python_agent_traffic(url, "mounted", secret_token="s3cr3t", metrics=False)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert client.server_version == (8, 15, 0)
    kinds = {e.kind for e in sink.events}
    assert {"transaction", "span", "error"} <= kinds
    assert intake.draining  # the parent's lifespan shut it down


def test_aiohttp_feeding_intake_stream() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    published: list[ndintake.Event] = []

    async def publish(events: list[ndintake.Event]) -> None:
        published.extend(events)

    # -- the README's code --
    async def intake(request: web.Request) -> web.Response:
        stream = ndintake.IntakeStream(content_encoding=request.headers.get("Content-Encoding"))
        async for chunk in request.content.iter_chunked(64 * 1024):
            await publish(stream.feed(chunk))  # the events each chunk completed
            if stream.finished:  # a fatal error: stop reading
                break
        result = stream.close()
        await publish(result.final_events)
        if result.status == 202 and "verbose" not in request.query:
            return web.Response(status=202)
        return web.Response(status=result.status, body=result.body(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/intake/v2/events", intake)
    # -- end --

    async def main() -> tuple[int, Any, int]:
        async def body() -> Any:
            for piece in cut(ERRORS, 40):
                yield piece

        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            verbose = await client.post("/intake/v2/events?verbose", data=body(), headers=NDJSON)
            plain = await client.post(
                "/intake/v2/events", data=body_of("intake-v2/invalid-event-type.ndjson"), headers=NDJSON
            )
            return verbose.status, json.loads(await verbose.read()), plain.status

    status, answer, bad = asyncio.run(asyncio.wait_for(main(), 15))
    assert (status, answer, bad) == (202, {"accepted": 5}, 400)
    assert [e.kind for e in published] == ["error"] * 5


def test_flask_dispatcher_middleware() -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.test import Client

    sink = Recorder()
    # -- the README's code --
    shop = Flask("shop")
    intake = IntakeWSGI(sink=sink)
    shop.wsgi_app = DispatcherMiddleware(shop.wsgi_app, {"/apm": intake})  # type: ignore[method-assign]
    # -- end --
    shop.add_url_rule("/", "index", lambda: "shop")
    client = Client(shop)
    response = client.post("/apm/intake/v2/events?verbose", data=ERRORS, headers=NDJSON)
    assert (response.status_code, json.loads(response.get_data())) == (202, {"accepted": 5})
    assert client.get("/").get_data() == b"shop"
    assert json.loads(client.get("/apm/").get_data())["version"] == "8.15.0"
    assert len(sink.events) == 5
    assert intake.shutdown(timeout=1) is True
    assert client.post("/apm/intake/v2/events", data=ERRORS, headers=NDJSON).status_code == 503
