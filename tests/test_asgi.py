"""The ASGI app: streaming body messages, async sinks, timeout, lifespan and shutdown, mounting."""

from __future__ import annotations

import asyncio
import json
from typing import Any, MutableMapping

import pytest

from ndintake.asgi import IntakeASGI, request_from_scope
from ndintake.server import SERVER_VERSION, QueueFull

from httpkit import (
    NDJSON,
    Recorder,
    asgi_scope,
    body_messages,
    body_of,
    call_asgi,
    call_asgi_async,
    cut,
)

ERRORS = body_of("intake-v2/errors.ndjson")
RATELIMIT = body_of("intake-v2/ratelimit.ndjson")


def run(coro: Any, timeout: float = 10) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_post_with_many_small_messages() -> None:
    sink = Recorder()
    reply = call_asgi(IntakeASGI(sink=sink), body=RATELIMIT, headers=NDJSON, query="verbose", chunk=3)
    assert (reply.status, reply.json) == (202, {"accepted": 19})
    assert sink.sizes == [10, 9]
    assert reply.header("x-content-type-options") == "nosniff"


def test_empty_messages_and_a_final_empty_one_are_fine() -> None:
    messages = [
        {"type": "http.request", "body": b"", "more_body": True},
        *[{"type": "http.request", "body": c, "more_body": True} for c in cut(ERRORS, 100)],
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    reply = run(call_asgi_async(IntakeASGI(), asgi_scope(headers=NDJSON, query="verbose"), messages))
    assert reply is not None and (reply.status, reply.json) == (202, {"accepted": 5})


def test_the_body_is_streamed_not_buffered() -> None:
    """The first batch reaches the sink before the last body message is even received."""
    chunks = cut(RATELIMIT, 200)
    sink = Recorder()
    seen_before_last: list[int] = []

    async def main() -> Any:
        messages = body_messages(chunks)
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            message = messages.pop(0)
            if not message["more_body"]:
                seen_before_last.append(len(sink.events))
            return message

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await IntakeASGI(sink=sink)(asgi_scope(headers=NDJSON), receive, send)
        return sent

    sent = run(main())
    assert sent[0]["status"] == 202
    assert seen_before_last == [10]
    assert sink.sizes == [10, 9]


def test_async_sink_and_async_queue_full() -> None:
    got: list[int] = []

    async def sink(batch: Any) -> None:
        await asyncio.sleep(0)
        if got:
            raise QueueFull
        got.append(len(batch))

    reply = call_asgi(IntakeASGI(sink=sink), body=RATELIMIT, headers=NDJSON)
    assert reply.status == 503
    assert reply.json == {
        "accepted": 10,
        "errors": [{"message": "cannot handle stream: cannot process batch: queue is full"}],
    }
    assert got == [10]


def test_asyncio_queue_as_sink() -> None:
    async def main() -> tuple[Any, asyncio.Queue]:
        q: asyncio.Queue = asyncio.Queue(maxsize=1)
        app = IntakeASGI(sink=q)
        reply = await call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages([RATELIMIT]))
        return reply, q

    reply, q = run(main())
    assert reply.status == 503 and reply.json["accepted"] == 10
    assert q.qsize() == 1 and len(q.get_nowait()) == 10


def test_timeout_while_waiting_for_the_body() -> None:
    async def main() -> Any:
        app = IntakeASGI(timeout=0.2)
        started = asyncio.get_running_loop().time()
        # one chunk, then the client goes silent: receive() blocks
        reply = await call_asgi_async(
            app, asgi_scope(headers=NDJSON), [{"type": "http.request", "body": ERRORS[:50], "more_body": True}]
        )
        return reply, asyncio.get_running_loop().time() - started

    reply, took = run(main())
    assert (reply.status, reply.json) == (503, {"accepted": 0, "errors": [{"message": "request timed out"}]})
    assert reply.header("connection") == "Close"
    assert 0.15 < took < 10  # cut off at the timeout, not after the client gave up


def test_timeout_while_waiting_for_a_slow_sink() -> None:
    async def slow(batch: Any) -> None:
        await asyncio.sleep(5)

    reply = call_asgi(IntakeASGI(sink=slow, timeout=0.2), body=ERRORS, headers=NDJSON)
    assert (reply.status, reply.json) == (503, {"accepted": 0, "errors": [{"message": "request timed out"}]})  # the batch in flight is not counted


def test_client_disconnect_sends_nothing() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": ERRORS[:60], "more_body": True},
        {"type": "http.disconnect"},
    ]
    app = IntakeASGI()
    assert run(call_asgi_async(app, asgi_scope(headers=NDJSON), messages)) is None
    assert app.active == 0


