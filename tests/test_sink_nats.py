"""The NATS JetStream sink against a real NATS server: the shared one, or one of
our own to freeze or kill."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from typing import Any

import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

import ndintake
from brokers import batches, copies, run
from ndintake.server import QueueFull, SinkUnavailable
from ndintake.sinks import open_sink
from ndintake.sinks.nats import JetStreamSink, subject_template
from ndintake.sinks.records import batch_key, encode_event, event_key


pytestmark = pytest.mark.e2e  # real brokers

async def stored(server: str, stream: str) -> list[Any]:
    """Every message of the stream, in order (direct gets, no consumer)."""
    nc = await nats.connect(server, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    finally:
        await nc.close()


async def make_stream(server: str, config: StreamConfig) -> None:
    nc = await nats.connect(server, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await nc.jetstream().add_stream(config)
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "name, profile, path",
    [
        ("intake-v2/events.ndjson", "apm", "/intake/v2/events"),
        ("intake-v3/rum_events.ndjson", "rum", "/intake/v3/rum/events"),
    ],
)
def test_records_arrive_as_encoded(shared_nats, name, profile, path):
    server, stream = shared_nats
    sent = batches(name, profile=profile, path=path, size=4)
    sink = open_sink(f"{server}?stream={stream}&subject=test.{stream}.{{profile}}.{{kind}}")
    assert isinstance(sink, JetStreamSink)

    async def go():
        await sink.start()
        for batch in sent:
            await sink(batch)
        await sink.aclose()
        return await stored(server, stream)

    got = run(go())
    want = [(e, b) for b in sent for e in b]
    assert len(got) == len(want) == sink.count
    for msg, (event, batch) in zip(got, want):
        assert msg.data == encode_event(event, batch)
        assert msg.subject == f"test.{stream}.{profile}.{event.kind}"
        assert msg.headers == {
            "Nats-Msg-Id": event_key(event, batch),
            "Ndintake-Kind": event.kind,
            "Ndintake-Profile": profile,
            "Ndintake-Route": path,
        }
    assert sink.duplicates == 0


def test_stream_is_created_with_subjects_from_the_template(shared_nats):
    server, stream = shared_nats
    sink = open_sink(f"{server}?stream={stream}&subject=made.{stream}.{{kind}}.x")

    async def go():
        await sink.start()
        await sink(batches()[0])
        info = await sink._js.stream_info(stream)
        await sink.aclose()
        return info

    info = run(go())
    assert info.config.subjects == [f"made.{stream}.*.x"]
    assert info.state.messages == 4


def test_an_existing_stream_is_used_as_it_is(shared_nats):
    server, stream = shared_nats
    config = StreamConfig(name=stream, subjects=[f"pre.{stream}.>"], storage="memory", max_msgs=1000)
    sink = open_sink(f"{server}?stream={stream}&subject=pre.{stream}.{{profile}}")

    async def go():
        await make_stream(server, config)
        await sink.start()
        await sink(batches()[0])
        info = await sink._js.stream_info(stream)
        await sink.aclose()
        return info

    info = run(go())
    assert (info.config.subjects, info.config.storage, info.config.max_msgs) == ([f"pre.{stream}.>"], "memory", 1000)
    assert info.state.messages == 4


def test_format_batch_messages_are_intake_bodies(shared_nats):
    server, stream = shared_nats
    sent = batches(size=3)
    sink = open_sink(f"{server}?stream={stream}&subject=b.{stream}.{{kind}}&format=batch")

    async def go():
        for batch in sent:
            await sink(batch)
        await sink.aclose()
        return await stored(server, stream)

    got = run(go())
    assert len(got) == len(sent) == 2
    for msg, batch in zip(got, sent):
        result = ndintake.validate(msg.data)
        assert (result.status, result.accepted) == (202, len(batch))
        assert msg.subject == f"b.{stream}.batch" and msg.headers["Nats-Msg-Id"] == batch_key(msg.data)
    assert sink.count == 4


def test_a_retried_batch_is_stored_once(shared_nats):
    server, stream = shared_nats
    sent = batches("intake-v3/rum_events.ndjson", profile="rum", path="/intake/v3/rum/events")
    url = f"{server}?stream={stream}&subject=d.{stream}.{{kind}}"
    first, second = open_sink(url), open_sink(url)  # a retry may reach another process

    async def go():
        for sink in (first, second, first):
            for batch in sent:
                await sink(batch)
        await first.aclose()
        await second.aclose()
        return await stored(server, stream)

    got = run(go())
    events = sum(map(len, sent))
    assert len(got) == events == 11
    assert (first.count, second.count) == (2 * events, events)
    assert (first.duplicates, second.duplicates) == (events, events)


def test_fifty_concurrent_batches(shared_nats):
    server, stream = shared_nats
    base = batches()[0]
    sent = [type(base)(base, profile="apm", metadata=base.metadata, path=f"/p/{i}") for i in range(50)]
    sink = open_sink(f"{server}?stream={stream}&subject=c.{stream}&max_in_flight=16")

    async def go():
        await asyncio.gather(*(sink(b) for b in sent))
        await sink.aclose()
        return await stored(server, stream)

    got = run(go())
    assert len(got) == sink.count == 200
    for batch in sent:  # every batch whole, in order
        assert [m.data for m in got if m.headers["Ndintake-Route"] == batch.path] == [encode_event(e, batch) for e in batch]


def test_full_stream_raises_queue_full(shared_nats):
    server, stream = shared_nats
    config = StreamConfig(name=stream, subjects=[f"full.{stream}"], max_bytes=65536, discard=DiscardPolicy.NEW)
    sink = open_sink(f"{server}?stream={stream}&subject=full.{stream}")
    batch = batches()[0]

    async def go():
        await make_stream(server, config)
        for numbered in copies(batch, 100):  # distinct, so none is deduplicated
            try:
                await sink(numbered)
            except QueueFull as exc:
                await sink.aclose()
                return exc
        raise AssertionError("JetStream never reported a full stream")

    exc = run(go())
    assert "maximum bytes exceeded" in str(exc)
    assert 0 < sink.count < 100 * len(batch)


@pytest.mark.parametrize(
    "template",
    ["a.{service}", "a.{kind}x", "a..b", "a.*", "a.>", "a.{kind!r}", "a.{kind:>5}", "a b", "a.{", "{0}", ""],
)
def test_bad_subject_templates_are_refused(template):
    with pytest.raises(ValueError):
        subject_template(template)
    with pytest.raises(ValueError, match="bad sink"):
        JetStreamSink.from_url(f"nats://127.0.0.1:4222?stream=S&subject={template}")


def test_subject_templates():
    render, wildcard = subject_template("apm.{profile}.{kind}")
    assert (render("rum", "span"), wildcard) == ("apm.rum.span", "apm.*.*")
    assert subject_template("events")[1] == "events"


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ("nats://127.0.0.1:4222?subject=a", "stream= is required"),
        ("nats://127.0.0.1:4222?stream=S", "subject= is required"),
        ("nats://127.0.0.1:4222?stream=a.b&subject=a", "stream name"),
        ("nats://127.0.0.1:4222/x?stream=S&subject=a", "no path"),
        ("nats://127.0.0.1:4222?stream=S&subject=a&timeout=0", "timeout"),
        ("nats://127.0.0.1:4222?stream=S&subject=a&format=json", "format"),
        ("nats://127.0.0.1:4222?stream=S&subject=a&acks=0", "unknown option(s) acks"),
    ],
)
def test_from_url_is_strict(spec, complaint):
    with pytest.raises(ValueError) as info:
        open_sink(spec)
    assert complaint in str(info.value) and spec in str(info.value)


def test_frozen_server_raises_queue_full_then_recovers(own_nats):
    sink = open_sink(f"{own_nats.url}?stream=FROZEN&subject=f&timeout=2")
    one, two, three = copies(batches()[0], 3)
    batch = one

    async def go():
        await sink.start()
        await sink(one)
        own_nats.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(QueueFull, match="no ack"):
                await sink(two)
            assert time.monotonic() - started < 10
        finally:
            own_nats.cont()
        await sink(three)
        await sink.aclose()
        return await stored(own_nats.url, "FROZEN")

    got = run(go())
    assert sink.count == 2 * len(batch)
    # the batch refused while frozen may still have been stored (at-least-once), never more than once
    assert len(got) in (2 * len(batch), 3 * len(batch))


def test_killed_server_raises_sink_unavailable_then_recovers(own_nats, caplog):
    sink = open_sink(f"{own_nats.url}?stream=KILLED&subject=k")
    sent = copies(batches()[0], 5)
    batch = sent[0]

    async def go():
        await sink.start()
        await sink(sent[0])
        own_nats.kill()
        await asyncio.sleep(0.2)
        started = time.monotonic()
        for refused in sent[1:4]:  # refused at once: nothing is buffered while disconnected
            with pytest.raises(SinkUnavailable):
                await sink(refused)
        assert time.monotonic() - started < 10
        await asyncio.to_thread(own_nats.start)  # same port, same store
        for _ in range(100):  # the client reconnects by itself (every second)
            try:
                await sink(sent[4])
                break
            except SinkUnavailable:
                await asyncio.sleep(0.2)
        await sink.aclose()
        return await stored(own_nats.url, "KILLED")

    with caplog.at_level(logging.WARNING, logger="ndintake.sinks"):
        got = run(go())
    assert sink.count == 2 * len(batch) == len(got)  # no refused batch was stored behind our back
    assert [m.headers["Ndintake-Route"] for m in got] == [sent[0].path] * 4 + [sent[4].path] * 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unavailable" in m for m in messages) == 1
    assert any("available again" in m for m in messages)


def test_batches_in_flight_when_the_server_dies_raise_sink_unavailable(own_nats):
    sink = open_sink(f"{own_nats.url}?stream=DIES&subject=d&timeout=30")
    batch = batches()[0]

    async def go():
        await sink.start()
        await sink(batch)
        own_nats.freeze()  # publishes go out, no acks come back
        pending = [asyncio.ensure_future(sink(b)) for b in copies(batch, 5)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        own_nats.kill()
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        assert time.monotonic() - started < 10  # not the 30 s ack timeout
        await sink.aclose()
        return outcomes

    outcomes = run(go())
    assert all(isinstance(o, SinkUnavailable) for o in outcomes), outcomes


def test_unreachable_server_start_does_not_raise(caplog):
    from brokers import free_port

    sink = open_sink(f"nats://127.0.0.1:{free_port()}?stream=S&subject=s")

    async def go():
        with caplog.at_level(logging.WARNING, logger="ndintake.sinks"):
            await sink.start(wait=0.5)
        started = time.monotonic()
        with pytest.raises(SinkUnavailable, match="not connected"):
            await sink(batches()[0])
        assert time.monotonic() - started < 5
        await sink.aclose()

    run(go())
    assert any("is unavailable" in r.getMessage() for r in caplog.records)


def test_aclose_drains_batches_in_flight(own_nats):
    sink = open_sink(f"{own_nats.url}?stream=DRAIN&subject=d&timeout=10")
    batch = batches()[0]

    async def go():
        await sink.start()
        await sink(batch)
        own_nats.freeze()
        try:
            pending = [asyncio.ensure_future(sink(b)) for b in copies(batch, 5)]
            await asyncio.sleep(0.3)
            assert not any(p.done() for p in pending)
            asyncio.get_running_loop().call_later(0.5, own_nats.cont)
            await sink.aclose()
            assert all(p.done() and p.exception() is None for p in pending)
        finally:
            own_nats.cont()
        with pytest.raises(SinkUnavailable, match="closed"):
            await sink(batch)
        return await stored(own_nats.url, "DRAIN")

    got = run(go())
    assert len(got) == sink.count == 6 * len(batch)


def test_missing_nats_py_names_the_extra():
    code = "import sys; sys.modules['nats'] = None; import ndintake.sinks.nats"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "pip install 'ndintake[nats]'" in proc.stderr


def test_server_down_at_start_then_up_without_a_new_sink(own_nats):
    own_nats.kill()
    sink = open_sink(f"{own_nats.url}?stream=LATE&subject=late")
    batch = batches()[0]

    async def go():
        await sink.start(wait=0.5)  # logs, does not raise
        with pytest.raises(SinkUnavailable, match="not connected"):
            await sink(batch)
        await asyncio.to_thread(own_nats.start)
        deadline = time.monotonic() + 15
        while True:  # the first connection is retried every second, in the background
            try:
                await sink(batch)
                break
            except SinkUnavailable:
                assert time.monotonic() < deadline, "never connected"
                await asyncio.sleep(0.2)
        await sink.aclose()
        return await stored(own_nats.url, "LATE")

    got = run(go())
    assert len(got) == sink.count == len(batch)
