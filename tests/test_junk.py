"""The junk fast path (issue 16): once five errors are kept, lines that cannot be
events are counted without being parsed (``EnvelopeReader._sift``, and
``ItemReader._sift`` for NDJSON prodlytics bodies). Every result must be exactly
the line-by-line one: status, counts, the kept errors (messages, documents, line
numbers) and the events with their line numbers, for any chunking, strict or
not, apm, rum and prodlytics, on both validation backends.

The reference is the same reader with ``_sift`` turned into a no-op, so that
every line goes the line-by-line way, as before the fast path existed.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndintake
from conftest import metadata_line, run, valid_event_lines
from hostile import ITEM
from ndintake.core import schemas as _schemas
from ndintake.profiles.apm import envelope as _envelope
from ndintake.profiles import items as _items
from ndintake.profiles.apm.envelope import EnvelopeReader
from ndintake.profiles.items import ItemReader
from test_invariants import V3_LINES, V3_METADATA

LIMIT = 5000  # max_event_size: every valid line fits, the oversized ones below do not
LIMITS = ndintake.Limits(max_event_size=LIMIT)

#: Five per-event errors: past them the fast path may sift.
FIVE_ERRORS = [b"1", b"{}", b'"x"', b"not json", b'{"a": 1}']

BLANK = [b"", b" ", b"\r", b"\t \r", b"\x0b", b"\x0c\r"]
NOT_OBJECTS = [
    b"1",
    b"[]",
    b'"x"',
    b' "x"',
    b"null",
    b"true",
    b'1 {"log": {"message": "x"}}',
    b'["log", {"message": "x"}]',
    b'\x0c{"log": {"message": "x"}}',  # \f is not JSON whitespace
    b'\xef\xbb\xbf{"log": {"message": "x"}}',  # orjson refuses a BOM
    b"\xff",
    b"\xff\xfe{",
    b"{'log': {'message': 'x'}}",
]
EMPTY_OBJECTS = [b"{}", b" {}", b"\r{}", b"{ }", b"{}  ", b"{} junk", b"{}\xff", b"{}\r"]
UNPARSABLE = [
    b"not json",
    b"{",
    b"{{",
    b'{"',
    b'{"transaction": ',
    b'{"transaction": {"id": }',
    b'{"a":1}',
    b'{"log": null}',
    b'{"span": {}}',
    b'{"span": "not an object"}',
    b'{"log": {"message": "\xff"}}',
    b'{"log": {"message": "x"}}\xff',  # accepted unless strict
    b'{"log": {"message": "x"}} trailing',  # accepted unless strict
    b' {"log": {"message": "x"}}',  # valid, after a blank
    b'{"log": {"message": "x"}, "span": {}}',  # valid: the first key decides
    b'{"metricset": {"samples": {"a": {"value": 1}}, "transaction": {"name": "t", "type": "request"}}}',  # dropped
]
OVERSIZED = [
    b"1" * (LIMIT + 10),
    b" " * (LIMIT + 10),  # an oversized blank line is refused, not skipped
    b"\r" * LIMIT,
    b"{" + b" " * LIMIT,
    b'{"log": {"message": "' + b"x" * LIMIT + b'"}}',
]
JUNK = BLANK + NOT_OBJECTS + EMPTY_OBJECTS + UNPARSABLE + OVERSIZED

#: per profile: the first line, and valid lines (prodlytics has no metadata line: its first line is an item)
PROFILES = {
    "apm": (metadata_line(), valid_event_lines()),
    "rum": (V3_METADATA, V3_LINES),
    "prodlytics": (ITEM, (ITEM, b" " + ITEM, ITEM + b" trailing", ITEM[:-1] + b', "extra": 1}')),
}


def _no_sift(self: Any, lines: list[bytes], numbers: Any) -> tuple[list[bytes], list[int]]:
    """The reference: sift nothing out."""
    return lines, list(numbers)


@pytest.fixture(params=_schemas.BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run under each validation backend, as ``NDINTAKE_BACKEND`` would choose it."""
    name: str = request.param
    if name == "jsonschema-rs" and _schemas.jsonschema_rs is None:
        pytest.fail("jsonschema-rs is not installed")
    monkeypatch.setattr(_schemas, "_BACKEND", name)
    monkeypatch.setattr(_envelope, "lines_accept", lambda validators: _schemas.lines_accept(validators, name))
    return name


