"""IntakeStream behaviour, one test per rule, and the helper functions."""

from __future__ import annotations

import asyncio
import gc
import gzip
import io
import json
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

import ndintake
from conftest import (
    INVALID_EVENT_LINES,
    check_invariants,
    encode,
    errors_body,
    event_summary,
    load,
    metadata_line,
    run,
    summary,
)

META = metadata_line()
MINIMAL_EVENTS = load("intake-v2/minimal.ndjson").rstrip(b"\n").split(b"\n")[1:]
ERROR, SPAN = MINIMAL_EVENTS[0], MINIMAL_EVENTS[3]
TENNIS = b'{"tennis-court": {"name": "Centre Court, Wimbledon"}}'


def body_of(*lines: bytes, end: bytes = b"\n") -> bytes:
    return b"\n".join(lines) + end


# -- metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize("first", [SPAN, ERROR, TENNIS, b'{"not": "metadata"}', b"[1, 2]", b"42"])
def test_first_line_must_be_metadata(first):
    result, events = run(body_of(first, META, SPAN))
    assert (result.status, result.accepted, events, result.invalid) == (400, 0, [], 0)
    [error] = result.errors
    assert error.message == '"metadata" or "m" required'
    assert error.document == first.decode()
    assert error.fatal and error.status == 400 and error.line == 1


def test_metadata_key_is_the_first_key():
    line = b'{"service": {"name": "x"}, "metadata": {"service": {"name": "x", "agent": {"name": "a", "version": "1"}}}}'
    result, _ = run(body_of(line, SPAN))
    assert result.errors[0].message == '"metadata" or "m" required'
    assert result.status == 400 and result.accepted == 0


def test_metadata_without_service():
    line = b'{"metadata": {"process": {"pid": 1}}}'
    result, _ = run(body_of(line, SPAN))
    assert (result.status, result.accepted) == (400, 0)
    [error] = result.errors
    assert error.message == "validation error: metadata: 'service' required"
    assert error.document == line.decode() and error.fatal


def test_rum_v3_metadata_validation_uses_short_keys():
    line = b'{"m": {"se": {"a": {"n": "js-base", "ve": "1"}}}}'
    result, _ = run(body_of(line, SPAN))
    assert (result.status, result.accepted) == (400, 0)
    assert [e.message for e in result.errors] == ["validation error: m: se: 'n' required"]
    assert result.errors[0].fatal


@pytest.mark.parametrize("line", [b'{"metadata": null}', b'{"metadata": {}}', b'{"metadata": {"user": null}}'])
def test_metadata_with_nothing_set(line):
    result, _ = run(body_of(line, SPAN))
    assert (result.status, result.accepted) == (400, 0)
    assert [e.message for e in result.errors] == ["validation error: 'metadata' required"]


def test_broken_metadata_json_is_a_fatal_decode_error():
    line = b'{"metadata": {"service": '
    result, events = run(body_of(line, SPAN))
    assert (result.status, result.accepted, events) == (400, 0, [])
    [error] = result.errors
    assert error.message.startswith("decode error: data read error: ")
    assert error.document == line.decode() and error.fatal


def test_metadata_is_kept_on_the_stream():
    stream = ndintake.IntakeStream()
    assert stream.metadata is None
    stream.feed(META + b"\n")
    assert stream.metadata == orjson.loads(META)["metadata"]
    assert stream.close().ok


def test_metadata_only_is_202_with_nothing_accepted():
    result, events = run(META + b"\n")
    assert (result.status, result.accepted, result.errors, events) == (202, 0, [], [])
    assert result.ok and result.fatal is None


def test_metadata_only_without_newline_is_eof_while_reading_metadata():
    result, _ = run(META)
    assert (result.status, result.accepted) == (400, 0)
    [error] = result.errors
    assert error.message == "EOF while reading metadata"
    assert error.document == META.decode() and error.fatal and error.line == 1


# -- per-event errors --------------------------------------------------------------------------


