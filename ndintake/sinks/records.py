"""What a sink writes: one record per accepted event, or one replayable body per batch.

Every sink (JSON Lines, Redis Streams, NATS JetStream, Kafka) writes the same
bytes, so consumers read every destination alike:

- **event records** (the default): one JSON object per accepted event,
  ``{"kind", "profile", "route", "line", "data", "metadata"}``. ``data`` is the
  event in its long-key (intake v2) form, RUM v3 events expanded
  (:meth:`ndintake.Event.expanded`); ``metadata`` is the request's metadata
  line, also in long-key form, left out for prodlytics.
- **batch bodies** (``format=batch``): one message per batch that is itself a
  valid intake body: for the APM profiles an NDJSON body whose first line is
  ``{"metadata": ...}`` and whose other lines are ``{"<kind>": {...}}`` (v2
  form), replayable into APM Server or ndintake; for prodlytics a JSON array
  of the items.

Each message also has a **deduplication key** (:func:`event_key`,
:func:`batch_key`): a digest of the request's metadata, the line number and the
event's bytes, so the same body sent again gives the same keys (a retried
request is recognised by brokers that deduplicate, such as JetStream with
``Nats-Msg-Id``).
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any, Callable, Literal

import orjson

from ..core.event import Event
from .hooks import Batch

try:
    import msgspec
except ImportError:  # pragma: no cover - without msgspec, events are parsed to be written
    msgspec = None  # type: ignore[assignment]

#: The two record formats a sink URL may ask for (``format=``).
Format = Literal["event", "batch"]
FORMATS: tuple[Format, ...] = ("event", "batch")
DEFAULT_FORMAT: Format = "event"


def record_format(text: str) -> Format:
    """A ``format=`` option's value, checked."""
    for name in FORMATS:
        if text == name:
            return name
    raise ValueError(f"must be one of {', '.join(FORMATS)}")


def event_record(event: Event, batch: Batch) -> dict[str, Any]:
    """One accepted event as a record (see the module docstring)."""
    record: dict[str, Any] = {
        "kind": event.kind,
        "profile": batch.profile,
        "route": batch.path,
        "line": event.line,
        "data": event.expanded(),
    }
    if batch.metadata is not None:
        record["metadata"] = batch.metadata
    return record


class BatchRecords:
    """The records and deduplication keys of one batch's events, with what they
    share (profile, route, metadata) encoded once per batch rather than once
    per event. ``record(event)`` gives the bytes of ``orjson.dumps(event_record(...))``."""

    __slots__ = ("batch", "_middle", "_tail", "_digest")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self._middle = b',"profile":%b,"route":%b,"line":' % (orjson.dumps(batch.profile), orjson.dumps(batch.path))
        metadata = batch.metadata
        self._tail = b"}" if metadata is None else b',"metadata":%b}' % orjson.dumps(metadata)
        self._digest: Any = None

    def record(self, event: Event) -> bytes:
        """The event's record as JSON (no newline)."""
        data = data_json(event)
        return b'{"kind":%b%b%d,"data":%b%b' % (orjson.dumps(event.kind), self._middle, event.line, data, self._tail)

    def key(self, event: Event) -> str:
        """The event's deduplication key: 32 hex digits, the same whenever the
        same body is sent to the same route again."""
        if self._digest is None:
            base = hashlib.blake2b(digest_size=16)
            base.update(self.batch.path.encode())
            base.update(b"\n")
            if self.batch.metadata is not None:
                base.update(orjson.dumps(self.batch.metadata, option=orjson.OPT_SORT_KEYS))
            self._digest = base
        digest = self._digest.copy()
        digest.update(b"\n%d\n" % event.line)
        digest.update(event.raw)
        if event.parent is not None:  # a RUM v3 span or metricset: its kind and place in the transaction's line
            digest.update(b"\n%s %d" % (event.kind.encode(), id_in_parent(event)))
        return str(digest.hexdigest())