def outcome(body: bytes, sizes: list[int] | None, profile: str, strict: bool) -> tuple[Any, ...]:
    """Everything a body comes to: the result and the events, in full."""
    result, events = run(body, "identity", sizes, profile=profile, strict=strict, limits=LIMITS)
    errors = tuple((e.message, e.document, e.line, e.status, e.fatal) for e in result.errors)
    kept = [(e.kind, e.data, e.raw, e.line, e.abbreviated, e.parent) for e in events]
    return result.status, result.accepted, result.invalid, result.dropped, errors, kept


def both_ways(
    monkeypatch: pytest.MonkeyPatch, body: bytes, sizes: list[int] | None, profile: str, strict: bool
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The outcome with the fast path, then with the line-by-line reference."""
    fast = outcome(body, sizes, profile, strict)
    with monkeypatch.context() as patch:
        patch.setattr(EnvelopeReader, "_sift", _no_sift)
        patch.setattr(ItemReader, "_sift", _no_sift)
        reference = outcome(body, sizes, profile, strict)
    return fast, reference


@st.composite
def bodies(draw: st.DrawFn, profile: str) -> bytes:
    """A metadata line, then valid events mixed with every kind of junk."""
    metadata, valid = PROFILES[profile]
    line = st.one_of(
        st.sampled_from(JUNK),
        st.sampled_from(valid),
        st.binary(max_size=12).map(lambda raw: raw.replace(b"\n", b"")),
    )
    lines = draw(st.lists(line, max_size=60))
    if draw(st.booleans()):
        lines = FIVE_ERRORS + lines
    ending = draw(st.sampled_from([b"\n", b"", b"\r\n"]))
    return b"\n".join([metadata, *lines]) + ending


CHUNKINGS = st.one_of(st.none(), st.lists(st.integers(1, 400), min_size=1, max_size=6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), profile=st.sampled_from(sorted(PROFILES)), strict=st.booleans(), sizes=CHUNKINGS)
def test_same_result_as_line_by_line(
    monkeypatch: pytest.MonkeyPatch, backend: str, data: st.DataObject, profile: str, strict: bool, sizes: Any
) -> None:
    body = data.draw(bodies(profile))
    fast, reference = both_ways(monkeypatch, body, sizes, profile, strict)
    assert fast == reference


def short(line: bytes) -> str:
    """A test id: the line's start, and its size if longer."""
    return repr(line[:24]) + (f"...{len(line)}B" if len(line) > 24 else "")


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("junk", JUNK, ids=short)
def test_each_junk_line_past_the_fifth_error(
    monkeypatch: pytest.MonkeyPatch, backend: str, junk: bytes, strict: bool
) -> None:
    """Runs of one junk line around valid events, cut in several ways, so that
    the line is sifted in pieces of its own and among events."""
    event = valid_event_lines()[0]
    lines = [metadata_line(), *FIVE_ERRORS, *[junk] * 12, event, *[junk, event] * 4, *[junk] * 12, event]
    body = b"\n".join(lines) + b"\n"
    small = 1 if len(body) < 20_000 else 101  # one-byte chunks only for small bodies
    for sizes in (None, [small], [7, 1000], [len(b"\n".join(lines[:7])) + 1, 64]):
        fast, reference = both_ways(monkeypatch, body, sizes, "apm", strict)
        assert fast == reference


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(st.sampled_from(JUNK + list(valid_event_lines()[:5])), st.binary(max_size=8)).map(
            lambda raw: raw.replace(b"\n", b"")
        ),
        min_size=1,
        max_size=40,
    ),
    first=st.integers(1, 1000),
)
def test_line_start_picks_as_matching_each_line(lines: list[bytes], first: int) -> None:
    """Both ways of ``LineStart.pick`` (a scan where few lines begin with '{"',
    a map where many do) pick exactly the lines the regex matches at their start."""
    numbers = range(first, first + len(lines))
    for start in (_envelope._MAYBE_EVENT, _items._MAYBE_OBJECT):
        expected = [(line, n) for line, n in zip(lines, numbers) if start._each.match(line)]
        kept, kept_numbers = start.pick(lines, numbers)
        assert list(zip(kept, kept_numbers)) == expected


