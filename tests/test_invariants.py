"""Property tests (hypothesis) on the invariants of issue 6, for every profile
(apm, rum, prodlytics) and codec, with hostile lines and items:

- any chunking gives the same result;
- the events delivered by feed() and close() are the accepted ones;
- valid events before and after bad ones are never lost: a body's result is the
  sum of its lines' (items') results taken one by one;
- at most 5 event errors + 1 fatal; the result is always JSON;
- an item's fate does not depend on the prodlytics body form (NDJSON or array);
- a short seeded run of the byte-level fuzz (every profile x codec, compressed
  then mutated), which the coverage-guided harness in fuzz/ runs for hours.

test_properties.py covers the apm profile with upstream's valid lines and a fixed
set of invalid ones; this file adds the rum and prodlytics profiles, generated
hostile lines, and the line-by-line oracle.

Seeded: every test is derandomized (a fixed seed, not the clock). For a
longer or different run: NDINTAKE_MAX_EXAMPLES=2000 NDINTAKE_SEED=7 pytest tests/test_invariants.py
"""

from __future__ import annotations

import json
import os
import re

import orjson
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import ndintake
from conftest import load, valid_event_lines
from hostile import DECLARED, ITEM, ITEM_OBJ, META, check, chunks_of, compress, feed, outcome

_SEED = os.environ.get("NDINTAKE_SEED")
SETTINGS = settings(
    max_examples=int(os.environ.get("NDINTAKE_MAX_EXAMPLES", "100")),
    deadline=None,
    derandomize=_SEED is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def seeded(test):
    return seed(int(_SEED))(test) if _SEED is not None else test


CODECS = list(DECLARED)
#: codecs that never fail on a whole stream, with their library's own wording out of the way
CLEAN_CODECS = ["identity", "sniff", "gzip", "deflate", "deflate-raw", "zstd", "br", "gzip, br", "sniff-zstd"]

# -- lines -------------------------------------------------------------------------------------

V2_LINES = valid_event_lines()
V3_METADATA = load("intake-v3/rum_events.ndjson").split(b"\n", 1)[0]
V3_LINES = tuple(
    line
    for name in ("intake-v3/rum_events.ndjson", "intake-v3/rum_errors.ndjson")
    for line in load(name).split(b"\n")[1:]
    if line.strip()
)
BLANK_LINES = (b"", b" ", b"\r", b"\t \r")


@st.composite
def mutated(draw, line: bytes) -> bytes:
    """``line`` with one byte replaced, inserted or deleted (no newline)."""
    if not line:
        return line
    at = draw(st.integers(0, len(line) - 1))
    byte = draw(st.integers(0, 255).filter(lambda b: b != 0x0A))
    how = draw(st.sampled_from(["replace", "insert", "delete"]))
    if how == "replace":
        return line[:at] + bytes([byte]) + line[at + 1 :]
    if how == "insert":
        return line[:at] + bytes([byte]) + line[at:]
    return line[:at] + line[at + 1 :]


def _custom(value: bytes) -> bytes:
    """An error event carrying ``value`` (raw JSON text) as a custom field."""
    return b'{"error": {"id": "abcdef0123456789", "log": {"message": "m"}, "context": {"custom": {"v": ' + value + b"}}}}"


HOSTILE_VALUES = (
    b"NaN",
    b"-Infinity",
    b"1e400",
    b"1" * 400,
    b"123456789012345678901234567890",
    b'"\\ud800"',
    b'"\\udc00x"',
    b'"\\ud83d\\ude00"',
    b'"\xff"',
    b'"\xed\xa0\x80"',
    b'"a\x00b"',
    b'"\\u0000"',
    b"[" * 1100 + b"]" * 1100,
    b"[" * 300 + b"]" * 300,
    b'{"a": 1, "a": 2}',
    b'{"": ""}',
)


def apm_hostile_line(valid: tuple[bytes, ...]):
    return st.one_of(
        st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
        st.sampled_from(valid).flatmap(mutated),
        st.sampled_from(HOSTILE_VALUES).map(_custom),
        st.sampled_from(valid).map(lambda line: b"\xef\xbb\xbf" + line),
        st.sampled_from(valid).map(lambda line: b"\x00" + line),
        st.tuples(st.sampled_from(valid), st.sampled_from([b" x", b"\x00", b"\xff", b"}"])).map(b"".join),
        st.sampled_from([b'{"span": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"": {}}', b'{"metadata": {}}', b"[]", b"null"]),
    )


@st.composite
def apm_bodies(draw, profile: str):
    """(metadata line, event lines, trailing newline): valid, blank and hostile lines."""
    valid = V2_LINES + (V3_LINES if profile == "rum" else ())
    metadata = draw(st.sampled_from([META, V3_METADATA] if profile == "rum" else [META]))
    line = st.one_of(st.sampled_from(valid), st.sampled_from(BLANK_LINES), apm_hostile_line(valid))
    lines = draw(st.lists(line, max_size=12))
    return metadata, lines, draw(st.booleans())


def joined(first: bytes | None, lines: list[bytes], newline: bool) -> bytes:
    body = b"\n".join(([first] if first is not None else []) + lines)
    return body + b"\n" if newline or not lines else body


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])] or [b""]


