"""Content codings: every codec x every chunking matches identity; truncation,
corruption, unsupported codings, and decompression bombs."""

from __future__ import annotations

import gzip
import json
import random
import struct
import zlib

import brotli
import pytest
import zstandard

import ndintake
from hostile import run_isolated
from ndintake.core.decode import _BROTLI_HOLD
from conftest import (
    CODECS,
    INVALID_EVENT_LINES,
    check_invariants,
    encode,
    errors_body,
    event_summary,
    load,
    loose_summary,
    metadata_line,
    random_sizes,
    run,
    summary,
    zlib_compress,
)

# A body with a bit of everything: valid events, bad lines, a blank line, and a
# last line without a newline.
MIXED_BODY = (
    errors_body()
    + b"\n".join(load("intake-v2/minimal.ndjson").split(b"\n")[1:4])
    + b"\n"
    + INVALID_EVENT_LINES[0]
    + b"\n\n"
    + INVALID_EVENT_LINES[2]
    + b"\n"
    + load("intake-v2/minimal.ndjson").split(b"\n")[5]  # a span, no newline
)
MIXED_ACCEPTED = 5 + 3 + 1

CHUNKINGS = ["whole", "1-byte", "random-1", "random-2", "random-3"]


def sizes_for(chunking: str, length: int):
    if chunking == "whole":
        return None
    if chunking == "1-byte":
        return 1
    return random_sizes(int(chunking.split("-")[1]), length)


@pytest.fixture(scope="module")
def identity_mixed():
    result, events = run(MIXED_BODY, "identity")
    # sanity of the reference itself
    assert result.status == 400
    assert result.accepted == MIXED_ACCEPTED
    assert [e.message for e in result.errors] == [
        'did not recognize object type: "tennis-court"',
        result.errors[1].message,
    ]
    assert result.errors[1].message.startswith("decode error: data read error: ")
    assert [e.line for e in result.errors] == [10, 12]
    assert result.invalid == 2 and result.fatal is None
    assert len(result.final_events) == 1 and result.final_events[0].line == 13
    return result, events


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("codec", list(CODECS))
def test_codec_matches_identity(codec, chunking, identity_mixed):
    reference, reference_events = identity_mixed
    payload, declared = encode(MIXED_BODY, codec)
    result, events = run(payload, declared, sizes_for(chunking, len(payload)))
    check_invariants(result, events)
    assert summary(result) == summary(reference)
    assert event_summary(events) == event_summary(reference_events)
    assert [e.data for e in events] == [e.data for e in reference_events]


@pytest.mark.parametrize("chunking", ["whole", "random-7"])
@pytest.mark.parametrize("codec", ["gzip", "deflate-zlib", "deflate-raw", "zstd", "br", "sniff-zstd", "gzip, br"])
def test_codec_heavy_payload(codec, chunking):
    body = load("intake-v2/heavy.ndjson")
    payload, declared = encode(body, codec)
    sizes = None if chunking == "whole" else random_sizes(7, len(payload), max_size=5000)
    result, events = run(payload, declared, sizes)
    assert (result.status, result.accepted, result.errors, len(events)) == (202, 1920, [], 1920)


@pytest.mark.parametrize(
    "declared, compress",
    [
        ("gzip, br", lambda d: brotli.compress(gzip.compress(d))),
        ("br, gzip", lambda d: gzip.compress(brotli.compress(d))),
        ("deflate, zstd", lambda d: zstandard.ZstdCompressor().compress(zlib.compress(d))),
        ("gzip,gzip", lambda d: gzip.compress(gzip.compress(d))),
        ("identity, gzip", gzip.compress),
    ],
)
@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random-4"])
def test_coding_lists_are_undone_last_applied_first(declared, compress, chunking):
    payload = compress(errors_body())
    result, events = run(payload, declared, sizes_for(chunking, len(payload)))
    assert (result.status, result.accepted, result.errors, len(events)) == (202, 5, [], 5)


