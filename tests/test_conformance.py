"""Conformance with APM Server: the upstream test payloads and handler scenarios.

Expected values come from ``tests/data/apm-server/derived-results.json``.
"""

from __future__ import annotations

import gzip
import zlib

import pytest

import ndintake
from conftest import (
    check_invariants,
    errors_body,
    event_summary,
    expected_results,
    load,
    random_sizes,
    run,
    summary,
    v2_files,
)

FILES = expected_results()["files"]
SCENARIOS = expected_results()["scenarios"]

#: Messages ndintake is designed to word exactly as APM Server does.
EXACT_MESSAGES = {
    'did not recognize object type: "tennis-court"',
    'did not recognize object type: "invalid-json"',
    '"metadata" or "m" required',
    "validation error: 'metadata' required",
    "EOF while reading metadata",
}


def test_every_v2_payload_has_an_expectation():
    listed = {name for name in FILES if name.startswith("intake-v2/")}
    assert set(v2_files()) == listed
    assert len(listed) == 29


@pytest.mark.parametrize("name", v2_files())
def test_v2_payload(name):
    exp = FILES[name]
    result, events = run(load(name))
    check_invariants(result, events)
    assert result.status == exp["status"]
    assert result.accepted == exp["accepted"]
    assert len(result.errors) == len(exp["errors"])
    assert len(events) == exp["accepted"]
    for got, want in zip(result.errors, exp["errors"]):
        # the document is always the raw line (trailing spaces kept)
        assert got.document == want.get("document")
        if want["message"] in EXACT_MESSAGES:
            assert got.message == want["message"]
    if not exp["errors"]:
        assert result.to_json() == {"accepted": exp["accepted"]}
        assert result.body() == b'{"accepted":%d}' % exp["accepted"]


@pytest.mark.parametrize("name", v2_files())
def test_v2_payload_chunked_like_one_shot(name):
    body = load(name)
    whole, whole_events = run(body)
    for sizes in (7, random_sizes(zlib.crc32(name.encode()), len(body), max_size=4096)):
        result, events = run(body, chunk_sizes=sizes)
        assert summary(result) == summary(whole)
        assert event_summary(events) == event_summary(whole_events)


EXACT_FILES = sorted(
    name
    for name, exp in FILES.items()
    if exp["errors"] and all(err["message"] in EXACT_MESSAGES for err in exp["errors"])
    and name != "intake-v3/metadata.ndjson"  # its document is a placeholder; tested below
)


def test_exact_files_cover_the_designed_messages():
    assert EXACT_FILES == [
        "intake-v2/invalid-event-type.ndjson",
        "intake-v2/invalid-json-event.ndjson",
        "intake-v2/invalid-metadata-2.ndjson",
        "intake-v2/invalid-metadata.ndjson",
    ]


@pytest.mark.parametrize("name", EXACT_FILES)
def test_v2_error_payload_exact_body(name):
    """Where every message is designed to match, the whole response body matches."""
    exp = FILES[name]
    result, _ = run(load(name))
    assert result.to_json() == {"accepted": exp["accepted"], "errors": exp["errors"]}


def test_unrecognized_event_type():
    result, events = run(load("intake-v2/invalid-event-type.ndjson"))
    assert (result.status, result.accepted, len(events)) == (400, 0, 0)
    [error] = result.errors
    assert error.message == 'did not recognize object type: "tennis-court"'
    assert error.document == '{"tennis-court": {"name": "Centre Court, Wimbledon"}}'
    assert not error.fatal
    assert error.line == 2


def test_invalid_event_keeps_document_with_trailing_spaces():
    result, events = run(load("intake-v2/invalid-event.ndjson"))
    assert (result.status, result.accepted, len(events), result.invalid) == (400, 1, 1, 1)
    [error] = result.errors
    assert error.document == FILES["intake-v2/invalid-event.ndjson"]["errors"][0]["document"]
    assert error.document.endswith("} }   ")
    assert error.line == 2 and error.status == 400 and not error.fatal


def test_invalid_json_metadata_is_a_fatal_decode_error():
    result, events = run(load("intake-v2/invalid-json-metadata.ndjson"))
    assert (result.status, result.accepted, len(events)) == (400, 0, 0)
    [error] = result.errors
    assert error.fatal
    assert error.message.startswith("decode error: data read error: ")
    assert error.document == '{"metadata": {"invalid-json"}}'
    assert error.line == 1


@pytest.mark.parametrize(
    "name, message",
    [
        ("intake-v2/invalid-metadata.ndjson", "validation error: 'metadata' required"),
        ("intake-v2/invalid-metadata-2.ndjson", '"metadata" or "m" required'),
    ],
)
def test_invalid_metadata_is_fatal(name, message):
    result, events = run(load(name))
    assert (result.status, result.accepted, len(events)) == (400, 0, 0)
    [error] = result.errors
    assert error.message == message
    assert error.fatal and error.status == 400 and error.line == 1
    assert error.document == FILES[name]["errors"][0]["document"]
    assert result.invalid == 0