def events_of(events):
    return [(e.kind, e.raw, e.data, e.line) for e in events]


# -- the line-by-line oracle -------------------------------------------------------------------


def apm_oracle(profile: str, metadata: bytes, lines: list[bytes], newline: bool, limits=None):
    """What a body must come to, from each line fed alone after the metadata:
    (accepted events, invalid, dropped, [(message, document, line)] of the kept errors)."""
    events, errors, invalid, dropped = [], [], 0, 0
    for number, line in enumerate(lines, start=2):
        last = number == len(lines) + 1
        result, alone = feed([joined(metadata, [line], newline or not last)], profile, limits=limits)
        assert result.fatal is None, (line, result.errors)
        events += [(kind, raw, data, number) for kind, raw, data, _ in events_of(alone)]
        errors += [(e.message, e.document, number) for e in result.errors]
        invalid += result.invalid
        dropped += result.dropped
    return events, invalid, dropped, errors


@SETTINGS
@seeded
@given(
    profile=st.sampled_from(["apm", "rum"]),
    case=st.data(),
    codec=st.sampled_from(CLEAN_CODECS),
    small_lines=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=30),
)
def test_apm_body_is_the_sum_of_its_lines_at_any_chunking_and_codec(profile, case, codec, small_lines, cuts):
    metadata, lines, newline = case.draw(apm_bodies(profile))
    limits = ndintake.Limits(max_event_size=1024) if small_lines else None
    body = joined(metadata, lines, newline)
    payload = compress(body, codec)
    events, invalid, dropped, errors = apm_oracle(profile, metadata, lines, newline, limits)

    whole, whole_events = feed([payload], profile, DECLARED[codec], limits=limits)
    chunked, chunked_events = feed(split(payload, cuts), profile, DECLARED[codec], limits=limits)
    for result, delivered in ((whole, whole_events), (chunked, chunked_events)):
        check(result, delivered, profile)
        assert events_of(delivered) == events  # nothing lost, nothing added, in order
        assert (result.accepted, result.invalid, result.dropped) == (len(events), invalid, dropped)
        assert [(e.message, e.document, e.line) for e in result.errors] == errors[: ndintake.MAX_EVENT_ERRORS]
        assert result.status == (400 if invalid else 202)
    assert outcome(chunked) == outcome(whole)


# -- prodlytics --------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def prodlytics_item(draw) -> bytes:
    """An item as JSON text: valid or not, with custom attributes."""
    obj = json.loads(json.dumps(ITEM_OBJ))
    obj.update(draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3)))
    change = draw(st.sampled_from(["none", "none", "drop", "type", "empty-id", "no-subject", "not-object"]))
    if change == "drop":
        obj.pop(draw(st.sampled_from(["type", "application", "event"])), None)
    elif change == "type":
        obj["type"] = draw(st.sampled_from(["client", 1, None]))
    elif change == "empty-id":
        obj["usr"] = {"id": ""}
    elif change == "no-subject":
        obj.pop("usr", None)
    elif change == "not-object":
        return orjson.dumps(draw(JSON_SCALARS))
    return orjson.dumps(obj)


#: items hostile to a parser (an array element is judged like an NDJSON line, so
#: a broken one is one bad item and may sit anywhere in an array)
HOSTILE_ITEMS = tuple(ITEM[:-1] + b', "h": ' + value + b"}" for value in HOSTILE_VALUES)


def prodlytics_line():
    return st.one_of(
        prodlytics_item(),
        st.sampled_from(BLANK_LINES),
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
        prodlytics_item().flatmap(mutated),
        st.sampled_from(HOSTILE_ITEMS),
        st.sampled_from(HOSTILE_VALUES).map(lambda v: ITEM[:-1] + b', "h": ' + v + b"}"),
    )


def renumbered(message: str, index: int) -> str:
    return re.sub(r"^item 0: ", f"item {index}: ", message)


