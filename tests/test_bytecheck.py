"""The compiled byte scanner (``ndintake.core.bytecheck``): built, never looser than
the path that parses every line, robust to any bytes, and as strict as it says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndintake
from ndintake.core import bytecheck
from ndintake.profiles import items as _items
from ndintake.profiles.apm import typed as _typed
from ndintake.profiles.base import APM
from conftest import load, realistic_corpus, v2_files
from slowpath import slow_result
from test_backends import _paths, mutate

CHECKED = tuple(APM.events.items())  # v2 and RUM v3 keys, as the reader checks them
SPAN = b'{"span": {"id": "a", "trace_id": "b", "parent_id": "c", "name": "n", "type": "t", "duration": 1.5, "start": 1%b}}'


@pytest.fixture(scope="module")
def scanner() -> Any:
    assert bytecheck.available(), "the C extension ndintake.core._bytecheck is not built"
    check = _typed.envelope_check(CHECKED)
    assert bytecheck.is_scanner(check)
    return check


def _never_looser(scanner: Any, line: bytes) -> None:
    key = scanner(line)
    if key is not None:
        accepted, invalid, dropped = slow_result(line)
        assert invalid == 0 and accepted + dropped >= 1, line  # a metricset may be dropped, never refused
        assert key == "x" or accepted + dropped == 1, line  # a RUM v3 transaction is several events
        assert next(iter(orjson.loads(line))) == key


def _lines() -> Iterator[bytes]:
    yield from realistic_corpus(200_000).splitlines()[1:]
    for name in v2_files() + ["intake-v3/rum_errors.ndjson", "intake-v3/rum_events.ndjson"]:
        yield from (line for line in load(name).splitlines()[1:] if line.strip())


LINES = list(dict.fromkeys(_lines()))


def _event(line: bytes) -> tuple[str, dict[str, Any]] | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is dict and len(obj) == 1 and type(next(iter(obj.values()))) is dict:
        return next(iter(obj.items()))
    return None


EVENTS = [event for event in map(_event, LINES) if event is not None]


def test_the_reference_lines_are_taken_where_the_slow_path_takes_them(scanner: Any) -> None:
    taken = 0
    for line in LINES:
        _never_looser(scanner, line)
        taken += scanner(line) is not None
    assert taken >= 0.9 * len(LINES)


def test_heavy_is_taken_whole(scanner: Any) -> None:
    """Fields the schema does not name are allowed, as the schema allows them."""
    lines = load("intake-v2/heavy.ndjson").splitlines()[1:]
    assert all(scanner(line) for line in lines if line.strip())


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(LINES), st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(["insert", "delete", "replace"]),
                                                   st.binary(min_size=1, max_size=3)), min_size=1, max_size=3))
def test_never_looser_on_mutated_bytes(line: bytes, edits: list[tuple[int, str, bytes]]) -> None:
    """Bytes inserted, deleted or replaced anywhere in a real line: the scanner
    never crashes, and what it takes the slow path takes."""
    check = _typed.envelope_check(CHECKED)
    data = bytearray(line)
    for where, how, blob in edits:
        at = where % (len(data) + 1)
        if how == "insert":
            data[at:at] = blob
        elif how == "delete":
            del data[at : at + len(blob)]
        else:
            data[at : at + len(blob)] = blob
    _never_looser(check, bytes(data).replace(b"\n", b" "))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(EVENTS), st.text(max_size=6), JSON)
def test_never_looser_with_any_value_under_any_key(kind_event: tuple[str, Any], key: str, value: Any) -> None:
    """Any JSON value set at a line's top level or inside its event object."""
    check = _typed.envelope_check(CHECKED)
    kind, event = kind_event[0], dict(kind_event[1])
    event[key] = value
    _never_looser(check, json.dumps({kind: event}).encode())
    _never_looser(check, json.dumps({kind: event, key: value}).encode())


