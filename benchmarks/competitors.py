"""The pipelines under test, all behind one tiny interface.

A :class:`Pipeline` takes the request body, encoded with its ``codec`` and cut
into 64 KiB chunks (``list[bytes]``), and returns the number of accepted
events (the metadata line is not an event). Nothing is printed, nothing is
kept: each run consumes the chunks and counts.

Every pipeline validates the metadata line against ``ndintake/schemas/apm/metadata.json``
(an invalid one means 0 accepted, as in APM Server), then classifies each event
line by its first key and validates the object inside that key against the
kind's schema: the same schema files ndintake uses.

Pipelines other than ndintake read the zstd-compressed body (streaming
decompression with ``zstandard``; it costs about 1% of their time) so that all
of them pay for a decoder. ``ndintake[zstd]`` is the like-for-like entry.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import brotli
import orjson
import zstandard
from zlib_ng import zlib_ng

import ndintake

from .corpus import EVENT_KINDS, load_schemas

CHUNK = 64 * 1024
CODECS = ("identity", "gzip", "zstd", "br")
#: Compression settings: zlib's default gzip level, zstd's default level, and a
#: mid brotli quality (quality 11, brotli's default, is far too slow for a live agent).
LEVELS = {"gzip": 6, "zstd": 3, "br": 5}

Run = Callable[[list[bytes]], int]


@dataclass
class Pipeline:
    """One way to validate a body. ``run(chunks) -> accepted events``."""

    name: str
    codec: str  # the content coding of the chunks it is given
    description: str
    run: Run
    #: Too slow for the whole corpus: timed on a prefix of it (see run.py).
    sliced: bool = False
    #: The no-validation upper bound the others are compared with.
    ceiling: bool = False
    #: The naive pipeline the others are compared with.
    naive: bool = False
    tags: dict[str, Any] = field(default_factory=dict)


# -- encoding and chunking -------------------------------------------------


def encode(body: bytes, codec: str) -> bytes:
    """``body`` compressed with ``codec`` (one of :data:`CODECS`)."""
    if codec == "identity":
        return body
    if codec == "gzip":
        return gzip.compress(body, compresslevel=LEVELS["gzip"], mtime=0)
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=LEVELS["zstd"]).compress(body)
    if codec == "br":
        return brotli.compress(body, quality=LEVELS["br"])
    raise ValueError(f"unknown codec {codec!r}")


def chunked(data: bytes, size: int = CHUNK) -> list[bytes]:
    """``data`` cut into ``size``-byte chunks, as a server reads a request body."""
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- shared streaming helpers for the non-ndintake pipelines ---------------


def decoded_pieces(chunks: list[bytes], codec: str = "zstd") -> Iterator[bytes]:
    """Decompressed pieces of a body coded with ``codec``, given as chunks (no limits:
    these pipelines trust the body)."""
    if codec == "identity":
        yield from chunks
        return
    if codec == "gzip":  # with the inflate ndintake uses (zlib-ng), to compare like with like
        decompress = zlib_ng.decompressobj(31).decompress
    elif codec == "br":
        decompress = brotli.Decompressor().process
    else:
        decompress = zstandard.ZstdDecompressor().decompressobj().decompress
    for chunk in chunks:
        piece = decompress(chunk)
        if piece:
            yield piece


def lines_of(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Split a stream of pieces on ``\\n`` (no size cap: these pipelines trust the body)."""
    tail = b""
    for piece in pieces:
        if tail:
            piece = tail + piece
        lines = piece.split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


class _ChunkSource:
    """A file-like ``read()`` over a list of chunks (for ``zstandard.stream_reader``)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)

    def read(self, size: int = -1) -> bytes:
        return next(self._chunks, b"")


def _first_kind(obj: Any) -> str:
    """The first key of a JSON object ("" for anything else): the line's kind."""
    if type(obj) is dict and obj:
        return next(iter(obj))
    return ""


# -- the pipelines -----------------------------------------------------------


