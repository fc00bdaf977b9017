"""Hostile-input catalogue (issue 6): one test per hostile input, for each profile
(``apm``, ``prodlytics``) and codec where it applies.

Each test states the exact status, accepted count and error texts. Where memory
or time matters (bombs, a 200 MiB line, millions of blank lines, deep nesting in
the streamed-array parser) the body is fed in a child process
(``hostile.run_isolated``) that measures the peak RSS (C allocations included),
caps its address space so that a runaway allocation becomes a MemoryError
instead of a visit from the OOM killer, and is killed if it hangs.

test_codecs.py already covers, for the apm profile: codec x chunking parity,
truncation at every byte and at line boundaries (status and message prefix),
trailer checksums, corruption, garbage after gzip/zlib/zstd/br, header errors,
empty bodies, 16 MiB-limited bombs for gzip/zstd/br in 64 KiB and 1 GiB chunks.
This file goes on from there: both profiles, every codec, exact texts, 1-byte
chunks, default limits, and memory measured outside tracemalloc's sight.
"""

from __future__ import annotations

import json
import time
import zlib

import brotli
import orjson
import pytest
import zstandard

import ndintake
from hostile import (
    APM_MAX_BODY,
    DECLARED,
    ERROR,
    ERRORS_BODY,
    GIB,
    ITEM,
    ITEM_OBJ,
    KIB,
    META,
    MIB,
    PAD,
    PRODLYTICS_MAX_BODY,
    SPAN,
    bomb,
    check,
    chunks_of,
    compress,
    error_with,
    expect,
    feed,
    flushed,
    item_with,
    outcome,
    run_isolated,
    too_large_message,
)

pytestmark = pytest.mark.slow  # child processes, bombs, 200 MiB lines

PROFILES = ["apm", "prodlytics"]
M = META + b"\n"
#: a robust bound on one request's peak memory growth, C allocations included
MEMORY_BOUND_MIB = 100
#: the address-space cap of a child above its warmed-up size
CAP_MIB = 1024


def spec(profile, source, args, *, encoding=None, limits=None, cap=CAP_MIB, sink=False):
    """What a child runs; ``sink``: the events go to ``IntakeStream(sink=...)``."""
    return {
        "profile": profile,
        "encoding": encoding,
        "limits": limits,
        "source": source,
        "args": args,
        "cap_mib": cap,
        "sink": sink,
    }


def verified(out):
    """A child's outcome, after checking it did not crash and delivered what it accepted."""
    assert out["crash"] is None, f"{out['crash']}\n{out.get('traceback', '')}"
    assert out["delivered"] == out["accepted"]
    return out


def isolated(*args, timeout=90.0, **kwargs):
    return verified(run_isolated(spec(*args, **kwargs), timeout=timeout))


def errors_of(out):
    """(message, line, status, fatal) of each error of a child's outcome."""
    return [(e["message"], e["line"], e["status"], e["fatal"]) for e in out["errors"]]


def bounded(out, seconds=15.0):
    assert out["rss_growth_mib"] < MEMORY_BOUND_MIB, f"peak RSS grew by {out['rss_growth_mib']:.0f} MiB"
    assert out["elapsed"] < seconds, f"took {out['elapsed']:.1f} s"


def run_both(body, profile="apm", encoding=None, **kw):
    """The body whole and byte by byte: the same outcome and events; return them."""
    whole, events = feed([body], profile, encoding, **kw)
    check(whole, events, profile)
    bytewise, bytewise_events = feed(chunks_of(body, 1), profile, encoding, **kw)
    check(bytewise, bytewise_events, profile)
    expect(bytewise, outcome(whole))
    assert [(e.kind, e.raw, e.line) for e in bytewise_events] == [(e.kind, e.raw, e.line) for e in events]
    return whole, events


def messages(result):
    return [(e.message, e.status, e.fatal) for e in result.errors]


def decode_reason(reason, line, at):
    """orjson's complaint at byte offset ``at`` of a one-line document (ASCII before it)."""
    return f"{reason}: line 1 column {at + 1} (char {at})"


# =============================================================================================
# Decompression bombs: 1 GiB+ of output from a small body, in 64 KiB and in 1-byte chunks
# =============================================================================================

BOMB_CODECS = ["gzip", "deflate", "deflate-raw", "zstd", "br", "gzip, br", "sniff-gzip", "sniff-deflate", "sniff-zstd"]
BOMB_CHUNKS = {"64KiB": 64 * KIB, "1-byte": 1}
#: (codec, chunking): every codec in 64 KiB chunks, every declared codec in 1-byte chunks
BOMB_CASES = [(codec, chunking) for codec in BOMB_CODECS for chunking in BOMB_CHUNKS if not (chunking == "1-byte" and codec.startswith("sniff-"))]
#: per profile: what comes before 1 GiB of whitespace lines, the events in it, the body limit
BOMB_PREFIX = {"apm": (ERRORS_BODY, 5, APM_MAX_BODY), "prodlytics": (ITEM + b"\n", 1, PRODLYTICS_MAX_BODY)}