def prodlytics_oracle(lines: list[bytes], form: str):
    """What an NDJSON body (``form`` "ndjson") or an array (``form`` "array") must
    come to, from each line (item) fed alone: a line after a valid item (the
    first line decides the body's form), an item alone in an array."""
    events, errors, invalid, index = [], [], 0, 0
    for number, line in enumerate(lines, start=1):
        if form == "ndjson":
            result, delivered = feed([ITEM + b"\n" + line], "prodlytics")
            delivered = delivered[1:]
            messages = [re.sub(r"^item 1: ", "item 0: ", e.message) for e in result.errors]
            accepted = result.accepted - 1
        else:
            result, delivered = feed([b"[" + line + b"]"], "prodlytics")
            messages = [e.message for e in result.errors]
            accepted = result.accepted
        assert result.fatal is None, (line, result.errors)
        at = number if form == "ndjson" else 0
        events += [(kind, raw, data, at) for kind, raw, data, _ in events_of(delivered)]
        errors += [(renumbered(m, index), e.document, at or None) for m, e in zip(messages, result.errors)]
        invalid += result.invalid
        index += accepted + result.invalid
    return events, invalid, errors


@SETTINGS
@seeded
@given(
    first=prodlytics_item(),
    lines=st.lists(prodlytics_line(), max_size=10),
    newline=st.booleans(),
    codec=st.sampled_from(CLEAN_CODECS),
    cuts=st.lists(st.integers(0, 1 << 14), max_size=30),
)
def test_prodlytics_ndjson_is_the_sum_of_its_lines(first, lines, newline, codec, cuts):
    """NDJSON whose first line is an item (the first line decides the body's
    form); then anything, one line at a time."""
    lines = [first] + lines
    body = joined(None, lines, newline)
    payload = compress(body, codec)
    events, invalid, errors = prodlytics_oracle(lines, "ndjson")
    whole, whole_events = feed([payload], "prodlytics", DECLARED[codec])
    chunked, chunked_events = feed(split(payload, cuts), "prodlytics", DECLARED[codec])
    for result, delivered in ((whole, whole_events), (chunked, chunked_events)):
        check(result, delivered, "prodlytics")
        assert events_of(delivered) == events
        assert (result.accepted, result.invalid) == (len(events), invalid)
        assert [(e.message, e.document, e.line) for e in result.errors] == errors[: ndintake.MAX_EVENT_ERRORS]
    assert outcome(chunked) == outcome(whole)


@SETTINGS
@seeded
@given(
    items=st.lists(st.one_of(prodlytics_item(), st.sampled_from(HOSTILE_ITEMS)), max_size=10),
    spaces=st.sampled_from([b"", b" ", b"\n", b" \r\n\t"]),
    codec=st.sampled_from(CLEAN_CODECS),
    cuts=st.lists(st.integers(0, 1 << 14), max_size=30),
)
def test_prodlytics_array_is_the_sum_of_its_items(items, spaces, codec, cuts):
    """An array of items, hostile ones included: each item's fate is its own."""
    body = b"[" + spaces + (b"," + spaces).join(items) + spaces + b"]"
    payload = compress(body, codec)
    events, invalid, errors = prodlytics_oracle(items, "array")
    whole, whole_events = feed([payload], "prodlytics", DECLARED[codec])
    chunked, chunked_events = feed(split(payload, cuts), "prodlytics", DECLARED[codec])
    for result, delivered in ((whole, whole_events), (chunked, chunked_events)):
        check(result, delivered, "prodlytics")
        assert [(kind, data) for kind, _, data, _ in events_of(delivered)] == [(kind, data) for kind, _, data, _ in events]
        assert (result.accepted, result.invalid) == (len(events), invalid)
        assert [(e.message, e.line) for e in result.errors] == [(m, line) for m, _, line in errors[: ndintake.MAX_EVENT_ERRORS]]
    assert outcome(chunked) == outcome(whole)


@SETTINGS
@seeded
@given(items=st.lists(st.one_of(prodlytics_item(), st.sampled_from(HOSTILE_ITEMS)), min_size=1, max_size=8))
def test_prodlytics_item_fate_does_not_depend_on_the_body_form(items):
    """The same items as NDJSON lines and as a JSON array: the same items
    accepted (the same data), the same ones refused."""
    ndjson, ndjson_events = feed([b"\n".join(items)], "prodlytics")
    array, array_events = feed([b"[" + b",".join(items) + b"]"], "prodlytics")
    check(ndjson, ndjson_events, "prodlytics")
    check(array, array_events, "prodlytics")
    assert [e.data for e in array_events] == [e.data for e in ndjson_events]
    assert (array.accepted, array.invalid, array.fatal) == (ndjson.accepted, ndjson.invalid, None)
    index = re.compile(r"^item (\d+): ")
    assert [index.match(e.message).group(1) for e in array.errors] == [index.match(e.message).group(1) for e in ndjson.errors]


# -- truncated and limited bodies, every profile ------------------------------------------------


