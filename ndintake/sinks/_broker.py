"""What the broker sinks share: messages, the in-flight bound, the ack timeout,
draining on close, and logging a broker's outages once each."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import NamedTuple

from ..core.errors import QueueFull, SinkUnavailable
from .hooks import Batch
from .records import DEFAULT_FORMAT, FORMATS, BatchRecords, Format, batch_key, encode_batch, record_format
from .url import SinkURL, positive_float, positive_int

log = logging.getLogger("ndintake.sinks")

#: Seconds a batch waits for an in-flight slot before it is refused (APM
#: Server's publisher also gives up on a full queue after 1 s).
SLOT_WAIT = 1.0

#: Seconds between the probes of a broker known to be down. Without probes a
#: sink marked down would wait for a batch to get through to be healthy again,
#: while ``/healthz`` answering 503 keeps load balancers from sending one.
PROBE_INTERVAL = 1.0


class Message(NamedTuple):
    """One broker message: the record's bytes and what travels beside them."""

    record: bytes
    kind: str  # the event's kind; "batch" for a ``format=batch`` message
    profile: str
    route: str
    key: str  # deduplication key (records.event_key / records.batch_key)


def messages(batch: Batch, format: Format) -> list[Message]:
    """The messages a batch becomes: one per event, or one per batch."""
    if format == "batch":
        body = encode_batch(batch)
        return [Message(body, "batch", batch.profile, batch.path, batch_key(body))]
    records = BatchRecords(batch)
    return [
        Message(records.record(event), event.kind, batch.profile, batch.path, records.key(event)) for event in batch
    ]


class BrokerSink(ABC):
    """Base of the asynchronous broker sinks.

    ``await sink(batch)`` sends the batch's messages (:meth:`_send`, written by
    each broker) and returns once the broker acknowledged all of them; then
    ``count`` grows by the batch's events. At most ``max_in_flight`` batches
    are in flight at once; a batch that finds no free slot within 1 s, or
    whose acks do not all arrive within ``timeout`` seconds, raises
    :class:`~ndintake.QueueFull`. A broker that cannot be reached raises
    :class:`~ndintake.SinkUnavailable` (the subclass bounds how long that takes).
    After :meth:`aclose` every batch raises SinkUnavailable.
    """

    #: Shown in messages and logs (``redis://host:port``...).
    target: str

    def __init__(self, *, format: Format = "event", timeout: float = 5.0, max_in_flight: int = 64) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if not timeout > 0 or max_in_flight <= 0:
            raise ValueError("timeout and max_in_flight must be positive")
        self.format: Format = format
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.count = 0  # events acknowledged
        self._slots: asyncio.Semaphore | None = None  # made in the running loop
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._closing = False
        self._down: str | None = None  # the outage last logged
        self._prober: asyncio.Task[None] | None = None  # probes the broker while it is down

    @property
    def healthy(self) -> bool:
        """False while the broker is known to be down (since a batch or ``start()``
        failed to reach it, until one reaches it again) and once closed."""
        return self._down is None and not self._closing

    @property
    def bound(self) -> float:
        """The longest a call can take, in seconds (slot wait + ack timeout)."""
        return SLOT_WAIT + self.timeout

    @staticmethod
    def common_options(url: SinkURL) -> dict[str, object]:
        """``format``, ``timeout`` and ``max_in_flight`` taken from a sink URL."""
        return {
            "format": url.take("format", DEFAULT_FORMAT, record_format),
            "timeout": url.take("timeout", 5.0, positive_float),
            "max_in_flight": url.take("max_in_flight", 64, positive_int),
        }

    async def __call__(self, batch: Batch) -> None:
        if self._closing:
            raise SinkUnavailable(f"{self.target}: the sink is closed")
        if not batch:
            return
        if self._slots is None or self._idle is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
            self._idle = asyncio.Event()
            self._idle.set()
        try:
            await asyncio.wait_for(self._slots.acquire(), SLOT_WAIT)
        except asyncio.TimeoutError:
            raise QueueFull(f"queue is full: {self.max_in_flight} batches in flight to {self.target}") from None
        self._in_flight += 1
        self._idle.clear()
        try:
            try:
                await asyncio.wait_for(self._send(messages(batch, self.format)), self.timeout)
            except asyncio.TimeoutError:
                raise QueueFull(f"queue is full: no ack from {self.target} within {self.timeout:g} s") from None
            except SinkUnavailable as exc:
                self.went_down(str(exc))
                raise
            self.came_back()
            self.count += len(batch)
        finally:
            self._in_flight -= 1
            self._slots.release()
            if self._in_flight == 0:
                self._idle.set()

    @abstractmethod
    async def _send(self, messages: list[Message]) -> None:
        """Send the messages; return once the broker acknowledged every one.
        Raise QueueFull (broker full) or SinkUnavailable (broker down)."""

    async def _probe(self) -> bool:
        """Whether the broker answers now (asked every :data:`PROBE_INTERVAL`
        seconds while it is down). The base class does not know how to ask:
        such a sink is healthy again when a batch gets through."""
        return False

    async def _recover(self) -> None:
        while self._down is not None and not self._closing:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                answers = await asyncio.wait_for(self._probe(), PROBE_INTERVAL + self.timeout)
            except Exception:  # a probe that fails says "still down", whatever it raised
                answers = False
            if answers and not self._closing:
                self.came_back()

    async def drain(self) -> None:
        """Refuse new batches, then wait (at most :attr:`bound` seconds) for
        those in flight."""
        self._closing = True
        if self._prober is not None:
            self._prober.cancel()
        if self._idle is not None and self._in_flight:
            try:
                await asyncio.wait_for(self._idle.wait(), self.bound)
            except asyncio.TimeoutError:
                log.warning("%s: %d batches still in flight at close", self.target, self._in_flight)

    def went_down(self, cause: str) -> None:
        """Log an outage (once, not for every batch it refuses)."""
        if self._down is None:
            log.warning("%s is unavailable: %s", self.target, cause)
        self._down = cause
        if self._prober is None or self._prober.done():
            try:
                self._prober = asyncio.get_running_loop().create_task(self._recover())
            except RuntimeError:  # no loop running: the next batch finds out
                pass

    def came_back(self) -> None:
        """Log the end of an outage; the sink is healthy again."""
        if self._down is not None:
            log.warning("%s is available again", self.target)
            self._down = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target} format={self.format} count={self.count}>"
