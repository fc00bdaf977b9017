"""The one-pass accept checks (the compiled byte scanner, and msgspec's typed
check where it is not built) and lazily parsed ``Event.data``: never looser
than the schema, and the same status, counts, messages and ``data`` as the
path that parses every line, on every backend, whether the consumer reads
``data`` or not. Every test runs with each check."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndintake
from ndintake.core import bytecheck
from ndintake.core import schemas as _schemas
from ndintake.profiles.apm import typed as _typed
from ndintake.profiles.apm import envelope as _envelope
from ndintake.profiles.base import APM
from conftest import INVALID_EVENT_LINES, load, metadata_line, realistic_corpus, v2_files
from test_backends import CORPUS, SAMPLES, mutate, _paths

WHOLE = APM.special.keys() | APM.abbreviated
PLAIN = tuple((key, v) for key, v in APM.events.items() if key not in WHOLE)
META = metadata_line()
#: The checks, as the reader gets them: the scanner (with msgspec's check behind it) and msgspec's alone.
CHECKS = {"scanner": _typed.envelope_check, "msgspec": _typed.typed_check}
#: Hypothesis with the per-test ``check`` fixture (it is the same for every example).
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture(params=sorted(CHECKS), autouse=True)
def check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The check under test, also the one every reader gets."""
    if request.param == "scanner":
        assert bytecheck.available(), "the C extension ndintake.core._bytecheck is not built"
    monkeypatch.setattr(_envelope, "envelope_check", CHECKS[request.param])
    made = CHECKS[request.param](PLAIN)
    assert made is not None
    assert bytecheck.is_scanner(made) == (request.param == "scanner")
    monkeypatch.setattr(_envelope, "_untyped", [()])
    monkeypatch.setattr(_envelope, "_reads_data", [False])
    return made


def test_every_plain_event_kind_translates(check: Any) -> None:
    lines = {key: orjson.dumps({key: value}) for key, value in CORPUS if key in dict(PLAIN)}
    assert {key: check(line) for key, line in lines.items()} == {key: key for key in dict(PLAIN)}


def test_most_of_the_corpus_is_typed(check: Any) -> None:
    """The point of the check: the realistic corpus's plain events pass it (a
    few errors with exception causes go the slow path)."""
    plain = [line for line in realistic_corpus().splitlines()[1:] if next(iter(orjson.loads(line))) in dict(PLAIN)]
    taken = sum(check(line) is not None for line in plain)
    assert taken >= 0.95 * len(plain)


def _line(key: str, value: Any) -> bytes:
    """``{key: value}`` as JSON (json, not orjson: it writes integers past 64 bits)."""
    return json.dumps({key: value}, ensure_ascii=False).encode()


def _never_looser(check: Any, key: str, value: Any) -> None:
    line = _line(key, value)
    if check(line) is not None:
        validator = dict(PLAIN)[key]
        assert check(line) == key
        assert type(value) is dict
        assert validator.accept("jsonschema-rs")(value), (key, value)
        assert validator.accept("fastjsonschema")(value), (key, value)
        assert validator.refusal(value) is None


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_never_looser_on_reference_data(index: int, check: Any) -> None:
    key, value = SAMPLES[index]
    if key in dict(PLAIN):
        _never_looser(check, key, value)


REPLACEMENTS = st.sampled_from(
    [None, 0, -1, 1.0, 1.5, 2**63, 10**20, True, "", "x" * 1025, "a*b", "2024-02-30T00:00:00Z",
     [], [{}], [None], {}, ["x"], {"k": "v"}, {"k": {}}, "DROP"]
)
PLAIN_SAMPLES = [(key, value) for key, value in SAMPLES + CORPUS if key in dict(PLAIN)]