@pytest.fixture(scope="module")
def bomb_runs(tmp_path_factory):
    """Every (profile, codec, chunking) bomb, run in one child process (each
    measured from a reset peak RSS): {(profile, codec, chunking): outcome}."""
    base = tmp_path_factory.mktemp("bombs")
    files: dict[tuple[str, str], str] = {}
    for profile in PROFILES:
        gzip_bomb = bomb("gzip", BOMB_PREFIX[profile][0], PAD, GIB // len(PAD))
        for family in ("gzip", "deflate", "deflate-raw", "zstd", "br", "gzip, br"):
            if family == "gzip":
                data = gzip_bomb
            elif family == "gzip, br":  # a gzip bomb inside a brotli bomb
                data = brotli.compress(gzip_bomb, quality=5)
            else:
                data = bomb(family, BOMB_PREFIX[profile][0], PAD, GIB // len(PAD))
            assert len(data) < 4 * MIB  # more than 256x expansion
            path = base / f"{family.replace(', ', '-')}-{profile}.bin"
            path.write_bytes(data)
            files[(family, profile)] = str(path)
    keys, specs = [], []
    for profile in PROFILES:
        for codec, chunking in BOMB_CASES:
            path = files[(codec.removeprefix("sniff-"), profile)]
            keys.append((profile, codec, chunking))
            specs.append(spec(profile, "file", {"path": path, "chunk": BOMB_CHUNKS[chunking]}, encoding=DECLARED[codec]))
    return dict(zip(keys, run_isolated(specs, timeout=300)))


@pytest.mark.parametrize("codec, chunking", BOMB_CASES)
@pytest.mark.parametrize("profile", PROFILES)
def test_bomb_stops_at_the_body_limit(bomb_runs, profile, codec, chunking):
    """Default limits: the body stops at max_body_size (64 MiB apm, 5 MB
    prodlytics) and the events before the padding count, in bounded memory and time."""
    out = verified(bomb_runs[(profile, codec, chunking)])
    _, events, limit = BOMB_PREFIX[profile]
    assert (out["status"], out["accepted"], out["invalid"]) == (413, events, 0)
    assert errors_of(out) == [(too_large_message(limit), None, 413, True)]
    bounded(out)


@pytest.mark.parametrize("codec, chunking", [("gzip", "64KiB"), ("zstd", "64KiB"), ("zstd", "1-byte")])
def test_bomb_of_array_items_counts_every_item_within_the_limit(tmp_path, codec, chunking):
    """prodlytics, a JSON array holding 1 GiB of valid items, the events handed
    to a sink (README: what a server should do): every item complete within the
    first 5,000,000 bytes counts, then 413; in bounded memory, however many
    items one chunk inflates to."""
    unit = (b"," + ITEM) * 10_000
    path = tmp_path / "array-bomb.bin"
    path.write_bytes(bomb(codec, b"[" + ITEM, unit, GIB // len(unit)))
    expected = 1 + (PRODLYTICS_MAX_BODY - 1 - len(ITEM)) // (len(ITEM) + 1)
    args = {"path": str(path), "chunk": BOMB_CHUNKS[chunking]}
    out = isolated("prodlytics", "file", args, encoding=codec, sink=True)
    assert (out["status"], out["accepted"], out["invalid"]) == (413, expected, 0)
    assert errors_of(out) == [(too_large_message(PRODLYTICS_MAX_BODY), None, 413, True)]
    bounded(out)


def test_bomb_of_valid_events_in_one_chunk_stays_bounded(tmp_path):
    """apm: a 25 KB brotli body holding 64 MiB of valid error events, fed as one
    chunk (what a server reading 64 KiB at a time does); the body limit (16 MiB)
    lets ~212,000 of them through, all out of that one feed(). With a sink
    (README: what a server should do) they come in batches of one decoded
    piece, and 25 KB of request never becomes hundreds of MiB of events held
    at once."""
    unit = (ERROR + b"\n") * (MIB // (len(ERROR) + 1))
    path = tmp_path / "events.br"
    path.write_bytes(bomb("br", M, unit, 64))
    assert path.stat().st_size < 64 * KIB
    limit = 16 * MIB
    expected = (limit - len(M)) // (len(ERROR) + 1)
    args = {"path": str(path), "chunk": 64 * KIB}
    out = isolated("apm", "file", args, encoding="br", limits={"max_body_size": limit}, sink=True)
    assert (out["status"], out["accepted"], out["invalid"]) == (413, expected, 0)
    assert errors_of(out) == [(too_large_message(limit), None, 413, True)]
    bounded(out)


@pytest.mark.parametrize("profile", PROFILES)
def test_bomb_of_zeros_without_a_newline(tmp_path, profile):
    """1 GiB of NUL bytes, no newline at all, gzip: no line ever completes."""
    path = tmp_path / "zeros.bin"
    path.write_bytes(bomb("gzip", b"", bytes(MIB), 1024))
    out = isolated(profile, "file", {"path": str(path), "chunk": 64 * KIB}, encoding="gzip")
    if profile == "apm":  # the metadata line is too large: fatal
        assert (out["status"], out["accepted"]) == (400, 0)
        assert errors_of(out) == [("event exceeded the permitted size", 1, 400, True)]
        assert (out["errors"][0]["document_len"], out["errors"][0]["document_chars"]) == (ndintake.DEFAULT_MAX_EVENT_SIZE, ["\x00"])
    else:  # no item completes before the 5 MB limit
        assert (out["status"], out["accepted"], out["invalid"]) == (413, 0, 0)
        assert errors_of(out) == [(too_large_message(PRODLYTICS_MAX_BODY), None, 413, True)]
    bounded(out)


def _zstd_rle_frame(window_log: int, prefix: bytes, fill: bytes, blocks: int) -> bytes:
    """A zstd frame declaring a 2**window_log window and no content size:
    ``prefix`` as a raw block, then ``blocks`` RLE blocks of 128 KiB of ``fill``
    (4 bytes each)."""
    out = b"\x28\xb5\x2f\xfd" + bytes([0x00, (window_log - 10) << 3])
    out += (len(prefix) << 3).to_bytes(3, "little") + prefix
    rle = ((128 * KIB) << 3) | (1 << 1)
    out += (rle.to_bytes(3, "little") + fill) * (blocks - 1)
    return out + (rle | 1).to_bytes(3, "little") + fill


def test_zstd_frame_with_a_128_mib_window_stays_bounded(tmp_path):
    """A 33 KiB zstd body whose frame declares a 128 MiB window (libzstd's
    default maximum) and inflates to 1 GiB of spaces, with the body limit raised
    to 1 GiB. The README bounds a stream's memory by max_event_size + one 256 KiB
    piece 'whatever the body size'; RFC 9659 caps the zstd content coding's
    window at 8 MB. Either the frame is refused (a zstd error) or the body
    stops at the limit, in bounded memory both ways."""
    path = tmp_path / "window.zst"
    path.write_bytes(_zstd_rle_frame(27, ERRORS_BODY, b" ", 8192))
    assert path.stat().st_size < 40 * KIB
    out = isolated("apm", "file", {"path": str(path), "chunk": 64 * KIB}, encoding="zstd", limits={"max_body_size": GIB})
    bounded(out)
    if out["status"] == 413:
        assert out["accepted"] == 5
        assert errors_of(out) == [
            ("event exceeded the permitted size", 7, 400, False),
            (too_large_message(GIB), None, 413, True),
        ]
    else:  # refused: a zstd error, nothing accepted
        assert out["accepted"] == 0 and out["errors"][-1]["fatal"], out
        assert "zstd" in out["errors"][-1]["message"]


# =============================================================================================
# Truncated streams at every codec: exact texts, both profiles
# =============================================================================================

TRUNC_CODECS = ["gzip", "sniff-gzip", "deflate", "sniff-deflate", "deflate-raw", "zstd", "sniff-zstd", "br", "gzip, br"]
#: body form -> (profile, parts, events in the first k parts)
TRUNC_FORMS = {
    "apm": ("apm", [M, ERROR + b"\n", SPAN + b"\n", ERROR + b"\n"], lambda k: k - 1),
    "prodlytics-ndjson": ("prodlytics", [ITEM + b"\n"] * 3, lambda k: k),
    # an element is complete at the ',' after it, as an NDJSON line is at its '\n'
    "prodlytics-array": ("prodlytics", [b"[" + ITEM + b",", ITEM + b",", ITEM + b"]"], lambda k: k),
}


def _unexpected_eof(profile: str, codec: str, items: int, metadata_read: bool = True) -> tuple[int, str]:
    reason = "unexpected EOF"  # Go's io.ErrUnexpectedEOF names no codec (issue 12)
    if profile == "prodlytics":
        return 400, f"cannot read body after item {items}: {reason}"
    return (500, f"cannot handle stream: {reason}") if metadata_read else (400, reason)


@pytest.mark.parametrize("form", list(TRUNC_FORMS))
@pytest.mark.parametrize("codec", TRUNC_CODECS)
def test_truncated_after_each_flushed_part(codec, form):
    """Cut right after the k-th part's flushed data: exactly the events of the
    first k parts count, and the fatal error says the codec hit the end."""
    profile, parts, events_in = TRUNC_FORMS[form]
    payload, ends = flushed(parts, codec)
    cuts = ends if form == "prodlytics-ndjson" else ends[:-1]  # a whole array is no truncation
    for k, end in enumerate(cuts, start=1):
        result, events = run_both(payload[:end], profile, DECLARED[codec])
        status, message = _unexpected_eof(profile, codec, events_in(k))
        expect(result, (status, events_in(k), 0, [(message, None, None, status, True)]))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("codec", ["gzip", "deflate", "zstd", "br", "gzip, br"])
def test_truncated_inside_the_codec_header(codec, profile):
    """A declared coding whose stream ends inside its header: nothing decoded."""
    payload = compress(ERRORS_BODY if profile == "apm" else ITEM, codec)
    status, message = _unexpected_eof(profile, codec, 0, metadata_read=False)
    for cut in (1, 2, 3):
        result, events = run_both(payload[:cut], profile, DECLARED[codec])
        expect(result, (status, 0, 0, [(message, None, None, status, True)]))


def test_truncated_raw_deflate_prodlytics_array_after_items_is_a_stream_error():
    """A raw-deflate array has no newline to end the 'is it deflate at all?'
    probe. Once items were decoded and accepted the stream is real: its
    truncation is a mid-stream error, not 'data decoding error: zlib: invalid
    header' (which says the body was refused before any output)."""
    payload, ends = flushed([b"[" + ITEM + b",", ITEM + b",", ITEM + b","], "deflate-raw")
    result, events = run_both(payload[: ends[2]], "prodlytics", "deflate")
    expect(result, (400, 3, 0, [("cannot read body after item 3: unexpected EOF", None, None, 400, True)]))


@pytest.mark.parametrize("codec", ["gzip", "deflate", "deflate-raw", "zstd", "br", "gzip, br"])
@pytest.mark.parametrize("form", ["ndjson", "array"])
def test_truncated_prodlytics_at_every_byte(codec, form):
    """Every cut of a prodlytics body at every codec: a fatal 400, the invariants,
    items in order, never fewer items for more bytes, and the same in 3-byte chunks."""
    items = [item_with(b'"n": %d' % i) for i in range(4)]
    body = b"\n".join(items) + b"\n" if form == "ndjson" else b"[" + b",".join(items) + b"]"
    payload = compress(body, codec)
    previous = 0
    for cut in range(1, len(payload)):
        result, events = feed([payload[:cut]], "prodlytics", DECLARED[codec])
        check(result, events, "prodlytics")
        assert result.status == 400 and result.fatal is not None, cut
        assert [e.data["n"] for e in events] == list(range(len(events)))
        assert result.accepted >= previous
        previous = result.accepted
        if cut % 7 == 0:
            again, _ = feed(chunks_of(payload[:cut], 3), "prodlytics", DECLARED[codec])
            expect(again, outcome(result))


# =============================================================================================
# Corrupt streams (prodlytics; apm is in test_codecs.py) and bad headers
# =============================================================================================


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0xFF
    return bytes(out)


def _loose(result):
    """The outcome without the fatal error's wording (a codec library may word
    its complaint differently depending on where its input was cut)."""
    status, accepted, invalid, errors = outcome(result)
    return status, accepted, invalid, [e if not e[4] else (e[3], e[4]) for e in errors]


@pytest.mark.parametrize("codec", ["gzip", "deflate", "zstd", "br", "gzip, br"])
@pytest.mark.parametrize("form", ["ndjson", "array"])
def test_corrupt_prodlytics_stream(codec, form):
    """A byte flipped anywhere in the second half: a fatal 400 once the codec
    notices, the items decoded before it in order (an item the flip garbled is
    one bad item), the same at any chunking; never an exception."""
    items = [item_with(b'"n": %d' % i) for i in range(20)]
    body = b"\n".join(items) + b"\n" if form == "ndjson" else b"[" + b",".join(items) + b"]"
    payload = compress(body, codec)
    for index in range(len(payload) // 2, len(payload), 13):
        corrupt = _flip(payload, index)
        whole, events = feed([corrupt], "prodlytics", DECLARED[codec])
        check(whole, events, "prodlytics")
        assert whole.status == 400 and whole.accepted <= 20
        numbers = [e.data.get("n") for e in events]
        assert numbers == sorted(set(numbers)) and set(numbers) <= set(range(20)), numbers
        bytewise, bytewise_events = feed(chunks_of(corrupt, 1), "prodlytics", DECLARED[codec])
        assert _loose(bytewise) == _loose(whole), index
        assert len(bytewise_events) == len(events)


@pytest.mark.parametrize(
    "declared, message",
    [
        ("gzip", "data decoding error: gzip: invalid header"),
        ("deflate", "data decoding error: zlib: invalid header"),
        ("zstd", "data decoding error: zstd: invalid header"),
    ],
)
def test_prodlytics_plain_body_declared_compressed(declared, message):
    result, events = run_both(ITEM, "prodlytics", declared)
    expect(result, (400, 0, 0, [(message, None, None, 400, True)]))
    assert json.loads(result.body()) == {"errors": [{"status": "400", "title": "Bad Request", "detail": message}]}


# =============================================================================================
# Concatenated members and frames
# =============================================================================================


def _lines(profile: str, count: int) -> list[bytes]:
    if profile == "apm":
        return [M] + [(ERROR if i % 2 else SPAN) + b"\n" for i in range(count)]
    return [item_with(b'"n": %d' % i) + b"\n" for i in range(count)]


@pytest.mark.parametrize("split", ["per-line", "mid-line"])
@pytest.mark.parametrize("profile", PROFILES)
def test_many_gzip_members(profile, split):
    """200 gzip members (with an empty member after each), one line each or cut
    every 37 bytes: one stream, every event counts."""
    lines = _lines(profile, 200)
    body = b"".join(lines)
    pieces = lines if split == "per-line" else [body[i : i + 37] for i in range(0, len(body), 37)]
    payload = b"".join(compress(p, "gzip") + compress(b"", "gzip") for p in pieces)
    result, events = run_both(payload, profile, "gzip")
    expect(result, (202, 200, 0, []))


@pytest.mark.parametrize("profile", PROFILES)
def test_many_zstd_frames_with_skippable_and_empty_frames(profile):
    z = zstandard.ZstdCompressor(level=1)
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"skip!"
    empty = z.compress(b"")
    payload = b"".join(z.compress(p[:10]) + skippable + z.compress(p[10:]) + empty for p in _lines(profile, 100))
    result, events = run_both(payload, profile, "zstd")
    expect(result, (202, 100, 0, []))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("wbits", [15, -15], ids=["zlib", "raw"])
def test_concatenated_zlib_streams_after_the_first_are_ignored(profile, wbits):
    """Bytes after the end of a deflate stream are ignored, as APM Server does
    (README): a second stream's events do not count, and that is no error."""
    lines = _lines(profile, 6)
    first, second = b"".join(lines[:4]), b"".join(lines[4:])
    c1, c2 = zlib.compressobj(6, zlib.DEFLATED, wbits), zlib.compressobj(6, zlib.DEFLATED, wbits)
    payload = c1.compress(first) + c1.flush() + c2.compress(second) + c2.flush()
    result, events = run_both(payload, profile, "deflate")
    expect(result, (202, 3 if profile == "apm" else 4, 0, []))


@pytest.mark.parametrize("profile", PROFILES)
def test_concatenated_brotli_streams(profile):
    """brotli has no members: a second stream after the end of the first is junk;
    the first stream's events count."""
    lines = _lines(profile, 4)
    payload = brotli.compress(b"".join(lines[:3])) + brotli.compress(b"".join(lines[3:]))
    result, events = feed([payload], profile, "br")
    check(result, events, profile)
    if profile == "apm":
        expect(result, (500, 2, 0, [("cannot handle stream: br: data after the end of the stream", None, None, 500, True)]))
    else:
        expect(result, (400, 3, 0, [("cannot read body after item 3: br: data after the end of the stream", None, None, 400, True)]))


# =============================================================================================
# Garbage after a stream
# =============================================================================================

GARBAGE = {"text": b"garbage!!", "zeros": b"\x00" * 16, "gzip-magic": b"\x1f\x8b", "an-event": b"\n" + ERROR + b"\n"}
#: codec -> what the whole body's fatal error says (None: the bytes are ignored)
GARBAGE_REASON = {
    "gzip": "gzip: invalid header",
    "deflate": None,
    "deflate-raw": None,
    "zstd": "zstd: invalid header",
    "br": "br: data after the end of the stream",
    "gzip, br": "br: data after the end of the stream",
}


def _garbage_body(profile: str) -> bytes:
    return M + ERROR + b"\n" + SPAN + b"\n" if profile == "apm" else b"[" + ITEM + b"," + ITEM + b"]"


@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("codec", list(GARBAGE_REASON))
@pytest.mark.parametrize("profile", PROFILES)
def test_garbage_after_the_stream(profile, codec, garbage):
    """The whole body at once: the stream's events count; the junk after it is a
    fatal error (500 apm, 400 prodlytics), or ignored after a deflate stream."""
    payload = compress(_garbage_body(profile), codec) + GARBAGE[garbage]
    result, events = feed([payload], profile, DECLARED[codec])
    check(result, events, profile)
    reason = GARBAGE_REASON[codec]
    if codec == "gzip" and garbage == "gzip-magic":
        reason = "unexpected EOF"  # a new member that ends inside its header
    if reason is None:
        expect(result, (202, 2, 0, []))
    elif profile == "apm":
        expect(result, (500, 2, 0, [(f"cannot handle stream: {reason}", None, None, 500, True)]))
    else:
        expect(result, (400, 2, 0, [(f"cannot read body after item 2: {reason}", None, None, 400, True)]))


@pytest.mark.parametrize("codec", ["gzip", "zstd", "br", "gzip, br"])
@pytest.mark.parametrize("profile", PROFILES)
def test_garbage_after_the_stream_gives_the_same_result_at_any_chunking(profile, codec):
    """The issue's invariant 'any chunking gives the same result', error texts
    included: the same junk after the same stream, fed whole, in 1-byte or in
    5-byte chunks, gives the same result."""
    payload = compress(_garbage_body(profile), codec) + b"garbage!!"
    whole, _ = feed([payload], profile, DECLARED[codec])
    for size in (1, 5):
        result, events = feed(chunks_of(payload, size), profile, DECLARED[codec])
        check(result, events, profile)
        expect(result, outcome(whole))


# =============================================================================================
# A 200 MiB single line, skipped in bounded memory
# =============================================================================================

LINE = 200 * MIB
RAISED = {"max_body_size": 256 * MIB}


@pytest.mark.parametrize("source", ["long_line", "gzip_long_line"], ids=["identity", "gzip"])
def test_200_mib_event_line_is_skipped_in_bounded_memory(source):
    """apm, body limit raised to 256 MiB: the line is one 'too large' error with
    its first max_event_size bytes as document; the events around it count."""
    args = {"head": (M + ERROR + b"\n").decode(), "size": LINE, "tail": "\n" + SPAN.decode() + "\n", "chunk": 64 * KIB}
    out = isolated("apm", source, args, encoding="gzip" if source == "gzip_long_line" else None, limits=RAISED)
    assert (out["status"], out["accepted"], out["invalid"]) == (400, 2, 1)
    assert errors_of(out) == [("event exceeded the permitted size", 3, 400, False)]
    assert (out["errors"][0]["document_len"], out["errors"][0]["document_chars"]) == (ndintake.DEFAULT_MAX_EVENT_SIZE, ["a"])
    bounded(out, seconds=20)


def test_200_mib_metadata_line_is_fatal_at_once():
    out = isolated("apm", "long_line", {"head": "", "size": LINE, "tail": "\n", "chunk": MIB}, limits=RAISED)
    assert (out["status"], out["accepted"]) == (400, 0)
    assert errors_of(out) == [("event exceeded the permitted size", 1, 400, True)]
    bounded(out, seconds=2)


@pytest.mark.parametrize("position", ["after-an-item", "first"])
def test_200_mib_prodlytics_line_is_skipped_in_bounded_memory(position):
    """prodlytics with the body limit raised (max_event_size 5 MB, body 256 MiB):
    the huge line is one 'item exceeded the permitted size' error and the items
    around it count, in memory bounded by max_event_size, wherever the line is
    (the first line decides the body's form: it must not be held whole either)."""
    head = (ITEM + b"\n").decode() if position == "after-an-item" else ""
    args = {"head": head + '{"x": "', "size": LINE, "tail": '"}\n' + ITEM.decode() + "\n", "chunk": MIB}
    limits = {"max_event_size": PRODLYTICS_MAX_BODY, "max_body_size": 256 * MIB}
    out = isolated("prodlytics", "long_line", args, limits=limits, cap=512)
    index = 1 if position == "after-an-item" else 0
    assert (out["status"], out["accepted"], out["invalid"]) == (400, index + 1, 1)
    assert errors_of(out) == [(f"item {index}: item exceeded the permitted size", index + 1, 400, False)]
    bounded(out)


def test_200_mib_prodlytics_line_with_default_limits_is_413():
    args = {"head": (ITEM + b"\n").decode() + '{"x": "', "size": LINE, "tail": '"}\n', "chunk": MIB}
    out = isolated("prodlytics", "long_line", args)
    assert (out["status"], out["accepted"], out["invalid"]) == (413, 1, 0)
    assert errors_of(out) == [(too_large_message(PRODLYTICS_MAX_BODY), None, 413, True)]
    bounded(out)


# =============================================================================================
# Deeply nested JSON (100k levels)
# =============================================================================================

DEEP = 100_000
DEEP_ARRAY = b"[" * DEEP + b"]" * DEEP
#: orjson refuses a 1025th level; it reports the offset just past that level's opener
ORJSON_DEPTH = 1024


def _depth_reason(line: bytes, first_level: int, opener_width: int = 1) -> str:
    """The depth error for ``line`` whose nesting opener at offset ``first_level``
    is at depth 2 (inside the line's object) and each next level ``opener_width`` on."""
    at = first_level + (ORJSON_DEPTH - 1) * opener_width + 1
    return decode_reason("depth limit exceeded", line, at)


def test_deep_nesting_on_an_event_line_is_a_decode_error():
    """orjson's depth limit (1024): a per-event decode error; the events around it count."""
    line = b'{"span": ' + DEEP_ARRAY + b"}"
    result, events = run_both(M + ERROR + b"\n" + line + b"\n" + SPAN + b"\n", "apm")
    reason = _depth_reason(line, line.index(b"["))
    expect(result, (400, 2, 1, [(f"decode error: data read error: {reason}", line.decode(), 3, 400, False)]))


def test_deep_object_nesting_on_an_event_line_is_a_decode_error():
    depth = 50_000  # 5 bytes a level: 250 KB, under max_event_size
    line = b'{"error": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    result, events = run_both(M + line + b"\n" + ERROR, "apm")
    reason = _depth_reason(line, line.index(b'{"a"'), opener_width=5)
    expect(result, (400, 1, 1, [(f"decode error: data read error: {reason}", line.decode(), 2, 400, False)]))


def test_deep_nesting_in_metadata_is_fatal():
    line = b'{"metadata": ' + DEEP_ARRAY + b"}"
    result, events = run_both(line + b"\n" + ERROR + b"\n", "apm")
    reason = _depth_reason(line, line.index(b"["))
    expect(result, (400, 0, 0, [(f"decode error: data read error: {reason}", line.decode(), 1, 400, True)]))


def test_deep_nesting_on_a_prodlytics_line_is_an_item_error():
    line = item_with(b'"x": ' + DEEP_ARRAY)
    result, events = run_both(ITEM + b"\n" + line + b"\n" + ITEM, "prodlytics")
    reason = _depth_reason(line, line.index(b"["))
    expect(result, (400, 2, 1, [(f"item 1: decode error: {reason}", line.decode(), 2, 400, False)]))


@pytest.mark.parametrize("shape", ["arrays", "objects"])
def test_deep_nesting_in_a_prodlytics_array_is_an_item_error(tmp_path, shape):
    """The array form cuts items out with ndintake's own scanner (``_items._Values``,
    brackets and strings only) and parses each with orjson: 100k levels (a 200 KB
    body) must be an item error like the NDJSON line's, in bounded memory, and
    the items after it count."""
    nested = DEEP_ARRAY if shape == "arrays" else b'{"a":' * DEEP + b"1" + b"}" * DEEP
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" + ITEM + b"," + item_with(b'"x": ' + nested) + b"," + ITEM + b"]")
    out = isolated("prodlytics", "file", {"path": str(path), "chunk": 64 * KIB}, cap=512, timeout=60)
    assert (out["status"], out["accepted"], out["invalid"]) == (400, 2, 1), out
    [error] = out["errors"]
    assert error["message"].startswith("item 1: decode error: ") and not error["fatal"], out
    bounded(out)


@pytest.mark.parametrize("form", ["ndjson", "array", "pretty-object"])
@pytest.mark.parametrize("depth", [254, 300, 1000])
def test_moderately_deep_valid_item_is_accepted_in_every_form(form, depth):
    """A valid item with a custom attribute nested 254..1000 levels (within
    orjson's parse limit of 1024): accepted whatever the body form, and no
    exception out of feed()."""
    item = item_with(b'"custom": {"x": ' + b"[" * depth + b"]" * depth + b"}")
    body = {
        "ndjson": ITEM + b"\n" + item + b"\n" + ITEM,
        "array": b"[" + ITEM + b"," + item + b"," + ITEM + b"]",
        "pretty-object": b"{\n" + item[1:],
    }[form]
    result, events = feed([body], "prodlytics")
    check(result, events, "prodlytics")
    expect(result, (202, 1 if form == "pretty-object" else 3, 0, []))


@pytest.mark.parametrize("form", ["array", "pretty-object"])
def test_moderately_deep_invalid_item_is_an_item_error(form):
    """The same depth on an invalid item (type 'client'): its error, not an exception."""
    item = orjson.dumps({**ITEM_OBJ, "type": "client"})[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}"
    body = b"[" + item + b"," + ITEM + b"]" if form == "array" else b"{\n" + item[1:]
    result, events = feed([body], "prodlytics")
    check(result, events, "prodlytics")
    assert messages(result) == [("item 0: validation error: 'type': validation rule 'enum(server)' violated", 400, False)]
    assert result.accepted == (1 if form == "array" else 0)


# =============================================================================================
# Huge numbers, NaN and Infinity
# =============================================================================================

#: name -> (literal, orjson's reason or None when the number is accepted, offset of the complaint)
NUMBERS = {
    "NaN": (b"NaN", "unexpected character, expected a JSON value", 0),
    "Infinity": (b"Infinity", "unexpected character, expected a JSON value", 0),
    "-Infinity": (b"-Infinity", "no digit after sign", 1),
    "1e400": (b"1e400", "number is infinity when parsed as double", 0),
    "5000-digits": (b"1" * 5000, "number is infinity when parsed as double", 0),
    "2**100": (str(2**100).encode(), None, 0),
    "1e-400": (b"1e-400", None, 0),
    "-0": (b"-0", None, 0),
    "max-double": (b"1.7976931348623157e308", None, 0),
}


@pytest.mark.parametrize("name", list(NUMBERS))
def test_numbers_on_an_apm_event_line(name):
    literal, reason, offset = NUMBERS[name]
    line = error_with(b'"context": {"custom": {"n": ' + literal + b"}}")
    result, events = run_both(M + ERROR + b"\n" + line + b"\n" + SPAN, "apm")
    if reason is None:
        expect(result, (202, 3, 0, []))
        assert events[1].data["context"]["custom"]["n"] == json.loads(literal)
    else:
        message = "decode error: data read error: " + decode_reason(reason, line, line.index(literal) + offset)
        expect(result, (400, 2, 1, [(message, line.decode(), 3, 400, False)]))


@pytest.mark.parametrize("name", list(NUMBERS))
def test_numbers_on_a_prodlytics_line(name):
    literal, reason, offset = NUMBERS[name]
    item = item_with(b'"n": ' + literal)
    result, events = run_both(ITEM + b"\n" + item + b"\n" + ITEM, "prodlytics")
    if reason is None:
        expect(result, (202, 3, 0, []))
    else:
        message = "item 1: decode error: " + decode_reason(reason, item, item.index(literal) + offset)
        expect(result, (400, 2, 1, [(message, item.decode(), 2, 400, False)]))


@pytest.mark.parametrize("name", list(NUMBERS))
def test_numbers_in_a_prodlytics_array_are_decided_like_an_ndjson_line(name):
    """README: array elements are cut out as raw bytes and judged exactly like
    NDJSON lines. NaN and Infinity (not JSON), 1e400 and 5000 digits (no double
    holds them) are one bad item each, with the line's text; 2**100, 1e-400, -0
    are accepted; the items after count either way."""
    literal, reason, offset = NUMBERS[name]
    item = item_with(b'"n": ' + literal)
    result, events = run_both(b"[" + ITEM + b"," + item + b"," + ITEM + b"]", "prodlytics")
    if reason is None:
        expect(result, (202, 3, 0, []))
    else:
        message = "item 1: decode error: " + decode_reason(reason, item, item.index(literal) + offset)
        expect(result, (400, 2, 1, [(message, item.decode(), None, 400, False)]))


# =============================================================================================
# Invalid UTF-8 and lone surrogates
# =============================================================================================

NOT_UTF8 = "str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0)"
#: name -> (bytes inside a JSON string, orjson's reason and its offset from the string's start, or None)
STRINGS = {
    "invalid-byte": (b"\xff", NOT_UTF8),
    "truncated-sequence": (b"\xe2\x82", NOT_UTF8),
    "overlong-nul": (b"\xc0\x80", NOT_UTF8),
    "encoded-surrogate": (b"\xed\xa0\x80", NOT_UTF8),
    "escaped-lone-high": (b"\\ud800", "no low surrogate in string"),
    "escaped-lone-low": (b"\\udc00", "invalid high surrogate in string"),
    "escaped-pair": (b"\\ud83d\\ude00", None),
    "raw-emoji": ("\U0001f600".encode(), None),
}


def _string_reason(reason: str, line: bytes, raw: bytes) -> str:
    """orjson checks the encoding of the whole line first; a bad escape is
    reported at the start of its string's content."""
    return reason if reason == NOT_UTF8 else decode_reason(reason, line, line.index(raw))


#: What an APM event's string holds for each case: APM Server's decoder reads invalid UTF-8
#: and lone surrogate escapes as U+FFFD, without an error (issue 12, family 4).
APM_TEXT = {
    "invalid-byte": "\ufffd",
    "truncated-sequence": "\ufffd",
    "overlong-nul": "\ufffd\ufffd",
    "encoded-surrogate": "\ufffd\ufffd\ufffd",
    "escaped-lone-high": "\ufffd",
    "escaped-lone-low": "\ufffd",
    "escaped-pair": "\U0001f600",
    "raw-emoji": "\U0001f600",
}


@pytest.mark.parametrize("case", list(STRINGS))
def test_strings_on_an_apm_event_line(case):
    raw, _ = STRINGS[case]
    line = ERROR.replace(b"error log message", raw)
    result, events = run_both(M + line + b"\n" + SPAN, "apm")
    expect(result, (202, 2, 0, []))
    assert events[0].data["log"]["message"] == APM_TEXT[case]
    assert events[0].raw == line


def test_invalid_utf8_in_the_type_key():
    result, events = run_both(M + b'{"\xff\xfe": {}}\n' + ERROR, "apm")
    message = 'did not recognize object type: "\ufffd\ufffd"'
    expect(result, (400, 1, 1, [(message, '{"\ufffd\ufffd": {}}', 2, 400, False)]))


def test_escaped_lone_surrogate_as_the_type_key():
    result, events = run_both(M + b'{"\\ud800": {}}\n' + ERROR, "apm")
    expect(result, (400, 1, 1, [('did not recognize object type: "\ufffd"', '{"\\ud800": {}}', 2, 400, False)]))


def test_invalid_utf8_in_metadata_is_read_as_u_fffd():
    """Read as U+FFFD (issue 12): fine in a free-text field, refused by the service name's pattern."""
    line = META.replace(b"1234_service", b"\xff")
    result, events = run_both(line + b"\n" + ERROR, "apm")
    message = "validation error: metadata: service: 'name': validation rule 'pattern(^[a-zA-Z0-9 _-]+$)' violated"
    expect(result, (400, 0, 0, [(message, line.decode("utf-8", "replace"), 1, 400, True)]))
    line = META.replace(b"1234_service-12a3", b"shop").replace(b'"version": "', b'"version": "\xff', 1)
    assert line != META.replace(b"1234_service-12a3", b"shop")
    result, events = run_both(line + b"\n" + ERROR, "apm")
    expect(result, (202, 1, 0, []))


@pytest.mark.parametrize("profile", PROFILES)
def test_invalid_utf8_after_the_json_value_is_ignored_like_any_trailing_bytes(profile):
    """README: 'Bytes after a line's JSON value are ignored, as APM Server does'.
    An event followed by a stray 0xff is as valid as one followed by 'x'."""
    first, valid = (M, ERROR) if profile == "apm" else (b"", ITEM)
    for junk in (b" x", b"\x00", b"\xff", b" \xe2\x82"):
        result, events = run_both(first + valid + junk + b"\n" + valid, profile)
        expect(result, (202, 2, 0, []))


@pytest.mark.parametrize("case", list(STRINGS))
def test_strings_on_a_prodlytics_line(case):
    raw, reason = STRINGS[case]
    item = item_with(b'"s": "' + raw + b'"')
    result, events = run_both(ITEM + b"\n" + item + b"\n" + ITEM, "prodlytics")
    if reason is None:
        expect(result, (202, 3, 0, []))
        assert events[1].data["s"] == "\U0001f600"
    else:
        message = "item 1: decode error: " + _string_reason(reason, item, raw)
        expect(result, (400, 2, 1, [(message, item.decode("utf-8", "replace"), 2, 400, False)]))


@pytest.mark.parametrize("case", ["escaped-lone-high", "escaped-lone-low", "escaped-pair", "raw-emoji"])
def test_escaped_surrogates_in_a_prodlytics_array_are_decided_like_an_ndjson_line(case):
    """Valid JSON syntax, so no fatal error: the array form must decide the item
    as the NDJSON form does (a lone surrogate: an item error; a pair: the right
    character), never raise, never accept silently altered data."""
    raw, reason = STRINGS[case]
    body = b"[" + ITEM + b"," + item_with(b'"s": "' + raw + b'"') + b"," + ITEM + b"]"
    result, events = run_both(body, "prodlytics")
    if reason is None:
        expect(result, (202, 3, 0, []))
        assert events[1].data["s"] == "\U0001f600"
    else:
        assert (result.status, result.accepted, result.invalid) == (400, 2, 1), (messages(result), [e.data for e in events])
        [(message, status, fatal)] = messages(result)
        assert message.startswith("item 1: decode error: ") and not fatal


@pytest.mark.parametrize("form", ["array", "pretty-object"])
@pytest.mark.parametrize("case", ["invalid-byte", "truncated-sequence", "encoded-surrogate"])
def test_invalid_utf8_in_a_prodlytics_array_is_an_item_error_with_the_same_text_at_any_chunking(case, form):
    """Not UTF-8 inside an element (or a pretty-printed document): one bad item,
    worded as for an NDJSON line, the items around it counted, whatever the
    chunking (the JSON parser's buffer must not leak into the message)."""
    raw, _ = STRINGS[case]
    bad = item_with(b'"s": "' + raw + b'"')
    if form == "array":
        body, element, index, accepted = b"[" + ITEM + b"," + bad + b"," + ITEM + b"]", bad, 1, 2
    else:
        body = b"{\n" + bad[1:]
        element, index, accepted = body, 0, 0
    result, events = run_both(body, "prodlytics")
    message = f"item {index}: decode error: {NOT_UTF8}"
    expect(result, (400, accepted, 1, [(message, element.decode("utf-8", "replace"), None, 400, False)]))
    for size in (7, 50):
        again, _ = feed(chunks_of(body, size), "prodlytics")
        expect(again, outcome(result))


# =============================================================================================
# A broken first line (prodlytics: the first line decides the body's form)
# =============================================================================================


@pytest.mark.parametrize(
    "first",
    [b'{"type":"server","appl', b'{"type": "server", "application": {"id": "a"', b'{"type": "server", "usr": {"id": "u1"}, "x": [1, 2'],
)
def test_a_broken_first_ndjson_line_loses_no_item_after_it(first):
    """NDJSON whose first line is an object cut short (a truncated write), then
    three valid items: no pretty-printed document can go on like that (its next
    line would start with ',' or '}' or a key), so this is NDJSON with one bad
    line. As after a broken second line, that line is one bad item and the
    items after it count; guessing 'pretty-printed document' turns it into a
    fatal error that loses the whole body."""
    body = first + b"\n" + b"\n".join([ITEM] * 3) + b"\n"
    result, events = run_both(body, "prodlytics")
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    expect(result, (400, 3, 1, [(f"item 0: decode error: {reason}", first.decode(), 1, 400, False)]))
    # the same line second: one bad item
    result, events = run_both(ITEM + b"\n" + body, "prodlytics")
    expect(result, (400, 4, 1, [(f"item 1: decode error: {reason}", first.decode(), 2, 400, False)]))


# =============================================================================================
# Byte order marks
# =============================================================================================

BOM = b"\xef\xbb\xbf"
BOM_REASON = "UTF-8 byte order mark (BOM) is not supported: line 1 column 1 (char 0)"


def test_bom_before_the_metadata_is_fatal():
    """Go's JSON decoder refuses a BOM too (RFC 8259 lets a parser refuse it)."""
    result, events = run_both(BOM + M + ERROR + b"\n", "apm")
    expect(result, (400, 0, 0, [(f"decode error: data read error: {BOM_REASON}", "\ufeff" + META.decode(), 1, 400, True)]))


def test_bom_before_an_event_line_is_an_event_error():
    result, events = run_both(M + BOM + ERROR + b"\n" + SPAN, "apm")
    expect(result, (400, 1, 1, [(f"decode error: data read error: {BOM_REASON}", "\ufeff" + ERROR.decode(), 2, 400, False)]))


def test_utf16_body_is_not_metadata():
    body = b"\xff\xfe" + (M + ERROR).decode().encode("utf-16-le")
    result, events = run_both(body, "apm")
    first = body.split(b"\n", 1)[0].decode("utf-8", "replace")
    expect(result, (400, 0, 0, [('"metadata" or "m" required', first, 1, 400, True)]))


@pytest.mark.parametrize("codec", ["identity", "gzip", "zstd", "br"])
def test_bom_inside_a_string_is_just_a_character(codec):
    line = ERROR.replace(b"error log message", BOM)
    result, events = run_both(compress(M + line, codec), "apm", DECLARED[codec])
    expect(result, (202, 1, 0, []))
    assert events[0].data["log"]["message"] == "\ufeff"


@pytest.mark.parametrize("form", ["object", "array", "ndjson"])
def test_bom_before_a_prodlytics_body(form):
    """A BOM is not '[': the body is read as NDJSON and its first line is a bad item."""
    body = {"object": ITEM, "array": b"[" + ITEM + b"]", "ndjson": ITEM + b"\n" + ITEM}[form]
    result, events = run_both(BOM + body, "prodlytics")
    first = (BOM + body).split(b"\n")[0].decode()
    accepted = 1 if form == "ndjson" else 0
    expect(result, (400, accepted, 1, [(f"item 0: decode error: {BOM_REASON}", first, 1, 400, False)]))


# =============================================================================================
# NUL bytes
# =============================================================================================


def test_body_of_nul_bytes():
    result, events = run_both(b"\x00" * 4096 + b"\n", "apm")
    expect(result, (400, 0, 0, [('"metadata" or "m" required', "\x00" * 4096, 1, 400, True)]))
    result, events = run_both(b"\x00" * 4096, "prodlytics")
    reason = "unexpected character, expected a JSON value: line 1 column 1 (char 0)"
    expect(result, (400, 0, 1, [(f"item 0: decode error: {reason}", "\x00" * 4096, 1, 400, False)]))


@pytest.mark.parametrize("profile", PROFILES)
def test_nul_line_between_events(profile):
    first, valid = (M, ERROR) if profile == "apm" else (b"", ITEM)
    result, events = run_both(first + valid + b"\n\x00\n" + valid, profile)
    if profile == "apm":
        expect(result, (400, 2, 1, [('did not recognize object type: ""', "\x00", 3, 400, False)]))
    else:
        reason = "unexpected character, expected a JSON value: line 1 column 1 (char 0)"
        expect(result, (400, 2, 1, [(f"item 1: decode error: {reason}", "\x00", 2, 400, False)]))


@pytest.mark.parametrize("profile", PROFILES)
def test_nul_in_a_string(profile):
    """A raw NUL in a string is a control character (an error); escaped it is fine."""
    if profile == "apm":
        raw, escaped = error_with(b'"culprit": "a\x00b"'), error_with(b'"culprit": "a\\u0000b"')
        result, events = run_both(M + raw + b"\n" + escaped, profile)
        prefix, line_no, key = "decode error: data read error: ", 2, "culprit"
    else:
        raw, escaped = item_with(b'"s": "a\x00b"'), item_with(b'"s": "a\\u0000b"')
        result, events = run_both(raw + b"\n" + escaped, profile)
        prefix, line_no, key = "item 0: decode error: ", 1, "s"
    message = prefix + decode_reason("unexpected control character in string", raw, raw.index(b"\x00"))
    expect(result, (400, 1, 1, [(message, raw.decode(), line_no, 400, False)]))
    assert events[0].data[key] == "a\x00b"


def test_nul_in_a_prodlytics_array_element_is_an_item_error():
    result, events = run_both(b"[" + ITEM + b",\x00" + ITEM + b"," + ITEM + b"]", "prodlytics")
    message = "item 1: decode error: unexpected character, expected a JSON value: line 1 column 1 (char 0)"
    expect(result, (400, 2, 1, [(message, "\x00" + ITEM.decode(), None, 400, False)]))


# =============================================================================================
# Duplicate keys, 10k keys, empty keys
# =============================================================================================


def test_duplicate_type_key_last_value_wins():
    """orjson, like Go's decoders, keeps the last of duplicate keys."""
    first = b'{"error": null, "error": ' + ERROR[10:]
    second = ERROR[:-1] + b', "error": {"id": 5}}'
    result, events = run_both(M + first + b"\n" + second + b"\n", "apm")
    message = "validation error: error: requires at least one of the fields 'exception;log'"
    expect(result, (400, 1, 1, [(message, second.decode(), 3, 400, False)]))


def test_duplicate_metadata_key_last_value_wins():
    good = b'{"service": {"name": "a", "agent": {"name": "go", "version": "1"}}}'
    line = b'{"metadata": ' + good + b', "metadata": {"service": null}}'
    result, events = run_both(line + b"\n" + ERROR, "apm")
    expect(result, (400, 0, 0, [("validation error: 'metadata' required", line.decode(), 1, 400, True)]))
    result, events = run_both(b'{"metadata": {"service": null}, "metadata": ' + good + b"}\n" + ERROR, "apm")
    expect(result, (202, 1, 0, []))


@pytest.mark.parametrize("form", ["ndjson", "array"])
def test_duplicate_keys_in_a_prodlytics_item_are_decided_alike_in_every_form(form):
    client_then_server = b'{"type": "client", ' + ITEM[1:]
    server_then_client = ITEM[:-1] + b', "type": "client"}'
    items = [client_then_server, server_then_client]
    body = b"\n".join(items) if form == "ndjson" else b"[" + b",".join(items) + b"]"
    result, events = run_both(body, "prodlytics")
    assert (result.status, result.accepted, result.invalid) == (400, 1, 1)
    assert messages(result) == [("item 1: validation error: 'type': validation rule 'enum(server)' violated", 400, False)]


TEN_K = b", ".join(b'"k%d": %d' % (i, i) for i in range(10_000))


def test_10k_keys_in_an_apm_event():
    custom = error_with(b'"context": {"custom": {' + TEN_K + b"}}")
    top = ERROR[:-1] + b", " + TEN_K + b"}"
    started = time.perf_counter()
    result, events = run_both(M + custom + b"\n" + top + b"\n", "apm")
    expect(result, (202, 2, 0, []))
    assert len(events[0].data["context"]["custom"]) == 10_000
    assert time.perf_counter() - started < 5


def test_10k_keys_as_the_metadata_labels():
    line = b'{"metadata": {"labels": {' + TEN_K + b'}, "service": {"name": "a", "agent": {"name": "go", "version": "1"}}}}'
    result, events = run_both(line + b"\n" + ERROR, "apm")
    expect(result, (202, 1, 0, []))


@pytest.mark.parametrize("form", ["ndjson", "array"])
def test_10k_keys_in_a_prodlytics_item(form):
    item = item_with(TEN_K)
    body = item + b"\n" + ITEM if form == "ndjson" else b"[" + item + b"," + ITEM + b"]"
    result, events = run_both(body, "prodlytics")
    expect(result, (202, 2, 0, []))
    assert len(events[0].facets()) == 4 + 10_000


def test_empty_keys_apm():
    body = M + b'{"": {}}\n{"": 1, "error": {}}\n' + error_with(b'"": "x", "context": {"custom": {"": {"": ""}}}') + b"\n"
    result, events = run_both(body, "apm")
    expect(
        result,
        (
            400,
            1,
            2,
            [
                ('did not recognize object type: ""', '{"": {}}', 2, 400, False),
                ('did not recognize object type: ""', '{"": 1, "error": {}}', 3, 400, False),
            ],
        ),
    )


def test_empty_key_as_metadata_is_fatal():
    result, events = run_both(b'{"": {}}\n' + ERROR, "apm")
    expect(result, (400, 0, 0, [('"metadata" or "m" required', '{"": {}}', 1, 400, True)]))


@pytest.mark.parametrize("form", ["ndjson", "array"])
def test_empty_keys_prodlytics(form):
    items = [item_with(b'"": {"": ""}'), b'{"": 1}']
    body = b"\n".join(items) if form == "ndjson" else b"[" + b",".join(items) + b"]"
    result, events = run_both(body, "prodlytics")
    assert (result.status, result.accepted, result.invalid) == (400, 1, 1)
    assert messages(result) == [("item 1: validation error: requires at least one of the fields 'usr;account;session'", 400, False)]
    assert events[0].facets()["."] == ""


# =============================================================================================
# \r alone, millions of blank lines, a body of only newlines
# =============================================================================================


def test_carriage_returns_alone_do_not_end_lines_apm():
    """Only \\n ends a line: a body split by \\r alone is one line. As APM Server
    does, what follows the metadata line's JSON value on that line is ignored."""
    body = M[:-1] + b"\r" + ERROR + b"\r" + SPAN + b"\r"
    result, events = run_both(body, "apm")
    expect(result, (400, 0, 0, [("EOF while reading metadata", body.decode(), 1, 400, True)]))
    result, events = run_both(body + b"\n", "apm")
    expect(result, (202, 0, 0, []))
    # a line of \r alone between events is blank
    result, events = run_both(M + b"\r\n\r\r\n" + ERROR + b"\r\n", "apm")
    expect(result, (202, 1, 0, []))
    assert events[0].line == 4


def test_carriage_returns_alone_prodlytics():
    result, events = run_both(ITEM + b"\r" + ITEM + b"\r", "prodlytics")
    expect(result, (202, 1, 0, []))
    result, events = run_both(b"\r" * 100, "prodlytics")
    expect(result, (202, 0, 0, []))
    result, events = run_both(b"\r\n".join([ITEM] * 3) + b"\r\n", "prodlytics")
    expect(result, (202, 3, 0, []))


BLANKS = {"lf": b"\n", "crlf": b"\r\n", "spaces": b" \t\n"}


@pytest.fixture(scope="module")
def blank_runs():
    """3 million blank lines between two events, every profile and kind of blank
    line, in one child process: {(profile, blank): outcome}."""
    keys, specs = [], []
    for profile in PROFILES:
        first, last = (M + ERROR + b"\n", SPAN) if profile == "apm" else (ITEM + b"\n", ITEM)
        limits = None if profile == "apm" else {"max_event_size": PRODLYTICS_MAX_BODY, "max_body_size": 64 * MIB}
        for name, blank in BLANKS.items():
            args = {"head": first.decode(), "unit": blank.decode(), "count": 3_000_000, "tail": last.decode(), "chunk": 64 * KIB}
            keys.append((profile, name))
            specs.append(spec(profile, "repeat", args, limits=limits))
    return dict(zip(keys, run_isolated(specs, timeout=120)))


@pytest.mark.parametrize("blank", list(BLANKS))
@pytest.mark.parametrize("profile", PROFILES)
def test_millions_of_blank_lines(blank_runs, profile, blank):
    """3 million blank lines between two events: skipped, in bounded memory and time."""
    out = verified(blank_runs[(profile, blank)])
    assert (out["status"], out["accepted"], out["invalid"], out["errors"]) == (202, 2, 0, [])
    bounded(out, seconds=10)


@pytest.mark.parametrize("profile", PROFILES)
def test_bomb_of_newlines(tmp_path, profile):
    """1 GiB of newlines in a 100 KB zstd body; a 4 MiB body limit lets 4 million
    blank lines through before the 413."""
    prefix = M + ERROR + b"\n" if profile == "apm" else ITEM + b"\n"
    path = tmp_path / "newlines.zst"
    path.write_bytes(bomb("zstd", prefix, b"\n" * MIB, 1024))
    limits = {"max_event_size": 300 * KIB, "max_body_size": 4 * MIB}
    out = isolated(profile, "file", {"path": str(path), "chunk": 64 * KIB}, encoding="zstd", limits=limits)
    assert (out["status"], out["accepted"], out["invalid"]) == (413, 1, 0)
    assert errors_of(out) == [(too_large_message(4 * MIB), None, 413, True)]
    bounded(out, seconds=10)


@pytest.mark.parametrize("codec", ["identity", "sniff", "gzip", "deflate", "zstd", "br"])
@pytest.mark.parametrize("count", [1, 2, 100_000])
def test_body_of_only_newlines(codec, count):
    """apm: the first line must be metadata, and an empty first line is not
    skipped (APM Server skips only the empty lines after it): fatal, no document.
    prodlytics: no items, 202."""
    payload = compress(b"\n" * count, codec)
    chunks = chunks_of(payload, 1 if count < 1000 else None)
    result, events = feed(chunks, "apm", DECLARED[codec])
    check(result, events, "apm")
    expect(result, (400, 0, 0, [('"metadata" or "m" required', None, 1, 400, True)]))
    assert result.body() == b'{"accepted":0,"errors":[{"message":"\\"metadata\\" or \\"m\\" required"}]}'
    result, events = feed(chunks, "prodlytics", DECLARED[codec])
    check(result, events, "prodlytics")
    expect(result, (202, 0, 0, []))
    assert result.body() == b"{}"


# =============================================================================================
# Every stream is freed: no memory kept from one request to the next
# =============================================================================================

FREE_CODECS = ["identity", "sniff", "gzip", "deflate", "zstd", "sniff-zstd", "br", "gzip, br"]


@pytest.mark.parametrize("ending", ["closed", "fatal", "abandoned"])
@pytest.mark.parametrize("codec", FREE_CODECS)
@pytest.mark.parametrize("profile", PROFILES)
def test_a_stream_is_freed_once_dropped(profile, codec, ending):
    """Found by the fuzz harness (its RSS grew by ~40 KB an input): a stream,
    its decoder and its result must be garbage once the caller drops them,
    whether it was closed, stopped by a fatal error or abandoned mid-body. A
    reference cycle through a C object that the cyclic GC cannot see (the
    zstandard stream writer holding the stream's bound method) is never freed:
    every zstd request would leak its stream, ~64 KB and its result."""
    import gc
    import weakref

    body = ERRORS_BODY if profile == "apm" else b"[" + ITEM + b"," + ITEM + b"]"
    payload = compress(body, codec)
    if ending == "fatal":
        payload = payload[: len(payload) // 2] + b"\xff" * 8 + payload[len(payload) // 2 :]
    stream = ndintake.IntakeStream(profile=profile, content_encoding=DECLARED[codec])
    stream.feed(payload if ending != "abandoned" else payload[: len(payload) // 2])
    refs = [weakref.ref(stream)]
    if ending != "abandoned":
        result = stream.close()
        del result
    del stream
    gc.collect()
    assert refs[0]() is None, "the stream outlives its caller"


# =============================================================================================
# Regressions found by the property tests and the fuzz harness (minimal inputs)
# =============================================================================================


@pytest.mark.parametrize(
    "body, cut",
    [
        (b"[\x80", 1),  # test_invariants.py::test_fuzz_any_bytes_any_profile_any_codec
        (b'{\n"s": "\xb0"}', 3),  # fuzz_intake.py, the pretty-printed document form
    ],
)
def test_prodlytics_parse_error_text_does_not_depend_on_the_cut(body, cut):
    whole, _ = feed([body], "prodlytics")
    split, _ = feed([body[:cut], body[cut:]], "prodlytics")
    assert whole.status == 400 and whole.errors
    expect(split, outcome(whole))


def test_zstd_garbage_after_the_frame_same_text_in_two_chunks():
    """Minimal: the same 3 bytes of junk after a zstd frame, whole or cut in two."""
    payload = zstandard.ZstdCompressor().compress(M) + b"abcd"
    whole, _ = feed([payload], "apm", "zstd")
    split, _ = feed([payload[:-2], payload[-2:]], "apm", "zstd")
    expect(whole, (500, 0, 0, [("cannot handle stream: zstd: invalid header", None, None, 500, True)]))
    expect(split, outcome(whole))


#: a request that ends in a fatal error raised while the decoder is handing on output
FATAL_BODIES = {
    "413": ("apm", ERRORS_BODY * 40, ndintake.Limits(max_body_size=1000)),
    "not-metadata": ("apm", ERROR + b"\n" + ERRORS_BODY * 40, None),
    "junk-after-array": ("prodlytics", b"[" + ITEM + b"," + ITEM + b"] x" + b" " * 100_000, None),
}


@pytest.mark.parametrize("fatal", list(FATAL_BODIES))
@pytest.mark.parametrize("codec", FREE_CODECS)
def test_requests_ending_in_a_fatal_error_leave_no_memory_behind(codec, fatal):
    """Found while chasing the fuzz harness's growing RSS: 40 requests that end
    in a fatal error (413, a first line that is not metadata, junk after an
    array) leave no memory behind. The fatal error is an exception raised in
    the decoder's sink; zstandard's stream writer leaks its 256 KiB output
    buffer each time its target's write() raises (on top of the stream kept by
    the cycle above): ~10 MiB for these 40 requests, 1 GiB per 4,000."""
    import gc
    import tracemalloc

    profile, body, limits = FATAL_BODIES[fatal]
    payload = compress(body, codec)

    def request():
        result, _ = feed([payload], profile, DECLARED[codec], limits=limits)
        assert result.fatal is not None and result.fatal.status in (400, 413)

    for _ in range(3):
        request()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            request()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 2 * MIB, f"{growth / MIB:.1f} MiB kept after 40 requests"


def _zstd_raw_frame(content: bytes, declared_size: int) -> bytes:
    """A single-segment zstd frame declaring ``declared_size`` bytes of content,
    holding ``content`` as one raw (stored) block."""
    assert declared_size < 256 and len(content) < 1 << 21
    return b"\x28\xb5\x2f\xfd" + bytes([0x20, declared_size]) + ((len(content) << 3) | 1).to_bytes(3, "little") + content


@pytest.mark.parametrize(
    "profile, content, declared_size",
    [
        # fuzz_intake.py, crash-46d9f949: 'zstd', the frame header's content size byte flipped (10 -> 168)
        ("prodlytics", b'""\n\n\n\n\n\n\n\n', 168),
        # the same on an apm body: a frame that declares one byte more than it holds
        ("apm", M + ERROR + b"\n", len(M + ERROR + b"\n") + 1),
    ],
)
def test_zstd_content_size_mismatch_gives_the_same_result_at_any_chunking(profile, content, declared_size):
    """A stored zstd block streams out as its bytes arrive, but fed whole, the
    frame's content-size error comes in the same call as the block, and the
    block's output is lost: the result (status, items, errors) depends on the
    chunking."""
    limits = ndintake.Limits(max_event_size=64) if profile == "prodlytics" else None
    payload = _zstd_raw_frame(content, declared_size)
    whole, events = feed([payload], profile, "zstd", limits=limits)
    check(whole, events, profile)
    assert whole.fatal is not None and "zstd: Data corruption detected" in whole.fatal.message
    for size in (1, 7):
        result, _ = feed(chunks_of(payload, size), profile, "zstd", limits=limits)
        assert _loose(result) == _loose(whole), (size, outcome(result), outcome(whole))