def parse_only(codec: str = "zstd") -> Pipeline:
    """Decode, split, ``orjson.loads``, no validation. The zstd one is the ceiling every
    pipeline is compared with; the others are each ndintake codec's own baseline."""
    loads = orjson.loads

    def run(chunks: list[bytes]) -> int:
        count = 0
        for line in lines_of(decoded_pieces(chunks, codec)):
            if line:
                loads(line)
                count += 1
        return count - 1  # the metadata line

    if codec == "zstd":
        name = "ceiling: zstd + orjson, no validation"
        role = "The upper bound for any Python pipeline built on orjson."
    else:
        name = f"parse-only [{codec}]"
        role = f"The baseline of ndintake [{codec}]: what decoding this coding costs before any validation."
    return Pipeline(
        name,
        codec,
        f"{codec} decoding, split on \\n, orjson.loads of every line; no validation at all. {role}",
        run,
        ceiling=codec == "zstd",
        tags={"parse_only": codec},
    )


def ndintake_pipeline(codec: str, max_body_size: int, *, read_data: bool = False) -> Pipeline:
    """ndintake with a sink per decoded piece; ``read_data``: the sink reads every
    event's ``data`` (else it only forwards the events, as a sink writing ``raw`` does)."""
    limits = ndintake.Limits(max_body_size=max_body_size)
    encoding = codec

    def consume(events: list[ndintake.Event]) -> None:
        """The events reach a consumer batch by batch, as in a server (the bounded mode)."""

    def consume_data(events: list[ndintake.Event]) -> None:
        for event in events:
            assert event.data is not None

    def run(chunks: list[bytes]) -> int:
        sink = consume_data if read_data else consume
        stream = ndintake.IntakeStream(profile="apm", content_encoding=encoding, limits=limits, sink=sink)
        feed = stream.feed
        for chunk in chunks:
            feed(chunk)
        return stream.close().accepted

    reads = "every event's data read by the sink" if read_data else "the sink reads no data"
    return Pipeline(
        f"ndintake [{codec}], data read" if read_data else f"ndintake [{codec}]",
        codec,
        f"ndintake.IntakeStream(content_encoding={codec!r}, sink=...): bounded streaming decoder, line splitter "
        "with the 300 KiB line cap, the byte scanner (the compiled accept check), else orjson and the jsonschema-rs check "
        f"(fastjsonschema for refusals), APM Server's rules; an Event per accepted line, handed to a sink per "
        f"decoded piece; {reads}.",
        run,
        tags={"against": codec},
    )