@settings(max_examples=1500, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.sampled_from(PLAIN_SAMPLES), st.lists(st.tuples(st.integers(min_value=0), REPLACEMENTS), max_size=3))
def test_never_looser_on_mutated_events(check: Any, sample: tuple[str, Any], changes: list[tuple[int, Any]]) -> None:
    """Up to three fields of a real or benchmark event replaced or dropped: when
    the typed check accepts, both backends accept."""
    key, value = sample
    value = copy.deepcopy(value)
    for where, replacement in changes:
        paths = [p for p in _paths(value) if p]
        if paths:
            mutate(value, paths[where % len(paths)], copy.deepcopy(replacement))
    _never_looser(check, key, value)


#: Values of a map of anything (``context.custom``) that msgspec would skip
#: unchecked and orjson refuses (or repairs): too deep, an integer too large for
#: a double, bytes that are not UTF-8, a lone surrogate.
CUSTOM_ODDITIES = [
    b'{"error": {"id": "a", "log": {"message": "m"}, "context": {"custom": {"v": %b}}}}' % value
    for value in (b"[" * 1100 + b"]" * 1100, b"1" * 400, b'"\xff"', b'"\\ud800"')
]


@pytest.mark.parametrize(
    "line",
    [
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "\xff", "type": "t", "duration": 1, "start": 1}}',
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "\\ud800", "type": "t", "duration": 1, "start": 1}}',
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "n", "type": "t", "duration": 1e999, "start": 1}}',
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "n", "type": "t", "duration": 1, "start": 1}} x',
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "n", "type": "t", "duration": 1, "start": 1},'
        b' "log": {"message": "m"}}',
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "n", "type": "t", "duration": 1, "start": 1,'
        b' "unknown": 1e999}}',
        b'{"log": {"message": "m", "log": {"origin": {"file": {"line": 1.0}}}}}',
        b'{"log": {}}',
        b'{"error": {"id": "a", "exception": {}}}',
        b'{"error": {"id": "a", "exception": {"message": "m"}, "transaction_id": "t"}}',
        b'{"transaction": {"id": "a", "trace_id": "b", "type": "t", "duration": 1, "span_count": {"started": 9223372036854775808}}}',
        *CUSTOM_ODDITIES,
    ],
)
def test_refuses_what_it_cannot_vouch_for(line: bytes, check: Any) -> None:
    """Bytes orjson refuses or reads differently, lines with other keys, rules
    only the slow path words: the typed check refuses them all."""
    assert check(line) is None