def test_unknown_event_type_message():
    result, events = run(body_of(META, TENNIS, SPAN))
    assert (result.status, result.accepted, len(events), result.invalid) == (400, 1, 1, 1)
    [error] = result.errors
    assert error.message == 'did not recognize object type: "tennis-court"'
    assert error.document == TENNIS.decode()
    assert not error.fatal and error.status == 400 and error.line == 2


@pytest.mark.parametrize(
    "line, key",
    [
        (b'{ "invalid-json" }', "invalid-json"),
        (b"12345", ""),
        (b"{}", ""),
        (b"{'tennis': 1}", "tennis"),
        (META, "metadata"),  # a second metadata line is just an unknown event type
        (b'{"m": {}}', "m"),
    ],
)
def test_unknown_event_type_uses_the_first_quoted_string(line, key):
    result, _ = run(body_of(META, line, ERROR))
    assert (result.status, result.accepted) == (400, 1)
    assert [e.message for e in result.errors] == [f'did not recognize object type: "{key}"']


@pytest.mark.parametrize(
    "line",
    [
        b'{"transaction": {"id": }',
        b'{"span": {"name": "x"',
        b'{"error": {"id": "x", }}',
        b'{"metricset": [}',
    ],
)
def test_broken_json_with_known_key_is_a_decode_error(line):
    result, events = run(body_of(META, line, ERROR))
    assert (result.status, result.accepted, len(events), result.invalid) == (400, 1, 1, 1)
    [error] = result.errors
    assert error.message.startswith("decode error: data read error: ")
    assert error.document == line.decode()
    assert not error.fatal and error.line == 2


def test_wrong_type_for_the_event_object_is_an_error():
    line = b'{"span": "not an object"}'
    result, _ = run(body_of(META, line, ERROR))
    assert (result.status, result.accepted, result.invalid) == (400, 1, 1)
    assert result.errors[0].document == line.decode()
    assert not result.errors[0].fatal


def test_unknown_fields_and_extra_top_level_keys_are_ignored():
    event = orjson.loads(SPAN)
    event["span"]["not_in_any_schema"] = {"x": [1, 2]}
    event["span"]["context"] = {"custom_context_key": 1}
    event["transaction"] = {"id": 5}  # only the first key counts
    meta = orjson.loads(META)
    meta["metadata"]["not_in_the_schema"] = True
    meta["also"] = 1
    result, events = run(body_of(orjson.dumps(meta), orjson.dumps(event)))
    assert (result.status, result.accepted, result.errors) == (202, 1, [])
    assert events[0].kind == "span"
    assert events[0].data["not_in_any_schema"] == {"x": [1, 2]}


def test_schema_violation_is_a_validation_error():
    event = orjson.loads(SPAN)
    del event["span"]["trace_id"]
    line = orjson.dumps(event)
    result, _ = run(body_of(META, line))
    assert (result.status, result.accepted) == (400, 0)
    [error] = result.errors
    assert error.message == "validation error: span: 'trace_id' required"
    assert error.document == line.decode()


def test_trailing_bytes_after_the_closing_brace_are_accepted():
    lines = [SPAN + b"`", SPAN + b" garbage", ERROR + b"}}", ERROR + b" {}"]
    result, events = run(body_of(META, *lines))
    assert (result.status, result.accepted, result.errors, len(events)) == (202, 4, [], 4)
    assert events[0].raw == SPAN + b"`"
    assert events[0].data == orjson.loads(SPAN)["span"]


def test_trailing_bytes_after_non_ascii_content_are_accepted():
    event = orjson.loads(ERROR)
    event["error"]["log"]["message"] = "日本語 ünïcödé"
    line = orjson.dumps(event) + b"`"
    result, events = run(body_of(META, line))
    assert (result.status, result.accepted, result.errors) == (202, 1, [])
    assert events[0].data["log"]["message"] == "日本語 ünïcödé"


