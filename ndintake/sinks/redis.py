"""The Redis Streams sink: each accepted event ``XADD``-ed to a stream (redis-py asyncio)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..core.errors import QueueFull, SinkUnavailable
from ._broker import BrokerSink, Message
from .records import Format
from .url import SinkURL, positive_int

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import OutOfMemoryError, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"the Redis sink needs redis-py: pip install 'ndintake[redis]' ({exc})") from exc

#: Seconds to wait for a TCP connection to Redis before the batch is refused.
CONNECT_TIMEOUT = 1.5


class RedisStreamSink(BrokerSink):
    """``XADD``s each accepted event to the Redis stream ``stream``.

    Each entry has the fields ``record`` (the record, see
    :mod:`ndintake.sinks.records`), ``kind``, ``profile``, ``route`` and ``key``
    (the deduplication key); with ``format="batch"`` one entry per batch holds
    the replayable body, with ``kind`` ``batch``. A batch's ``XADD``s go in one
    pipeline (no transaction); the call returns once Redis answered all of them.
    ``maxlen`` trims the stream approximately (``MAXLEN ~ N``).

    Errors: Redis out of memory (``maxmemory`` with ``noeviction``) and no
    answer within ``timeout`` raise :class:`~ndintake.QueueFull`; a refused,
    reset or unreachable connection raises :class:`~ndintake.SinkUnavailable`
    within about 1.5 s (connect timeout, no client retries). Entries written
    before an error stay in the stream (at-least-once: a retried request
    writes them again, with the same ``key``). Each batch takes a pooled
    connection; a broken one is replaced at the next batch, so the sink
    recovers by itself when Redis comes back. While Redis is down the sink
    ``PING``s it every second, so :attr:`healthy` (and ``/healthz``) turns
    true again without a batch having to get through.
    """

    def __init__(
        self,
        stream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        maxlen: int | None = None,
        format: Format = "event",
        timeout: float = 5.0,
        max_in_flight: int = 64,
    ) -> None:
        super().__init__(format=format, timeout=timeout, max_in_flight=max_in_flight)
        if not stream:
            raise ValueError("stream must not be empty")
        self.stream = stream
        self.maxlen = maxlen
        self.target = f"redis://{host}:{port}/{db} stream {stream}"
        self._redis: Any = aioredis.Redis(
            host=host,
            port=port,
            db=db,
            username=username,
            password=password,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
            max_connections=max_in_flight + 4,
        )

    @classmethod
    def from_url(cls, spec: str) -> RedisStreamSink:
        """From ``redis://[[USER]:PASSWORD@]HOST:PORT[/DB]?stream=KEY[&maxlen=N]
        [&format=batch][&timeout=S][&max_in_flight=N]``."""
        url = SinkURL(spec, default_port=6379)
        db_text = url.path.strip("/") or "0"
        if not db_text.isdigit():
            raise url.error(f"the database must be a number, not {db_text!r}")
        stream = url.require("stream")
        maxlen = url.take("maxlen", None, positive_int)
        common = BrokerSink.common_options(url)
        url.done()
        return cls(
            stream,
            host=url.host,
            port=url.port,
            db=int(db_text),
            username=url.username,
            password=url.password,
            maxlen=maxlen,
            **common,  # type: ignore[arg-type]
        )

    async def start(self) -> None:
        """Check that Redis answers. Never raises: an unreachable Redis is
        logged, the server starts anyway and answers 503 until it is back."""
        try:
            await asyncio.wait_for(self._redis.ping(), CONNECT_TIMEOUT + 1)
        except asyncio.TimeoutError:
            self.went_down(f"no answer to PING within {CONNECT_TIMEOUT + 1:g} s")
        except (RedisError, OSError) as exc:
            self.went_down(_cause(exc))

    async def _probe(self) -> bool:
        return bool(await self._redis.ping())

    async def _send(self, messages: list[Message]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        trim: dict[str, Any] = {"maxlen": self.maxlen, "approximate": True} if self.maxlen else {}
        for m in messages:
            fields = {"record": m.record, "kind": m.kind, "profile": m.profile, "route": m.route, "key": m.key}
            pipe.xadd(self.stream, fields, **trim)
        try:
            await pipe.execute()
        except OutOfMemoryError as exc:
            raise QueueFull(f"queue is full: {self.target}: {exc}") from exc
        except RedisTimeoutError as exc:
            if "connecting" in str(exc):
                raise SinkUnavailable(f"{self.target}: {exc}") from exc
            raise QueueFull(f"queue is full: no answer from {self.target} within {self.timeout:g} s") from exc
        except (RedisError, OSError) as exc:  # refused, reset, loading, or refused by Redis (WRONGTYPE...)
            raise SinkUnavailable(f"{self.target}: {_cause(exc)}") from exc

    async def aclose(self) -> None:
        """Wait (bounded) for the batches in flight, then disconnect."""
        await self.drain()
        await self._redis.aclose()


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
