"""Events/s into each broker sink, with N concurrent producers.

Each producer sends the batches (10 events each) of a realistic 1 MB body, under
its own route so that every record has its own deduplication key, and awaits
each batch's acks before the next, as an intake request does. Every sink runs
in this one process and event loop, one after the other, ``--repeat`` times
interleaved; the median is reported. Streams are created for the run and
deleted after it.

    python -m benchmarks.sinks                        # shared Redis and NATS, 8 and 32 producers
    python -m benchmarks.sinks --producers 8 --repeat 5 --json

Variants: ``redis`` (redis-py with hiredis's parser when it is installed),
``redis-pyparser`` (redis-py's pure-Python parser), ``nats``; ``jsonl`` (the
JSON Lines sink on a temporary file, in a thread as the ASGI app runs it);
``null`` is the cost of making the batches' records without sending them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import ndintake
from ndintake.server import Batch
from ndintake.sinks import JsonLinesSink, open_sink
from ndintake.sinks._broker import messages

from .corpus import realistic


def make_batches(size: int, producer: int) -> list[Batch]:
    stream = ndintake.IntakeStream()
    events = stream.feed(realistic(size))
    events += stream.close().final_events
    path = f"/intake/v2/events/{producer}-{uuid.uuid4().hex[:8]}"
    return [Batch(events[i : i + 10], metadata=stream.metadata, path=path) for i in range(0, len(events), 10)]


class NullSink:
    """Encodes the records (as every broker sink does) and sends nothing."""

    count = 0

    async def __call__(self, batch: Batch) -> None:
        messages(batch, "event")
        self.count += len(batch)
        await asyncio.sleep(0)


class ThreadedSink:
    """A synchronous sink run off the event loop, as the ASGI app runs it."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    @property
    def count(self) -> int:
        return int(self.sink.count)

    async def __call__(self, batch: Batch) -> None:
        await asyncio.to_thread(self.sink, batch)

    async def aclose(self) -> None:
        self.sink.close()


def open_variant(name: str, stream: str) -> Any:
    if name == "null":
        return NullSink()
    if name == "jsonl":
        return ThreadedSink(JsonLinesSink(os.path.join(tempfile.gettempdir(), f"{stream}.jsonl")))
    if name.startswith("redis"):
        sink = open_sink(f"redis://127.0.0.1:6379/0?stream={stream}&max_in_flight=64")
        if name == "redis-pyparser":
            from redis._parsers import _AsyncRESP2Parser

            sink._redis.connection_pool.connection_kwargs["parser_class"] = _AsyncRESP2Parser
        return sink
    if name == "nats":
        return open_sink(f"nats://127.0.0.1:4222?stream={stream}&subject=bench.{stream}.{{kind}}&max_in_flight=64")
    raise ValueError(name)


async def cleanup(name: str, stream: str) -> None:
    if name.startswith("redis"):
        import redis.asyncio

        client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
        await client.delete(stream)
        await client.aclose()
    elif name == "jsonl":
        os.unlink(os.path.join(tempfile.gettempdir(), f"{stream}.jsonl"))
    elif name == "nats":
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        await nc.jetstream().delete_stream(stream)
        await nc.close()


async def one_run(name: str, producers: int, size: int) -> tuple[float, int, int]:
    """(seconds, events, record bytes) for ``producers`` concurrent producers."""
    stream = f"BENCH_{uuid.uuid4().hex[:10]}"
    sink = open_variant(name, stream)
    work = [make_batches(size, p) for p in range(producers)]
    nbytes = sum(len(m.record) for batches in work for b in batches for m in messages(b, "event"))
    if hasattr(sink, "start"):
        await sink.start()

    async def produce(batches: list[Batch]) -> None:
        for batch in batches:
            await sink(batch)

    started = time.perf_counter()
    await asyncio.gather(*(produce(b) for b in work))
    elapsed = time.perf_counter() - started
    events = sink.count
    if hasattr(sink, "aclose"):
        await sink.aclose()
    await cleanup(name, stream)
    return elapsed, events, nbytes


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for producers in args.producers:
        runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in args.sinks}
        for _ in range(args.repeat):
            for name in args.sinks:
                runs[name].append(await one_run(name, producers, args.size))
        for name, samples in runs.items():
            seconds = statistics.median(s for s, _, _ in samples)
            events, nbytes = samples[0][1], samples[0][2]
            results[f"{name} x{producers}"] = {
                "events": events,
                "events_per_s": round(events / seconds),
                "record_MB_per_s": round(nbytes / seconds / 1e6, 1),
                "seconds": [round(s, 3) for s, _, _ in samples],
            }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sinks", description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--size", type=int, default=1_000_000, help="bytes of body per producer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sinks", nargs="+", default=["null", "jsonl", "redis", "redis-pyparser", "nats"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return
    print(f"{'sink x producers':<24} {'events':>8} {'events/s':>10} {'record MB/s':>12}  seconds")
    for key, row in results.items():
        print(f"{key:<24} {row['events']:>8} {row['events_per_s']:>10} {row['record_MB_per_s']:>12}  {row['seconds']}")


if __name__ == "__main__":
    main()