@pytest.mark.parametrize(
    "line",
    [
        SPAN % b', "name": "m"',  # a repeated key
        SPAN.replace(b'"name"', b'"n\\u0061me"') % b"",  # an escaped key
        SPAN.replace(b'"span"', b'"sp\\u0061n"') % b"",
        SPAN % b', "x": ' + b"[" * 70 + b"]" * 70,  # deeper than the scanner goes
        SPAN % b', "x": 1234567890123456789',  # 19 digits
        SPAN % b', "x": 1e400',
        SPAN % b', "x": "\\ud800"',
        SPAN % b', "x": "\\udc00\\ud800"',
        SPAN % b', "x": "\xed\xa0\x80"',  # a surrogate in UTF-8
        SPAN % b', "x": "\xc0\xaf"',  # an overlong
        SPAN % b', "x": "\x01"',
        SPAN % b', "x": 01',
        SPAN % b', "x": -',
        SPAN % b', "x": 1.',
        SPAN % b', "x": tru',
        SPAN % b"," ,
        SPAN % b"" + b",",
        b"\xef\xbb\xbf" + SPAN % b"",  # a BOM
        SPAN.replace(b'"duration": 1.5', b'"duration": null') % b"",  # null for a required field
        SPAN.replace(b'"start": 1', b'"start": 1, "sync": "yes"') % b"",
        b'{"span": null}',
        b'{"span": {}}',
        b"{}",
        b"[]",
        b"",
    ],
)
def test_refuses_what_it_does_not_vouch_for(scanner: Any, line: bytes) -> None:
    assert scanner(line) is None


def test_takes_what_the_schema_allows(scanner: Any) -> None:
    assert scanner(SPAN % b"") == "span"
    assert scanner(b" \t" + SPAN % b', "x": {"y": [1, 2.5e3, "\\u00e9\\ud83d\\ude00", null, true]}' + b" \r") == "span"
    assert scanner(SPAN % b', "name": "\xc3\xa9\xf0\x9f\x98\x80"') is None  # name twice
    assert scanner(SPAN.replace(b'"name": "n"', b'"name": "\xc3\xa9\xf0\x9f\x98\x80"') % b"") == "span"


def test_counts_code_points_as_the_schema_does(scanner: Any) -> None:
    """maxLength counts code points, an escape or a surrogate pair as one."""
    for text, taken in ((b"\xc3\xa9" * 1024, True), (b"\xc3\xa9" * 1025, False), (b"\\ud83d\\ude00" * 1024, True),
                        (b"\\n" * 1025, False)):
        line = SPAN.replace(b'"name": "n"', b'"name": "' + text + b'"') % b""
        assert (scanner(line) is not None) == taken
        assert slow_result(line)[0] == taken


def test_bad_programs_are_refused() -> None:
    from ndintake.core import _bytecheck

    with pytest.raises(ValueError):
        _bytecheck.Checker(((0, 0, -1, None, None, None, None, 0, 0, 5, 0, -1, (), (), False, -1, None, -1, 0, -1),),
                           ())
    with pytest.raises(TypeError):
        _bytecheck.Checker("nodes", ())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _typed.envelope_check(CHECKED)("a str")  # type: ignore[arg-type]
    checker = _bytecheck.Checker((), ())
    with pytest.raises(TypeError):
        checker.__init__((), ())  # type: ignore[misc]
    assert checker(b"{}") is None
    assert _bytecheck.Checker.__new__(_bytecheck.Checker)(b'{"a": 1}') is None  # never initialised: takes nothing


# -- the items reader (prodlytics, profiles defined from schemas) ---------------------------------

ORDER = {
    "type": "object",
    "required": ["type", "id", "total"],
    "properties": {
        "type": {"const": "order"},
        "id": {"type": "string", "minLength": 1, "maxLength": 8},
        "total": {"type": "number", "minimum": 0},
        "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"},
                                                                               "qty": {"type": "integer"}}}},
        "note": {"type": ["string", "null"], "pattern": "^[a-z ]*$"},
    },
}
ITEM_PROFILES = {
    "one kind": ndintake.define_profile("scan-one", {"order": ORDER}, classify=None),
    "envelopes": ndintake.define_profile("scan-envelope", {"order": ORDER, "refund": {"type": "object"}}),
    "field": ndintake.define_profile(  # refund does not name the field: pinned by the scanner
        "scan-field", {"order": ORDER, "refund": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}},
        classify="field:type"),
    "prodlytics": "prodlytics",
}
ITEM_VALUES = st.fixed_dictionaries(
    {"type": st.sampled_from(["order", "refund", 1]), "id": st.text(max_size=9), "total": st.integers(-2, 9) | st.floats(-1, 9)},
    optional={"lines": st.lists(st.fixed_dictionaries({}, optional={"sku": st.text(max_size=3) | st.integers(),
                                                                    "qty": st.integers(-5, 5) | st.just(1.0)}), max_size=3),
              "note": st.none() | st.text(alphabet="ab Z", max_size=4), "extra": JSON},
)