def _fastjsonschema_is_valid(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """Stock ``fastjsonschema.compile`` as a ``value -> bool`` check."""
    import fastjsonschema

    validate = fastjsonschema.compile(schema)
    invalid = fastjsonschema.JsonSchemaValueException

    def is_valid(value: Any) -> bool:
        try:
            validate(value)
        except invalid:
            return False
        return True

    return is_valid


def orjson_fastjsonschema(schemas: dict[str, dict[str, Any]]) -> Pipeline:
    validators = {kind: _fastjsonschema_is_valid(schema) for kind, schema in schemas.items()}
    return Pipeline(
        "orjson + fastjsonschema",
        "zstd",
        "zstd, split on \\n, orjson.loads, classify by first key, stock fastjsonschema.compile(schema) "
        "of the same schema files. What ndintake does minus its limits, error reporting and APM rules.",
        _is_valid_loop(orjson.loads, orjson.JSONDecodeError, validators),
    )


def ijson_fastjsonschema(schemas: dict[str, dict[str, Any]]) -> Pipeline:
    import ijson

    validators = {kind: _fastjsonschema_is_valid(schema) for kind, schema in schemas.items()}
    events = {kind: validators[kind] for kind in EVENT_KINDS}
    metadata = validators["metadata"]

    def run(chunks: list[bytes]) -> int:
        reader = zstandard.ZstdDecompressor().stream_reader(_ChunkSource(chunks), read_size=CHUNK)  # type: ignore[arg-type]
        values = ijson.items(reader, "", multiple_values=True, use_float=True, buf_size=CHUNK)
        try:
            if not metadata(next(values)["metadata"]):
                return 0
        except (StopIteration, KeyError, TypeError):
            return 0
        accepted = 0
        for obj in values:
            is_valid = events.get(_first_kind(obj))
            if is_valid is not None and is_valid(obj[next(iter(obj))]):
                accepted += 1
        return accepted

    return Pipeline(
        "ijson + fastjsonschema",
        "zstd",
        "zstandard stream_reader, ijson.items(prefix='', multiple_values=True, use_float=True) "
        f"with the {ijson.backend} backend, then fastjsonschema as above. A streaming JSON parser "
        "instead of a line splitter (one broken line would end the stream).",
        run,
        tags={"ijson_backend": ijson.backend},
    )


def _is_valid_loop(
    loads: Callable[[bytes], Any], decode_error: type[Exception], validators: dict[str, Callable[[Any], bool]]
) -> Callable[[list[bytes]], int]:
    """The per-line loop of a parse + ``is_valid`` pipeline: zstd, split on \\n,
    parse, classify by first key, count the valid events."""
    events = {kind: validators[kind] for kind in EVENT_KINDS}
    metadata = validators["metadata"]

    def run(chunks: list[bytes]) -> int:
        lines = lines_of(decoded_pieces(chunks))
        try:
            obj = loads(next(lines))
            if not metadata(obj["metadata"]):
                return 0
        except (StopIteration, decode_error, KeyError, TypeError):
            return 0
        accepted = 0
        for line in lines:
            if not line:
                continue
            try:
                obj = loads(line)
            except decode_error:
                continue
            is_valid = events.get(_first_kind(obj))
            if is_valid is not None and is_valid(obj[next(iter(obj))]):
                accepted += 1
        return accepted

    return run


def orjson_jsonschema_rs(schemas: dict[str, dict[str, Any]]) -> Pipeline:
    import jsonschema_rs

    # Draft 7 pinned: validator_for() would pick 2020-12 for schemas without "$schema".
    validators = {kind: jsonschema_rs.Draft7Validator(schema).is_valid for kind, schema in schemas.items()}
    return Pipeline(
        "orjson + jsonschema-rs",
        "zstd",
        "zstd, split on \\n, orjson.loads, classify by first key, jsonschema_rs.Draft7Validator(schema).is_valid "
        "(Rust validator; Python objects are converted on each call).",
        _is_valid_loop(orjson.loads, orjson.JSONDecodeError, validators),
    )


def json_jsonschema(schemas: dict[str, dict[str, Any]]) -> Pipeline:
    import jsonschema

    validators = {kind: jsonschema.Draft7Validator(schema).is_valid for kind, schema in schemas.items()}
    return Pipeline(
        "json + jsonschema (naive)",
        "zstd",
        "zstd, split on \\n, stdlib json.loads, jsonschema.Draft7Validator(schema).is_valid: the obvious "
        "pure-Python pipeline. Very slow, so it is timed on a prefix of the corpus (rates are per byte and event).",
        _is_valid_loop(json.loads, ValueError, validators),
        sliced=True,
        naive=True,
    )


def make_pipelines(max_body_size: int) -> list[Pipeline]:
    """All pipelines, ceiling first, naive last. Schemas are compiled here, not in ``run``."""
    schemas = load_schemas()
    return [
        parse_only("zstd"),
        *(parse_only(codec) for codec in CODECS if codec != "zstd"),
        *(ndintake_pipeline(codec, max_body_size) for codec in CODECS),
        *(ndintake_pipeline(codec, max_body_size, read_data=True) for codec in CODECS),
        orjson_fastjsonschema(schemas),
        ijson_fastjsonschema(schemas),
        orjson_jsonschema_rs(schemas),
        json_jsonschema(schemas),
    ]


__all__ = ["CHUNK", "CODECS", "LEVELS", "Pipeline", "chunked", "encode", "make_pipelines"]