def test_strict_rejects_trailing_bytes():
    line = SPAN + b"`"
    result, events = run(body_of(META, line, ERROR), strict=True)
    assert (result.status, result.accepted, len(events), result.invalid) == (400, 1, 1, 1)
    [error] = result.errors
    assert error.message.startswith("decode error: data read error: ")
    assert error.document == line.decode() and error.line == 2


def test_strict_metricsets_payload():
    body = load("intake-v2/metricsets.ndjson")
    result, _ = run(body)
    assert (result.status, result.accepted) == (202, 6)
    result, _ = run(body, strict=True)
    assert (result.status, result.accepted, result.invalid) == (400, 5, 1)
    assert result.errors[0].line == 7
    assert result.errors[0].document == body.rstrip(b"\n").split(b"\n")[6].decode()


def test_strict_still_accepts_trailing_whitespace():
    result, _ = run(body_of(META, SPAN + b"   \t", ERROR + b"\r"), strict=True)
    assert (result.status, result.accepted, result.errors) == (202, 2, [])


# -- error accumulation and status --------------------------------------------------------------


def test_at_most_five_event_errors_are_kept_but_all_counted():
    bad = [INVALID_EVENT_LINES[i % len(INVALID_EVENT_LINES)] for i in range(8)]
    lines = [META]
    for line in bad:
        lines += [line, ERROR]
    result, events = run(body_of(*lines))
    check_invariants(result, events)
    assert result.accepted == 8 and len(events) == 8
    assert result.invalid == 8
    assert len(result.errors) == ndintake.MAX_EVENT_ERRORS == 5
    assert [e.document for e in result.errors] == [line.decode() for line in bad[:5]]
    assert [e.line for e in result.errors] == [2, 4, 6, 8, 10]
    assert result.status == 400 and result.fatal is None


def test_fatal_error_is_appended_after_five_event_errors():
    lines = [META] + [TENNIS] * 7 + [ERROR, ERROR]
    payload = gzip.compress(body_of(*lines))[:-12]  # cut inside the trailer's neighbourhood
    result, events = run(payload, "gzip")
    check_invariants(result, events)
    assert len(result.errors) == 6
    assert [e.fatal for e in result.errors] == [False] * 5 + [True]
    assert result.invalid == 7
    assert result.errors[-1].message.startswith("cannot handle stream: ")
    assert result.status == 500  # the highest status wins
    assert result.fatal is result.errors[-1]


def test_status_is_the_highest_413_over_400():
    body = body_of(META, TENNIS, ERROR, ERROR, ERROR)
    limit = len(body) - 5
    result, events = run(body, limits=ndintake.Limits(max_body_size=limit))
    check_invariants(result, events)
    assert result.status == 413
    assert [e.status for e in result.errors] == [400, 413]
    assert result.accepted == 2  # the last, cut line is not taken


def test_accepted_counts_only_valid_events():
    result, events = run(body_of(META, ERROR, TENNIS, SPAN, b'{"span": {}}', b"", SPAN))
    assert (result.accepted, len(events), result.invalid, result.dropped) == (3, 3, 2, 0)
    assert [e.kind for e in events] == ["error", "span", "span"]


def test_event_fields():
    result, events = run(body_of(META, ERROR, SPAN))
    assert [(e.kind, e.raw, e.line) for e in events] == [("error", ERROR, 2), ("span", SPAN, 3)]
    assert events[1].data == orjson.loads(SPAN)["span"]


@pytest.mark.parametrize("kind_line", MINIMAL_EVENTS + load("intake-v2/logs.ndjson").split(b"\n")[1:2])
def test_event_kinds(kind_line):
    result, events = run(body_of(META, kind_line))
    assert (result.status, result.accepted) == (202, 1)
    assert events[0].kind == next(iter(orjson.loads(kind_line)))


# -- misuse ------------------------------------------------------------------------------------


def test_feed_after_close_raises():
    stream = ndintake.IntakeStream()
    stream.feed(META + b"\n")
    result = stream.close()
    with pytest.raises(ndintake.NdintakeError):
        stream.feed(ERROR + b"\n")
    with pytest.raises(ndintake.NdintakeError):
        stream.feed(b"")
    assert stream.close() is result  # closing again gives the same result


