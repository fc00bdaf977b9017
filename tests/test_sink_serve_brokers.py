"""The Redis and NATS sinks behind the HTTP apps and ``ndintake serve``: what an
agent sees (202 only after the acks, 503 while the broker is down, frozen or
full) and what arrives in the broker."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from typing import Any

import pytest
import redis

import ndintake
from brokers import NatsServer, RedisServer, run
from httpkit import NDJSON, asgi_scope, body_messages, call_asgi_async, call_wsgi
from ndintake.asgi import IntakeASGI
from ndintake.sinks import BlockingSink, open_sink
from ndintake.wsgi import IntakeWSGI
from test_sink_nats import stored

pytestmark = pytest.mark.e2e  # real brokers

QUEUE_FULL = "cannot handle stream: cannot process batch: queue is full"


def body_for(service: str) -> bytes:
    """``intake-v2/events.ndjson`` (a transaction, a span, an error, a metricset...) under
    its own service name, so each request has its own deduplication keys."""
    lines = ndintake_body().split(b"\n")
    metadata = json.loads(lines[0])
    metadata["metadata"]["service"]["name"] = service
    return b"\n".join([json.dumps(metadata).encode(), *lines[1:]])


def ndintake_body() -> bytes:
    from brokers import DATA

    return (DATA / "intake-v2" / "events.ndjson").read_bytes()


ACCEPTED = ndintake.validate(ndintake_body()).accepted


async def post(app: IntakeASGI, body: bytes) -> Any:
    reply = await call_asgi_async(app, asgi_scope(headers=NDJSON, query="verbose"), body_messages([body]))
    assert reply is not None
    return reply


def redis_services(url: str, stream: str) -> Counter[str]:
    with redis.Redis.from_url(url.partition("?")[0], socket_timeout=5) as client:
        return Counter(json.loads(f[b"record"])["metadata"]["service"]["name"] for _, f in client.xrange(stream))


def nats_services(server: str, stream: str) -> Counter[str]:
    return Counter(json.loads(m.data)["metadata"]["service"]["name"] for m in run(stored(server, stream)))


# -- the official agent through ndintake serve --------------------------------------


@pytest.mark.parametrize("broker", ["redis", "nats"])
def test_python_agent_through_ndintake_serve_two_workers_exactly_once(broker, request):
    from httpkit import python_agent_traffic
    from servekit import ServeProcess

    if broker == "redis":
        url, stream = request.getfixturevalue("shared_redis")
        spec = url
    else:
        server_url, stream = request.getfixturevalue("shared_nats")
        spec = f"{server_url}?stream={stream}&subject=e2e.{stream}.{{kind}}"
    server = ServeProcess("--workers", "2", "--sink", spec)
    try:
        python_agent_traffic(server.url, f"e2e-{broker}")
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    if broker == "redis":
        with redis.Redis.from_url(url.partition("?")[0], socket_timeout=5) as client:
            records = [json.loads(f[b"record"]) for _, f in client.xrange(stream)]
    else:
        records = [json.loads(m.data) for m in run(stored(server_url, stream))]
    kinds = Counter(r["kind"] for r in records)
    assert (kinds["transaction"], kinds["span"], kinds["error"]) == (4, 8, 5), kinds
    for kind in ("transaction", "span", "error"):
        ids = [r["data"]["id"] for r in records if r["kind"] == kind]
        assert len(set(ids)) == len(ids)  # each exactly once
    assert all(r["metadata"]["service"]["name"] == f"e2e-{broker}" for r in records)


# -- outages under concurrent load ------------------------------------------------------


def sink_spec(kind: str, server: RedisServer | NatsServer, timeout: float) -> str:
    if kind == "redis":
        return f"{server.url}?stream=load&timeout={timeout:g}"
    return f"{server.url}?stream=LOAD&subject=load.{{kind}}&timeout={timeout:g}"


def services_in(kind: str, server: RedisServer | NatsServer) -> Counter[str]:
    return redis_services(server.url + "?", "load") if kind == "redis" else nats_services(server.url, "LOAD")


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_killed_broker_under_load_no_202_without_its_events(kind, request):
    server = request.getfixturevalue(f"own_{kind}")
    sink = open_sink(sink_spec(kind, server, 3))
    app = IntakeASGI(sink=sink)
    answers: dict[str, int] = {}

    async def client(name: str, pause: float) -> None:
        for i in range(40):
            service = f"{name}-{i}"
            answers[service] = (await post(app, body_for(service))).status
            await asyncio.sleep(pause)

    async def main() -> None:
        await sink.start()
        load = asyncio.gather(*(client(f"c{n}", 0.02) for n in range(6)))
        await asyncio.sleep(0.3)
        server.kill()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)  # same port, same sink, no restart of ours
        await load
        deadline = time.monotonic() + 20
        while (await post(app, body_for("after"))).status != 202:  # recovered by itself
            assert time.monotonic() < deadline, "no 202 after the broker came back"
            await asyncio.sleep(0.2)
        answers["after"] = 202
        await sink.aclose()

    run(main(), 90)
    statuses = Counter(answers.values())
    assert set(statuses) <= {202, 503} and statuses[503] > 0 and statuses[202] > 0, statuses
    stored_ = services_in(kind, server)
    for service, status in answers.items():  # acknowledged writes survive the kill (AOF / file store)
        if status == 202:
            assert stored_[service] == ACCEPTED, (service, stored_[service])


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_frozen_broker_gives_503_within_the_bound_then_202(kind, request):
    server = request.getfixturevalue(f"own_{kind}")
    sink = open_sink(sink_spec(kind, server, 1))
    app = IntakeASGI(sink=sink)

    async def main() -> list[Any]:
        await sink.start()
        replies = [await post(app, body_for("before"))]
        server.freeze()
        try:
            started = time.monotonic()
            replies.append(await post(app, body_for("frozen")))
            assert time.monotonic() - started < 10
        finally:
            server.cont()
        replies.append(await post(app, body_for("thawed")))
        await sink.aclose()
        return replies

    replies = run(main())
    assert [r.status for r in replies] == [202, 503, 202]
    assert replies[1].json["errors"][0]["message"] == QUEUE_FULL


def test_full_redis_gives_503_queue_is_full(own_redis):
    with redis.Redis.from_url(own_redis.url) as client:
        client.config_set("maxmemory", "1mb")
    sink = open_sink(f"{own_redis.url}?stream=full")
    app = IntakeASGI(sink=sink)

    async def main() -> Any:
        for i in range(2000):
            reply = await post(app, body_for(f"s{i}"))
            if reply.status != 202:
                return reply
        raise AssertionError("Redis never filled up")

    reply = run(main())
    assert reply.status == 503 and reply.json["errors"][0]["message"] == QUEUE_FULL


def test_retried_request_is_deduplicated_on_jetstream(shared_nats):
    server, stream = shared_nats
    sink = open_sink(f"{server}?stream={stream}&subject=r.{stream}.{{kind}}")
    app = IntakeASGI(sink=sink)
    body = body_for("retried")

    async def main() -> list[Any]:
        replies = [await post(app, body) for _ in range(3)]
        await sink.aclose()
        return replies

    replies = run(main())
    assert [r.status for r in replies] == [202] * 3  # the agent sees its retries accepted
    assert nats_services(server, stream) == Counter({"retried": ACCEPTED})  # stored once
    assert sink.duplicates == 2 * ACCEPTED


# -- WSGI and ASGI alike --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_wsgi_and_asgi_give_the_same_answers(kind, request):
    server = request.getfixturevalue(f"own_{kind}")
    spec = sink_spec(kind, server, 2)
    bodies = [body_for("same"), b'{"metadata": {}}\n', body_for("partly") + b'{"span": {}}\n']

    async def asgi_answers() -> list[Any]:
        sink = open_sink(spec)
        app = IntakeASGI(sink=sink)
        await sink.start()
        replies = [await post(app, b) for b in bodies]
        server.kill()
        replies.append(await post(app, bodies[0]))
        await asyncio.to_thread(server.start)
        await sink.aclose()
        return replies

    def wsgi_answers() -> list[Any]:
        sink = BlockingSink(open_sink(spec))
        try:
            app = IntakeWSGI(sink=sink)
            replies = [call_wsgi(app, body=b, headers=NDJSON, query="verbose") for b in bodies]
            server.kill()
            replies.append(call_wsgi(app, body=bodies[0], headers=NDJSON, query="verbose"))
            server.start()
            return replies
        finally:
            sink.close()

    via_asgi = run(asgi_answers())
    via_wsgi = wsgi_answers()
    assert [r.comparable() for r in via_asgi] == [r.comparable() for r in via_wsgi]
    assert [r.status for r in via_asgi] == [202, 400, 400, 503]
    assert via_asgi[3].json["errors"][0]["message"] == QUEUE_FULL
