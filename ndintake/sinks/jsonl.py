"""The JSON Lines sink: accepted events appended to a file, one record a line."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from .hooks import Batch
from .records import DEFAULT_FORMAT, FORMATS, BatchRecords, Format, encode_batch, record_format
from .url import SinkURL, flag


class JsonLinesSink:
    """Appends each batch of accepted events to a file: one record per event
    (see :mod:`ndintake.sinks.records`), or with ``format="batch"`` the batch as
    a replayable intake body (metadata written once per batch). Synchronous and
    thread-safe; under ASGI, :meth:`deliver` encodes a step's batches on the
    event loop and writes them with one ``write`` in a thread of its own.

    A path is opened for appending and shared safely by several processes
    (``ndintake serve --workers``): each batch is written with one ``write`` on
    an ``O_APPEND`` descriptor under an exclusive ``flock``, so batches never
    interleave. When the file is opened, a torn last line (left by a crash or
    a full disk) is cut back to the last newline, so the next record never
    glues onto it. A failed or short write is cut back too and raises: the
    batch is not counted. ``fsync=True`` fsyncs each batch before it counts
    (safe against power loss, and much slower: one disk flush per batch).

    ``target``: a path, or a binary file object (written and flushed, not
    closed, no repair: ``--sink stdout``).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        fsync: bool = False,
        format: Format = "event",
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self._format = format
        self._fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._file: BinaryIO | None = None
        if isinstance(target, (str, os.PathLike)):
            self._fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            with self._locked():
                _repair(self._fd)
        else:
            self._file = target
        self.count = 0  # events written
        self._writer: ThreadPoolExecutor | None = None

    @classmethod
    def from_spec(cls, spec: str) -> JsonLinesSink:
        """From ``PATH[?fsync=1&format=batch]`` (the part after ``jsonl:``)."""
        path, _, query = spec.partition("?")
        url = SinkURL(f"jsonl://localhost/?{query}", default_port=0)
        fsync = url.take("fsync", False, flag)
        form = url.take("format", DEFAULT_FORMAT, record_format)
        url.done()
        return cls(path, fsync=fsync, format=form)

    def __call__(self, batch: Batch) -> None:
        self._write(self._encode(batch), len(batch))

    async def deliver(self, batches: list[Batch]) -> None:
        """Write ``batches`` together, off the event loop (the ASGI app's path:
        all of them are written, or none and it raises)."""
        data = b"".join(map(self._encode, batches))
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="ndintake-jsonl")
        await asyncio.get_running_loop().run_in_executor(self._writer, self._write, data, sum(map(len, batches)))

    def _encode(self, batch: Batch) -> bytes:
        if self._format == "batch":
            data = encode_batch(batch)
            return data + b"\n" if batch.metadata is None else data
        records = BatchRecords(batch)
        return b"".join([records.record(event) + b"\n" for event in batch])

    def _write(self, data: bytes, events: int) -> None:
        with self._lock:
            if self._fd is None:
                assert self._file is not None
                with _Flock(self._file):  # workers sharing stdout write whole batches
                    self._file.write(data)
                    self._file.flush()
            else:
                with self._locked():
                    self._append(self._fd, data)
            self.count += events

    def _append(self, fd: int, data: bytes) -> None:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)  # no partial record stays behind
            raise

    def _locked(self) -> _Flock:
        assert self._fd is not None
        return _Flock(self._fd)

    def close(self) -> None:
        """Flush; close the file if this sink opened it."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = -1
            elif self._file is not None:
                self._file.flush()


class _Flock:
    """An exclusive ``flock`` on a descriptor or a file object, as a context
    manager; a file object without a descriptor (``BytesIO``) is not locked."""

    def __init__(self, target: int | BinaryIO) -> None:
        if isinstance(target, int):
            self._fd: int | None = target
        else:
            try:
                self._fd = target.fileno()
            except (OSError, ValueError, AttributeError):
                self._fd = None

    def __enter__(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def _repair(fd: int) -> None:
    """Cut a torn last line (no final newline) back to the previous newline."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)