def test_unknown_profile_raises():
    with pytest.raises(ndintake.NdintakeError):
        ndintake.IntakeStream(profile="no-such-profile")
    with pytest.raises(ndintake.NdintakeError):
        ndintake.validate(errors_body(), profile="no-such-profile")
    assert "apm" in ndintake.PROFILES


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_invalid_limits_raise(bad):
    with pytest.raises(ndintake.NdintakeError):
        ndintake.Limits(max_event_size=bad)
    with pytest.raises(ndintake.NdintakeError):
        ndintake.Limits(max_body_size=bad)


def test_ndintake_error_is_an_exception():
    assert issubclass(ndintake.NdintakeError, Exception)


# -- a finished stream ---------------------------------------------------------------------------


def test_finished_stream_ignores_later_feeds():
    stream = ndintake.IntakeStream()
    assert stream.feed(b'{"not": "metadata"}\n') == []
    assert stream.finished
    assert stream.feed(META + b"\n" + ERROR + b"\n") == []
    assert stream.accepted == 0
    result = stream.close()
    assert (result.status, result.accepted, len(result.errors)) == (400, 0, 1)
    assert result.errors[0].message == '"metadata" or "m" required'


def test_fatal_mid_feed_still_returns_the_events_before_it():
    stream = ndintake.IntakeStream(limits=ndintake.Limits(max_body_size=len(META) + len(ERROR) * 2 + 3))
    events = stream.feed(body_of(META, ERROR, ERROR, ERROR))
    assert stream.finished
    assert [e.line for e in events] == [2, 3]
    assert stream.accepted == 2
    result = stream.close()
    assert (result.status, result.accepted) == (413, 2)
    assert result.final_events == []


def test_fail_from_outside():
    stream = ndintake.IntakeStream()
    events = stream.feed(body_of(META, ERROR))
    stream.fail(503, "cannot handle stream: cannot process batch: queue is full")
    assert stream.finished
    assert stream.feed(SPAN + b"\n") == []
    result = stream.close()
    assert (result.status, result.accepted, len(events)) == (503, 1, 1)
    assert result.to_json() == {
        "accepted": 1,
        "errors": [{"message": "cannot handle stream: cannot process batch: queue is full"}],
    }


# -- max_body_size -----------------------------------------------------------------------------


def test_max_body_size_exceeded_is_413_with_earlier_events_accepted():
    body = errors_body()
    lines = body.split(b"\n")
    limit = sum(len(line) + 1 for line in lines[:4]) + 10  # metadata + 3 events + 10 bytes
    for chunk_sizes in (None, 1, 100):
        result, events = run(body, chunk_sizes=chunk_sizes, limits=ndintake.Limits(max_body_size=limit))
        check_invariants(result, events)
        assert (result.status, result.accepted, len(events)) == (413, 3, 3)
        [fatal] = result.errors
        assert fatal.fatal and fatal.status == 413 and fatal.document is None
        assert fatal.message == f"request body too large: more than {limit} bytes after decompression"


def test_max_body_size_counts_decompressed_bytes():
    body = errors_body()
    result, _ = run(gzip.compress(body), "gzip", limits=ndintake.Limits(max_body_size=len(body) - 1))
    assert (result.status, result.accepted) == (413, 4)


def test_body_of_exactly_max_body_size_is_accepted():
    body = errors_body()
    result, _ = run(body, limits=ndintake.Limits(max_body_size=len(body)))
    assert (result.status, result.accepted, result.errors) == (202, 5, [])
    result, _ = run(body, limits=ndintake.Limits(max_body_size=len(body) - 1))
    assert (result.status, result.accepted) == (413, 4)


def test_default_limits():
    assert ndintake.DEFAULT_MAX_EVENT_SIZE == 307_200
    limits = ndintake.Limits()
    assert limits.max_event_size == 307_200
    assert limits.max_body_size == ndintake.DEFAULT_MAX_BODY_SIZE
    stream = ndintake.IntakeStream()
    assert stream.limits == limits


