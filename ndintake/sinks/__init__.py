"""Sinks: where an intake server delivers accepted events.

A sink is called with each :class:`~ndintake.server.Batch` of accepted events
and returns once they are safely taken; only then are they counted in
``accepted`` (and only then is a 202 sent). Two kinds:

- a **synchronous** callable (``JsonLinesSink``, a ``queue.Queue``'s
  ``put_nowait``...): the ASGI app runs it off the event loop, in a thread,
  unless it also has ``async deliver(batches)``, which the ASGI app then
  awaits with all the batches of a step at once (all taken, or none and it
  raises): the JSON Lines sink encodes them on the loop and writes them with
  one ``write`` in a thread of its own;
- an **asynchronous** sink (the broker sinks): ``await sink(batch)`` returns
  when the broker has acknowledged every event of the batch. It may also have
  ``async start()`` (connect; the ASGI app calls it on lifespan startup) and
  ``async aclose()`` (drain in-flight batches, disconnect; called on shutdown).
  Several batches may be in flight at once; the sink bounds how many.

Either raises :class:`~ndintake.QueueFull` when it cannot take a batch now
(full or too slow: 503 ``queue is full``) and :class:`~ndintake.SinkUnavailable`
when its destination is down (503). :func:`open_sink` makes one from its
command-line spelling.
"""

from __future__ import annotations

import sys
from typing import Any

from .blocking import BlockingSink
from .jsonl import JsonLinesSink

__all__ = ["BlockingSink", "JsonLinesSink", "open_sink", "SINK_SPELLINGS"]

#: The command-line spellings of :func:`open_sink`.
SINK_SPELLINGS = "jsonl:PATH[?fsync=1&format=batch] | stdout | null | redis://... | nats://... | kafka://..."


def open_sink(spec: str) -> Any:
    """A sink from its command-line spelling (None for ``null``: events are
    validated and counted, then dropped). Raises ValueError for a bad spelling
    and ImportError (with the extra to install) when a broker client is missing."""
    if spec == "null":
        return None
    if spec == "stdout":
        return JsonLinesSink(sys.stdout.buffer)
    if spec.startswith("jsonl:") and len(spec) > len("jsonl:"):
        return JsonLinesSink.from_spec(spec[len("jsonl:") :])
    scheme = spec.partition("://")[0] if "://" in spec else ""
    if scheme == "redis":
        from .redis import RedisStreamSink

        return RedisStreamSink.from_url(spec)
    if scheme == "nats":
        from .nats import JetStreamSink

        return JetStreamSink.from_url(spec)
    if scheme == "kafka":
        from .kafka import KafkaSink

        return KafkaSink.from_url(spec)
    raise ValueError(f"unknown sink {spec!r}: expected {SINK_SPELLINGS}")
