"""The Kafka sink against a Kafka-protocol broker: librdkafka's mock cluster
(``tests/kafka_broker.py``), started in a child process on free ports. These
tests fail, never skip, when it cannot be started (confluent-kafka missing)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any, Iterator

import orjson
import pytest
from conftest import load

import ndintake
from ndintake import QueueFull, SinkUnavailable
from ndintake.server import Batch
from ndintake.sinks import open_sink, records

import confluent_kafka
from kafka_broker import KafkaBroker

from ndintake.sinks.kafka import KafkaSink

PRODLYTICS = orjson.dumps([
    {"type": "server", "application": {"id": "app-1"}, "event": {"name": f"paid.{n}"}, "usr": {"id": f"u{n}"}}
    for n in range(2)
])


# -- helpers -------------------------------------------------------------------


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def batches_of(body: bytes, *, profile: str = "apm", path: str = "/intake/v2/events") -> list[Batch]:
    """The batches the server would hand a sink for ``body``: ten events each."""
    got: list[ndintake.Event] = []
    result = ndintake.validate(body, profile=profile, sink=got.extend)
    assert result.ok, result.to_json()
    metadata = None if profile == "prodlytics" else orjson.loads(body.split(b"\n", 1)[0])["metadata"]
    return [Batch(got[i : i + 10], profile=profile, metadata=metadata, path=path) for i in range(0, len(got), 10)]


def consume(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list[Any]:
    """Exactly ``n`` messages from every partition of ``topic`` (fails if fewer
    arrive within ``timeout``; waits a moment for any extra)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{time.monotonic_ns()}", "enable.auto.commit": False,
         "auto.offset.reset": "earliest", "logger": __import__("logging").getLogger("test.kafka")}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                assert message.error() is None, message.error()
                out.append(message)
        extra_until = time.monotonic() + 0.5
        while time.monotonic() < extra_until:
            out.extend(m for m in consumer.consume(1000, 0.1) if m.error() is None)
        assert len(out) == n, f"{len(out)} messages in {topic!r}, expected {n}"
        return out
    finally:
        consumer.close()


def headers_of(message: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in message.headers() or []}


_topics = iter(range(10**6))


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(3) as started:
        yield started


@pytest.fixture()
def topic(broker: KafkaBroker) -> str:
    name = f"events-{next(_topics)}"
    broker.create_topic(name, 6)
    return name


def sink_for(broker: KafkaBroker, topic: str, **options: Any) -> KafkaSink:
    query = "&".join(f"{k}={v}" for k, v in {"topic": topic, **options}.items())
    sink = open_sink(f"kafka://{broker.first}?{query}")
    assert isinstance(sink, KafkaSink)
    return sink


async def deliver(sink: KafkaSink, batches: list[Batch]) -> None:
    await sink.start()
    try:
        for batch in batches:
            await sink(batch)
    finally:
        await sink.aclose()


# -- URL -------------------------------------------------------------------------


def test_url_options_are_read_strictly() -> None:
    sink = KafkaSink.from_url("kafka://broker.example:9093?topic=apm&format=batch&timeout=2.5&max_in_flight=8&compression=gzip")
    assert (sink.bootstrap_servers, sink.topic, sink.format, sink.timeout, sink.max_in_flight) == (
        "broker.example:9093", "apm", "batch", 2.5, 8)
    assert sink._config["compression.type"] == "gzip"
    assert sink._config["acks"] == "all" and sink._config["enable.idempotence"] is True
    assert sink._config["message.timeout.ms"] == 2500
    default = KafkaSink.from_url("kafka://h?topic=t")
    assert (default.bootstrap_servers, default.format, default.timeout) == ("h:9092", "event", 5.0)
    for bad in (
        "kafka://h:9092",  # no topic
        "kafka://h:9092?topic=",
        "kafka://h:9092?topic=t&topics=u",  # a typo
        "kafka://h:9092?topic=t&format=lines",
        "kafka://h:9092?topic=t&compression=brotli",
        "kafka://h:9092?topic=t&timeout=0",
        "kafka://h:9092?topic=t&max_in_flight=-1",
        "kafka://h:9092/apm?topic=t",
        "kafka://user:pw@h:9092?topic=t",
        "kafka://h:port?topic=t",
        "kafka://h:9092?topic=t&topic=u",
    ):
        with pytest.raises(ValueError, match="bad sink"):
            open_sink(bad)


