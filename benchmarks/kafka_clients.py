"""Which Kafka client for the Kafka sink: aiokafka or confluent-kafka, measured.

Both produce the same messages (the records of a realistic APM body, ten events
a batch as APM Server batches them, keyed by trace id, with the sink's four
headers) with ``acks=all`` and the idempotent producer into librdkafka's mock
cluster (``tests/kafka_broker.py``, 3 brokers, a 6-partition topic), with C
batches in flight at once; a batch counts when every message of it is
acknowledged. Each client runs in its own process, one after the other.

    python -m benchmarks.kafka_clients [--events 20000] [--concurrency 1 8 32] [--json]

The broker is the mock cluster, in memory on loopback: the figures compare the
clients' own cost per message (Python overhead, batching, the GIL), not a real
cluster's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CLIENTS = ("confluent-kafka", "aiokafka", "KafkaSink")


def corpus_batches(events: int) -> list[Any]:
    """About ``events`` realistic APM events (``benchmarks.corpus``) as the
    batches of ten a sink is handed."""
    import orjson

    import ndintake
    from ndintake.server import Batch

    from benchmarks.corpus import realistic_lines

    lines = realistic_lines()
    metadata_line = next(lines)
    metadata = orjson.loads(metadata_line)["metadata"]
    out: list[Any] = []
    while sum(len(b) for b in out) < events:
        body = metadata_line + b"\n" + b"\n".join(next(lines) for _ in range(10)) + b"\n"
        got: list[Any] = []
        ndintake.validate(body, sink=got.extend)
        out.append(Batch(got, profile="apm", metadata=metadata, path="/intake/v2/events"))
    return out


def encoded(batches: list[Any]) -> list[list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]]]:
    """Each batch's messages (value, key, headers), encoded as the sink encodes them."""
    from ndintake.sinks import records

    out = []
    for batch in batches:
        messages = []
        encoded = records.BatchRecords(batch)
        for event in batch:
            headers = [
                ("ndintake-kind", event.kind.encode()),
                ("ndintake-profile", batch.profile.encode()),
                ("ndintake-route", batch.path.encode()),
                ("ndintake-key", encoded.key(event).encode()),
            ]
            key = records.partition_key({"data": event.expanded(), "metadata": batch.metadata})
            messages.append((encoded.record(event), key, headers))
        out.append(messages)
    return out


async def run_confluent(bootstrap: str, topic: str, batches: list, concurrency: int, compression: str) -> float:
    """confluent-kafka's classic Producer, a poll thread resolving one asyncio future per batch."""
    import confluent_kafka

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": compression,
        }
    )
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            producer.poll(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    loop = asyncio.get_running_loop()

    async def send(batch: list) -> None:
        future = loop.create_future()
        left = [len(batch)]

        def done(err: Any, msg: Any) -> None:
            left[0] -= 1
            if err is not None or left[0] == 0:
                if not future.done():
                    loop.call_soon_threadsafe(_settle, future, err)

        for value, key, headers in batch:
            producer.produce(topic, value, key, headers=headers, on_delivery=done)
        await future

    elapsed = await _drive(send, batches, concurrency)
    producer.flush(10)
    stop.set()
    thread.join()
    return elapsed


def _settle(future: asyncio.Future, err: Any) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(RuntimeError(str(err)))


async def run_aiokafka(bootstrap: str, topic: str, batches: list, concurrency: int, compression: str) -> float:
    """aiokafka's AIOKafkaProducer: ``send`` per message, gather the batch's futures."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        compression_type=None if compression == "none" else compression,
    )
    await producer.start()

    async def send(batch: list) -> None:
        futures = [await producer.send(topic, value, key=key, headers=headers) for value, key, headers in batch]
        await asyncio.gather(*futures)

    try:
        return await _drive(send, batches, concurrency)
    finally:
        await producer.stop()


async def run_sink(bootstrap: str, topic: str, batches: list, concurrency: int, compression: str) -> float:
    """ndintake's KafkaSink itself (confluent-kafka underneath), encoding included."""
    from ndintake.sinks.kafka import KafkaSink

    sink = KafkaSink(bootstrap, topic, compression=compression, max_in_flight=max(concurrency, 1))
    await sink.start()
    try:
        return await _drive(sink, batches, concurrency)
    finally:
        await sink.aclose()


async def _drive(send: Any, batches: list, concurrency: int) -> float:
    queue = iter(batches)

    async def worker() -> None:
        for batch in queue:
            await send(batch)

    await send(batches[0])  # warm up: metadata, producer id
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    sink_batches = corpus_batches(args.events)
    messages = encoded(sink_batches)
    if args.client == "KafkaSink":  # the sink encodes as it goes: that is part of its time
        batches: list[Any] = sink_batches
        run = run_sink
    else:
        batches = messages
        run = run_confluent if args.client == "confluent-kafka" else run_aiokafka
    results = []
    for concurrency in args.concurrency:
        elapsed = asyncio.run(run(args.bootstrap, args.topic, batches, concurrency, args.compression))
        n = sum(len(b) for b in batches[1:])  # the first batch warms up, untimed
        size = sum(len(m[0]) for b in messages[1:] for m in b)
        results.append(
            {
                "client": args.client,
                "compression": args.compression,
                "concurrency": concurrency,
                "events": n,
                "seconds": elapsed,
                "events_per_s": n / elapsed,
                "mb_per_s": size / elapsed / 1e6,
            }
        )
    print(json.dumps(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    parser.add_argument("--compression", nargs="+", default=["none"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        args.compression = args.compression[0]
        child(args)
        return 0

    from kafka_broker import KafkaBroker

    import aiokafka
    import confluent_kafka

    results: list[dict[str, Any]] = []
    with KafkaBroker(3) as broker:
        for compression in args.compression:
            for client in args.clients:
                topic = f"bench-{client}-{compression}"
                broker.create_topic(topic, 6)
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.kafka_clients", "--client", client,
                     "--bootstrap", broker.bootstrap, "--topic", topic, "--events", str(args.events),
                     "--compression", compression, "--concurrency", *map(str, args.concurrency)],
                    cwd=ROOT, capture_output=True, text=True, timeout=600,
                )
                if out.returncode:
                    why = (out.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{client} with {compression}: failed: {why}", file=sys.stderr)
                    continue
                results.extend(json.loads(out.stdout.strip().splitlines()[-1]))
    report = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "versions": {"confluent-kafka": confluent_kafka.version()[0] if isinstance(confluent_kafka.version(), tuple) else confluent_kafka.version(), "librdkafka": confluent_kafka.libversion()[0],
                     "aiokafka": aiokafka.__version__},
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"versions: {report['versions']}; {report['machine']}")
    best = {c: max(r["events_per_s"] for r in results if r["concurrency"] == c) for c in args.concurrency}
    print(f"{'client':16} {'compr':6} {'conc':>4} {'events/s':>10} {'MB/s':>7} {'vs best':>8}")
    for r in results:
        ratio = r["events_per_s"] / best[r["concurrency"]]
        print(f"{r['client']:16} {r['compression']:6} {r['concurrency']:>4} {r['events_per_s']:>10.0f} {r['mb_per_s']:>7.1f} {ratio:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