def _items_run(profile: Any, body: bytes, scan: bool) -> tuple[Any, ...]:
    saved = _items._scanner
    if not scan:
        _items._scanner = lambda profile: (None, {})  # type: ignore[assignment]
    try:
        stream = ndintake.IntakeStream(profile=profile)
        events = stream.feed(body)
        result = stream.close()
    finally:
        _items._scanner = saved
    events += result.final_events
    errors = [(e.message, e.document, e.line, e.status) for e in result.errors]
    return result.status, result.accepted, result.invalid, errors, [(e.kind, e.data, e.raw, e.line) for e in events]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(ITEM_PROFILES)), st.lists(ITEM_VALUES, min_size=1, max_size=8), st.booleans())
def test_items_same_result_with_the_scanner(name: str, values: list[Any], as_array: bool) -> None:
    profile = ITEM_PROFILES[name]
    if name == "envelopes":
        values = [{value["type"] if isinstance(value["type"], str) else "x": value} for value in values]
    dumped = [json.dumps(value).encode() for value in values]
    body = b"[" + b", ".join(dumped) + b"]" if as_array else b"\n".join(dumped) + b"\n"
    with_scan = _items_run(profile, body, scan=True)
    assert with_scan == _items_run(profile, body, scan=False)


def test_items_the_scanner_takes_prodlytics_and_schema_items() -> None:
    from ndintake.core.profile import PROFILES

    for profile in (PROFILES["prodlytics"], ITEM_PROFILES["one kind"], ITEM_PROFILES["envelopes"], ITEM_PROFILES["field"]):
        check, scanned = _items._scanner(profile)  # type: ignore[arg-type]
        assert bytecheck.is_scanner(check) and scanned
    captures = sorted((Path(__file__).parent / "data" / "datadog" / "client-captures").glob("*.body.bin"))
    assert captures
    for path in captures:
        body = path.read_bytes()
        assert _items_run("prodlytics", body, scan=True) == _items_run("prodlytics", body, scan=False)
        assert _items._scanner(PROFILES["prodlytics"])[0](body.strip()) == "prodlytics"  # type: ignore[misc]
    lazy = ndintake.IntakeStream(profile=ITEM_PROFILES["envelopes"]).feed(b'{"order": {"type": "order", "id": "a", "total": 1}}\n')
    assert [(e.data_parsed, e.raw_is_data, e.data) for e in lazy] == [(False, True, {"type": "order", "id": "a", "total": 1})]
    check = _items._scanner(ITEM_PROFILES["field"])[0]  # type: ignore[arg-type]
    assert check is not None
    assert [check(line) for line in (b'{"type": "refund", "id": "r"}', b'{"id": "r", "type": "order", "total": 2}',
                                      b'{"type": "coupon", "id": "r"}', b'{"id": "r"}', b'{"type": "refund", "id": 1}')] == [
        "refund", "order", None, None, None]


CAPTURES = [json.loads(path.read_bytes()) for path in
            sorted((Path(__file__).parent / "data" / "datadog" / "client-captures").glob("*.body.bin"))]
MUTATIONS = st.sampled_from(
    [None, 0, -1, 1.0, 1.5, 2**63, 10**20, True, "", "x" * 300, "x" * 5000, "a*b", "\ud800", [], {}, ["x"],
     {"k": "v"}, "DROP"]
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CAPTURES), st.lists(st.tuples(st.integers(min_value=0), MUTATIONS), max_size=3),
       st.sampled_from(["object", "array", "ndjson"]))
def test_prodlytics_same_result_with_the_scanner(capture: Any, changes: list[tuple[int, Any]], form: str) -> None:
    """Datadog's client captures with up to three fields replaced or dropped."""
    value = json.loads(json.dumps(capture))
    for where, replacement in changes:
        paths = [p for p in _paths(value) if p]
        if paths:
            mutate(value, paths[where % len(paths)], json.loads(json.dumps(replacement)))
    item = json.dumps(value).encode("utf-8", "surrogatepass")
    body = {"object": item, "array": b"[" + item + b"," + item + b"]", "ndjson": item + b"\n" + item + b"\n"}[form]
    assert _items_run("prodlytics", body, scan=True) == _items_run("prodlytics", body, scan=False)