@st.composite
def any_body(draw):
    """(profile, body) with valid, blank and hostile lines."""
    profile = draw(st.sampled_from(["apm", "rum", "prodlytics"]))
    if profile == "prodlytics":
        form = draw(st.sampled_from(["ndjson", "array"]))
        if form == "array":
            items = draw(st.lists(st.one_of(prodlytics_item(), st.sampled_from(HOSTILE_ITEMS)), max_size=12))
            return profile, b"[" + b",".join(items) + b"]"
        lines = [draw(prodlytics_item())] + draw(st.lists(prodlytics_line(), max_size=12))
        return profile, joined(None, lines, draw(st.booleans()))
    metadata, lines, newline = draw(apm_bodies(profile))
    return profile, joined(metadata, lines, newline)


def loose(result):
    """The outcome with a fatal error's wording reduced to its status (a codec
    library words its complaint by where its input stopped)."""
    status, accepted, invalid, errors = outcome(result)
    return status, accepted, invalid, [e if not e[4] else (e[3], e[4]) for e in errors]


@SETTINGS
@seeded
@given(
    case=any_body(),
    codec=st.sampled_from(CODECS),
    cut=st.floats(0.0, 1.0),
    limit=st.one_of(st.none(), st.integers(1, 4000)),
    cuts=st.lists(st.integers(0, 1 << 14), max_size=30),
)
def test_truncated_or_limited_bodies_lose_nothing_before_the_cut(case, codec, cut, limit, cuts):
    """A body cut anywhere or stopped by a small body limit: the events delivered
    are the whole body's first events, every line complete before the stop is
    delivered, at most 5 + 1 errors, the same at any chunking."""
    profile, body = case
    limits = ndintake.Limits(max_body_size=limit, max_event_size=5_000_000 if profile == "prodlytics" else 307_200) if limit else None
    full_payload = compress(body, codec)
    payload = full_payload[: int(len(full_payload) * cut)]
    full, full_events = feed([full_payload], profile, DECLARED[codec])
    result, events = feed([payload], profile, DECLARED[codec], limits=limits)
    chunked, chunked_events = feed(split(payload, cuts), profile, DECLARED[codec], limits=limits)
    check(result, events, profile)
    check(chunked, chunked_events, profile)
    plain = codec in ("identity", "sniff")
    assert (outcome if plain else loose)(chunked) == (outcome if plain else loose)(result)
    assert events_of(chunked_events) == events_of(events)
    got, expected = events_of(events), events_of(full_events)
    if not plain:  # only complete lines come out of a codec before its error
        assert got == expected[: len(got)]
        return
    # uncompressed: the last event may come from a line cut short at its end
    assert got[:-1] == expected[: max(len(got) - 1, 0)]
    if body.startswith(b"["):
        return
    stop = min(len(payload), limit or len(payload))
    ends = [i for i, byte in enumerate(body) if byte == 0x0A]  # line n ends at ends[n - 1]
    complete = [e for e in expected if e[3] <= len(ends) and ends[e[3] - 1] < stop]
    assert got[: len(complete)] == complete


# -- the seeded CI run of the byte-level fuzz ----------------------------------------------------

PREFIXES = (b"", META + b"\n", V3_METADATA + b"\n", b"[", b"{\n", ITEM + b"\n", b"[" + ITEM + b",")


@SETTINGS
@seeded
@given(
    profile=st.sampled_from(["apm", "rum", "prodlytics"]),
    codec=st.sampled_from(CODECS + ["compress", "gzip, zstd"]),
    prefix=st.sampled_from(PREFIXES),
    data=st.binary(max_size=400),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), max_size=3),
    compressed=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 12), max_size=20),
)
def test_fuzz_any_bytes_any_profile_any_codec(profile, codec, prefix, data, flips, compressed, cuts):
    """Anything at all, compressed or not, bytes flipped: no exception, the
    invariants, the same result at any chunking (the fatal error's wording aside
    where a codec library speaks)."""
    payload = prefix + data
    if compressed and codec in DECLARED:
        payload = compress(payload, codec)
    payload = bytearray(payload)
    for at, mask in flips:
        if payload:
            payload[at % len(payload)] ^= mask
    payload = bytes(payload)
    declared = DECLARED.get(codec, codec)
    whole, whole_events = feed([payload], profile, declared)
    chunked, chunked_events = feed(split(payload, cuts), profile, declared)
    bytewise, bytewise_events = feed(chunks_of(payload, 1), profile, declared)
    for result, events in ((whole, whole_events), (chunked, chunked_events), (bytewise, bytewise_events)):
        check(result, events, profile)
        assert result.status in (202, 400, 413, 415, 500)
    compare = outcome if declared in (None, "identity") and not payload.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd")) and not _zlib_head(payload) else loose
    assert compare(chunked) == compare(whole)
    assert compare(bytewise) == compare(whole)
    assert events_of(chunked_events) == events_of(whole_events) == events_of(bytewise_events)


def _zlib_head(payload: bytes) -> bool:
    return len(payload) >= 2 and payload[0] & 0x0F == 8 and (payload[0] << 8 | payload[1]) % 31 == 0

