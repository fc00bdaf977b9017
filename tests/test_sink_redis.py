"""The Redis Streams sink against a real Redis: the shared one, or one of our own
to fill, freeze or kill."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import pytest
import redis

import ndintake
from brokers import batches, run
from ndintake.server import QueueFull, SinkUnavailable
from ndintake.sinks import open_sink
from ndintake.sinks.records import batch_key, encode_event, event_key
from ndintake.sinks.redis import RedisStreamSink


pytestmark = pytest.mark.e2e  # real brokers

def entries(url: str, stream: str) -> list[dict[bytes, bytes]]:
    with redis.Redis.from_url(url.partition("?")[0], socket_timeout=5) as client:
        return [fields for _, fields in client.xrange(stream)]


@pytest.mark.parametrize(
    "name, profile, path",
    [
        ("intake-v2/events.ndjson", "apm", "/intake/v2/events"),
        ("intake-v3/rum_events.ndjson", "rum", "/intake/v3/rum/events"),
    ],
)
def test_records_arrive_as_encoded(shared_redis, name, profile, path):
    url, stream = shared_redis
    sent = batches(name, profile=profile, path=path)
    sink = open_sink(url)
    assert isinstance(sink, RedisStreamSink)

    async def go():
        await sink.start()
        for batch in sent:
            await sink(batch)
        await sink.aclose()

    run(go())
    expected = [
        {b"record": encode_event(e, b), b"kind": e.kind.encode(), b"profile": profile.encode(),
         b"route": path.encode(), b"key": event_key(e, b).encode()}
        for b in sent for e in b
    ]  # fmt: skip
    assert entries(url, stream) == expected
    assert sink.count == len(expected) == sum(map(len, sent))
    assert len({e[b"key"] for e in expected}) == len(expected)


def test_format_batch_entries_are_intake_bodies(shared_redis):
    url, stream = shared_redis
    sent = batches(size=2)
    sink = open_sink(url + "&format=batch")

    async def go():
        for batch in sent:
            await sink(batch)
        await sink.aclose()

    run(go())
    got = entries(url, stream)
    assert len(got) == len(sent) > 1
    for fields, batch in zip(got, sent):
        result = ndintake.validate(fields[b"record"])
        assert (result.status, result.accepted) == (202, len(batch))
        assert fields[b"kind"] == b"batch" and fields[b"key"] == batch_key(fields[b"record"]).encode()
    assert sink.count == sum(map(len, sent))


def test_maxlen_trims_the_stream(shared_redis):
    url, stream = shared_redis
    batch = batches()[0]
    sink = open_sink(url + "&maxlen=20")

    async def go():
        for _ in range(1000 // len(batch) + 1):
            await sink(batch)
        await sink.aclose()

    run(go())
    assert sink.count > 1000
    # MAXLEN ~ 20 trims whole nodes (100 entries each by default): well under 1000, at least 20
    assert 20 <= len(entries(url, stream)) <= 200


def test_fifty_concurrent_batches(shared_redis):
    url, stream = shared_redis
    base = batches()
    sent = [type(b)(b, profile=b.profile, metadata=b.metadata, path=f"/intake/v2/events/{i}")
            for i in range(50) for b in base[:1]]  # fmt: skip
    sink = open_sink(url + "&max_in_flight=16")

    async def go():
        await asyncio.gather(*(sink(b) for b in sent))
        await sink.aclose()

    run(go())
    got = entries(url, stream)
    assert len(got) == sink.count == 50 * len(base[0])
    for batch in sent:  # every batch whole, in order
        mine = [e[b"record"] for e in got if e[b"route"] == batch.path.encode()]
        assert mine == [encode_event(e, batch) for e in batch]


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ("redis://127.0.0.1:6379", "stream= is required"),
        ("redis://127.0.0.1:6379/0?stream=s&maxlen=0", "maxlen"),
        ("redis://127.0.0.1:6379/zero?stream=s", "database"),
        ("redis://127.0.0.1:6379?stream=s&format=lines", "format"),
        ("redis://127.0.0.1:6379?stream=s&timeout=-1", "timeout"),
        ("redis://127.0.0.1:6379?stream=s&max_in_flight=x", "max_in_flight"),
        ("redis://127.0.0.1:6379?stream=s&maxlenn=5", "unknown option(s) maxlenn"),
        ("redis://127.0.0.1:notaport?stream=s", "bad sink"),
    ],
)
def test_from_url_is_strict(spec, complaint):
    with pytest.raises(ValueError) as info:
        open_sink(spec)
    assert complaint in str(info.value) and spec in str(info.value)


def test_from_url_options():
    sink = RedisStreamSink.from_url("redis://:pw@10.1.2.3:7000/3?stream=s&maxlen=5&format=batch&timeout=2.5&max_in_flight=3")
    assert (sink.stream, sink.maxlen, sink.format, sink.timeout, sink.max_in_flight) == ("s", 5, "batch", 2.5, 3)
    kwargs = sink._redis.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("10.1.2.3", 7000, 3, "pw")


def test_full_redis_raises_queue_full(own_redis):
    with redis.Redis.from_url(own_redis.url) as client:
        client.config_set("maxmemory", "1mb")
    sink = open_sink(own_redis.url + "?stream=full")
    batch = batches()[0]

    async def go():
        for _ in range(2000):  # ~ 10 MB of records: far over 1 MB
            try:
                await sink(batch)
            except QueueFull as exc:
                return exc
        raise AssertionError("Redis never reported out of memory")

    exc = run(go())
    assert "maxmemory" in str(exc)
    assert 0 < sink.count < 2000 * len(batch)


def test_frozen_redis_raises_queue_full_then_recovers(own_redis):
    sink = open_sink(own_redis.url + "?stream=frozen&timeout=3&max_in_flight=1")
    batch = batches()[0]

    async def go():
        await sink(batch)
        own_redis.freeze()
        try:
            started = time.monotonic()
            first = asyncio.ensure_future(sink(batch))
            await asyncio.sleep(0.1)
            with pytest.raises(QueueFull, match="batches in flight"):  # no slot free within 1 s
                await sink(batch)
            with pytest.raises(QueueFull, match="within 3 s"):
                await first
            assert time.monotonic() - started < 10
        finally:
            own_redis.cont()
        await sink(batch)
        await sink.aclose()

    run(go())
    assert sink.count == 2 * len(batch)


def test_killed_redis_raises_sink_unavailable_then_recovers(own_redis, caplog):
    sink = open_sink(own_redis.url + "?stream=killed")
    batch = batches()[0]

    async def go():
        await sink(batch)
        own_redis.kill()
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(SinkUnavailable, match="onnect"):
                await sink(batch)
        assert time.monotonic() - started < 10
        own_redis.start()  # same port, same sink
        await sink(batch)
        await sink.aclose()

    with caplog.at_level(logging.WARNING, logger="ndintake.sinks"):
        run(go())
    assert sink.count == 2 * len(batch)
    # the AOF kept the first batch through the kill; the refused ones were never written
    assert len(entries(own_redis.url + "?", "killed")) == 2 * len(batch)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unavailable" in m for m in messages) == 1  # one outage, logged once
    assert any("available again" in m for m in messages)


def test_unreachable_redis_fails_fast_and_start_does_not_raise(caplog):
    sink = open_sink(f"redis://127.0.0.1:{_closed_port()}?stream=s")

    async def go():
        with caplog.at_level(logging.WARNING, logger="ndintake.sinks"):
            await sink.start()
        started = time.monotonic()
        with pytest.raises(SinkUnavailable):
            await sink(batches()[0])
        assert time.monotonic() - started < 5
        await sink.aclose()

    run(go())
    assert any("is unavailable" in r.getMessage() for r in caplog.records)


def test_aclose_drains_batches_in_flight(own_redis):
    sink = open_sink(own_redis.url + "?stream=drain&timeout=10")
    batch = batches()[0]

    async def go():
        await sink(batch)
        own_redis.freeze()
        try:
            pending = [asyncio.ensure_future(sink(batch)) for _ in range(5)]
            await asyncio.sleep(0.3)
            assert not any(p.done() for p in pending)
            asyncio.get_running_loop().call_later(0.5, own_redis.cont)
            await sink.aclose()  # returns only once the 5 batches are acknowledged
            assert all(p.done() and p.exception() is None for p in pending)
        finally:
            own_redis.cont()
        with pytest.raises(SinkUnavailable, match="closed"):
            await sink(batch)

    run(go())
    assert sink.count == 6 * len(batch)
    assert len(entries(own_redis.url + "?", "drain")) == 6 * len(batch)


def test_missing_redis_py_names_the_extra():
    code = "import sys; sys.modules['redis'] = None; import ndintake.sinks.redis"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "pip install 'ndintake[redis]'" in proc.stderr


def _closed_port() -> int:
    from brokers import free_port

    return free_port()