PATTERNS = ["^[a-zA-Z0-9 _-]+$", '^[^*"]*$', "^[+-]?[0-9]+$", "^[a-c]*$", "^[^a-c]+$", "^[.]+$"]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PATTERNS), st.text(alphabet=st.sampled_from('abcxyzAZ09 _-+*".\\\n\té€😀'), max_size=8))
def test_patterns_mean_what_re_search_means(pattern: str, text: str) -> None:
    """Character classes are read as a table of bytes, other patterns call ``re``: both
    take a string exactly when ``re.search`` finds the pattern in it (an escaped
    string is left to the slow path)."""
    import re

    check = bytecheck.item_checker([("k", {"type": "object", "required": ["s"],
                                           "properties": {"s": {"type": "string", "pattern": pattern}}})])
    assert check is not None
    line = json.dumps({"s": text}, ensure_ascii=False).encode()
    found = re.search(pattern, text) is not None
    if b"\\" in line:
        assert check(line) is None
    else:
        assert (check(line) == "k") == found, (pattern, text)
    keys = bytecheck.item_checker([("k", {"type": "object", "patternProperties": {pattern: {"type": "integer"}},
                                          "additionalProperties": False})])
    assert keys is not None
    line = json.dumps({text: 1}, ensure_ascii=False).encode()
    if b"\\" not in line:
        assert (keys(line) == "k") == found, (pattern, text)


@pytest.mark.parametrize(
    ("schema", "taken", "refused"),
    [
        # a required key the properties do not name must still be there
        ({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string"}}},
         [b'{"a": "x", "b": 1}'], [b'{"a": "x"}']),
        ({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string"}},
          "additionalProperties": {"type": "integer"}}, [b'{"a": "x", "b": 1}'], [b'{"a": "x", "b": "y"}']),
        ({"type": "object", "required": ["b"], "properties": {"a": {"type": "string"}}, "additionalProperties": False},
         [], [b'{"a": "x", "b": 1}', b'{"a": "x"}']),
        # values the node table cannot take, or patterns re cannot compile: the field is refused
        ({"type": "object", "properties": {"a": {"type": "string", "maxLength": 2.5}, "c": {"type": "integer"}}},
         [b'{"c": 1}'], [b'{"a": "x", "c": 1}']),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<x"}, "c": {"type": "integer"}}},
         [b'{"c": 1}'], [b'{"a": "x", "c": 1}']),
        ({"type": "object", "properties": {"a": {"type": "integer", "maximum": 1e30, "minimum": 0.5}}},
         [b'{"a": 1}'], [b'{"a": 0}', b'{"a": 1.0}']),
        # "required when": an object with nothing set still makes the condition hold
        ({"type": "object", "properties": {"a": {"type": "object", "properties": {"x": {"type": "string"}}},
                                           "b": {"type": "string"}, "c": {"type": "integer"}},
          "allOf": [{"if": {"properties": {"a": {"type": "object"}}, "required": ["a"]},
                     "then": {"properties": {"b": {"type": "string"}}, "required": ["b"]}}]},
         [b'{"a": {}, "c": 1, "b": "y"}', b'{"c": 1}'], [b'{"a": {}, "c": 1}', b'{"a": {"x": "y"}, "c": 1}']),
    ],
)
def test_schema_constructs_are_never_loosened(schema: Any, taken: list[bytes], refused: list[bytes]) -> None:
    from ndintake.core.schemas import Validator

    check = bytecheck.item_checker([("k", schema)])
    try:
        validator: Validator | None = Validator.from_schema("k", schema)
    except ndintake.NdintakeError:  # a schema no profile can have: the scanner still does not fail
        validator = None
    for line in taken:
        assert check is not None and check(line) == "k", line
        assert validator is None or validator.refusal(orjson.loads(line)) is None  # the slow path takes it too
    for line in refused:
        assert check is None or check(line) is None, line


# -- random schemas: what the scanner takes, the schema's validator takes ----------------------