# -- the fast path is taken: spies count the parses ---------------------------------------------


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Count the calls of ``owner.name`` (one entry per call)."""
    calls: list[int] = []
    original: Callable[..., Any] = getattr(owner, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def _junk_body(junk: list[bytes], count: int) -> Iterator[bytes]:
    """Metadata and five errors in one chunk, then ``count`` rounds of ``junk``
    in chunks of about 64 KiB, each ending in a valid event."""
    event = valid_event_lines()[0]
    yield b"\n".join([metadata_line(), *FIVE_ERRORS]) + b"\n"
    unit = b"\n".join(junk) + b"\n"
    per_chunk = max(1, 65536 // len(unit))
    for start in range(0, count, per_chunk):
        yield unit * min(per_chunk, count - start) + event + b"\n"


SPIED_JUNK = [[b""], [b"\r"], [b"1"], [b"[]"], [b'"x"'], [b"{}"], [b"not json"], [b'{"transaction": '], [b'{"a":1}']]


@pytest.mark.parametrize("junk", [*SPIED_JUNK, FIVE_ERRORS], ids=str)
def test_junk_past_the_fifth_error_is_not_parsed(monkeypatch: pytest.MonkeyPatch, junk: list[bytes]) -> None:
    """Not a clock: after the fifth error, junk lines cost no JSON parse and no
    slow-path call, except for the first sight of a junk line that needs one
    (it is then remembered)."""
    rounds = 2000
    body = b"".join(_junk_body(junk, rounds))
    fast, reference = both_ways(monkeypatch, body, None, "apm", False)
    assert fast == reference
    loads = _spy(monkeypatch, _envelope, "_loads")
    slow = _spy(monkeypatch, EnvelopeReader, "_take_event")
    stream = ndintake.IntakeStream(content_encoding="identity", limits=LIMITS)
    for chunk in _junk_body(junk, rounds):
        stream.feed(chunk)
    result = stream.close()
    assert (result.accepted, result.invalid) == fast[1:3]
    # one parse per event, a few for the metadata line and the five errors, two per junk line on first sight
    assert len(loads) <= result.accepted + 2 * len(junk) + 20
    assert len(slow) <= 5 + len(junk)


LONG_JUNK = b"not json, and too long to be remembered" * 3


@pytest.mark.parametrize("junk", [b"1", b"{}", b'{"transaction": ', b'{"a":1}', LONG_JUNK], ids=short)
def test_junk_in_the_piece_of_the_fifth_error(monkeypatch: pytest.MonkeyPatch, junk: bytes) -> None:
    """One piece: the five errors, then junk. The rest of the piece is sifted
    from the fifth error on, and again once a junk line is remembered."""
    body = b"\n".join([metadata_line(), *FIVE_ERRORS, *[junk] * 2000]) + b"\n"
    fast, reference = both_ways(monkeypatch, body, None, "apm", False)
    assert fast == reference
    loads = _spy(monkeypatch, _envelope, "_loads")
    slow = _spy(monkeypatch, EnvelopeReader, "_take_event")
    assert ndintake.validate(body, limits=LIMITS).invalid == fast[2] == 2005
    assert len(loads) <= 20
    assert len(slow) <= 6


def test_the_spy_sees_parses_without_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spy of the test above would catch a fast path that parses junk."""
    monkeypatch.setattr(EnvelopeReader, "_sift", _no_sift)
    loads = _spy(monkeypatch, _envelope, "_loads")
    stream = ndintake.IntakeStream(content_encoding="identity", limits=LIMITS)
    for chunk in _junk_body([b"1"], 2000):
        stream.feed(chunk)
    assert stream.close().invalid == 2005
    assert len(loads) > 2000


def test_prodlytics_junk_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """NDJSON prodlytics: past the fifth error, lines not starting with "{" are
    counted unparsed, and the item index still counts them."""
    junk = [b"", b"1", b"[]", b'"x"', b"not json", b"\r"]
    chunks = [b"\n".join([ITEM, *FIVE_ERRORS]) + b"\n", *[b"\n".join(junk * 500) + b"\n" + ITEM + b"\n"] * 3]
    body = b"".join(chunks)
    fast, reference = both_ways(monkeypatch, body, [len(chunk) for chunk in chunks], "prodlytics", False)
    assert fast == reference
    parses = _spy(monkeypatch, _items, "parse_line")
    stream = ndintake.IntakeStream(profile="prodlytics", content_encoding="identity", limits=LIMITS)
    for chunk in chunks:
        stream.feed(chunk)
    assert (stream.close().invalid, stream._reader._index) == (fast[2], 4 + 5 + 3 * 500 * 4)
    assert len(parses) <= 4 + 5


def test_the_refused_memory_is_bounded() -> None:
    """Distinct short refused lines: at most _REFUSED_COUNT are remembered."""
    lines = [b'{"k%d": 1}' % i for i in range(3 * _envelope._REFUSED_COUNT)]
    stream = ndintake.IntakeStream(content_encoding="identity")
    stream.feed(b"\n".join([metadata_line(), *FIVE_ERRORS, *lines]) + b"\n")
    assert stream.close().invalid == 5 + len(lines)
    assert len(stream._reader._refused) == _envelope._REFUSED_COUNT