def test_coding_list_in_wrong_order_fails():
    payload = brotli.compress(gzip.compress(errors_body()))  # gzip first, then br
    result, events = run(payload, "br, gzip")  # claims br first, then gzip
    assert result.status == 400 and result.fatal is not None and result.accepted == 0
    assert result.errors[0].message == "data decoding error: gzip: invalid header"


@pytest.mark.parametrize("declared", ["GZIP", "Gzip", " gzip ", "x-gzip"])
def test_declared_coding_case_and_spaces(declared):
    result, events = run(gzip.compress(errors_body()), declared)
    assert (result.status, result.accepted, len(events)) == (202, 5, 5)


@pytest.mark.parametrize("declared", ["", "   "])
def test_blank_content_encoding_sniffs(declared):
    for payload in (errors_body(), gzip.compress(errors_body()), zlib.compress(errors_body())):
        result, events = run(payload, declared, 1)
        assert (result.status, result.accepted, len(events)) == (202, 5, 5)


# -- truncation -----------------------------------------------------------------------


TRUNC_LINES = [metadata_line()] + load("intake-v2/minimal.ndjson").split(b"\n")[1:6]


def _flushed(codec: str) -> tuple[bytes, str | None, list[int]]:
    """The TRUNC_LINES body compressed with a flush after every line; also the
    offset where each line's flushed data ends."""
    data = b""
    ends: list[int] = []
    if codec in ("gzip", "sniff-gzip", "deflate-zlib", "deflate-raw"):
        wbits = {"gzip": 31, "sniff-gzip": 31, "deflate-zlib": 15, "deflate-raw": -15}[codec]
        c = zlib.compressobj(6, zlib.DEFLATED, wbits)
        for line in TRUNC_LINES:
            data += c.compress(line + b"\n") + c.flush(zlib.Z_SYNC_FLUSH)
            ends.append(len(data))
        data += c.flush()
        declared = {"gzip": "gzip", "sniff-gzip": None}.get(codec, "deflate")
    elif codec in ("zstd", "sniff-zstd"):
        c = zstandard.ZstdCompressor(write_checksum=True).compressobj()
        for line in TRUNC_LINES:
            data += c.compress(line + b"\n") + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            ends.append(len(data))
        data += c.flush()
        declared = "zstd" if codec == "zstd" else None
    elif codec == "br":
        c = brotli.Compressor()
        for line in TRUNC_LINES:
            data += c.process(line + b"\n") + c.flush()
            ends.append(len(data))
        data += c.finish()
        declared = "br"
    elif codec == "gzip, br":
        g = zlib.compressobj(6, zlib.DEFLATED, 31)
        b = brotli.Compressor()
        for line in TRUNC_LINES:
            data += b.process(g.compress(line + b"\n") + g.flush(zlib.Z_SYNC_FLUSH)) + b.flush()
            ends.append(len(data))
        data += b.process(g.flush()) + b.finish()
        declared = "gzip, br"
    else:  # pragma: no cover
        raise AssertionError(codec)
    return data, declared, ends


TRUNC_CODECS = ["gzip", "sniff-gzip", "deflate-zlib", "deflate-raw", "zstd", "sniff-zstd", "br", "gzip, br"]


@pytest.mark.parametrize("codec", TRUNC_CODECS)
def test_flushed_stream_is_valid_when_whole(codec):
    payload, declared, _ = _flushed(codec)
    result, events = run(payload, declared)
    assert (result.status, result.accepted, result.errors, len(events)) == (202, 5, [], 5)


@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random-5"])
@pytest.mark.parametrize("codec", TRUNC_CODECS)
def test_truncated_at_line_boundaries(codec, chunking):
    """Cut right after the k-th line's flushed data: exactly k lines were sent."""
    payload, declared, ends = _flushed(codec)
    for k, end in enumerate(ends, start=1):
        cut = payload[:end]
        result, events = run(cut, declared, sizes_for(chunking, len(cut)))
        check_invariants(result, events)
        assert result.accepted == k - 1, (k, result)
        assert [e.line for e in events] == list(range(2, k + 1))
        fatal = result.fatal
        assert fatal is not None and len(result.errors) == 1
        # metadata was read: a mid-stream read error, 500
        assert fatal.status == 500 and result.status == 500
        assert fatal.message.startswith("cannot handle stream: ")
        assert fatal.document is None