def test_without_msgspec_there_is_no_typed_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without msgspec and without the compiled scanner, every line takes the slow path."""
    monkeypatch.setattr(_typed, "msgspec", None)
    monkeypatch.setattr(_typed, "envelope_checker", lambda schemas: None)
    _typed.envelope_check.cache_clear()
    _typed.typed_check.cache_clear()
    try:
        assert _typed.envelope_check(PLAIN) is None
        result = ndintake.validate(realistic_corpus(50_000))
        assert (result.status, result.accepted) == (202, realistic_corpus(50_000).count(b"\n") - 1)
    finally:
        _typed.envelope_check.cache_clear()
        _typed.typed_check.cache_clear()


# -- the stream: the same result with and without the typed check ------------------------------


def _bodies() -> Iterator[tuple[str, bytes]]:
    yield "corpus", realistic_corpus()
    for name in v2_files() + ["intake-v3/rum_errors.ndjson", "intake-v3/rum_events.ndjson"]:
        yield name, load(name)
    rum_errors = load("intake-v3/rum_errors.ndjson").splitlines()
    yield "RUM v3 errors, many", b"\n".join(rum_errors[:1] + rum_errors[1:] * 50 + [b""])
    body = realistic_corpus(60_000).splitlines()
    yield "invalid lines mixed in", b"\n".join(body[:5] + list(INVALID_EVENT_LINES) + body[5:] + [b""])
    yield "oddities", b"\n".join([META] + [
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "\xff", "type": "t", "duration": 1, "start": 1}}',
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "\\ud800", "type": "t", "duration": 1, "start": 1}}',
        b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "n", "type": "t", "duration": 1, "start": 1,'
        b' "x": "\xfe"}}',
        b'{"log": {"message": "m", "log": {"origin": {"file": {"line": 1.0}}}}}',
        b'{"span": {"id": "a", "id": "b", "trace_id": "b", "parent_id": "c", "name": "n", "type": "t", "duration": 1,'
        b' "start": 1}}',
        b'{"log": {}}',
        *CUSTOM_ODDITIES,
    ] + [b""])


BODIES = dict(_bodies())


def _run(body: bytes, *, typed: bool, read: str, chunk: int = 4096) -> tuple[Any, ...]:
    """The body through an IntakeStream in ``chunk``-byte chunks: the result and the
    events (with ``data``); ``read``: whether the consumer reads ``data`` as it goes
    ("all", "none", or "every other" feed)."""
    check = _envelope.envelope_check
    try:
        if not typed:
            _envelope.envelope_check = lambda plain: None  # type: ignore[assignment]
        _envelope._reads_data[0] = False
        stream = ndintake.IntakeStream()
        events: list[ndintake.Event] = []
        for count, start in enumerate(range(0, len(body), chunk)):
            got = stream.feed(body[start : start + chunk])
            if read == "all" or read == "every other" and count % 2:
                for event in got:
                    assert event.data is event.data  # parsed once, then kept
            events += got
        result = stream.close()
        events += result.final_events
    finally:
        _envelope.envelope_check = check
        _envelope._reads_data[0] = False
    errors = [(e.message, e.document, e.line, e.status) for e in result.errors]
    return (result.status, result.accepted, result.invalid, result.dropped, errors,
            [(e.kind, e.raw, e.line, e.abbreviated, e.parent, e.data) for e in events])


@pytest.fixture(params=["jsonschema-rs", "fastjsonschema"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(_schemas, "_BACKEND", request.param)
    _schemas.lines_accept.cache_clear()
    yield request.param
    _schemas.lines_accept.cache_clear()


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("read", ["none", "all", "every other"])
def test_same_result_with_the_typed_check(name: str, read: str, backend: str) -> None:
    body = BODIES[name]
    assert _run(body, typed=True, read=read) == _run(body, typed=False, read="none")


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    st.lists(st.tuples(st.sampled_from(PLAIN_SAMPLES), st.integers(min_value=0), REPLACEMENTS), min_size=1, max_size=12),
    st.sampled_from(["none", "all"]),
    st.integers(min_value=64, max_value=4096),
)
def test_same_result_on_mutated_bodies(check: Any, events: list[tuple[tuple[str, Any], int, Any]], read: str,
                                       chunk: int) -> None:
    lines = [META]
    for (key, value), where, replacement in events:
        value = copy.deepcopy(value)
        paths = [p for p in _paths(value) if p]
        if paths:
            mutate(value, paths[where % len(paths)], copy.deepcopy(replacement))
        lines.append(_line(key, value))
    body = b"\n".join(lines) + b"\n"
    assert _run(body, typed=True, read=read, chunk=chunk) == _run(body, typed=False, read="none", chunk=chunk)


# -- choosing the path by what the consumer reads ------------------------------------------------


def _feed_all(stream: ndintake.IntakeStream, body: bytes, read: bool) -> list[ndintake.Event]:
    out = []
    for start in range(0, len(body), 65536):
        events = stream.feed(body[start : start + 65536])
        if read:
            assert all(event.data for event in events)
        out += events
    return out


def test_data_is_parsed_only_when_read(check: Any) -> None:
    _envelope._reads_data[0] = False
    events = ndintake.IntakeStream().feed(realistic_corpus(60_000))
    lazy = [event for event in events if not event.data_parsed]
    assert len(lazy) > len(events) / 2
    assert lazy[0].data == orjson.loads(lazy[0].raw)[lazy[0].kind]
    assert lazy[0].data_parsed


def test_a_consumer_that_reads_data_gets_it_parsed_eagerly(check: Any) -> None:
    """After msgspec's check (a parse after it costs more than parsing and
    checking together); after the scanner, lines stay unparsed until read."""
    if bytecheck.is_scanner(check):
        events = _feed_all(ndintake.IntakeStream(), realistic_corpus(), read=True)
        assert sum(not event.data_parsed for event in ndintake.IntakeStream().feed(realistic_corpus(60_000))) > 10
        assert all(event.data_parsed for event in events)
        return
    body = realistic_corpus()
    events = _feed_all(ndintake.IntakeStream(), body, read=True)
    assert _envelope._reads_data[0]
    fresh = ndintake.IntakeStream()
    events = fresh.feed(body[:65536])
    assert sum(not event.data_parsed for event in events) <= 1  # the probe, the batch's last line
    assert all(event.data for event in events)
    _feed_all(fresh, body[65536:], read=False)  # the consumer stops reading
    assert not _envelope._reads_data[0]
    _envelope._reads_data[0] = False


def test_event_constructed_with_data_keeps_it() -> None:
    data = {"id": "x"}
    event = ndintake.Event("span", data, b"{}", 3)
    assert event.data is data and event.data_parsed
    assert event == ndintake.Event("span", {"id": "x"}, b"{}", 3)
    assert event != ndintake.Event("span", {"id": "y"}, b"{}", 3)
    assert "data={'id': 'x'}" in repr(event)


def test_keys_the_typed_check_mostly_refuses_are_not_tried(check: Any) -> None:
    """heavy.ndjson's spans and transactions carry fields the schema does not
    name: msgspec's check refuses them, so once a batch shows it, their lines
    skip that check; its errors are still taken by it. The scanner takes them
    all; a metricset is parsed at once, for its dropping rule, only when its bytes
    name a "transaction" (heavy's do not)."""
    assert _envelope._untyped[0] == ()
    body = load("intake-v2/heavy.ndjson")
    events = ndintake.IntakeStream().feed(body)
    if bytecheck.is_scanner(check):
        assert _envelope._untyped[0] == ()
        assert all(not event.data_parsed for event in events)
        internal = b'{"metricset": {"samples": {"a": {"value": 1}}, "transaction": {"name": "t", "type": "request"}}}'
        named = b'{"metricset": {"samples": {"a": {"value": 1}}, "tags": {"k": "transaction"}}}'
        plain = b'{"metricset": {"samples": {"a": {"value": 1}}, "tags": {"k": "v"}}}'
        events = ndintake.IntakeStream().feed(b"\n".join([META, internal, named, plain, b""]))
        assert [(event.raw, event.data_parsed) for event in events] == [(named, True), (plain, False)]
        return
    assert set(_envelope._untyped[0]) == {b'{ "span"', b'{ "transaction"'}  # metricsets it takes
    assert {event.kind for event in events if not event.data_parsed} == {"error"}
    again = ndintake.IntakeStream().feed(body)
    assert [(e.kind, e.raw, e.data) for e in again] == [(e.kind, e.raw, e.data) for e in events]


def test_skipped_line_starts_are_tried_again_in_time(check: Any) -> None:
    """A skipped start is forgotten after ``_RELEARN`` batches that skip: traffic
    that has changed is taken by the typed check again."""
    _envelope._untyped[0] = (b'{"span"',)
    _envelope._batches[0] = 0
    body = realistic_corpus(60_000)
    spans = [e for e in ndintake.IntakeStream().feed(body) if e.kind == "span"]
    assert spans and all(e.data_parsed for e in spans)  # skipped: parsed eagerly
    _envelope._batches[0] = _envelope._RELEARN - 1
    spans = [e for e in ndintake.IntakeStream().feed(body) if e.kind == "span"]
    assert b'{"span"' not in _envelope._untyped[0]  # (metricsets are learned again at once)
    assert spans and not any(e.data_parsed for e in spans)
