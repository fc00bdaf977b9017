"""Line splitting: LineSplitter itself, and how the stream treats lines."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

import ndintake
from conftest import errors_body, load, metadata_line, run, summary
from ndintake.core.lines import LineSplitter

META = metadata_line()
MINIMAL_EVENTS = load("intake-v2/minimal.ndjson").rstrip(b"\n").split(b"\n")[1:]
SPAN = MINIMAL_EVENTS[3]
ERROR = MINIMAL_EVENTS[0]


def split_all(splitter: LineSplitter, pieces) -> list[bytes]:
    lines: list[bytes] = []
    for piece in pieces:
        lines.extend(splitter.split(piece))
    return lines


# -- LineSplitter unit tests ---------------------------------------------------------


def test_splits_on_newline_only():
    splitter = LineSplitter(100)
    assert splitter.split(b"a\rb\n" + "c\u2028d\n".encode()) == [
        b"a\rb",
        "c\u2028d".encode(),
    ]
    assert splitter.flush() is None


def test_carriage_return_and_line_separators_are_kept():
    splitter = LineSplitter(100)
    assert splitter.split(b"x\r\ny\r\n") == [b"x\r", b"y\r"]
    assert splitter.split("\u2028\u2029\x0b\x0c\x85\n".encode()) == ["\u2028\u2029\x0b\x0c\x85".encode()]


def test_lines_across_pieces():
    splitter = LineSplitter(100)
    assert splitter.split(b"ab") == []
    assert splitter.pending() == b"ab"
    assert splitter.split(b"c") == []
    assert splitter.split(b"d\ne") == [b"abcd"]
    assert splitter.pending() == b"e"
    assert splitter.split(b"\n") == [b"e"]
    assert splitter.pending() == b""
    assert splitter.split(b"\n\n") == [b"", b""]
    assert splitter.flush() is None


def test_flush_returns_last_line_without_newline():
    splitter = LineSplitter(100)
    assert splitter.split(b"one\ntwo") == [b"one"]
    assert splitter.flush() == b"two"
    assert splitter.flush() is None


@pytest.mark.parametrize("piece_size", [1, 2, 3, 7, 1000])
def test_any_piece_size_gives_the_same_lines(piece_size):
    data = b"\n".join([b"a" * 5, b"", b"b" * 9, b"c\rd", b"", b""]) + b"\nlast"
    splitter = LineSplitter(10)
    lines = split_all(splitter, (data[i : i + piece_size] for i in range(0, len(data), piece_size)))
    assert lines == [b"a" * 5, b"", b"b" * 9, b"c\rd", b"", b""]
    assert splitter.flush() == b"last"


@pytest.mark.parametrize("piece_size", [1, 3, 4, 5, 100])
def test_line_of_max_size_is_cut_and_rest_skipped(piece_size):
    max_size = 4
    data = b"abc\n" + b"abcd\n" + b"abcdefghijkl\n" + b"xy\n" + b"0123456789"
    splitter = LineSplitter(max_size)
    lines = split_all(splitter, (data[i : i + piece_size] for i in range(0, len(data), piece_size)))
    # max_size - 1 bytes fit; a longer line comes out at least max_size long
    # (a line complete inside one piece may come out whole: the piece is the
    # caller's memory; the stream cuts it to max_size)
    assert [line[:max_size] for line in lines[:4]] == [b"abc", b"abcd", b"abcd", b"xy"]
    assert [len(line) >= max_size for line in lines[:4]] == [False, True, True, False]
    # the too-long last line (no newline) came out cut as well; nothing left to flush
    rest = lines[4:] + ([last] if (last := splitter.flush()) is not None else [])
    assert rest == [b"0123"]


def test_line_of_max_size_minus_one_then_newline_later_is_whole():
    splitter = LineSplitter(5)
    assert splitter.split(b"abcd") == []
    assert splitter.split(b"\nz\n") == [b"abcd", b"z"]


def test_held_bytes_never_reach_max_size_on_a_50mb_line():
    max_size = 300 * 1024
    splitter = LineSplitter(max_size)
    piece = b"a" * (64 * 1024)
    lines: list[bytes] = []
    for _ in range(50 * 1024 * 1024 // len(piece)):
        lines.extend(splitter.split(piece))
        assert len(splitter.pending()) < max_size
    assert lines == [b"a" * max_size]
    assert splitter.split(b"aaaa\nnext\n") == [b"next"]
    assert len(splitter.pending()) == 0
    assert splitter.flush() is None


def test_held_bytes_stay_below_max_size_with_newlines_in_pieces():
    max_size = 1000
    splitter = LineSplitter(max_size)
    # lines of 0..2999 bytes, fed in 777-byte pieces
    data = b"".join(b"x" * n + b"\n" for n in range(0, 3000, 37))
    lines = []
    for i in range(0, len(data), 777):
        lines.extend(splitter.split(data[i : i + 777]))
        assert len(splitter.pending()) < max_size
    assert lines == [b"x" * min(n, max_size) for n in range(0, 3000, 37)]


# -- the stream's view of lines ---------------------------------------------------------


def test_raw_u2028_inside_a_json_string_is_fine():
    event = orjson.loads(ERROR)
    event["error"]["log"]["message"] = "before\u2028after\u2029end"
    line = orjson.dumps(event)
    assert "\u2028".encode() in line  # raw, not escaped
    result, events = run(META + b"\n" + line + b"\n")
    assert (result.status, result.accepted) == (202, 1)
    assert events[0].data["log"]["message"] == "before\u2028after\u2029end"
    assert events[0].raw == line and events[0].line == 2


@pytest.mark.parametrize("chunk_sizes", [None, 1, 13])
def test_crlf_body_is_accepted(chunk_sizes):
    body = errors_body().replace(b"\n", b"\r\n")
    assert body.count(b"\r\n") == 6
    result, events = run(body, chunk_sizes=chunk_sizes)
    assert (result.status, result.accepted, result.errors, len(events)) == (202, 5, [], 5)
    assert all(e.raw.endswith(b"\r") for e in events)
    assert [e.line for e in events] == [2, 3, 4, 5, 6]


def test_blank_lines_between_events_are_skipped_but_counted():
    body = META + b"\n" + SPAN + b"\n\n\n" + ERROR + b"\n\n" + SPAN + b"\n"
    result, events = run(body)
    assert (result.status, result.accepted, result.errors, result.invalid) == (202, 3, [], 0)
    assert [e.line for e in events] == [2, 5, 7]


def test_blank_first_line_is_not_skipped():
    result, events = run(b"\n" + META + b"\n" + SPAN + b"\n")
    assert (result.status, result.accepted, events) == (400, 0, [])
    [error] = result.errors
    assert error.message == '"metadata" or "m" required'
    assert error.document is None and error.fatal and error.line == 1
    assert result.to_json() == {"accepted": 0, "errors": [{"message": '"metadata" or "m" required'}]}


@pytest.mark.parametrize("chunk_sizes", [None, 1, 10])
def test_last_line_without_newline_is_accepted(chunk_sizes):
    body = META + b"\n" + ERROR + b"\n" + SPAN
    result, events = run(body, chunk_sizes=chunk_sizes)
    assert (result.status, result.accepted, len(events)) == (202, 2, 2)
    assert [e.kind for e in result.final_events] == ["span"]
    assert result.final_events[0].line == 3 and result.final_events[0].raw == SPAN


def test_last_line_without_newline_that_is_invalid_is_reported():
    result, events = run(META + b"\n" + ERROR + b"\n" + b'{"tennis-court": {}}')
    assert (result.status, result.accepted, len(events)) == (400, 1, 1)
    [error] = result.errors
    assert error.message == 'did not recognize object type: "tennis-court"'
    assert error.line == 3 and not error.fatal


def _padded(line: bytes, size: int) -> bytes:
    """``line`` padded with trailing spaces (valid JSON whitespace) to ``size`` bytes."""
    assert len(line) <= size
    return line + b" " * (size - len(line))


@pytest.mark.parametrize("chunk_sizes", [None, 1, 64])
def test_line_of_max_event_size_minus_one_is_accepted(chunk_sizes):
    max_size = 1024
    body = META + b"\n" + _padded(SPAN, max_size - 1) + b"\n"
    result, events = run(body, chunk_sizes=chunk_sizes, limits=ndintake.Limits(max_event_size=max_size))
    assert (result.status, result.accepted, result.errors) == (202, 1, [])
    assert len(events[0].raw) == max_size - 1


@pytest.mark.parametrize("chunk_sizes", [None, 1, 64])
@pytest.mark.parametrize("extra", [0, 1, 5000])
def test_line_of_max_event_size_or_more_is_too_large(chunk_sizes, extra):
    max_size = 1024
    big = _padded(SPAN, max_size + extra)
    body = META + b"\n" + big + b"\n" + ERROR + b"\n"
    result, events = run(body, chunk_sizes=chunk_sizes, limits=ndintake.Limits(max_event_size=max_size))
    assert (result.status, result.accepted, result.invalid) == (400, 1, 1)
    [error] = result.errors
    assert error.message == "event exceeded the permitted size"
    assert error.document == big[:max_size].decode()
    assert error.line == 2 and error.status == 400 and not error.fatal
    # the rest of the long line was skipped; the next line is line 3
    assert [(e.kind, e.line) for e in events] == [("error", 3)]


@pytest.mark.parametrize("chunk_sizes", [None, 1, 100])
def test_too_large_last_line_without_newline(chunk_sizes):
    max_size = 500
    big = _padded(SPAN, 2000)
    result, events = run(
        META + b"\n" + big, chunk_sizes=chunk_sizes, limits=ndintake.Limits(max_event_size=max_size)
    )
    assert (result.status, result.accepted, events) == (400, 0, [])
    [error] = result.errors
    assert error.message == "event exceeded the permitted size"
    assert error.document == big[:max_size].decode()
    assert error.line == 2


def test_too_large_is_measured_in_bytes_not_characters():
    max_size = 500
    event = orjson.loads(ERROR)
    event["error"]["log"]["message"] = "é" * 300  # 300 characters, 600 bytes
    line = orjson.dumps(event)
    assert len(line.decode()) < max_size <= len(line)
    result, _ = run(META + b"\n" + line + b"\n", limits=ndintake.Limits(max_event_size=max_size))
    assert (result.status, result.accepted) == (400, 0)
    assert result.errors[0].message == "event exceeded the permitted size"
    assert result.errors[0].document == line[:max_size].decode()


def test_too_large_metadata_is_fatal():
    body = _padded(META, 5000) + b"\n" + ERROR + b"\n"
    result, events = run(body, chunk_sizes=97, limits=ndintake.Limits(max_event_size=4096))
    assert (result.status, result.accepted, events) == (400, 0, [])
    [error] = result.errors
    assert error.fatal and error.message == "event exceeded the permitted size"
    assert error.document == body[:4096].decode() and error.line == 1


def test_stream_with_a_50mb_line_stays_bounded():
    max_size = ndintake.DEFAULT_MAX_EVENT_SIZE
    stream = ndintake.IntakeStream()
    events = stream.feed(META + b"\n" + ERROR + b"\n" + b'{"span": {"name": "')
    piece = b"a" * (64 * 1024)
    tracemalloc.start()
    try:
        for _ in range(50 * 1024 * 1024 // len(piece)):
            events += stream.feed(piece)
        events += stream.feed(b'"}}\n' + SPAN + b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = stream.close()
    assert peak < 4 * max_size + 1024 * 1024, peak
    assert (result.status, result.accepted, result.invalid) == (400, 2, 1)
    assert [(e.kind, e.line) for e in events] == [("error", 2), ("span", 4)]
    [error] = result.errors
    assert error.message == "event exceeded the permitted size"
    assert len(error.document) == max_size and error.line == 3


# -- line numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_sizes", [None, 1, 17])
def test_line_numbers_are_one_based_and_count_blank_lines(chunk_sizes):
    body = b"\n".join(
        [
            META,  # 1
            ERROR,  # 2
            b"",  # 3
            b'{"tennis-court": {}}',  # 4
            SPAN,  # 5
            b"",  # 6
            b"",  # 7
            b'{"span": {"id": }',  # 8
            SPAN,  # 9
        ]
    )
    result, events = run(body, chunk_sizes=chunk_sizes)
    assert [e.line for e in events] == [2, 5, 9]
    assert [e.line for e in result.errors] == [4, 8]
    assert (result.status, result.accepted, result.invalid) == (400, 3, 2)


def test_metadata_error_line_is_1():
    result, _ = run(b'{"not": "metadata"}\n')
    assert result.errors[0].line == 1


def test_line_numbers_are_independent_of_chunking():
    body = load("intake-v2/spans.ndjson")
    whole, whole_events = run(body)
    for size in (1, 2, 3, 50, 1000):
        result, events = run(body, chunk_sizes=size)
        assert summary(result) == summary(whole)
        assert [e.line for e in events] == [e.line for e in whole_events] == list(range(2, 12))


@pytest.mark.parametrize("piece_size", [1000, 4096, 65536])
def test_long_and_short_lines_split_alike(piece_size: int) -> None:
    """Pieces of long lines (found with find) then short ones (bytes.split) and back:
    the same lines as one split of the whole."""
    lines = [b"x" * 900] * 50 + [b"y" * 20] * 400 + [b"z" * 2000] * 20 + [b""] * 3 + [b"w" * 700]
    body = b"\n".join(lines) + b"\n"
    splitter = LineSplitter(1 << 20)
    out = []
    for start in range(0, len(body), piece_size):
        out += splitter.split(body[start : start + piece_size])
    assert splitter.flush() is None
    assert out == lines