@pytest.mark.parametrize("codec", TRUNC_CODECS)
def test_truncated_at_every_byte(codec):
    payload, declared, ends = _flushed(codec)
    previous = 0
    for cut_at in range(1, len(payload)):
        result, events = run(payload[:cut_at], declared)
        check_invariants(result, events)
        # lines surely complete by now; one more may be (its newline can come
        # out before its flush marker)
        low = sum(1 for end in ends if end <= cut_at)
        assert result.fatal is not None, cut_at
        assert len(result.errors) == 1
        if result.status == 400:  # the metadata line was not complete
            assert low == 0 and result.accepted == 0, (cut_at, result)
        else:
            assert result.status == 500, (cut_at, result)
            assert result.fatal.message.startswith("cannot handle stream: ")
            assert max(low - 1, 0) <= result.accepted <= min(low, len(ends) - 1), (cut_at, low, result)
        assert result.accepted >= previous  # more bytes never means fewer events
        previous = result.accepted


def test_truncated_before_metadata_is_400():
    payload = gzip.compress(errors_body())
    for cut_at in (1, 2, 5, 10, 30):
        result, events = run(payload[:cut_at], "gzip")
        assert (result.status, result.accepted, events) == (400, 0, [])
        assert result.fatal is not None and len(result.errors) == 1


# -- corruption and trailing bytes --------------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0xFF
    return bytes(out)


TRAILER_CORRUPTIONS = {
    "gzip-crc": (lambda d: _flip(gzip.compress(d), -5), "gzip"),
    "gzip-isize": (lambda d: _flip(gzip.compress(d), -1), "gzip"),
    "zlib-adler32": (lambda d: _flip(zlib.compress(d), -1), "deflate"),
    "zstd-checksum": (lambda d: _flip(zstandard.ZstdCompressor(write_checksum=True).compress(d), -1), "zstd"),
}


@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random-1"])
@pytest.mark.parametrize("case", list(TRAILER_CORRUPTIONS))
def test_bad_checksum_after_all_events_is_500_with_events_counted(case, chunking):
    """Every line decodes fine; only the trailer's checksum is wrong. The events
    were read before the read error, so they count (as in APM Server: a mid-stream
    decompression error during events is 500, events read before it still count;
    README "Statuses and errors"), whatever the chunking."""
    make, declared = TRAILER_CORRUPTIONS[case]
    payload = make(errors_body())
    result, events = run(payload, declared, sizes_for(chunking, len(payload)))
    check_invariants(result, events)
    assert result.accepted == 5 and len(events) == 5
    assert result.status == 500
    [fatal] = result.errors
    assert fatal.fatal and fatal.message.startswith("cannot handle stream: ")


MID_CORRUPTIONS = {
    "gzip": (lambda d: _flip(gzip.compress(d), 700), "gzip"),
    "zlib": (lambda d: _flip(zlib.compress(d), 700), "deflate"),
    "zstd": (lambda d: _flip(zstandard.ZstdCompressor(write_checksum=True).compress(d), 700), "zstd"),
    "br": (lambda d: _flip(brotli.compress(d), 700), "br"),
}


@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random-2"])
@pytest.mark.parametrize("case", list(MID_CORRUPTIONS))
def test_corrupt_data_is_a_fatal_error(case, chunking):
    make, declared = MID_CORRUPTIONS[case]
    payload = make(errors_body())
    result, events = run(payload, declared, sizes_for(chunking, len(payload)))
    check_invariants(result, events)
    assert result.fatal is not None
    assert result.status in (400, 500)
    assert result.accepted < 5