def test_metricsets_trailing_backtick_is_accepted():
    body = load("intake-v2/metricsets.ndjson")
    assert body.rstrip(b"\n").split(b"\n")[6].endswith(b"}`")  # the data is what we think it is
    result, events = run(body)
    assert (result.status, result.accepted, len(events)) == (202, 6, 6)


def test_errors_transaction_id_last_line_without_newline():
    body = load("intake-v2/errors_transaction_id.ndjson")
    assert not body.endswith(b"\n")
    result, events = run(body)
    assert (result.status, result.accepted) == (202, 1)
    assert len(result.final_events) == 1
    assert events == result.final_events
    assert events[0].kind == "error" and events[0].line == 2


# -- intake-v3 (metadata only; the x/e event keys come later) ---------------------


def test_v3_metadata_without_newline_is_eof_while_reading_metadata():
    body = load("intake-v3/metadata.ndjson")
    assert not body.endswith(b"\n") and b"\n" not in body
    exp = FILES["intake-v3/metadata.ndjson"]
    result, events = run(body)
    assert (result.status, result.accepted, len(events)) == (exp["status"], exp["accepted"], 0)
    [error] = result.errors
    assert error.message == "EOF while reading metadata"
    assert error.document == body.decode("utf-8")  # "<the whole single line>"
    assert error.fatal and error.line == 1
    assert result.to_json() == {
        "accepted": 0,
        "errors": [{"message": "EOF while reading metadata", "document": body.decode("utf-8")}],
    }


def test_v3_metadata_with_newline_is_accepted():
    result, events = run(load("intake-v3/metadata.ndjson") + b"\n")
    assert (result.status, result.accepted, result.errors, events) == (202, 0, [], [])


def test_v3_metadata_then_v2_events_is_accepted():
    """The metadata form (m or metadata) does not restrict the event keys."""
    events_part = errors_body().split(b"\n", 1)[1]
    result, events = run(load("intake-v3/metadata.ndjson") + b"\n" + events_part)
    assert (result.status, result.accepted, len(events)) == (202, 5, 5)


# -- handler scenarios that apply to the library ------------------------------------


def _scenario_body(result: ndintake.IntakeResult) -> dict:
    body = result.to_json()
    return {"status": result.status, "accepted": body["accepted"], "errors": body.get("errors", [])}


def _expect(name: str) -> dict:
    exp = SCENARIOS[name]
    return {"status": exp["status"], "accepted": exp["accepted"], "errors": exp["errors"]}


@pytest.mark.parametrize("chunk_sizes", [None, 1, 5])
def test_scenario_deflate_declared_body_not_compressed(chunk_sizes):
    result, events = run(errors_body(), "deflate", chunk_sizes)
    assert _scenario_body(result) == _expect("Content-Encoding: deflate, body not compressed (errors.ndjson)")
    assert result.errors[0].message == "data decoding error: zlib: invalid header"
    assert result.fatal is not None and events == []


@pytest.mark.parametrize("chunk_sizes", [None, 1, 5])
def test_scenario_gzip_declared_body_not_compressed(chunk_sizes):
    result, events = run(errors_body(), "gzip", chunk_sizes)
    assert _scenario_body(result) == _expect("Content-Encoding: gzip, body not compressed (errors.ndjson)")
    assert result.errors[0].message == "data decoding error: gzip: invalid header"
    assert result.fatal is not None and events == []


@pytest.mark.parametrize("chunk_sizes", [None, 1, 5])
def test_scenario_deflate_compressed_valid(chunk_sizes):
    result, events = run(zlib.compress(errors_body()), "deflate", chunk_sizes)
    assert _scenario_body(result) == _expect("Content-Encoding: deflate, zlib-compressed errors.ndjson")
    assert len(events) == 5


@pytest.mark.parametrize("chunk_sizes", [None, 1, 5])
def test_scenario_gzip_compressed_valid(chunk_sizes):
    result, events = run(gzip.compress(errors_body()), "gzip", chunk_sizes)
    assert _scenario_body(result) == _expect("Content-Encoding: gzip, gzip-compressed errors.ndjson")
    assert len(events) == 5


@pytest.mark.parametrize("chunk_sizes", [None, 1, 3])
def test_scenario_too_large_max_event_size_10(chunk_sizes):
    result, events = run(errors_body(), chunk_sizes=chunk_sizes, limits=ndintake.Limits(max_event_size=10))
    assert _scenario_body(result) == _expect("errors.ndjson with max_event_size=10")
    [error] = result.errors
    assert error.document == '{"metadata'
    assert error.message == "event exceeded the permitted size"
    assert error.fatal and error.status == 400
    assert events == []


@pytest.mark.parametrize("encoding", [None, "identity", "gzip", "deflate", "zstd", "br"])
def test_scenario_empty_body(encoding):
    result, events = run(b"", encoding)
    assert _scenario_body(result) == _expect("POST with empty body")
    assert result.body() == b'{"accepted":0}'
    assert events == []


def test_scenario_empty_body_with_empty_chunks():
    result, events = run_empty_chunks()
    assert (result.status, result.accepted, result.errors, events) == (202, 0, [], [])


def run_empty_chunks():
    stream = ndintake.IntakeStream()
    events = stream.feed(b"") + stream.feed(b"")
    result = stream.close()
    return result, events + result.final_events