KEYS = ["a", "b", "c", "type", "é"]
LEAVES = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "null"])}),
    st.fixed_dictionaries({"type": st.just("string")},
                          optional={"maxLength": st.integers(0, 4), "minLength": st.integers(0, 2),
                                    "pattern": st.sampled_from(PATTERNS + ["^a", "b$", "[0-9]"])}),
    st.fixed_dictionaries({"type": st.sampled_from(["integer", "number", ["integer", "null"], ["number", "string"]])},
                          optional={"minimum": st.integers(-2, 2) | st.floats(-2, 2), "maximum": st.integers(-2, 3)}),
    st.fixed_dictionaries({"enum": st.lists(st.sampled_from(["x", "y", None]), min_size=1, max_size=3),
                           "type": st.sampled_from(["string", ["string", "null"]])}),
    st.fixed_dictionaries({"const": st.sampled_from(["x", None, 1, True])}),
)


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def build(properties: dict[str, Any], required: list[str], extra: Any, rule: int) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "properties": properties, "required": sorted(set(required))}
        if extra != "absent":
            schema["additionalProperties"] = extra
        names = sorted(properties)
        if rule == 1 and len(names) >= 2:
            schema["anyOf"] = [{"properties": {name: {"type": "string"}}, "required": [name]} for name in names[:2]]
        elif rule == 2 and len(names) >= 2:
            schema["allOf"] = [{"if": {"properties": {names[0]: {"type": "integer"}}, "required": [names[0]]},
                                "then": {"properties": {names[1]: {"type": "string"}}, "required": [names[1]]}}]
        return schema

    return st.builds(build, st.dictionaries(st.sampled_from(KEYS), children, max_size=4), st.lists(st.sampled_from(KEYS), max_size=3),
                     st.sampled_from(["absent", False, True, {"type": "integer"}]), st.integers(0, 2)) | st.builds(
        lambda items, low, high: {"type": "array", "items": items, "minItems": low, "maxItems": high},
        children, st.integers(0, 1), st.integers(1, 3)) | st.builds(
        lambda values: {"type": "object", "additionalProperties": values}, children)


SCHEMAS = st.recursive(LEAVES, _objects, max_leaves=10)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([1.0, 0.5, -1.5, 2]) | st.sampled_from(["", "x", "y", "ab", "a1", "é", "xxxxx", "1"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    max_leaves=12,
)


def _instance(draw: Any, schema: Any, depth: int = 0) -> Any:
    """A value meant to fit ``schema`` (often it does not quite: any value, one time in eight)."""
    if depth > 4 or not isinstance(schema, dict) or draw(st.integers(0, 7)) == 0:
        return draw(VALUES)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    kinds = schema.get("type", "object")
    kind = draw(st.sampled_from(kinds)) if isinstance(kinds, list) else kinds
    if kind == "object":
        out = {key: _instance(draw, sub, depth + 1) for key, sub in schema.get("properties", {}).items()
               if key in schema.get("required", ()) or draw(st.booleans())}
        extra = schema.get("additionalProperties", True)
        for key in draw(st.lists(st.sampled_from(KEYS), max_size=2)):
            out.setdefault(key, _instance(draw, extra if isinstance(extra, dict) else {}, depth + 1))
        return out
    if kind == "array":
        return [_instance(draw, schema.get("items"), depth + 1) for _ in range(draw(st.integers(0, 3)))]
    if kind in ("integer", "number"):
        return draw(st.integers(-3, 3) | (st.sampled_from([0.5, 1.5, 2.0]) if kind == "number" else st.nothing()))
    if kind == "string":
        return draw(st.sampled_from(["", "x", "ab", "a1", "é", "y", "abc", "1", "a-b c"]))
    return {"boolean": True, "null": None}.get(kind)


@settings(max_examples=2500, deadline=None)
@given(st.builds(lambda schema: {"type": "object", "properties": {"a": schema, "b": {"type": "integer"}}, "required": ["b"]}, SCHEMAS)
       | _objects(SCHEMAS), st.data())
def test_random_schemas_never_loosened(schema: dict[str, Any], data: Any) -> None:
    """Random schemas of what the scanner translates (and some it does not), and
    objects made to fit them more or less: whatever the scanner takes, the
    schema's validator takes."""
    from ndintake.core.schemas import Validator

    try:
        validator = Validator.from_schema("k", schema)
    except ndintake.NdintakeError:
        return
    value = _instance(data.draw, schema)
    check = bytecheck.item_checker([("k", schema)])
    if check is not None and check(json.dumps(value, ensure_ascii=False).encode()) == "k":
        assert validator.refusal(value) is None, (schema, value)
