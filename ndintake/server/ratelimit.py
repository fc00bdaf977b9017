"""The rate-limit hook: token buckets per client IP, as APM Server limits anonymous clients."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

#: APM Server's defaults for anonymous (RUM) clients.
DEFAULT_EVENTS_PER_SECOND = 300
DEFAULT_BURST_FACTOR = 3
DEFAULT_MAX_CLIENTS = 1000
#: How long a batch may wait for tokens before it is refused (APM Server: 1 s).
BATCH_WAIT = 1.0


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; starts full (Go's
    ``x/time/rate`` limiter, which APM Server uses). Thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> float:
        now = self._clock()
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
        return self._tokens

    def allow(self, n: int = 1) -> bool:
        """Take ``n`` tokens if they are there now."""
        return self.reserve(n, 0.0) == 0.0

    def reserve(self, n: int, max_wait: float) -> float | None:
        """Take ``n`` tokens, going into debt if need be: the seconds to wait
        before using them (0.0: now), or None, taking nothing, when that wait
        would exceed ``max_wait`` or ``n`` exceeds the burst."""
        with self._lock:
            tokens = self._refill()
            if n > self.burst:
                return None
            if tokens >= n:
                self._tokens = tokens - n
                return 0.0
            if self.rate <= 0:
                return None
            wait = (n - tokens) / self.rate
            if wait > max_wait:
                return None
            self._tokens = tokens - n
            return wait


class RateLimiter:
    """One :class:`TokenBucket` per client IP, for anonymous requests.

    Defaults are APM Server's for anonymous RUM clients: 300 events a second,
    a burst of three times that (900), 1000 client IPs remembered (least
    recently seen forgotten first; a new client then takes over the forgotten
    bucket, tokens and all, so many addresses buy no fresh allowance). A
    request takes one token up front (429 ``too many requests: rate limit
    exceeded`` when there is none), then one per event of each batch, waiting
    at most a second for them (else 429 ``cannot handle stream: cannot process
    batch: rate limit exceeded``, and the batch is not counted).
    """

    def __init__(
        self,
        events_per_second: float = DEFAULT_EVENTS_PER_SECOND,
        burst: int | None = None,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if events_per_second < 0 or max_clients < 1 or (burst is not None and burst < 0):
            raise ValueError("events_per_second and burst must be >= 0, max_clients >= 1")
        self.events_per_second = events_per_second
        self.burst = int(events_per_second * DEFAULT_BURST_FACTOR) if burst is None else burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str | None, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def bucket(self, client: str | None) -> TokenBucket:
        """The bucket of client IP ``client``."""
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is not None:
                self._buckets.move_to_end(client)
                return bucket
            if len(self._buckets) >= self.max_clients:
                _, bucket = self._buckets.popitem(last=False)
            else:
                bucket = TokenBucket(self.events_per_second, self.burst, self._clock)
            self._buckets[client] = bucket
            return bucket