def test_lifespan_and_graceful_shutdown() -> None:
    """In-flight requests finish; new ones get 503 while the app drains."""

    async def main() -> dict[str, Any]:
        sink = Recorder()
        app = IntakeASGI(sink=sink)
        life_in: asyncio.Queue = asyncio.Queue()
        life_out: list[MutableMapping[str, Any]] = []

        async def life_send(message: MutableMapping[str, Any]) -> None:
            life_out.append(message)

        lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, life_in.get, life_send))
        await life_in.put({"type": "lifespan.startup"})
        await asyncio.sleep(0.01)

        # a request in flight: half its body sent, the rest held back
        body_in: asyncio.Queue = asyncio.Queue()
        first, rest = RATELIMIT[:400], RATELIMIT[400:]
        await body_in.put({"type": "http.request", "body": first, "more_body": True})
        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        inflight = asyncio.ensure_future(app(asgi_scope(headers=NDJSON, query="verbose"), body_in.get, send))
        await asyncio.sleep(0.05)
        assert app.active == 1

        await life_in.put({"type": "lifespan.shutdown"})
        await asyncio.sleep(0.1)
        assert app.draining and not lifespan.done()  # waiting for the request in flight

        late = await call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages([ERRORS]))
        root = await call_asgi_async(app, asgi_scope("GET", "/"), body_messages([]))

        await body_in.put({"type": "http.request", "body": rest, "more_body": False})
        await asyncio.wait_for(inflight, 5)
        await asyncio.wait_for(lifespan, 5)
        return {"life": life_out, "late": late, "root": root, "sent": sent, "sink": sink}

    out = run(main())
    assert [m["type"] for m in out["life"]] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert (out["late"].status, out["late"].json) == (503, {"error": "server is shutting down"})
    assert out["root"].status == 200
    assert out["sent"][0]["status"] == 202
    assert json.loads(out["sent"][1]["body"]) == {"accepted": 19}
    assert len(out["sink"].events) == 19


def test_shutdown_gives_up_after_its_timeout() -> None:
    async def main() -> tuple[bool, bool]:
        app = IntakeASGI()
        never: asyncio.Queue = asyncio.Queue()

        async def send(message: MutableMapping[str, Any]) -> None:
            pass

        task = asyncio.ensure_future(app(asgi_scope(headers=NDJSON), never.get, send))
        await asyncio.sleep(0.02)
        drained = await app.shutdown(timeout=0.1)
        task.cancel()
        return drained, await IntakeASGI().shutdown(timeout=0.1)

    assert run(main()) == (False, True)


def test_request_from_scope() -> None:
    scope = asgi_scope("post", "/apm/intake/v2/events", {"X-A": "1"}, query="verbose", root_path="/apm")
    scope["headers"].append((b"x-a", b"2"))
    req = request_from_scope(scope)
    assert (req.method, req.path, req.query, req.client) == ("POST", "/intake/v2/events", "verbose", "127.0.0.1")
    assert req.headers["x-a"] == "1, 2"
    # a server that strips the mount prefix itself
    assert request_from_scope(asgi_scope(path="/intake/v2/events", root_path="/apm")).path == "/intake/v2/events"
    assert request_from_scope({**asgi_scope(), "client": None}).client is None
    assert request_from_scope(asgi_scope(path="/apm", root_path="/apm")).path == "/"
    assert request_from_scope(asgi_scope(path="/apmx/intake/v2/events", root_path="/apm")).path == "/apmx/intake/v2/events"


def test_other_scope_types_are_ignored() -> None:
    async def main() -> list[Any]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "websocket.connect"}

        await IntakeASGI()({"type": "websocket"}, receive, send)
        return sent

    assert run(main()) == []


def test_mounted_in_starlette() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    sink = Recorder()
    intake = IntakeASGI(sink=sink)
    app = Starlette(routes=[Route("/health", lambda request: PlainTextResponse("ok")), Mount("/apm", app=intake)])

    async def main() -> tuple[Any, Any]:
        scope = asgi_scope(headers=NDJSON, path="/apm/intake/v2/events", query="verbose")
        scope["app"] = app
        reply = await call_asgi_async(app, scope, body_messages(cut(ERRORS, 64)))
        info = await call_asgi_async(app, asgi_scope("GET", "/apm/"), body_messages([]))
        return reply, info

    reply, info = run(main())
    assert (reply.status, reply.json) == (202, {"accepted": 5})
    assert len(sink.events) == 5
    assert info.json["version"] == SERVER_VERSION


def test_any_sink_callable_object_with_async_call() -> None:
    class Sink:
        def __init__(self) -> None:
            self.n = 0

        async def __call__(self, batch: Any) -> None:
            self.n += len(batch)

    sink = Sink()
    assert call_asgi(IntakeASGI(sink=sink), body=ERRORS, headers=NDJSON).status == 202
    assert sink.n == 5


@pytest.mark.parametrize("chunk", [1, 1000])
def test_gzip_body_in_tiny_messages(chunk: int) -> None:
    import gzip

    reply = call_asgi(
        IntakeASGI(),
        body=gzip.compress(RATELIMIT),
        headers={**NDJSON, "Content-Encoding": "gzip"},
        query="verbose",
        chunk=chunk,
    )
    assert reply.json == {"accepted": 19}