# -- internal metricsets -------------------------------------------------------------------------

INTERNAL_DROPPED = [
    # transaction fields, no span: dropped
    b'{"metricset": {"samples": {"transaction.duration.count": {"value": 2}}, "transaction": {"name": "GET /", "type": "request"}, "timestamp": 1496170422281000}}',
    # transaction and span, but no self_time samples: dropped
    b'{"metricset": {"samples": {"span.count": {"value": 1}}, "transaction": {"name": "GET /", "type": "request"}, "span": {"type": "db", "subtype": "mysql"}, "timestamp": 1496170422281000}}',
]
INTERNAL_KEPT = [
    b'{"metricset": {"samples": {"span.self_time.count": {"value": 1}}, "transaction": {"name": "GET /", "type": "request"}, "span": {"type": "db"}, "timestamp": 1496170422281000}}',
    b'{"metricset": {"samples": {"span.self_time.sum.us": {"value": 1}}, "transaction": {"name": "GET /", "type": "request"}, "span": {"type": "db"}, "timestamp": 1496170422281000}}',
    # no transaction fields: an ordinary metricset
    b'{"metricset": {"samples": {"a": {"value": 3.2}}, "timestamp": 1496170422281000}}',
]


def test_internal_metricsets_are_dropped_silently():
    result, events = run(body_of(META, *INTERNAL_DROPPED, *INTERNAL_KEPT, ERROR))
    assert (result.status, result.errors, result.invalid) == (202, [], 0)
    assert result.dropped == 2
    assert result.accepted == 4 and len(events) == 4
    assert [e.line for e in events] == [4, 5, 6, 7]
    assert result.to_json() == {"accepted": 4}


def test_events_payload_keeps_its_breakdown_metricset():
    result, events = run(load("intake-v2/events.ndjson"))
    assert (result.accepted, result.dropped) == (4, 0)
    assert sorted(e.kind for e in events) == ["error", "metricset", "span", "transaction"]


# -- the response body ------------------------------------------------------------------------------


def test_body_shape_with_errors():
    fatal_body = body_of(META, TENNIS, ERROR)
    result, _ = run(fatal_body + SPAN + b"\n", limits=ndintake.Limits(max_body_size=len(fatal_body)))
    assert result.status == 413
    expected = {
        "accepted": 1,
        "errors": [
            {"message": 'did not recognize object type: "tennis-court"', "document": TENNIS.decode()},
            {"message": f"request body too large: more than {len(fatal_body)} bytes after decompression"},
        ],
    }
    assert result.to_json() == expected
    raw = result.body()
    assert raw == orjson.dumps(expected)
    assert raw.startswith(b'{"accepted":1,"errors":[{"message":')
    parsed = json.loads(raw)
    assert list(parsed) == ["accepted", "errors"]
    assert list(parsed["errors"][0]) == ["message", "document"]
    assert list(parsed["errors"][1]) == ["message"]


def test_body_without_errors_has_no_errors_key():
    result, _ = run(errors_body())
    assert result.body() == b'{"accepted":5}'
    assert result.to_json() == {"accepted": 5}


def test_body_omits_empty_document():
    result, _ = run(b"\n" + errors_body())  # empty first line: document would be ""
    assert result.body() == b'{"accepted":0,"errors":[{"message":"\\"metadata\\" or \\"m\\" required"}]}'


def test_body_pretty_has_two_space_indent():
    result, _ = run(load("intake-v2/invalid-event.ndjson"))
    pretty = result.body(pretty=True)
    assert pretty == json.dumps(result.to_json(), indent=2, ensure_ascii=False).encode()
    assert pretty.startswith(b'{\n  "accepted": 1,\n  "errors": [\n    {\n      "message": ')
    assert json.loads(pretty) == json.loads(result.body())
    result, _ = run(errors_body())
    assert result.body(pretty=True) == b'{\n  "accepted": 5\n}'