def data_json(event: Event) -> bytes:
    """The event's record ``data`` as JSON: for an event taken unparsed,
    the value's bytes spliced from ``raw`` (no parse; the JSON as the client
    wrote it, spacing and number spelling included), else ``expanded()`` encoded."""
    if _spliceable(event):
        # the value's bytes, skipped over rather than parsed (the last one if the key is repeated, as parsed)
        (value,) = _raw_values()(event.raw).values()
        return bytes(value)
    return orjson.dumps(event.expanded())


def event_partition_key(event: Event, metadata: dict[str, Any] | None) -> bytes | None:
    """:func:`partition_key` of the event's record, reading from an unparsed
    event only the two fields it looks at."""
    if _spliceable(event) and not event.data_parsed:
        data = _key_fields(event.raw)
    else:
        data = event.expanded()
    return partition_key({"data": data, "metadata": metadata})


def encode_event(event: Event, batch: Batch) -> bytes:
    """:func:`event_record` as compact JSON (no newline). For every event of a
    batch, :class:`BatchRecords` does the shared part once."""
    return BatchRecords(batch).record(event)


def encode_batch(batch: Batch) -> bytes:
    """The batch as one replayable intake body (see the module docstring); APM
    bodies end with a newline."""
    if batch.metadata is None:
        return orjson.dumps([event.data for event in batch])
    lines = [orjson.dumps({"metadata": batch.metadata})]
    lines.extend(b'{"%b":%b}' % (event.kind.encode(), data_json(event)) for event in batch)
    lines.append(b"")
    return b"\n".join(lines)


def event_key(event: Event, batch: Batch) -> str:
    """The event's deduplication key (see :meth:`BatchRecords.key`)."""
    return BatchRecords(batch).key(event)


def _spliceable(event: Event) -> bool:
    """Whether the record's ``data`` can be read from the event's bytes: a v2
    event taken unparsed (RUM v3 events are written expanded), msgspec installed."""
    return event.raw_is_data and not event.abbreviated and msgspec is not None


@cache
def _raw_values() -> Callable[[bytes], dict[str, Any]]:
    decode: Callable[[bytes], dict[str, Any]] = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
    return decode


@cache
def _key_decoder() -> Callable[[bytes], dict[str, Any]]:
    keys = msgspec.defstruct("Keys", [("trace_id", Any, msgspec.UNSET), ("service", Any, msgspec.UNSET)])
    decode: Callable[[bytes], dict[str, Any]] = msgspec.json.Decoder(dict[str, keys]).decode  # type: ignore[valid-type]
    return decode


def _key_fields(raw: bytes) -> dict[str, Any]:
    """``trace_id`` and ``service`` of a ``{"<type>": {...}}`` line's value, when
    present, the rest skipped unparsed."""
    (value,) = _key_decoder()(raw).values()
    fields = {"trace_id": value.trace_id, "service": value.service}
    return {name: field for name, field in fields.items() if field is not msgspec.UNSET}


def id_in_parent(event: Event) -> int:
    """Where a RUM v3 span or metricset sits in its transaction (its index in
    ``y`` or ``me``), so the events of one ``x`` line get distinct keys."""
    assert event.parent is not None
    members = event.parent.get("y" if event.kind == "span" else "me") or []
    for index, member in enumerate(members):
        if member is event.data:
            return index
    return -1


def batch_key(body: bytes) -> str:
    """A ``format=batch`` message's deduplication key (digest of its body)."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def partition_key(record: dict[str, Any]) -> bytes | None:
    """Which partition an :func:`event_record` belongs to: its trace id when it
    has one (a trace stays on one partition), else the service name (the
    metadata's, else the event's own), else None."""
    data = record["data"]
    trace_id = data.get("trace_id")
    if isinstance(trace_id, str) and trace_id:
        return trace_id.encode()
    for holder in (record.get("metadata"), data):
        service = holder.get("service") if isinstance(holder, dict) else None
        name = service.get("name") if isinstance(service, dict) else None
        if isinstance(name, str) and name:
            return name.encode()
    return None