def test_missing_client_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    monkeypatch.delitem(sys.modules, "ndintake.sinks.kafka")
    with pytest.raises(ImportError, match=r"pip install 'ndintake\[kafka\]'"):
        importlib.import_module("ndintake.sinks.kafka")
    monkeypatch.undo()
    importlib.import_module("ndintake.sinks.kafka")


# -- against the broker ----------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_messages_arrive_as_encoded(broker: KafkaBroker, topic: str, compression: str) -> None:
    batches = batches_of(load("intake-v2/events.ndjson")) + batches_of(
        PRODLYTICS, profile="prodlytics", path="/api/v2/prodlytics"
    )
    sink = sink_for(broker, topic, compression=compression)
    run(deliver(sink, batches))
    expected = {}
    for batch in batches:
        for event in batch:
            record = records.event_record(event, batch)
            expected[records.event_key(event, batch)] = (
                records.encode_event(event, batch), records.partition_key(record),
                {"ndintake-kind": event.kind, "ndintake-profile": batch.profile, "ndintake-route": batch.path,
                 "ndintake-key": records.event_key(event, batch)},
            )
    total = sum(len(b) for b in batches)
    assert sink.count == total == len(expected)
    messages = consume(broker.bootstrap, topic, total)
    got = {headers_of(m)["ndintake-key"]: (m.value(), m.key(), headers_of(m)) for m in messages}
    assert got == expected
    keys = {m.key() for m in messages}
    # trace ids for the traced events, the service name for the rest, none for prodlytics
    assert b"1234_service-12a3" in keys and None in keys
    assert any(k is not None and len(k) == 32 for k in keys)


def test_one_trace_stays_on_one_partition(broker: KafkaBroker, topic: str) -> None:
    metadata = load("intake-v2/events.ndjson").split(b"\n", 1)[0]
    lines = []
    for n in range(200):
        trace = f"{n % 20 + 1:032x}"
        lines.append(orjson.dumps({"span": {"id": f"{n + 1:016x}", "trace_id": trace, "parent_id": f"{n:016x}",
                                            "transaction_id": f"{n:016x}", "name": "s", "type": "db",
                                            "start": 1.0, "duration": 1.0, "timestamp": 1571657444929001}}))
    batches = batches_of(metadata + b"\n" + b"\n".join(lines) + b"\n")
    assert len(batches) == 20
    run(deliver(sink_for(broker, topic), batches))
    where: dict[bytes, set[int]] = defaultdict(set)
    for message in consume(broker.bootstrap, topic, 200):
        where[message.key()].add(message.partition())
    assert len(where) == 20
    assert all(len(partitions) == 1 for partitions in where.values())
    assert len({p for partitions in where.values() for p in partitions}) > 1  # the traces spread out


def test_format_batch_messages_are_intake_bodies(broker: KafkaBroker, topic: str) -> None:
    body = load("intake-v2/events.ndjson")
    batches = batches_of(body) + batches_of(load("intake-v2/transactions_spans.ndjson"))
    sink = sink_for(broker, topic, format="batch")
    run(deliver(sink, batches))
    assert sink.count == sum(len(b) for b in batches)
    messages = consume(broker.bootstrap, topic, len(batches))
    assert sorted(m.value() for m in messages) == sorted(records.encode_batch(b) for b in batches)
    for message in messages:
        result = ndintake.validate(message.value())
        assert result.status == 202 and result.accepted > 0
        headers = headers_of(message)
        assert headers["ndintake-kind"] == "batch" and headers["ndintake-profile"] == "apm"
        assert headers["ndintake-key"] == records.batch_key(message.value())
        assert message.key() == json.loads(message.value().split(b"\n")[0])["metadata"]["service"]["name"].encode()


def test_fifty_concurrent_batches(broker: KafkaBroker, topic: str) -> None:
    batches = batches_of(load("intake-v2/events.ndjson")) * 50
    sink = sink_for(broker, topic, max_in_flight=64)

    async def main() -> None:
        await sink.start()
        await asyncio.gather(*(sink(b) for b in batches))
        await sink.aclose()

    run(main())
    total = sum(len(b) for b in batches)
    assert sink.count == total
    assert len(consume(broker.bootstrap, topic, total)) == total


