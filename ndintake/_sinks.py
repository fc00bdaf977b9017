"""Ready-made sinks: accepted events as JSON Lines."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, BinaryIO

import orjson

from ._hooks import Batch


def event_record(event: Any, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """One event as a JSON Lines record: ``kind``, ``line``, ``data``, and the
    request's ``metadata`` when it has one."""
    record = {"kind": event.kind, "line": event.line, "data": event.data}
    if metadata is not None:
        record["metadata"] = metadata
    return record


def _dumps(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


class JsonLinesSink:
    """Appends each accepted event to a file as one JSON line (see
    :func:`event_record`), flushing after each batch. Thread-safe; a
    synchronous sink, usable by the ASGI and the WSGI app alike.

    ``target``: a path (opened for appending) or a binary file object (not
    closed by :meth:`close`).
    """

    def __init__(self, target: str | os.PathLike[str] | BinaryIO) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._file: BinaryIO = open(target, "ab")
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self._lock = threading.Lock()
        self.count = 0  # events written

    def __call__(self, batch: Batch) -> None:
        metadata = batch.metadata
        data = b"".join(_dumps(event_record(event, metadata)) + b"\n" for event in batch)
        with self._lock:
            self._file.write(data)
            self._file.flush()
            self.count += len(batch)

    def close(self) -> None:
        """Flush; close the file if this sink opened it."""
        with self._lock:
            if self._owned:
                self._file.close()
            else:
                self._file.flush()


def open_sink(spec: str) -> JsonLinesSink | None:
    """A sink from its command-line spelling: ``jsonl:PATH``, ``stdout`` or ``null``
    (None: events are validated and counted, then dropped)."""
    if spec == "null":
        return None
    if spec == "stdout":
        return JsonLinesSink(sys.stdout.buffer)
    if spec.startswith("jsonl:") and len(spec) > len("jsonl:"):
        return JsonLinesSink(spec[len("jsonl:") :])
    raise ValueError(f"unknown sink {spec!r}: expected jsonl:PATH, stdout or null")
