"""Shared helpers and fixtures for the ndintake test suite.

Test data lives in ``tests/data/apm-server`` (copied from upstream APM Server):
``intake-v2/*.ndjson``, ``intake-v3/*.ndjson`` and ``derived-results.json``
(expected status / accepted / errors per file, and handler scenarios).

The helpers are plain functions so that hypothesis tests (which cannot use
function-scoped fixtures) can import them: ``from conftest import run``.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import brotli
import pytest
import zstandard

import ndintake
from brokers import own_nats, own_redis, shared_nats, shared_redis  # noqa: F401 (broker fixtures, tests/brokers.py)

DATA_DIR = Path(__file__).resolve().parent / "data" / "apm-server"
V2_DIR = DATA_DIR / "intake-v2"
V3_DIR = DATA_DIR / "intake-v3"


# -- data ---------------------------------------------------------------------


@cache
def expected_results() -> dict[str, Any]:
    """The parsed ``derived-results.json``."""
    return json.loads((DATA_DIR / "derived-results.json").read_text(encoding="utf-8"))


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks() -> list[tuple[str, str]]:
    """README's Python code blocks, as (language tag, code): ``python`` blocks run
    as they are; ``py`` recipes leave names open (a sink, a publish function)."""
    return re.findall(r"```(python|py)\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def readme_recipe(contains: str) -> str:
    """The one README code block containing ``contains``."""
    (code,) = [code for _, code in readme_blocks() if contains in code]
    return code


@cache
def realistic_corpus(size: int = 400_000) -> bytes:
    """The first ``size`` bytes (at most 400 kB, whole lines) of the benchmark's realistic
    corpus, from ``tests/data/realistic.ndjson.gz``: tests never import ``benchmarks``."""
    body = gzip.decompress((DATA_DIR.parent / "realistic.ndjson.gz").read_bytes())
    return body if size >= len(body) else body[: body.rfind(b"\n", 0, size) + 1]


@cache
def load(name: str) -> bytes:
    """A data file by its path relative to ``tests/data/apm-server`` (e.g. ``intake-v2/errors.ndjson``)."""
    return (DATA_DIR / name).read_bytes()


def v2_files() -> list[str]:
    """All intake-v2 payloads, as ``intake-v2/<name>``."""
    return sorted(f"intake-v2/{p.name}" for p in V2_DIR.glob("*.ndjson"))


@cache
def errors_body() -> bytes:
    """``errors.ndjson``: metadata + 5 valid error events (the handler tests' payload)."""
    return load("intake-v2/errors.ndjson")


@cache
def metadata_line() -> bytes:
    """A valid v2 metadata line (no newline)."""
    return load("intake-v2/minimal.ndjson").split(b"\n", 1)[0]


@cache
def valid_event_lines() -> tuple[bytes, ...]:
    """Event lines (no newline) from the payloads upstream accepts entirely, where
    every non-blank event line counts as one accepted event (so each line on its
    own is a valid, kept event). The oracle is derived-results.json, not ndintake."""
    files = expected_results()["files"]
    lines: list[bytes] = []
    for name, exp in sorted(files.items()):
        if not name.startswith("intake-v2/") or name.endswith("heavy.ndjson"):
            continue
        if exp["status"] != 202 or exp["errors"]:
            continue
        body_lines = [line for line in load(name).split(b"\n")[1:] if line.strip()]
        if len(body_lines) == exp["accepted"]:
            lines.extend(body_lines)
    return tuple(lines)


#: Lines that are each one per-event error (not fatal) after valid metadata.
INVALID_EVENT_LINES: tuple[bytes, ...] = (
    b'{"tennis-court": {"name": "Centre Court, Wimbledon"}}',
    b'{ "invalid-json" }',
    b'{"transaction": {"id": }',
    b'{"span": "not an object"}',
    b"12345",
    b'{"metadata": {"service": {"name": "again"}}}',
    b'{"error": {"id": "abcdef0123456789", "log": {"message": "x"}',  # known key, JSON cut short
)


# -- compression ---------------------------------------------------------------


def zlib_compress(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


def _halves(data: bytes) -> tuple[bytes, bytes]:
    cut = data.find(b"\n", len(data) // 2) + 1 or len(data) // 2
    return data[:cut], data[cut:]


def gzip_multi(data: bytes) -> bytes:
    a, b = _halves(data)
    return gzip.compress(a) + gzip.compress(b)


#: A skippable zstd frame (magic 0x184D2A5?, 4-byte little-endian length, payload).
ZSTD_SKIPPABLE = b"\x5a\x2a\x4d\x18" + (7).to_bytes(4, "little") + b"ignored"


def zstd_multi(data: bytes) -> bytes:
    a, b = _halves(data)
    return (
        zstandard.ZstdCompressor(level=3).compress(a)
        + ZSTD_SKIPPABLE
        + zstandard.ZstdCompressor(level=3, write_checksum=True).compress(b)
    )


#: name -> (compress function, content_encoding to declare)
CODECS: dict[str, tuple[Callable[[bytes], bytes], str | None]] = {
    "identity": (lambda d: d, "identity"),
    "none-plain": (lambda d: d, None),
    "gzip": (gzip.compress, "gzip"),
    "gzip-multi-member": (gzip_multi, "gzip"),
    "deflate-zlib": (lambda d: zlib_compress(d, 15), "deflate"),
    "deflate-raw": (lambda d: zlib_compress(d, -15), "deflate"),
    "zstd": (lambda d: zstandard.ZstdCompressor(level=3).compress(d), "zstd"),
    "zstd-multi-frame": (zstd_multi, "zstd"),
    "br": (brotli.compress, "br"),
    "sniff-gzip": (gzip.compress, None),
    "sniff-zlib": (lambda d: zlib_compress(d, 15), None),
    "sniff-zstd": (lambda d: zstandard.ZstdCompressor(level=3).compress(d), None),
    "gzip, br": (lambda d: brotli.compress(gzip.compress(d)), "gzip, br"),
}


def encode(body: bytes, codec: str) -> tuple[bytes, str | None]:
    """``body`` compressed with the named codec, and the Content-Encoding to declare."""
    compress, declared = CODECS[codec]
    return compress(body), declared


# -- running a stream ------------------------------------------------------------


def chunked(data: bytes, chunk_sizes: int | Sequence[int] | None) -> list[bytes]:
    """``data`` cut into chunks: None = one chunk; int = fixed size; a sequence of
    sizes = those sizes in turn (cycled) until the data is used up."""
    if chunk_sizes is None:
        return [data]
    sizes = [chunk_sizes] if isinstance(chunk_sizes, int) else list(chunk_sizes)
    assert sizes and all(s > 0 for s in sizes)
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(data[pos : pos + size])
        pos += size
        i += 1
    return out


def random_sizes(seed: int, length: int, max_size: int = 97) -> list[int]:
    """Random chunk sizes (seeded) whose sum covers ``length``."""
    rng = random.Random(seed)
    sizes: list[int] = []
    total = 0
    while total < length:
        size = rng.randint(1, max_size)
        sizes.append(size)
        total += size
    return sizes or [1]


def run(
    body: bytes,
    encoding: str | None = None,
    chunk_sizes: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> tuple[ndintake.IntakeResult, list[ndintake.Event]]:
    """Feed ``body`` to an IntakeStream in the given chunks (see :func:`chunked`);
    return the result and every delivered event (from ``feed`` and ``result.final_events``)."""
    stream = ndintake.IntakeStream(content_encoding=encoding, **kwargs)
    events: list[ndintake.Event] = []
    for chunk in chunked(body, chunk_sizes):
        events.extend(stream.feed(chunk))
    result = stream.close()
    events.extend(result.final_events)
    return result, events


def run_pieces(
    pieces: Iterable[bytes], encoding: str | None = None, **kwargs: Any
) -> tuple[ndintake.IntakeResult, list[ndintake.Event]]:
    """Like :func:`run` with explicit chunks."""
    stream = ndintake.IntakeStream(content_encoding=encoding, **kwargs)
    events: list[ndintake.Event] = []
    for piece in pieces:
        events.extend(stream.feed(piece))
    result = stream.close()
    events.extend(result.final_events)
    return result, events


def summary(result: ndintake.IntakeResult) -> tuple[Any, ...]:
    """Everything about a result that must not depend on how the body was chunked
    (``final_events`` does depend on it, by design)."""
    return (
        result.status,
        result.accepted,
        result.invalid,
        result.dropped,
        tuple((e.message, e.document, e.line, e.status, e.fatal) for e in result.errors),
    )


def loose_summary(result: ndintake.IntakeResult) -> tuple[Any, ...]:
    """:func:`summary`, but of the fatal error only its status and whether it is a
    mid-stream error (a codec library may word its complaint differently
    depending on where the input was cut)."""
    status, accepted, invalid, dropped, errors = summary(result)
    errors = tuple(e if not e[4] else (e[0].startswith("cannot handle stream: "), e[3]) for e in errors)
    return status, accepted, invalid, dropped, errors


def event_summary(events: Iterable[ndintake.Event]) -> list[tuple[str, bytes, int]]:
    return [(e.kind, e.raw, e.line) for e in events]


def check_invariants(result: ndintake.IntakeResult, events: list[ndintake.Event]) -> None:
    """What must hold for every result."""
    assert len(events) == result.accepted
    per_event = [e for e in result.errors if not e.fatal]
    fatal = [e for e in result.errors if e.fatal]
    assert len(per_event) <= ndintake.MAX_EVENT_ERRORS
    assert len(fatal) <= 1
    if fatal:
        assert result.errors[-1] is fatal[0]
        assert result.fatal is fatal[0]
    else:
        assert result.fatal is None
    assert result.invalid >= len(per_event)
    assert result.status == max((e.status for e in result.errors), default=202)
    parsed = json.loads(result.body())
    assert parsed["accepted"] == result.accepted


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def expected() -> dict[str, Any]:
    return expected_results()


@pytest.fixture(scope="session")
def errors_ndjson() -> bytes:
    return errors_body()


@pytest.fixture(scope="session")
def meta() -> bytes:
    return metadata_line()


@pytest.fixture(autouse=True)
def _consumer_reads_no_data() -> None:
    """Every test starts as a fresh process does: lines the typed check takes are
    parsed lazily (the reader switches to parsing eagerly once it sees a consumer
    read ``data``, and skips it for keys it mostly refuses; those guesses are
    process-wide, and results never depend on them)."""
    from ndintake.profiles.apm import envelope

    envelope._reads_data[0] = False
    envelope._untyped[0] = ()