def test_aclose_drains_in_flight_batches(broker: KafkaBroker, topic: str) -> None:
    batches = batches_of(load("intake-v2/events.ndjson")) * 10
    sink = sink_for(broker, topic)

    async def main() -> list[Any]:
        await sink.start()
        tasks = [asyncio.ensure_future(sink(b)) for b in batches]
        await asyncio.sleep(0)  # all of them produced, none acked yet
        await sink.aclose()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(SinkUnavailable):
            await sink(batches[0])
        await sink.start()  # a lifespan that starts again reopens it
        await sink(batches[0])
        await sink.aclose()
        return outcomes

    assert run(main()) == [None] * len(batches)
    total = sum(len(b) for b in batches) + len(batches[0])
    assert sink.count == total
    assert len(consume(broker.bootstrap, topic, total)) == total


def test_in_flight_batches_are_bounded() -> None:
    batch = batches_of(load("intake-v2/events.ndjson"))[0]
    with KafkaBroker(1) as broker:
        broker.create_topic("slow", 1)
        sink = sink_for(broker, "slow", max_in_flight=1, timeout=10)

        async def main() -> None:
            await sink.start()
            await sink(batch)
            broker.rtt(2500)  # every answer now takes 2.5 s
            first = asyncio.ensure_future(sink(batch))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(QueueFull):
                await sink(batch)  # no slot within a second
            assert time.monotonic() - started < 2.0
            await first
            await sink.aclose()

        run(main())
        assert sink.count == 2 * len(batch)


def test_broker_down_gives_503_then_recovers_on_its_own() -> None:
    batch = batches_of(load("intake-v2/events.ndjson"))[0]
    with KafkaBroker(1) as broker:
        broker.create_topic("t", 2)
        sink = sink_for(broker, "t", timeout=2)

        async def main() -> None:
            await sink.start()
            await sink(batch)
            broker.down()
            for _ in range(3):  # each failure comes within the bound
                started = time.monotonic()
                with pytest.raises((SinkUnavailable, QueueFull)):
                    await sink(batch)
                assert time.monotonic() - started < 8.0
            broker.up()
            deadline = time.monotonic() + 30
            while True:  # no restart of the sink: librdkafka reconnects
                try:
                    await sink(batch)
                    break
                except (SinkUnavailable, QueueFull):
                    assert time.monotonic() < deadline, "the sink did not recover"
            await sink(batch)
            await sink.aclose()

        run(main(), timeout=90)
        assert sink.count == 3 * len(batch)
        # every acknowledged event is there (failed batches may have landed too: at least once)
        assert len({headers_of(m)["ndintake-key"] for m in consume_at_least(broker, "t", 3 * len(batch))}) == len(batch)


def test_broker_down_at_start_does_not_stop_the_server() -> None:
    batch = batches_of(load("intake-v2/events.ndjson"))[0]
    with KafkaBroker(1) as broker:
        broker.create_topic("t", 1)
        broker.down()
        sink = sink_for(broker, "t", timeout=1.5)

        async def main() -> None:
            started = time.monotonic()
            await sink.start()  # logs, does not raise
            assert time.monotonic() - started < 8.0
            with pytest.raises((SinkUnavailable, QueueFull)):
                await sink(batch)
            broker.up()
            deadline = time.monotonic() + 30
            while True:
                try:
                    await sink(batch)
                    break
                except (SinkUnavailable, QueueFull):
                    assert time.monotonic() < deadline, "the sink did not recover"
            await sink.aclose()

        run(main(), timeout=90)
        assert sink.count == len(batch)