@pytest.mark.parametrize(
    "codec", ["gzip", "deflate-zlib", "deflate-raw", "sniff-zlib", "zstd-multi-frame", "br", "gzip, br"]
)
def test_corruption_after_the_metadata_gives_the_same_result_at_any_chunking(codec):
    """Flip bytes in the second half of the compressed body: whatever was decoded
    before the decoder noticed counts, and a stream whose metadata line was read
    fails as a mid-stream error, however the body was cut into chunks."""
    payload, declared = encode(errors_body(), codec)
    for index in range(len(payload) // 2, len(payload) - 2, 41):
        corrupt = _flip(payload, index)
        whole, whole_events = run(corrupt, declared)
        check_invariants(whole, whole_events)
        for sizes in (1, random_sizes(index, len(corrupt))):
            result, events = run(corrupt, declared, sizes)
            assert loose_summary(result) == loose_summary(whole), (index, result, whole)
            assert event_summary(events) == event_summary(whole_events)


def _incompressible_body(events: int) -> bytes:
    rng = random.Random(events)
    lines = [metadata_line()]
    for _ in range(events):
        event = {"error": {"id": "%016x" % rng.getrandbits(64), "log": {"message": "%0200x" % rng.getrandbits(800)}}}
        lines.append(json.dumps(event).encode())
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("chunking", ["whole", "random", "1000"])
@pytest.mark.parametrize("count, compressed", [(3000, 256 * 1024), (12000, _BROTLI_HOLD)])
def test_garbage_after_a_large_br_body_loses_no_events(chunking, count, compressed):
    """Junk after the end of a brotli stream of more than 256 KiB, and of more
    than the input held for salvage (compressed): every event before it still
    counts, for any chunking."""
    body = _incompressible_body(count)
    payload = brotli.compress(body, quality=4)
    assert len(payload) > compressed
    payload += b"garbage!!"
    sizes = {"whole": None, "random": random_sizes(3, len(payload), max_size=5000), "1000": 1000}[chunking]
    result, events = run(payload, "br", sizes)
    check_invariants(result, events)
    assert (result.status, result.accepted, len(events)) == (500, count, count)
    assert result.fatal.message.startswith("cannot handle stream: ")


@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random-3"])
@pytest.mark.parametrize("garbage", [b"garbage", b"\x00" * 10, b"\x1f"])
def test_garbage_after_gzip_member_is_an_error(garbage, chunking):
    payload = gzip.compress(errors_body()) + garbage
    result, events = run(payload, "gzip", sizes_for(chunking, len(payload)))
    check_invariants(result, events)
    assert (result.status, result.accepted, len(events)) == (500, 5, 5)
    [fatal] = result.errors
    assert fatal.fatal and fatal.message.startswith("cannot handle stream: ")
    if len(garbage) >= 2:
        assert fatal.message == "cannot handle stream: gzip: invalid header"


@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random-3"])
@pytest.mark.parametrize("wbits", [15, -15])
@pytest.mark.parametrize("garbage", [b"garbage after the end", b"\x00", b"\x1f\x8b\x08" + b"\x00" * 20])
def test_bytes_after_zlib_stream_are_ignored(garbage, wbits, chunking):
    payload = zlib_compress(errors_body(), wbits) + garbage
    result, events = run(payload, "deflate", sizes_for(chunking, len(payload)))
    assert (result.status, result.accepted, result.errors, len(events)) == (202, 5, [], 5)


def test_bytes_after_sniffed_zlib_stream_are_ignored():
    payload = zlib.compress(errors_body()) + b"trailing junk"
    result, events = run(payload, None)
    assert (result.status, result.accepted, result.errors) == (202, 5, [])


@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random-3"])
@pytest.mark.parametrize(
    "codec, make",
    [
        ("zstd", lambda d: zstandard.ZstdCompressor().compress(d) + b"garbage!!"),
        ("br", lambda d: brotli.compress(d) + b"garbage!!"),
    ],
)
def test_garbage_after_zstd_or_br_end_is_500_with_events_counted(codec, make, chunking):
    """Garbage after the last frame / the end of the brotli stream is an error,
    found after every line was read: 500, the 5 events count, for any chunking."""
    payload = make(errors_body())
    result, events = run(payload, codec, sizes_for(chunking, len(payload)))
    check_invariants(result, events)
    assert (result.status, result.accepted, len(events)) == (500, 5, 5)
    [fatal] = result.errors
    assert fatal.fatal and fatal.message.startswith("cannot handle stream: ")


# -- header errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_sizes", [None, 1, 2, 3, 5])
@pytest.mark.parametrize(
    "declared, message",
    [
        ("gzip", "data decoding error: gzip: invalid header"),
        ("deflate", "data decoding error: zlib: invalid header"),
        ("zstd", "data decoding error: zstd: invalid header"),
    ],
)
def test_uncompressed_body_with_declared_coding(declared, message, chunk_sizes):
    result, events = run(errors_body(), declared, chunk_sizes)
    assert (result.status, result.accepted, events) == (400, 0, [])
    [error] = result.errors
    assert error.message == message
    assert error.fatal and error.document is None
    assert result.body() == b'{"accepted":0,"errors":[{"message":"%s"}]}' % message.encode()


@pytest.mark.parametrize("chunk_sizes", [1, 2, 3, 5, 64])
def test_uncompressed_body_declared_br_same_at_any_chunking(chunk_sizes):
    whole, _ = run(errors_body(), "br")
    assert whole.status == 400 and whole.accepted == 0 and whole.fatal is not None
    result, events = run(errors_body(), "br", chunk_sizes)
    assert summary(result) == summary(whole)
    assert events == []


def test_sniffing_does_not_mistake_plain_text_for_zlib():
    """ndintake checks the zlib header checksum, so a body starting with 'x' is
    plain text (APM Server would say 'zlib: invalid header')."""
    result, _ = run(b"x" + errors_body(), None)
    assert result.status == 400 and result.fatal is not None
    assert not result.errors[0].message.startswith("data decoding error")
    # leading whitespace is plain NDJSON
    result, events = run(b" " + errors_body(), None, 1)
    assert (result.status, result.accepted, len(events)) == (202, 5, 5)


@pytest.mark.parametrize("body, message", [(b"{", "EOF while reading metadata"), (b"\x1f", "EOF while reading metadata")])
def test_sniffing_one_byte_body(body, message):
    result, _ = run(body, None)
    assert (result.status, result.accepted) == (400, 0)
    assert result.errors[0].message == message


# -- unsupported codings and empty bodies ------------------------------------------------------


@pytest.mark.parametrize("chunk_sizes", [None, 1])
@pytest.mark.parametrize(
    "declared, name", [("compress", "compress"), ("foo", "foo"), ("gzip, compress", "compress"), ("FOO", "foo")]
)
def test_unsupported_coding_is_415(declared, name, chunk_sizes):
    result, events = run(errors_body(), declared, chunk_sizes)
    assert (result.status, result.accepted, events) == (415, 0, [])
    [error] = result.errors
    assert error.fatal and error.status == 415
    assert error.message == f"unsupported content encoding: '{name}'"
    assert error.document is None


@pytest.mark.parametrize("count", [9, 500, 5000])
def test_more_than_eight_codings_are_refused_with_415(count):
    # once raised RecursionError out of feed() (one nested call per coding)
    declared = ", ".join(["identity"] * count)
    result, events = run(errors_body(), declared)
    assert (result.status, result.accepted, events) == (415, 0, [])
    [error] = result.errors
    assert error.fatal and error.message == (
        f"unsupported content encoding: {count} codings, at most {ndintake.MAX_CODINGS} are accepted"
    )
    assert ndintake.validate(b"", content_encoding=declared).status == 202  # no body byte, no refusal


@pytest.mark.parametrize("chunking", ["whole", "1-byte"])
def test_eight_codings_are_undone(chunking):
    payload = errors_body()
    for _ in range(4):
        payload = brotli.compress(gzip.compress(payload))
    declared = ", ".join(["gzip", "br"] * 4)
    result, events = run(payload, declared, sizes_for(chunking, len(payload)))
    assert (result.status, result.accepted, result.errors, len(events)) == (202, 5, [], 5)


@pytest.mark.parametrize("declared", ["compress", "foo", "gzip, compress"])
def test_unsupported_coding_with_empty_body_is_202(declared):
    result, events = run(b"", declared)
    assert (result.status, result.accepted, result.errors, events) == (202, 0, [], [])
    assert result.body() == b'{"accepted":0}'


@pytest.mark.parametrize("declared", [None, "identity", "gzip", "deflate", "zstd", "br", "gzip, br"])
def test_zero_byte_body_is_202(declared):
    stream = ndintake.IntakeStream(content_encoding=declared)
    assert stream.feed(b"") == []
    result = stream.close()
    assert (result.status, result.accepted, result.errors) == (202, 0, [])


@pytest.mark.parametrize("chunking", ["whole", "1-byte"])
@pytest.mark.parametrize(
    "declared, payload",
    [
        ("gzip", gzip.compress(b"")),
        ("deflate", zlib.compress(b"")),
        ("zstd", zstandard.ZstdCompressor().compress(b"")),
        ("br", brotli.compress(b"")),
        (None, gzip.compress(b"")),
    ],
)
def test_compressed_empty_body_is_202(declared, payload, chunking):
    result, events = run(payload, declared, sizes_for(chunking, len(payload)))
    assert (result.status, result.accepted, result.errors, events) == (202, 0, [], [])


def test_zstd_skippable_frame_only_is_202():
    from conftest import ZSTD_SKIPPABLE

    result, _ = run(ZSTD_SKIPPABLE, "zstd", 1)
    assert (result.status, result.accepted, result.errors) == (202, 0, [])


# -- decompression bombs -----------------------------------------------------------------------

GIB = 1 << 30
MIB = 1 << 20
#: 1 MiB of whitespace lines (skipped between events, so only the size limit stops it)
PAD = (b" " * 1023 + b"\n") * 1024
BOMB_LIMIT = 16 * MIB


def _gzip_bomb(prefix: bytes, unit: bytes, count: int) -> bytes:
    """A valid gzip member of prefix + unit * count, built without compressing it
    all: after a full flush the deflate blocks for `unit` are always the same."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH) == block
    tail = c.flush()
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(unit, crc)
    size = (len(prefix) + len(unit) * count) & 0xFFFFFFFF
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + head + block * count + tail + struct.pack("<II", crc, size)


def _zstd_bomb(prefix: bytes, unit: bytes, count: int) -> bytes:
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return c.compress(prefix) + b"".join(c.compress(unit) for _ in range(count)) + c.flush()


def _br_bomb(prefix: bytes, unit: bytes, count: int) -> bytes:
    c = brotli.Compressor(quality=1)
    return c.process(prefix) + b"".join(c.process(unit) for _ in range(count)) + c.finish()


@pytest.fixture(scope="module")
def bombs():
    """1 GiB (decompressed) bodies: metadata + 5 events + whitespace lines."""
    prefix = errors_body()
    count = GIB // len(PAD)
    gzip_bomb = _gzip_bomb(prefix, PAD, count)
    return {
        "gzip": (gzip_bomb, "gzip"),
        "sniff-gzip": (gzip_bomb, None),
        "zstd": (_zstd_bomb(prefix, PAD, count), "zstd"),
        "br": (_br_bomb(prefix, PAD, count), "br"),
    }


#: Peak memory growth of the child feeding a 1 GiB bomb, C buffers included: far below 1 GiB.
BOMB_MEMORY_MIB = 64
#: Only a guard against a hang or inflating the whole GiB; the behaviour is the 413 itself.
BOMB_SECONDS = 60.0


def _feed_bounded(tmp_path, payload: bytes, declared, chunk: int, **limits):
    """Feed like a server would (stop at a fatal error), in a child process that
    measures its own peak RSS (``hostile.run_isolated``: the test process's
    ``ru_maxrss`` is a high-water mark that earlier tests may have set)."""
    path = tmp_path / "body"
    path.write_bytes(payload)
    spec = {
        "profile": "apm",
        "encoding": declared,
        "limits": limits or None,
        "source": "file",
        "args": {"path": str(path), "chunk": chunk},
        "cap_mib": 1024,
    }
    out = run_isolated(spec, timeout=BOMB_SECONDS + 60)
    assert out["crash"] is None, f"{out['crash']}\n{out.get('traceback', '')}"
    assert out["delivered"] == out["accepted"]
    assert out["elapsed"] < BOMB_SECONDS, out["elapsed"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [64 * 1024, GIB])
@pytest.mark.parametrize("codec", ["gzip", "sniff-gzip", "zstd", "br"])
def test_bomb_stops_at_max_body_size(tmp_path, bombs, codec, chunk):
    payload, declared = bombs[codec]
    assert len(payload) < 4 * MIB  # it is a bomb: > 256x expansion
    out = _feed_bounded(tmp_path, payload, declared, chunk, max_body_size=BOMB_LIMIT)
    assert (out["status"], out["accepted"]) == (413, 5)
    [fatal] = out["errors"]
    assert fatal["fatal"] and fatal["status"] == 413
    assert fatal["message"] == f"request body too large: more than {BOMB_LIMIT} bytes after decompression"
    assert out["rss_growth_mib"] < BOMB_MEMORY_MIB, out["rss_growth_mib"]


@pytest.mark.slow
def test_bomb_of_zeros_on_event_line_is_bounded(tmp_path):
    """A 1 GiB line of zeros after valid events: one too-large error (its first
    max_event_size bytes as document), the rest skipped without buffering, then
    413 at the body limit."""
    prefix = errors_body()
    payload = _zstd_bomb(prefix, bytes(MIB), GIB // MIB)
    out = _feed_bounded(tmp_path, payload, "zstd", 64 * 1024, max_body_size=32 * MIB)
    assert (out["status"], out["accepted"], out["invalid"]) == (413, 5, 1)
    too_large, fatal = out["errors"]
    assert too_large["message"] == "event exceeded the permitted size"
    assert (too_large["document_len"], too_large["document_chars"]) == (ndintake.DEFAULT_MAX_EVENT_SIZE, ["\x00"])
    assert too_large["line"] == 7 and not too_large["fatal"]
    assert fatal["fatal"] and fatal["status"] == 413
    assert out["rss_growth_mib"] < BOMB_MEMORY_MIB, out["rss_growth_mib"]


@pytest.mark.slow
def test_bomb_of_zeros_as_metadata_is_400_without_inflating_it(tmp_path):
    """The metadata line reaches max_event_size: fatal at once, and the rest of the
    1 GiB is never inflated (the limit is the default 64 MiB, so a 413 would mean it was)."""
    payload = _zstd_bomb(b"", bytes(MIB), GIB // MIB)
    out = _feed_bounded(tmp_path, payload, "zstd", 64 * 1024)
    assert (out["status"], out["accepted"], out["delivered"]) == (400, 0, 0)
    [error] = out["errors"]
    assert error["message"] == "event exceeded the permitted size"
    assert (error["document_len"], error["document_chars"]) == (ndintake.DEFAULT_MAX_EVENT_SIZE, ["\x00"])
    assert error["fatal"]
    assert out["rss_growth_mib"] < BOMB_MEMORY_MIB, out["rss_growth_mib"]


@pytest.mark.parametrize("codec", ["gzip", "deflate-zlib", "deflate-raw"])
def test_stdlib_zlib_fallback_gives_the_same_results(codec, monkeypatch):
    """Where zlib-ng cannot be installed, the standard library's zlib takes its
    place: same results, same messages, intact and corrupt alike."""
    import ndintake.core.decode as decode

    payload, declared = encode(errors_body(), codec)
    cases = [payload, payload[:-5]] + [_flip(payload, i) for i in range(len(payload) // 3, len(payload) - 2, 53)]
    with_ng = [summary(run(case, declared, 7)[0]) for case in cases]
    monkeypatch.setattr(decode, "zlib", zlib)
    assert [summary(run(case, declared, 7)[0]) for case in cases] == with_ng
