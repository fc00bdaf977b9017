"""A broker sink marked down probes its broker and turns healthy again by itself.

``/healthz`` answers 503 while the sink is not healthy, and a load balancer then
sends no traffic: were health to come back only with a batch that gets through,
a server would stay out of rotation after every outage. Each test kills (or
takes down) the broker, sees the sink go unhealthy, brings the broker back and
waits for ``healthy`` with no batch sent, then checks a batch is delivered.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from brokers import batches, run
from kafka_broker import KafkaBroker
from ndintake import QueueFull, SinkUnavailable
from ndintake.server import Intake
from ndintake.sinks import open_sink
from httpkit import drive, request

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECOVERY = 15.0  # seconds the sink may take to see its broker back (it probes every second)


async def until(check: Any, limit: float) -> float:
    """Seconds until ``check()`` holds; fails after ``limit``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < limit, "the sink did not turn healthy without traffic"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def health(sink: Any) -> int:
    return drive(Intake(sink=sink), request("GET", "/healthz")).response.status


def test_redis_sink_is_healthy_again_without_a_batch(own_redis) -> None:
    sink = open_sink(own_redis.url + "?stream=health&timeout=2")
    batch = batches()[0]

    async def main() -> None:
        await sink.start()
        assert sink.healthy and health(sink) == 200
        own_redis.kill()
        with pytest.raises(SinkUnavailable):
            await sink(batch)
        assert not sink.healthy and health(sink) == 503
        own_redis.start()
        await until(lambda: sink.healthy, RECOVERY)
        assert health(sink) == 200
        await sink(batch)
        await sink.aclose()

    run(main())
    assert sink.count == len(batch)


def test_redis_sink_down_at_start_turns_healthy_when_redis_comes(own_redis) -> None:
    own_redis.kill()
    sink = open_sink(own_redis.url + "?stream=health-start&timeout=2")

    async def main() -> None:
        await sink.start()
        assert not sink.healthy
        own_redis.start()
        await until(lambda: sink.healthy, RECOVERY)
        await sink.aclose()
        assert not sink.healthy  # closed

    run(main())


def test_nats_sink_is_healthy_again_without_a_batch(own_nats) -> None:
    sink = open_sink(f"{own_nats.url}?stream=HEALTH&subject=h&timeout=2")
    batch = batches()[0]

    async def main() -> None:
        await sink.start()
        await sink(batch)
        assert sink.healthy
        own_nats.kill()
        await until(lambda: not sink.healthy, 10)
        with pytest.raises((SinkUnavailable, QueueFull)):
            await sink(batch)
        own_nats.start()
        await until(lambda: sink.healthy, RECOVERY)
        await sink(batch)
        await sink.aclose()

    run(main(), 90)
    assert sink.count == 2 * len(batch)


def test_kafka_sink_is_healthy_again_without_a_batch() -> None:
    batch = batches()[0]
    with KafkaBroker(1) as broker:
        broker.create_topic("h", 1)
        sink = open_sink(f"kafka://{broker.first}?topic=h&timeout=2")

        async def main() -> None:
            await sink.start()
            await sink(batch)
            broker.down()
            with pytest.raises((SinkUnavailable, QueueFull)):
                await sink(batch)
            await until(lambda: not sink.healthy, 20)
            broker.up()
            await until(lambda: sink.healthy, 30)
            await sink(batch)
            await sink.aclose()

        run(main(), 120)
        assert sink.count == 2 * len(batch)