def test_frozen_or_killed_broker_fails_within_the_bound() -> None:
    batch = batches_of(load("intake-v2/events.ndjson"))[0]
    with KafkaBroker(1) as broker:
        broker.create_topic("t", 1)
        sink = sink_for(broker, "t", timeout=2)

        async def main() -> None:
            await sink.start()
            await sink(batch)
            broker.freeze()  # SIGSTOP: connections open, nobody answers
            started = time.monotonic()
            with pytest.raises((QueueFull, SinkUnavailable)):
                await sink(batch)
            assert time.monotonic() - started < 8.0
            broker.kill()  # SIGKILL: connections reset, the port closed
            started = time.monotonic()
            with pytest.raises((SinkUnavailable, QueueFull)):
                await sink(batch)
            assert time.monotonic() - started < 8.0
            started = time.monotonic()
            await sink.aclose()  # bounded even with nothing to talk to
            assert time.monotonic() - started < 12.0

        run(main(), timeout=60)


def consume_at_least(broker: KafkaBroker, topic: str, n: int) -> list[Any]:
    """Every message of ``topic`` (at least ``n``)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": f"t-{time.monotonic_ns()}",
         "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions])
        out: list[Any] = []
        deadline = time.monotonic() + 30
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and (len(out) < n or time.monotonic() - quiet_since < 0.5):
            got = [m for m in consumer.consume(1000, 0.2) if m.error() is None]
            if got:
                out.extend(got)
                quiet_since = time.monotonic()
        assert len(out) >= n, f"{len(out)} messages in {topic!r}, expected at least {n}"
        return out
    finally:
        consumer.close()


def test_asgi_app_answers_202_after_the_acks_and_503_while_the_broker_is_down() -> None:
    from httpkit import NDJSON, asgi_scope, body_messages, call_asgi_async

    from ndintake.asgi import IntakeASGI

    body = load("intake-v2/events.ndjson")
    with KafkaBroker(1) as broker:
        broker.create_topic("t", 3)
        sink = sink_for(broker, "t", timeout=2)
        app = IntakeASGI(sink=sink)

        async def post() -> Any:
            reply = await call_asgi_async(app, asgi_scope(headers=NDJSON, query="verbose"), body_messages([body]))
            assert reply is not None
            return reply

        async def main() -> list[Any]:
            await sink.start()
            replies = list(await asyncio.gather(*(post() for _ in range(8))))
            broker.down()
            started = time.monotonic()
            replies.append(await post())
            assert time.monotonic() - started < 10.0
            broker.up()
            deadline = time.monotonic() + 30
            while (reply := await post()).status != 202:
                assert time.monotonic() < deadline, "no 202 after the broker came back"
            replies.append(reply)
            await sink.aclose()
            return replies

        replies = run(main(), timeout=90)
        accepted = ndintake.validate(body).accepted
        assert [r.status for r in replies[:8]] == [202] * 8
        assert all(r.json == {"accepted": accepted} for r in replies[:8])
        assert replies[8].status == 503
        assert replies[8].json["errors"][0]["message"] == "cannot handle stream: cannot process batch: queue is full"
        assert replies[9].status == 202
        assert sink.count == 9 * accepted
        # every event of every 202 is in the topic (503s may have delivered some: at least once)
        assert len(consume_at_least(broker, "t", 9 * accepted)) >= 9 * accepted


def test_python_agent_through_ndintake_serve_two_workers_exactly_once() -> None:
    import signal
    from collections import Counter

    from httpkit import python_agent_traffic
    from servekit import ServeProcess

    with KafkaBroker(3) as broker:
        broker.create_topic("agent", 6)
        server = ServeProcess("--workers", "2", "--sink", f"kafka://{broker.first}?topic=agent&timeout=5")
        try:
            python_agent_traffic(server.url, "e2e-kafka")
            assert server.stop(signal.SIGTERM) == 0
        finally:
            server.kill()
        messages = consume_at_least(broker, "agent", 4 + 8 + 5)
    records_ = [json.loads(m.value()) for m in messages]
    kinds = Counter(r["kind"] for r in records_)
    assert (kinds["transaction"], kinds["span"], kinds["error"]) == (4, 8, 5), kinds
    for kind in ("transaction", "span", "error"):
        ids = [r["data"]["id"] for r in records_ if r["kind"] == kind]
        assert len(set(ids)) == len(ids)  # each exactly once
    assert len({headers_of(m)["ndintake-key"] for m in messages}) == len(messages)
    assert all(r["metadata"]["service"]["name"] == "e2e-kafka" for r in records_)
    for message, record in zip(messages, records_):
        assert message.key() == (record["data"].get("trace_id") or "e2e-kafka").encode()
