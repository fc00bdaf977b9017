"""BlockingSink: an async broker sink behind a synchronous call (IntakeWSGI, threads)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from brokers import batches, copies, free_port, run
from ndintake.server import QueueFull, SinkUnavailable
from ndintake.sinks import open_sink
from ndintake.sinks.blocking import BlockingSink
from ndintake.sinks.records import encode_event
from ndintake.wsgi import IntakeWSGI


pytestmark = pytest.mark.e2e  # real brokers

def xlen(url: str, stream: str) -> int:
    with redis.Redis.from_url(url.partition("?")[0], socket_timeout=5) as client:
        return int(client.xlen(stream))


def sink_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ndintake-sink"]


def test_many_threads_share_one_blocking_sink(shared_redis):
    url, stream = shared_redis
    sent = copies(batches()[0], 50)
    with BlockingSink(open_sink(url)) as sink, ThreadPoolExecutor(8) as pool:
        assert list(pool.map(sink, sent)) == [None] * 50
        assert sink.count == 200
    assert xlen(url, stream) == 200


def test_intake_wsgi_with_a_broker_sink(shared_nats):
    server, stream = shared_nats
    sink = BlockingSink(open_sink(f"{server}?stream={stream}&subject=w.{stream}.{{kind}}"))
    app = IntakeWSGI(sink=sink)
    body = (Path(__file__).resolve().parent.parent / "examples" / "events.ndjson").read_bytes()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/intake/v2/events", "QUERY_STRING": "verbose",
        "CONTENT_TYPE": "application/x-ndjson", "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
    }  # fmt: skip
    statuses: list[str] = []
    try:
        answer = b"".join(app(environ, lambda status, headers: statuses.append(status)))
        assert (statuses, answer) == (["202 Accepted"], b'{"accepted":4}\n')
        assert sink.count == 4
    finally:
        sink.close()

    async def count() -> int:
        import nats

        nc = await nats.connect(server, connect_timeout=2, max_reconnect_attempts=0)
        try:
            return (await nc.jetstream().stream_info(stream)).state.messages
        finally:
            await nc.close()

    assert run(count()) == 4


def test_errors_reach_the_calling_thread_within_the_bound():
    sink = BlockingSink(open_sink(f"redis://127.0.0.1:{free_port()}?stream=s"))
    try:
        started = time.monotonic()
        with pytest.raises(SinkUnavailable):
            sink(batches()[0])
        assert time.monotonic() - started < 10
    finally:
        sink.close()


def test_frozen_broker_gives_queue_full_in_the_calling_thread(own_redis):
    sink = BlockingSink(open_sink(own_redis.url + "?stream=f&timeout=1"))
    try:
        sink(batches()[0])
        own_redis.freeze()
        started = time.monotonic()
        with pytest.raises(QueueFull):
            sink(batches()[0])
        assert time.monotonic() - started < 10
    finally:
        own_redis.cont()
        sink.close()


def test_close_drains_then_stops_the_thread(own_redis):
    before = len(sink_threads())
    url = own_redis.url + "?stream=d&timeout=10"
    sink = BlockingSink(open_sink(url))
    assert len(sink_threads()) == before + 1
    sent = copies(batches()[0], 4)
    sink(sent[0])
    own_redis.freeze()
    try:
        with ThreadPoolExecutor(3) as pool:
            pending = [pool.submit(sink, b) for b in sent[1:]]
            time.sleep(0.3)
            assert not any(p.done() for p in pending)
            threading.Timer(0.5, own_redis.cont).start()
            sink.close()  # waits for the three batches
            # delivered before close returned; the pool's threads may take a moment to wake
            # (had close not waited, the stopped loop would never finish them)
            assert [p.result(5) for p in pending] == [None] * 3
    finally:
        own_redis.cont()
    assert len(sink_threads()) == before
    assert xlen(url, "d") == 16 == sink.count
    with pytest.raises(SinkUnavailable, match="closed"):
        sink(sent[0])
    sink.close()  # idempotent


def test_a_call_past_the_sinks_bound_is_abandoned():
    class Stuck:
        bound = 0.2

        async def __call__(self, batch):
            await asyncio.sleep(3600)

    sink = BlockingSink(Stuck())
    sink._wait = 0.5  # instead of bound + 5 s
    try:
        started = time.monotonic()
        with pytest.raises(QueueFull, match="no answer"):
            sink(batches()[0])
        assert time.monotonic() - started < 5
    finally:
        sink.close()


def test_records_are_the_async_sinks(shared_redis):
    url, stream = shared_redis
    batch = batches()[0]
    with BlockingSink(open_sink(url)) as sink:
        sink(batch)
    with redis.Redis.from_url(url.partition("?")[0]) as client:
        assert [f[b"record"] for _, f in client.xrange(stream)] == [encode_event(e, batch) for e in batch]