def test_body_keeps_non_ascii_and_control_characters_valid():
    line = '{"tennis-court": {"name": "Wimbledon ☃ \u2028 é"}}\t'.encode()
    result, _ = run(body_of(META, line))
    parsed = json.loads(result.body())
    assert parsed["errors"][0]["document"] == line.decode()


def test_result_properties():
    ok, _ = run(errors_body())
    assert ok.ok and ok.fatal is None and ok.profile == "apm"
    bad, _ = run(body_of(META, TENNIS))
    assert not bad.ok and bad.fatal is None
    fatal, _ = run(b'{"not": "metadata"}\n')
    assert not fatal.ok and fatal.fatal is fatal.errors[-1]


# -- helpers: validate / validate_chunks / validate_file / validate_async -------------------------

HELPER_BODIES = {
    "errors": (errors_body(), None),
    "mixed": (body_of(META, ERROR, TENNIS, SPAN, b"", *[TENNIS] * 6) + SPAN, None),
    "gzip": (gzip.compress(load("intake-v2/spans.ndjson")), "gzip"),
    "fatal": (gzip.compress(errors_body())[:-30], "gzip"),
    "no-trailing-newline": (load("intake-v2/errors_transaction_id.ndjson"), None),
}


def _chunks(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("name", list(HELPER_BODIES))
def test_helpers_agree(name, tmp_path):
    body, encoding = HELPER_BODIES[name]
    reference, reference_events = run(body, encoding)
    expected = summary(reference)

    delivered: dict[str, list] = {key: [] for key in ("validate", "chunks", "file", "async", "async-sync-sink")}

    result = ndintake.validate(body, content_encoding=encoding, sink=delivered["validate"].extend)
    assert summary(result) == expected

    result = ndintake.validate_chunks(_chunks(body, 10), content_encoding=encoding, sink=delivered["chunks"].extend)
    assert summary(result) == expected

    path = tmp_path / "body.bin"
    path.write_bytes(body)
    with path.open("rb") as file:
        result = ndintake.validate_file(file, chunk_size=7, content_encoding=encoding, sink=delivered["file"].extend)
    assert summary(result) == expected
    result = ndintake.validate_file(io.BytesIO(body), content_encoding=encoding)
    assert summary(result) == expected

    async def agen():
        for chunk in _chunks(body, 13):
            await asyncio.sleep(0)
            yield chunk

    async def async_sink(events):
        await asyncio.sleep(0)
        delivered["async"].extend(events)

    result = asyncio.run(ndintake.validate_async(agen(), content_encoding=encoding, sink=async_sink))
    assert summary(result) == expected
    result = asyncio.run(
        ndintake.validate_async(agen(), content_encoding=encoding, sink=delivered["async-sync-sink"].extend)
    )
    assert summary(result) == expected

    for key, events in delivered.items():
        assert event_summary(events) == event_summary(reference_events), key
        assert len(events) == reference.accepted, key


def test_sink_gets_non_empty_batches_in_order():
    batches: list[list] = []
    body = load("intake-v2/spans.ndjson")
    ndintake.validate_chunks(_chunks(body, 500), sink=batches.append)
    assert all(batches)
    lines = [e.line for batch in batches for e in batch]
    assert lines == list(range(2, 12))


def test_helpers_stop_reading_at_a_fatal_error():
    pulled = []

    def chunks():
        for chunk in [b'{"not": "metadata"}\n', META + b"\n", ERROR + b"\n"]:
            pulled.append(chunk)
            yield chunk

    result = ndintake.validate_chunks(chunks())
    assert result.status == 400 and len(pulled) == 1


def test_helpers_pass_options():
    body = body_of(META, SPAN + b"`")
    assert ndintake.validate(body).accepted == 1
    assert ndintake.validate(body, strict=True).accepted == 0
    result = ndintake.validate(errors_body(), limits=ndintake.Limits(max_event_size=10))
    assert result.errors[0].document == '{"metadata'
    assert ndintake.validate(gzip.compress(errors_body()), content_encoding="gzip").accepted == 5


def _inflating_body(megabytes: int) -> bytes:
    """A gzip body of valid events that inflates about 1000 times."""
    line = b'{"log": {"message": "' + b"m" * 150 + b'"}}\n'
    events = line * (megabytes * 1_000_000 // len(line))
    return gzip.compress(metadata_line() + b"\n" + events, compresslevel=9)


def test_feed_paced_gives_what_feed_gives() -> None:
    for body in (_inflating_body(4), gzip.compress(errors_body()), errors_body()):
        whole = ndintake.IntakeStream()
        expected = whole.feed(body)
        paced = ndintake.IntakeStream()
        steps = list(paced.feed_paced(body))
        assert [e.line for step in steps for e in step] == [e.line for e in expected]
        assert summary(paced.close()) == summary(whole.close())


def test_feed_paced_decodes_a_bounded_amount_per_step() -> None:
    body = _inflating_body(8)
    assert len(body) < 64 * 1024  # one chunk as a server receives it
    stream = ndintake.IntakeStream()
    decoded, sizes = 0, []
    for _ in stream.feed_paced(body):
        sizes.append(stream._size - decoded)
        decoded = stream._size
    assert decoded > 7_000_000
    assert max(sizes) <= 4 * 1024 * 1024, max(sizes)
    assert stream.close().accepted > 40_000


@pytest.mark.parametrize("codec", ["gzip", "zstd", "br"])
def test_feed_paced_hands_on_a_bounded_amount_per_step_however_much_the_input_inflates(codec: str) -> None:
    """A few bytes of zstd or br can stand for megabytes: a step still decodes
    about one ``STEP_OUTPUT`` (plus one zstd block), so a server's step is short."""
    import brotli
    import zstandard

    from ndintake.core.decode import STEP_OUTPUT

    raw = metadata_line() + b"\n" + b"1\n" * 10_000_000
    compress = {
        "gzip": lambda data: gzip.compress(data, 9),
        "zstd": lambda data: zstandard.ZstdCompressor(level=19).compress(data),
        "br": lambda data: brotli.compress(data, quality=9),
    }[codec]
    stream = ndintake.IntakeStream(content_encoding=codec)
    decoded, sizes = 0, []
    for _ in stream.feed_paced(compress(raw)):
        sizes.append(stream._size - decoded)
        decoded = stream._size
        if decoded > 2_000_000:
            break
    assert decoded > 2_000_000
    assert max(sizes) <= STEP_OUTPUT + 128 * 1024, max(sizes)


def test_feed_paced_stops_when_failed_between_steps() -> None:
    stream = ndintake.IntakeStream()
    steps = stream.feed_paced(_inflating_body(8))
    next(steps)
    stream.fail(503, "queue is full")
    assert list(steps) == []
    assert stream.close().status == 503


def test_validate_async_hands_on_a_big_chunk_in_steps() -> None:
    sizes: list[int] = []

    async def chunks():
        yield _inflating_body(8)

    async def sink(events):
        sizes.append(len(events))

    result = asyncio.run(ndintake.validate_async(chunks(), sink=sink))
    assert result.status == 202 and sum(sizes) == result.accepted
    assert len(sizes) > 10 and max(sizes) < result.accepted // 5


# -- a sink that raises ------------------------------------------------------------------


def _big_body(events: int) -> bytes:
    """Metadata and ``events`` spans: several decoded pieces of 64 KiB."""
    return body_of(META, *[SPAN] * events)


@pytest.mark.parametrize("codec", ["identity", "gzip", "zstd", "br", "gzip, br"])
@pytest.mark.parametrize(
    "raised, status, message",
    [
        (ndintake.QueueFull(), 503, "cannot handle stream: cannot process batch: queue is full"),
        (RuntimeError("disk full"), 500, "cannot handle stream: cannot process batch: internal error"),
    ],
)
def test_a_sink_that_raises_is_a_fatal_error_and_its_batch_is_not_counted(codec, raised, status, message):
    payload, encoding = encode(_big_body(3000), codec)
    taken: list[int] = []

    def sink(events):
        if taken:  # the first batch is taken, the second refused
            raise raised
        taken.append(len(events))

    stream = ndintake.IntakeStream(content_encoding=encoding, sink=sink)
    for start in range(0, len(payload), 10_000):
        assert stream.feed(payload[start : start + 10_000]) == []  # never raises
    result = stream.close()
    assert stream.finished and result.fatal is not None
    assert (result.status, result.fatal.status, result.fatal.message) == (status, status, message)
    assert result.accepted == taken[0] > 0  # only what the sink took
    assert result.errors == [result.fatal]


def test_a_sink_that_raises_at_close_is_a_fatal_error():
    body = body_of(META, SPAN, end=b"")  # the span completes at close()
    calls = []

    def sink(events):
        calls.append(len(events))
        raise ValueError("no")

    stream = ndintake.IntakeStream(sink=sink)
    assert stream.feed(body) == []
    result = stream.close()
    assert calls == [1]
    assert (result.status, result.accepted, result.fatal.message) == (
        500, 0, "cannot handle stream: cannot process batch: internal error",
    )
    assert json.loads(result.body()) == {
        "accepted": 0, "errors": [{"message": "cannot handle stream: cannot process batch: internal error"}],
    }


def test_no_batch_reaches_a_sink_after_it_raised():
    calls = []

    def sink(events):
        calls.append(len(events))
        raise ndintake.QueueFull

    stream = ndintake.IntakeStream(sink=sink)
    body = _big_body(3000)
    for start in range(0, len(body), 1000):
        stream.feed(body[start : start + 1000])
    result = stream.close()
    assert len(calls) == 1 and (result.status, result.accepted) == (503, 0)


def test_the_helpers_report_a_failing_sink_in_the_result(caplog):
    def sink(events):
        raise KeyError("boom")

    with caplog.at_level("ERROR", logger="ndintake"):
        result = ndintake.validate(errors_body(), sink=sink)
    assert (result.status, result.accepted) == (500, 0)
    assert "the sink failed on a batch of 5 events" in caplog.text and "KeyError: 'boom'" in caplog.text


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("raised, status", [(ndintake.QueueFull(), 503), (OSError("gone"), 500)])
def test_validate_async_reports_a_failing_sink_in_the_result(is_async, raised, status):
    calls = []

    def sync_sink(events):
        calls.append(len(events))
        if len(calls) == 2:
            raise raised

    async def async_sink(events):
        sync_sink(events)

    async def chunks():
        yield errors_body()
        yield body_of(SPAN, SPAN)
        yield body_of(SPAN)

    result = asyncio.run(ndintake.validate_async(chunks(), sink=async_sink if is_async else sync_sink))
    assert calls == [5, 2]  # nothing after the refusal
    assert (result.status, result.accepted, result.fatal.status) == (status, 5, status)


# -- the cyclic GC -------------------------------------------------------------------------


def test_the_gc_is_enabled_inside_the_sink():
    seen = []
    result = ndintake.validate(_big_body(2000), sink=lambda events: seen.append(gc.isenabled()))
    assert result.status == 202 and len(seen) > 1 and all(seen)
    assert gc.isenabled()


def test_the_gc_pause_is_counted_across_threads():
    from ndintake.core.stream import gc_paused

    assert gc.isenabled()
    first, second = gc_paused(), gc_paused()
    first.__enter__()  # thread A
    second.__enter__()  # thread B
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # A leaves first: B is still inside
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_callers_gc_disable_is_respected():
    gc.disable()
    try:
        stream = ndintake.IntakeStream()
        assert len(stream.feed(_big_body(100))) == 100
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_streams_in_threads_leave_the_gc_enabled():
    body = _big_body(2000)

    def work() -> int:
        total = 0
        for _ in range(5):
            stream = ndintake.IntakeStream()
            for start in range(0, len(body), 7000):
                total += len(stream.feed(body[start : start + 7000]))
            stream.close()
        return total

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: work(), range(4))) == [10_000] * 4
    assert gc.isenabled()
