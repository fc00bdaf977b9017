"""The Kafka sink: each accepted event (or batch) produced to a topic, ``acks=all``.

``kafka://HOST:PORT?topic=NAME[&format=batch][&timeout=S][&max_in_flight=N][&compression=C]``

The client is librdkafka, through confluent-kafka's ``Producer`` (chosen by
measurement: ``benchmarks/kafka_clients.py``; and because librdkafka bounds
every delivery with ``message.timeout.ms``, where aiokafka's idempotent producer
retries an unreachable broker without end). ``produce`` only queues a message in
librdkafka's buffer; librdkafka's own threads batch, compress and send; a
thread of this sink polls for delivery reports and resolves one asyncio future
per batch when the last of its messages is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from ..core.errors import QueueFull, SinkUnavailable
from . import records
from ._broker import PROBE_INTERVAL
from .hooks import Batch
from .records import FORMATS, Format
from .url import SinkURL, positive_float, positive_int

try:
    import confluent_kafka
    from confluent_kafka import KafkaError, KafkaException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Kafka sink needs the confluent-kafka package: pip install 'ndintake[kafka]'"
    ) from exc

__all__ = ["KafkaSink", "COMPRESSIONS"]

log = logging.getLogger("ndintake.sinks.kafka")

#: ``compression=`` values (librdkafka's ``compression.type``).
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")

#: How long a batch waits for an in-flight slot before it is refused (QueueFull).
SLOT_WAIT = 1.0

# Delivery errors that mean "the broker cannot be reached or is not serving".
_UNAVAILABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._FATAL,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
_FULL = {KafkaError._QUEUE_FULL, KafkaError.POLICY_VIOLATION, KafkaError.THROTTLING_QUOTA_EXCEEDED}


class KafkaSink:
    """Produces each accepted event to ``topic`` as one message and returns once
    every message of the batch is acknowledged by all in-sync replicas
    (``acks=all``, idempotent producer).

    - **value**: :func:`records.encode_event` (``format="event"``), or the batch
      as one replayable intake body, :func:`records.encode_batch`
      (``format="batch"``);
    - **key**: :func:`records.partition_key`: the event's trace id, else the
      service name, so a trace stays on one partition (``format="batch"``: the
      service name of the request's metadata; prodlytics batches have none);
    - **headers**: ``ndintake-kind`` (``batch`` for a batch message),
      ``ndintake-profile``, ``ndintake-route``, ``ndintake-key`` (the
      deduplication key, :func:`records.event_key` / :func:`records.batch_key`).

    Raises :class:`~ndintake.QueueFull` when librdkafka's buffer is full, when no
    in-flight slot frees within a second, or when no ack arrives within
    ``timeout`` seconds while the broker is connected;
    :class:`~ndintake.SinkUnavailable` when the brokers are down or refuse the
    topic. Either way within about ``timeout`` seconds: librdkafka gives up on a
    message after ``message.timeout.ms`` (= ``timeout``), retries included.
    librdkafka reconnects by itself when the broker returns.

    ``config``: extra librdkafka properties (``security.protocol``, SASL...),
    applied last.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        format: Format = "event",
        timeout: float = 5.0,
        max_in_flight: int = 64,
        compression: str = "none",
        config: dict[str, Any] | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")
        if not topic:
            raise ValueError("a topic is required")
        if not timeout > 0 or max_in_flight < 1:
            raise ValueError("timeout and max_in_flight must be positive")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.format = format
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        timeout_ms = max(1, int(timeout * 1000))
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": "ndintake",
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": compression,
            "linger.ms": 5,
            # Every delivery ends (acked or failed) within `timeout`, retries included.
            "message.timeout.ms": timeout_ms,
            "request.timeout.ms": timeout_ms,
            "socket.timeout.ms": max(10, timeout_ms),
            "socket.connection.setup.timeout.ms": max(1000, timeout_ms),
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 30000,
            # A bounded buffer: past it `produce` raises BufferError -> QueueFull.
            "queue.buffering.max.kbytes": 64 * 1024,
            "queue.buffering.max.messages": 100_000,
            "error_cb": self._on_error,
            "logger": _LibrdkafkaLog(),
        }
        self._config.update(config or {})
        self._producer: Any = None
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: set[asyncio.Future[None]] = set()
        self._closing = False
        self._down: str | None = None  # why the brokers look down, until an ack arrives
        self.count = 0  # events acknowledged

    @property
    def healthy(self) -> bool:
        """False while librdkafka reports the brokers down (until an ack arrives) and once closing."""
        return self._down is None and not self._closing

    @classmethod
    def from_url(cls, spec: str) -> KafkaSink:
        """From ``kafka://HOST:PORT?topic=NAME[&format=batch][&timeout=S][&max_in_flight=N][&compression=C]``."""
        url = SinkURL(spec, default_port=9092)
        if url.scheme != "kafka":
            raise url.error("expected kafka://HOST:PORT?topic=NAME")
        if url.path not in ("", "/"):
            raise url.error("no path expected (the topic is given as ?topic=NAME)")
        if url.username is not None or url.password is not None:
            raise url.error("credentials in the URL are not supported")
        topic = url.require("topic")
        form = url.take("format", records.DEFAULT_FORMAT, records.record_format)
        timeout = url.take("timeout", 5.0, positive_float)
        max_in_flight = url.take("max_in_flight", 64, positive_int)
        compression = url.take("compression", "none", _compression)
        url.done()
        host = f"[{url.host}]" if ":" in url.host else url.host
        return cls(
            f"{host}:{url.port}",
            topic,
            format=form,
            timeout=timeout,
            max_in_flight=max_in_flight,
            compression=compression,
        )

    def __repr__(self) -> str:
        return f"KafkaSink({self.bootstrap_servers!r}, topic={self.topic!r}, format={self.format!r})"

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Create the producer and check that the topic can be reached. An
        unreachable broker or a missing topic is logged, not raised: the server
        starts, answers 503 while it lasts, and librdkafka keeps reconnecting."""
        self._closing = False
        self._ensure_producer()
        loop = asyncio.get_running_loop()
        try:
            metadata = await loop.run_in_executor(None, self._producer.list_topics, self.topic, self.timeout)
        except KafkaException as exc:
            log.warning("kafka sink: %s unreachable at start (%s); will keep trying", self.bootstrap_servers, exc)
            return
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            log.warning("kafka sink: topic %r not available on %s: %s", self.topic, self.bootstrap_servers,
                        topic.error if topic is not None else "missing")
        else:
            log.info("kafka sink: %s topic %r, %d partitions", self.bootstrap_servers, self.topic,
                     len(topic.partitions))

    async def aclose(self) -> None:
        """Refuse new batches, wait (bounded by ``timeout`` + 3.5 s) for the batches
        in flight, then flush and close the producer."""
        self._closing = True
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=self.timeout + SLOT_WAIT + 2.5)
        producer = self._producer
        if producer is not None:
            loop = asyncio.get_running_loop()
            left = await loop.run_in_executor(None, producer.flush, self.timeout)
            if left:
                log.warning("kafka sink: %d message(s) not delivered at close", left)
        self._stop.set()
        if self._poller is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._poller.join, 5.0)
            self._poller = None
        self._producer = None

    def _ensure_producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                self._producer = confluent_kafka.Producer(self._config)
                self._stop.clear()
                self._poller = threading.Thread(
                    target=self._poll, args=(self._producer,), name="ndintake-kafka-poll", daemon=True
                )
                self._poller.start()
            return self._producer

    def _poll(self, producer: Any) -> None:
        """Serve delivery reports and error callbacks until the sink closes;
        while the brokers look down, ask them for the topic's metadata every
        second, so the sink is healthy again without a batch getting through."""
        probed = time.monotonic()
        while not self._stop.is_set() and producer is self._producer:
            producer.poll(0.05)
            if self._down is not None and time.monotonic() - probed >= PROBE_INTERVAL:
                probed = time.monotonic()
                try:
                    producer.list_topics(self.topic, PROBE_INTERVAL)
                except KafkaException:
                    continue
                self._came_back()
        if producer is not self._producer:  # replaced after a fatal error: let it finish
            producer.flush(self.timeout)

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            was = self._down
            if code == KafkaError._ALL_BROKERS_DOWN or was is None:
                self._down = err.str()
            # Once per outage at warning level: librdkafka repeats these at every reconnect.
            log.log(logging.WARNING if was is None else logging.DEBUG, "kafka sink: %s unreachable: %s",
                    self.bootstrap_servers, err.str())
        elif err.fatal():
            log.error("kafka sink: fatal producer error, starting a new producer: %s", err.str())
            self._producer = None  # the next batch makes a new one; the poll thread lets the old one go
        else:
            log.warning("kafka sink: %s", err.str())

    def _came_back(self) -> None:
        if self._down is not None:  # the brokers answer again
            self._down = None
            log.warning("kafka sink: %s answers again", self.bootstrap_servers)

    # -- delivery ------------------------------------------------------------

    async def __call__(self, batch: Batch) -> None:
        if self._closing:
            raise SinkUnavailable("kafka sink is closing")
        if not batch:
            return
        call: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight.add(call)  # aclose waits for it
        try:
            await self._deliver(batch)
        finally:
            self._in_flight.discard(call)
            call.set_result(None)

    async def _deliver(self, batch: Batch) -> None:
        slots = self._semaphore()
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), SLOT_WAIT)
            except asyncio.TimeoutError:
                raise QueueFull(f"{self.max_in_flight} batches in flight to kafka") from None
        else:
            await slots.acquire()
        try:
            future = self._produce(batch)
            try:
                # librdkafka reports every message within message.timeout.ms; the
                # margin only guards against a report that never comes.
                await asyncio.wait_for(future, self.timeout + 2.0)
            except asyncio.TimeoutError:
                raise QueueFull(f"no ack from kafka within {self.timeout:g} s") from None
            self.count += len(batch)
        finally:
            slots.release()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self.max_in_flight)
            self._slots_loop = loop
        return self._slots

    def _produce(self, batch: Batch) -> asyncio.Future[None]:
        """Queue the batch's messages; the future settles when the last is acked
        or the first fails."""
        producer = self._ensure_producer()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        messages = list(self._messages(batch))
        tracker = _Tracker(self, loop, future, len(messages))
        try:
            for value, key, headers in messages:
                producer.produce(self.topic, value, key, headers=headers, on_delivery=tracker.report)
        except BufferError:
            tracker.abandon()
            raise QueueFull("kafka producer buffer is full") from None
        except KafkaException as exc:
            tracker.abandon()
            raise self._failure(exc.args[0]) from exc
        return future

    def _messages(self, batch: Batch) -> Any:
        profile = batch.profile.encode()
        route = batch.path.encode()
        if self.format == "batch":
            body = records.encode_batch(batch)
            key = records.partition_key({"data": {}, "metadata": batch.metadata})
            headers = [
                ("ndintake-kind", b"batch"),
                ("ndintake-profile", profile),
                ("ndintake-route", route),
                ("ndintake-key", records.batch_key(body).encode()),
            ]
            yield body, key, headers
            return
        encoded = records.BatchRecords(batch)
        for event in batch:
            headers = [
                ("ndintake-kind", event.kind.encode()),
                ("ndintake-profile", profile),
                ("ndintake-route", route),
                ("ndintake-key", encoded.key(event).encode()),
            ]
            key = records.event_partition_key(event, batch.metadata)
            yield encoded.record(event), key, headers

    def _failure(self, err: KafkaError) -> Exception:
        """The exception a failed delivery ends the request with."""
        code = err.code()
        where = f"kafka {self.bootstrap_servers} topic {self.topic!r}"
        if code == KafkaError._MSG_TIMED_OUT:
            if self._down is not None:
                return SinkUnavailable(f"{where} is down: {self._down}")
            return QueueFull(f"no ack from {where} within {self.timeout:g} s")
        if code in _FULL:
            return QueueFull(f"{where}: {err.str()}")
        if code in _UNAVAILABLE or err.retriable():
            return SinkUnavailable(f"{where}: {err.str()}")
        return RuntimeError(f"{where}: {err.str()}")


class _Tracker:
    """Counts one batch's delivery reports (in the poll thread) and settles its
    future on the event loop: once, at the last ack or at the first failure."""

    __slots__ = ("sink", "loop", "future", "left", "settled")

    def __init__(self, sink: KafkaSink, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], n: int):
        self.sink = sink
        self.loop = loop
        self.future = future
        self.left = n
        self.settled = False

    def report(self, err: KafkaError | None, msg: Any) -> None:
        self.left -= 1
        if self.settled:
            return
        if err is None:
            self.sink._came_back()
            if self.left:
                return
            outcome: Exception | None = None
        else:
            outcome = self.sink._failure(err)
        self.settled = True
        try:
            self.loop.call_soon_threadsafe(_settle, self.future, outcome)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def abandon(self) -> None:
        """The batch was refused while producing: reports of the messages already
        queued are ignored."""
        self.settled = True


class _LibrdkafkaLog:
    """librdkafka's log lines into ``ndintake.sinks.kafka.librdkafka``; the
    ones it repeats at every reconnect attempt at DEBUG (the sink's error
    callback warns once per outage)."""

    QUIET = frozenset({"FAIL", "REQTMOUT", "DISCONNECT", "BROKERFAIL"})
    logger = logging.getLogger("ndintake.sinks.kafka.librdkafka")

    def log(self, level: int, msg: str, *args: Any) -> None:
        if args and args[0] in self.QUIET:
            level = logging.DEBUG
        self.logger.log(level, msg, *args)


def _settle(future: asyncio.Future[None], outcome: Exception | None) -> None:
    if future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


def _compression(text: str) -> str:
    if text not in COMPRESSIONS:
        raise ValueError(f"must be one of {', '.join(COMPRESSIONS)}")
    return text
