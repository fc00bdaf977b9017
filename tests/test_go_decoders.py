"""Decisions as APM Server's Go decoders make them (issue 12).

Each case is derived from elastic/apm-data at commit
0e26f9f0184b29723c13a5805c5276d95b039d2f (the file APM Server's go.mod pins), from
the generated ``IsSet()`` / ``validate()`` methods of
``input/elasticapm/internal/modeldecoder/{v2,rumv3}/model_generated.go`` (``v2:L<n>``
and ``v3:L<n>`` below are lines of those files) and ``nullable/nullable.go``. The
cases are written for ndintake, not copied: a body (a metadata line and event
lines), and the status, accepted count and number of errors APM Server gives it.
Every case is run whole and byte by byte, and each event line's decision is
checked on both validation backends and on the batch check.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from ndintake.core import schemas as _schemas
from ndintake.profiles.apm.envelope import parse_line
from ndintake.profiles.base import PROFILES
from conftest import run

TRACE = "0123456789abcdef0123456789abcdef"
META = {"service": {"name": "shop", "agent": {"name": "python", "version": "6.0"}}}
TRANSACTION = {"id": "0123456789abcdef", "trace_id": TRACE, "type": "request", "duration": 1.5,
               "span_count": {"started": 1}}
SPAN = {"id": "0123456789abcdef", "trace_id": TRACE, "parent_id": "0123456789abcdef", "name": "SELECT",
        "type": "db", "duration": 1.5, "start": 2.0}
ERROR = {"id": "0123456789abcdef", "log": {"message": "boom"}}
LOG = {"message": "hello"}
METRICSET = {"samples": {"a": {"value": 1}}}
V3_META = {"se": {"n": "shop-ui", "a": {"n": "rum-js", "ve": "5.16.0"}}}
V3_SPAN = {"id": "aaaaaaaaaaaaaaaa", "n": "GET /api", "t": "external", "s": 1.5, "d": 2.0}
X = {"id": "ec2e280be8345240", "tid": TRACE, "n": "page-load", "t": "page-load", "d": 295, "yc": {"sd": 1},
     "y": [V3_SPAN]}
V3_ERROR = {"id": "3661352868c17c78b773d2f1beae6d41", "ex": {"mg": "boom"}}
BASE = {"metadata": META, "transaction": TRANSACTION, "span": SPAN, "error": ERROR, "log": LOG,
        "metricset": METRICSET, "m": V3_META, "x": X, "e": V3_ERROR}
DROP = object()


def with_fields(key: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The base object of ``key`` with ``changes`` ({"a.b": value}; DROP deletes;
    ``"flat:a.b"`` is the dotted key itself, as logs have them)."""
    value = copy.deepcopy(BASE[key])
    for path, new in changes.items():
        *parents, last = [path[5:]] if path.startswith("flat:") else path.split(".")
        target = value
        for part in parents:
            target = target.setdefault(part, {})
        if new is DROP:
            target.pop(last, None)
        else:
            target[last] = new
    return value


def line(key: str, changes: dict[str, Any] | None = None, raw: bytes | None = None) -> bytes:
    if raw is not None:
        return raw
    return orjson.dumps({key: with_fields(key, changes or {})})


def meta_line(changes: dict[str, Any] | None = None, v3: bool = False) -> bytes:
    return line("m" if v3 else "metadata", changes)


#: (case id, upstream reference, body lines, (status, accepted, errors)).
#: A body's first line is its metadata line.
CASES: list[tuple[str, str, list[bytes], tuple[int, int, int]]] = []


def case(name: str, ref: str, lines: list[bytes], expected: tuple[int, int, int]) -> None:
    CASES.append((name, ref, lines, expected))


def event_case(name: str, ref: str, key: str, changes: dict[str, Any], ok: bool) -> None:
    """One event line after a valid metadata line: accepted (202, 1) or refused (400, 0, 1)."""
    meta = meta_line(v3=key in ("x", "e"))
    case(name, ref, [meta, line(key, changes)], (202, 1 + (key == "x"), 0) if ok else (400, 0, 1))


def meta_case(name: str, ref: str, changes: dict[str, Any], ok: bool, v3: bool = False) -> None:
    """A metadata line then a valid event: (202, 1) or a fatal (400, 0, 1)."""
    event = line("e") if v3 else line("span")
    case(name, ref, [meta_line(changes, v3), event], (202, 1, 0) if ok else (400, 0, 1))


# -- family 1: a nested object is validated only when set (IsSet) ---------------------------------

meta_case("process empty", "v2:L661 metadataProcess.IsSet, L665", {"process": {}}, True)
meta_case("process all null", "v2:L661", {"process": {"title": None, "pid": None, "ppid": None}}, True)
meta_case("process empty argv", "v2:L661 len(Argv)", {"process": {"argv": []}}, True)
meta_case("process unknown key only", "v2:L661", {"process": {"foo": 1}}, True)
meta_case("process title without pid", "v2:L670 'pid' required", {"process": {"title": "x"}}, False)
meta_case("process argv without pid", "v2:L661, L670", {"process": {"argv": ["a"]}}, False)
meta_case("process with pid", "v2:L665", {"process": {"pid": 1}}, True)
meta_case("cloud empty", "v2:L318 metadataCloud.IsSet", {"cloud": {}}, True)
meta_case("cloud nested empty", "v2:L318, L382", {"cloud": {"account": {}, "instance": {}}}, True)
meta_case("cloud region without provider", "v2:L350 'provider' required", {"cloud": {"region": "eu"}}, False)
meta_case("cloud account id without provider", "v2:L382, L350", {"cloud": {"account": {"id": "1"}}}, False)
meta_case("system nested empty", "v2:L466, L512, L527", {"system": {"container": {}, "kubernetes": {"node": {}}}}, True)
meta_case("service empty", "v2:L46 'metadata' required, L82", {"service": {}}, False)
meta_case("service agent empty", "v2:L145 'agent' required", {"service.agent": {}}, False)
meta_case("service agent nulls", "v2:L207, L145", {"service.agent": {"name": None, "version": None}}, False)
meta_case("service language empty", "v2:L258, L262", {"service.language": {}}, True)
meta_case("service language without name", "v2:L267", {"service.language": {"version": "3"}}, False)
meta_case("service runtime empty", "v2:L294, L298", {"service.runtime": {}}, True)
meta_case("service runtime without version", "v2:L309", {"service.runtime": {"name": "cpython"}}, False)
meta_case("service framework empty", "v2:L240", {"service.framework": {}}, True)
meta_case("service node empty", "v2:L279", {"service.node": {}}, True)
meta_case("user empty", "v2:L591", {"user": {}}, True)
meta_case("network connection empty", "v2:L626, L646", {"network": {"connection": {}}}, True)
meta_case("labels empty", "v2:L58 len(Labels)", {"labels": {}}, True)
meta_case("v3 language empty", "v3:L218, L222", {"se.la": {}}, True, v3=True)
meta_case("v3 language without name", "v3:L227", {"se.la": {"ve": "1"}}, False, v3=True)
meta_case("v3 runtime empty", "v3:L239", {"se.ru": {}}, True, v3=True)
meta_case("v3 agent empty", "v3:L119 'a' required", {"se.a": {}}, False, v3=True)
meta_case("v3 user empty", "v3:L263", {"u": {}}, True, v3=True)
meta_case("v3 network connection empty", "v3:L298, L318", {"n": {"c": {}}}, True, v3=True)

event_case("context empty", "v2:L899 context.IsSet", "transaction", {"context": {}}, True)
event_case("request empty", "v2:L1261 contextRequest.IsSet", "transaction", {"context.request": {}}, True)
event_case("request nulls", "v2:L1261", "transaction", {"context.request": {"method": None, "url": None}}, True)
event_case("request unknown key", "v2:L1261", "transaction", {"context.request": {"foo": "bar"}}, True)
event_case("request empty env and cookies", "v2:L1262 len(Env), len(Cookies)", "transaction",
           {"context.request": {"env": {}, "cookies": {}}}, True)
event_case("request empty url and socket", "v2:L1262, L1305, L1355", "transaction",
           {"context.request": {"url": {}, "socket": {}}}, True)
event_case("request empty headers is set", "nullable.go HTTPHeader.IsSet; v2:L1285", "transaction",
           {"context.request": {"headers": {}}}, False)
event_case("request empty body is set", "nullable.go Interface.IsSet; v2:L1285", "transaction",
           {"context.request": {"body": {}}}, False)
event_case("request url without method", "v2:L1285 'method' required", "transaction",
           {"context.request": {"url": {"full": "http://x"}}}, False)
event_case("request env without method", "v2:L1262, L1285", "transaction",
           {"context.request": {"env": {"a": "b"}}}, False)
event_case("request with method", "v2:L1265", "transaction", {"context.request": {"method": "GET"}}, True)
event_case("response empty", "v2:L1422", "transaction", {"context.response": {}}, True)
event_case("message nested empty", "v2:L1367, L1395, L1410", "transaction",
           {"context.message": {"queue": {}, "age": {}}}, True)
event_case("cloud origin empty", "v2:L1177, L1197", "transaction", {"context.cloud": {"origin": {"account": {}}}}, True)
event_case("service target empty", "v2:L1162, L1166", "transaction", {"context.service": {"target": {}}}, True)
event_case("service target nulls", "v2:L1162", "transaction", {"context.service.target": {"type": None}}, True)
event_case("service target name", "v2:L1168", "transaction", {"context.service.target": {"name": "db"}}, True)
event_case("service agent empty", "v2:L980, L1060", "transaction", {"context.service": {"agent": {}}}, True)
event_case("empty tags and custom", "v2:L900 len(Custom), len(Tags)", "transaction",
           {"context": {"tags": {}, "custom": {}}}, True)
event_case("session empty", "v2:L2279 transactionSession.IsSet", "transaction", {"session": {}}, True)
event_case("session null id", "v2:L2279", "transaction", {"session": {"id": None}}, True)
event_case("session sequence without id", "v2:L2288 'id' required", "transaction", {"session": {"sequence": 1}}, False)
event_case("longtask empty", "v2:L2300, L2329", "transaction", {"experience": {"longtask": {}}}, True)
event_case("longtask count only", "v2:L2344 'max' required", "transaction",
           {"experience": {"longtask": {"count": 1}}}, False)
event_case("span_count empty", "v2:L2140 'span_count' required", "transaction", {"span_count": {}}, False)
event_case("span_count null", "v2:L2140", "transaction", {"span_count": None}, False)
event_case("span_count unknown only", "v2:L2359, L2140", "transaction", {"span_count": {"foo": 1}}, False)
event_case("span_count dropped only", "v2:L2365 'started' required", "transaction",
           {"span_count": {"dropped": 1}}, False)
event_case("marks empty", "v2:L2176", "transaction", {"marks": {}}, True)
event_case("faas trigger empty", "v2:L1604, L1624", "transaction", {"faas": {"trigger": {}}}, True)
event_case("composite empty", "v2:L1812 spanComposite.IsSet, L1816", "span", {"composite": {}}, True)
event_case("composite nulls", "v2:L1812", "span", {"composite": {"count": None, "sum": None}}, True)
event_case("composite count only", "v2:L1818 'compression_strategy' required", "span", {"composite": {"count": 2}}, False)
event_case("destination service empty", "v2:L1942, L1946", "span",
           {"context": {"destination": {"service": {}}}}, True)
event_case("destination service without resource", "v2:L1954 'resource' required", "span",
           {"context": {"destination": {"service": {"name": "db"}}}}, False)
event_case("destination empty", "v2:L1919", "span", {"context": {"destination": {}}}, True)
event_case("span service target empty", "v2:L1839, L1162", "span", {"context": {"service": {"target": {}}}}, True)
event_case("span http response empty", "v2:L1966, L2009", "span", {"context": {"http": {"response": {}}}}, True)
event_case("span db empty", "v2:L1904", "span", {"context": {"db": {}}}, True)
event_case("exception empty beside log", "v2:L830 errorException.IsSet, L708", "error", {"exception": {}}, True)
event_case("exception unknown only beside log", "v2:L830", "error", {"exception": {"foo": 1}}, True)
event_case("exception empty alone", "v2:L708 requires at least one of 'exception;log'", "error",
           {"exception": {}, "log": DROP}, False)
event_case("log empty beside exception", "v2:L783, L708", "error", {"exception": {"type": "E"}, "log": {}}, True)
event_case("log empty alone", "v2:L708", "error", {"log": {}}, False)
event_case("exception code only", "v2:L836 requires 'message;type'", "error", {"exception": {"code": 1}}, False)
event_case("error transaction empty", "v2:L881", "error", {"transaction": {}}, True)
event_case("error request empty", "v2:L1261", "error", {"context": {"request": {}}}, True)
event_case("log unknown keys only", "v2:L2374 logRoot, L2385 'log' required", "log", {"message": DROP, "foo": 1}, False)
event_case("log empty", "v2:L2385", "log", {"message": DROP}, False)
event_case("v3 session empty", "v3:L1276, L1280", "x", {"ses": {}}, True)
event_case("v3 session sequence only", "v3:L1282 'id' required", "x", {"ses": {"seq": 1}}, False)
event_case("v3 longtask empty", "v3:L1294, L1323", "x", {"exp": {"lt": {}}}, True)
event_case("v3 longtask count only", "v3:L1338", "x", {"exp": {"lt": {"count": 1}}}, False)
event_case("v3 span count empty", "v3:L900 'yc' required", "x", {"yc": {}}, False)
event_case("v3 request empty", "v3:L746, L750", "x", {"c": {"q": {}}}, True)
event_case("v3 request headers only", "v3:L758 'mt' required", "x", {"c": {"q": {"he": {"a": "b"}}}}, False)
event_case("v3 context empty", "v3:L553", "x", {"c": {}}, True)
event_case("v3 metricset samples empty", "v3:L1199 'sa' required", "x",
           {"me": [{"y": {"t": "db"}, "sa": {}}]}, False)
case("v3 metricset samples set", "v3:L1184, L1233", [meta_line(v3=True),
     line("x", {"me": [{"y": {"t": "db"}, "sa": {"ysc": {"v": 1}}}]})], (202, 3, 0))
event_case("v3 destination service empty", "v3:L1125, L1129", "x",
           {"y": [{**V3_SPAN, "c": {"dt": {"se": {}}}}]}, True)
event_case("v3 destination service without rc", "v3:L1137 'rc' required", "x",
           {"y": [{**V3_SPAN, "c": {"dt": {"se": {"n": "x"}}}}]}, False)
event_case("v3 exception empty beside log", "v3:L484, L362", "e", {"ex": {}, "log": {"mg": "m"}}, True)
event_case("v3 exception empty alone", "v3:L362", "e", {"ex": {}}, False)
event_case("v3 error context empty", "v3:L553", "e", {"c": {"q": {}, "p": {}}}, True)


# -- family 2: an enum is checked only for a non-empty value --------------------------------------

event_case("transaction outcome empty", "v2:L2102 Outcome.Val != \"\"", "transaction", {"outcome": ""}, True)
event_case("transaction outcome null", "v2:L2102", "transaction", {"outcome": None}, True)
event_case("transaction outcome success", "v2:L2104 enumOutcome", "transaction", {"outcome": "success"}, True)
event_case("transaction outcome other", "v2:L2111 enum(enumOutcome)", "transaction", {"outcome": "ok"}, False)
event_case("transaction outcome case", "v2:L2111", "transaction", {"outcome": "Success"}, False)
event_case("span outcome empty", "v2:L1693", "span", {"outcome": ""}, True)
event_case("span outcome unknown", "v2:L1693", "span", {"outcome": "unknown"}, True)
event_case("span outcome other", "v2:L1702", "span", {"outcome": "fail"}, False)
event_case("span outcome blank", "v2:L1702 (only \"\" skips the check)", "span", {"outcome": " "}, False)
event_case("dropped spans stats outcome empty", "v2:L2214", "transaction",
           {"dropped_spans_stats": [{"destination_service_resource": "db", "outcome": ""}]}, True)
event_case("dropped spans stats outcome other", "v2:L2223", "transaction",
           {"dropped_spans_stats": [{"destination_service_resource": "db", "outcome": "x"}]}, False)
event_case("v3 outcome empty", "v3:L864", "x", {"o": ""}, True)
event_case("v3 outcome failure", "v3:L864", "x", {"o": "failure"}, True)
event_case("v3 outcome other", "v3:L873", "x", {"o": "bad"}, False)
event_case("v3 span outcome empty", "v3:L991", "x", {"y": [{**V3_SPAN, "o": ""}]}, True)
event_case("v3 span outcome other", "v3:L1000", "x", {"y": [{**V3_SPAN, "o": "bad"}]}, False)


# -- family 3: timestamps, as nullable.TimeMicrosUnix decodes them -------------------------------
# nullable.go: supportedTSFormats (RFC 3339 with a Z07:00, Z0700 or Z07 offset) and the decoder
# registered for nullable.TimeMicrosUnix (numbers: microseconds; strings: one of the formats,
# else "failed to parse the provided time string"; any other type: a decode error).

TS = "nullable.go TimeMicrosUnix decoder, supportedTSFormats"
GOOD_TIMES = ["2023-05-01T10:11:12Z", "2023-05-01T10:11:12+02:00", "2023-05-01T10:11:12-0700",
              "2023-05-01T10:11:12+05", "2023-05-01T10:11:12.123456Z", "2023-05-01T10:11:12,5Z",
              "2024-02-29T23:59:59.999999999-03:30"]
BAD_TIMES = ["yesterday", "", "2023-05-01", "2023-05-01 10:11:12Z", "2023-05-01T10:11:12",
             "2023-13-01T10:11:12Z", "2023-02-30T10:11:12Z", "2023-05-01T24:00:00Z",
             "2023-05-01t10:11:12z", "2023-05-01T10:11:12+2:00", "\u0662023-05-01T10:11:12Z"]
for kind in ("transaction", "span", "error", "metricset"):
    for when in GOOD_TIMES[:4] if kind != "transaction" else GOOD_TIMES:
        event_case(f"{kind} timestamp {when}", TS, kind, {"timestamp": when}, True)
    for when in BAD_TIMES[:3] if kind != "transaction" else BAD_TIMES:
        event_case(f"{kind} timestamp {when!r}", TS + ": failed to parse", kind, {"timestamp": when}, False)
    event_case(f"{kind} timestamp micros", TS + ": NumberValue", kind, {"timestamp": 1496170422281000}, True)
    event_case(f"{kind} timestamp bool", TS + ": invalid input type", kind, {"timestamp": True}, False)
event_case("span timestamp string instead of start", "v2:L1664 start;timestamp, " + TS, "span",
           {"start": DROP, "timestamp": "2023-05-01T10:11:12Z"}, True)
event_case("log @timestamp string", "v2:L972 @timestamp; " + TS, "log", {"@timestamp": "2023-05-01T10:11:12Z"}, True)
event_case("log @timestamp micros", "v2:L972; " + TS, "log", {"@timestamp": 1496170422281000}, True)
for when in BAD_TIMES[:6]:
    event_case(f"log @timestamp {when!r}", "v2:L972; " + TS + ": failed to parse", "log", {"@timestamp": when}, False)
event_case("v3 error timestamp string", "rumv3 model.go errorEvent.Timestamp; " + TS, "e",
           {"timestamp": "2023-05-01T10:11:12Z"}, True)
event_case("v3 error timestamp bad", TS + ": failed to parse", "e", {"timestamp": "now"}, False)


# -- family 4: strings the Go decoder reads as U+FFFD, without an error ---------------------------
# json-iterator keeps bytes that are not UTF-8 (Go's encoder writes U+FFFD for each when the
# document is stored) and reads a lone surrogate escape as U+FFFD (its string reader's surrogate
# handling); the cases put them in free-text fields, where no pattern applies.

STRING_CASES = {
    "lone high surrogate at the end": (b"a\\ud83d", "a\ufffd"),
    "lone high surrogate then text": (b"\\ud83dx", "\ufffdx"),
    "lone low surrogate": (b"\\udc00", "\ufffd"),
    "two high surrogates": (b"\\ud83d\\ud83d", "\ufffd\ufffd"),
    "high surrogate then a plain escape": (b"\\ud83d\\u0041", "\ufffdA"),
    "reversed pair": (b"\\ude00\\ud83d", "\ufffd\ufffd"),
    "escaped backslash before u": (b"\\\\ud83d", "\\ud83d"),
    "escaped backslash then a lone surrogate": (b"\\\\\\ud83d", "\\\ufffd"),
    "valid pair": (b"\\ud83d\\ude00", "\U0001f600"),
    "upper-case escape": (b"\\uD83D", "\ufffd"),
    "invalid byte": (b"\xff", "\ufffd"),
    "truncated sequence": (b"\xe2\x82", "\ufffd"),
    "encoded surrogate": (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),
    "latin-1 text": (b"caf\xe9", "caf\ufffd"),
}
for what, (raw, _) in STRING_CASES.items():
    event_line = b'{"error": {"id": "0123456789abcdef", "log": {"message": "' + raw + b'"}}}'
    case(f"error message {what}", "json-iterator string reader; v2 errorLog.Message", [meta_line(), event_line],
         (202, 1, 0))
    span_line = b'{"x": ' + orjson.dumps(X)[:-1] + b', "n": "' + raw + b'"}}'
    case(f"v3 transaction name {what}", "json-iterator string reader; rumv3 transaction.Name",
         [meta_line(v3=True), span_line], (202, 2, 0))
case("metadata free text with a lone surrogate", "json-iterator; v2 metadataServiceAgent.Version",
     [b'{"metadata": {"service": {"name": "shop", "agent": {"name": "python", "version": "6\\ud800"}}}}',
      line("span")], (202, 1, 0))
case("service name with an invalid byte", "v2 metadataService.Name pattern (regexp reads U+FFFD)",
     [b'{"metadata": {"service": {"name": "sh\xffop", "agent": {"name": "python", "version": "6"}}}}',
      line("span")], (400, 0, 1))
case("type key with invalid bytes", "processor.go: an unknown event type",
     [meta_line(), b'{"\xff": {}}'], (400, 0, 1))


@pytest.mark.parametrize("what", list(STRING_CASES))
def test_string_read_as_upstream(what: str) -> None:
    """``Event.data`` holds U+FFFD where the Go decoder reads it; ``raw`` is what was sent."""
    raw, text = STRING_CASES[what]
    event_line = b'{"error": {"id": "0123456789abcdef", "log": {"message": "' + raw + b'"}}}'
    for chunk_sizes in (None, 1):
        result, events = run(_body([meta_line(), event_line]), chunk_sizes=chunk_sizes)
        assert (result.status, [e.data["log"]["message"] for e in events]) == (202, [text])
        assert events[0].raw == event_line


# -- family 5 (part): a URL port given as a string must be an integer ----------------------------

PORT = "v2:L1310-1317 contextRequestURL.validate: strconv.Atoi, 'targetType(int)'"
for port, ok in [("443", True), ("+443", True), ("-1", True), ("0443", True), (443, True), (None, True),
                 ("invalid", False), ("", False), (" 443", False), ("443 ", False), ("4.3", False),
                 ("0x1bb", False), ("1_000", False)]:
    event_case(f"transaction url port {port!r}", PORT, "transaction",
               {"context": {"request": {"method": "GET", "url": {"port": port}}}}, ok)
    event_case(f"error url port {port!r}", PORT, "error",
               {"context": {"request": {"method": "GET", "url": {"port": port}}}}, ok)


# -- family 5: integers written as floats ----------------------------------------------------------
# nullable.Int/Int64/TimeMicrosUnix read numbers with json-iterator's integer readers
# (nullable/nullable.go L48-64, L94-99): a fraction stops at assertInteger ("can not decode float
# as int"), an exponent at the next token; both are decode errors. model.go (v2) line per field.

INTEGER = "nullable.go L48-64 ReadInt/ReadInt64, json-iterator assertInteger"
for written in (1.0, 100.0, -3.0):
    event_case(f"span_count.started {written}", f"v2 model.go L1104, {INTEGER}", "transaction",
               {"span_count": {"started": written}}, False)
event_case("span_count.started integer", "v2 model.go L1104", "transaction", {"span_count": {"started": 3}}, True)
event_case("span_count.dropped 2.0", f"v2 model.go L1102, {INTEGER}", "transaction",
           {"span_count": {"started": 1, "dropped": 2.0}}, False)
event_case("response status_code 200.0", f"v2 model.go L842, {INTEGER}", "transaction",
           {"context": {"response": {"status_code": 200.0}}}, False)
event_case("response status_code 200", "v2 model.go L842", "transaction",
           {"context": {"response": {"status_code": 200}}}, True)
event_case("session sequence 1.0", f"v2 model.go L1080, {INTEGER}", "transaction",
           {"session": {"id": "s", "sequence": 1.0}}, False)
event_case("span frame lineno 3.0", f"v2 model.go L888, {INTEGER}", "span",
           {"stacktrace": [{"filename": "a.py", "lineno": 3.0}]}, False)
event_case("span frame colno 7.0", f"v2 model.go L890, {INTEGER}", "span",
           {"stacktrace": [{"filename": "a.py", "lineno": 3, "colno": 7.0}]}, False)
event_case("span destination port 5432.0", f"v2 model.go L812, {INTEGER}", "span",
           {"context": {"destination": {"address": "db", "port": 5432.0}}}, False)
event_case("span db rows_affected 0.0", f"v2 model.go L799, {INTEGER}", "span",
           {"context": {"db": {"rows_affected": 0.0}}}, False)
event_case("span composite count 2.0", f"v2 model.go L901, {INTEGER}", "span",
           {"composite": {"count": 2.0, "sum": 1.0, "compression_strategy": "exact_match"}}, False)
event_case("span timestamp 1.0", "nullable.go L94-99 TimeMicrosUnix ReadInt64", "span", {"timestamp": 1.0}, False)
event_case("span timestamp integer", "nullable.go L94-99", "span", {"timestamp": 1700000000000000}, True)
event_case("span duration 1.0 (a float field)", "v2 model.go span Duration nullable.Float64", "span",
           {"duration": 1.0}, True)
event_case("error frame lineno 1.0", f"v2 model.go L888, {INTEGER}", "error",
           {"exception": {"message": "x", "stacktrace": [{"filename": "a.py", "lineno": 1.0}]}}, False)
event_case("log origin line 12.0", f"v2 model.go L1046, {INTEGER}", "log",
           {"flat:log.origin.file.line": 12.0}, False)
meta_case("process pid 1.0", f"v2 model.go L507, {INTEGER}", {"process": {"pid": 1.0}}, False)
meta_case("process pid 1", "v2 model.go L507", {"process": {"pid": 1}}, True)
case("exponent in an integer field", f"v2 model.go L1104, {INTEGER}",
     [meta_line(), b'{"transaction":{"id":"0123456789abcdef","trace_id":"' + TRACE.encode()
      + b'","type":"request","duration":1.5,"span_count":{"started":1e2}}}'], (400, 0, 1))
case("exponent in a float field", "v2 model.go span Duration nullable.Float64",
     [meta_line(), b'{"span":{"id":"0123456789abcdef","trace_id":"' + TRACE.encode()
      + b'","parent_id":"0123456789abcdef","name":"x","type":"db","start":2,"duration":1e2}}'], (202, 1, 0))
event_case("v3 transaction duration 295.0 (a float field)", "rumv3 model.go Duration nullable.Float64", "x",
           {"d": 295.0}, True)
event_case("v3 span count started 1.0", f"rumv3 model.go SpanCount.Started nullable.Int, {INTEGER}", "x",
           {"yc": {"sd": 1.0}}, False)


# -- family 6 (part): slice elements and samples ---------------------------------------------------

FRAME = {"filename": "app.py", "lineno": 1}
event_case("dropped spans stats empty element", "v2:L2094-2096 dropped_spans_stats slice element required",
           "transaction", {"dropped_spans_stats": [{}]}, False)
event_case("dropped spans stats element of nulls", "v2:L2095, L2200", "transaction",
           {"dropped_spans_stats": [{"outcome": None}]}, False)
event_case("dropped spans stats unknown keys", "v2:L2095, L2200", "transaction",
           {"dropped_spans_stats": [{"foo": 1}]}, False)
event_case("dropped spans stats set element", "v2:L2098", "transaction",
           {"dropped_spans_stats": [{"destination_service_resource": "db"}]}, True)
event_case("dropped spans stats empty list", "v2:L2094", "transaction", {"dropped_spans_stats": []}, True)
event_case("transaction links empty element", "v2:L2061 links slice element required", "transaction",
           {"links": [{}]}, False)
event_case("span links empty element", "v2:L1718", "span", {"links": [{}]}, False)
event_case("span links element without trace_id", "v2:L1803 'trace_id' required", "span",
           {"links": [{"span_id": "0123456789abcdef"}]}, False)
event_case("span stacktrace empty frame", "v2:L1726 stacktrace slice element required", "span", {"stacktrace": [{}]}, False)
event_case("span stacktrace frame", "v2:L815, L821", "span", {"stacktrace": [FRAME]}, True)
event_case("span stacktrace frame of nulls", "v2:L815, L1726", "span", {"stacktrace": [{"filename": None}]}, False)
event_case("exception stacktrace empty frame", "v2:L862", "error",
           {"exception": {"message": "x", "stacktrace": [{}]}}, False)
event_case("exception frame without file or class", "v2:L821 'classname;filename'", "error",
           {"exception": {"message": "x", "stacktrace": [{"lineno": 1}]}}, False)
event_case("log stacktrace empty frame", "v2:L802 stacktrace slice element required", "error",
           {"log": {"message": "x", "stacktrace": [{}]}}, False)
event_case("log stacktrace frame", "v2:L802", "error", {"log": {"message": "x", "stacktrace": [FRAME]}}, True)
event_case("samples empty beside a timestamp", "v2:L1463 'samples' required", "metricset",
           {"samples": {}, "timestamp": 1496170422281000}, False)
event_case("samples empty alone", "v2:L1445 'metricset' required, L1458", "metricset", {"samples": {}}, False)
event_case("sample value null", "v2:L1466 every sample validated, L1531", "metricset", {"samples": {"a": None}}, False)
event_case("sample value empty", "v2:L1531 'value;values'", "metricset", {"samples": {"a": {}}}, False)
event_case("sample value null inside", "v2:L1531 (Value not set)", "metricset", {"samples": {"a": {"value": None}}},
           False)
event_case("sample values without counts", "v2:L1540", "metricset", {"samples": {"a": {"values": [1.0]}}}, False)
event_case("sample histogram", "v2:L1529", "metricset", {"samples": {"a": {"values": [1.0], "counts": [1]}}}, True)
event_case("v3 span empty element", "v3:L838 y slice element required", "x", {"y": [{}]}, False)
event_case("v3 metricset empty element", "v3:L846 me slice element required", "x", {"me": [{}]}, False)
event_case("v3 span frame empty", "v3:L967 st slice element required", "x", {"y": [{**V3_SPAN, "st": [{}]}]}, False)
event_case("v3 exception frame empty", "v3:L519 st slice element required", "e", {"ex": {"mg": "x", "st": [{}]}}, False)
event_case("v3 exception frame without f", "v3:L475 'f' required", "e", {"ex": {"mg": "x", "st": [{"li": 1}]}}, False)

CAUSE = "v2:L830-858 errorException.validate: cause elements validated recursively"
event_case("cause empty element", CAUSE + ", L854", "error", {"exception": {"message": "x", "cause": [{}]}}, False)
event_case("cause element", CAUSE, "error", {"exception": {"message": "x", "cause": [{"message": "y"}]}}, True)
event_case("cause element with type", CAUSE, "error", {"exception": {"message": "x", "cause": [{"type": "E"}]}}, True)
event_case("cause element without message or type", CAUSE + ", L836", "error",
           {"exception": {"message": "x", "cause": [{"code": 1}]}}, False)
event_case("cause element of nulls", CAUSE + ", L854", "error",
           {"exception": {"message": "x", "cause": [{"message": None}]}}, False)
event_case("cause element unknown keys", CAUSE + ", L854", "error",
           {"exception": {"message": "x", "cause": [{"foo": 1}]}}, False)
event_case("cause of a cause empty", CAUSE, "error",
           {"exception": {"message": "x", "cause": [{"message": "y", "cause": [{}]}]}}, False)
event_case("cause frame empty", CAUSE + ", L862", "error",
           {"exception": {"message": "x", "cause": [{"message": "y", "stacktrace": [{}]}]}}, False)
event_case("cause message too long", CAUSE, "error",
           {"exception": {"message": "x", "cause": [{"message": "y", "type": "t" * 1025}]}}, False)
event_case("cause chain", CAUSE, "error",
           {"exception": {"message": "x", "cause": [{"message": "y", "cause": [{"type": "Z", "cause": []}]}]}}, True)
event_case("v3 cause empty element", "v3:L508 ca slice element required", "e", {"ex": {"mg": "x", "ca": [{}]}}, False)
event_case("v3 cause element", "v3:L488", "e", {"ex": {"mg": "x", "ca": [{"t": "E"}]}}, True)
event_case("v3 cause element without mg or t", "v3:L490", "e", {"ex": {"mg": "x", "ca": [{"cd": 1}]}}, False)


# -- family 9: which metricsets are kept ------------------------------------------------------------
# v2 decoder.go mapToMetricsetModel: a metricset with transaction set (IsSet: name or type) is an
# internal one, kept only when SetInternalMetrics finds span.self_time.* samples with span set;
# rumv3 decoder.go mapToTransactionMetricsetModel: an "me" entry is kept only with y set and a
# ysc/yss value set. Dropped ones are counted in `dropped`, not `accepted`, and are no error.

MS = "v2 decoder.go mapToMetricsetModel (Transaction.IsSet), modeldecoderutil SetInternalMetrics"
SELF = {"span.self_time.count": {"value": 1}}
for what, changes, kept in [
    ("empty transaction", {"transaction": {}}, True),
    ("transaction of nulls", {"transaction": {"name": None, "type": None}}, True),
    ("transaction unknown keys", {"transaction": {"foo": "x"}}, True),
    ("transaction name", {"transaction": {"name": "GET /"}}, False),
    ("transaction type without span", {"transaction": {"type": "request"}, "samples": SELF}, False),
    ("transaction with span and self time", {"transaction": {"name": "GET /"}, "span": {"type": "db"}, "samples": SELF}, True),
    ("transaction with empty span", {"transaction": {"name": "GET /"}, "span": {}, "samples": SELF}, False),
    ("transaction with span subtype", {"transaction": {"name": "GET /"}, "span": {"subtype": "mysql"},
                                       "samples": {"span.self_time.sum.us": {"value": 2}}}, True),
    ("transaction with other samples", {"transaction": {"name": "GET /"}, "span": {"type": "db"}}, False),
    ("no transaction", {"span": {"type": "db"}}, True),
]:
    case(f"metricset {what}", MS, [meta_line(), line("metricset", changes)], (202, int(kept), 0))
ME = "rumv3 decoder.go mapToTransactionMetricsetModel"
for what, entry, kept in [
    ("span and count", {"y": {"t": "db"}, "sa": {"ysc": {"v": 1}}}, True),
    ("span subtype and sum", {"y": {"su": "http"}, "sa": {"yss": {"v": 1}}}, True),
    ("empty span", {"y": {}, "sa": {"ysc": {"v": 1}}}, False),
    ("no span", {"sa": {"ysc": {"v": 1}}}, False),
    ("null count beside a sum", {"y": {"t": "db"}, "sa": {"ysc": {"v": None}, "yss": {"v": 2}}}, True),
    ("null values", {"y": {"t": "db"}, "sa": {"ysc": {"v": None}, "yss": None}}, None),
]:
    expected = (400, 0, 1) if kept is None else (202, 2 + int(kept), 0)
    case(f"v3 me {what}", ME + (" ('sa' required: nothing set)" if kept is None else ""),
         [meta_line(v3=True), line("x", {"me": [entry]})], expected)


def test_dropped_metricsets_are_counted() -> None:
    result, events = run(_body([meta_line(), line("metricset", {"transaction": {"name": "GET /"}}),
                                line("metricset", {"transaction": {}})]))
    assert (result.status, result.accepted, result.dropped, len(events)) == (202, 1, 1, 1)


# -- family 8: event keys and header values ------------------------------------------------------

case("v3 top-level me line", "processor.go: only e and x are RUM v3 event keys (rumv3ErrorEventType, "
     "rumv3TransactionEventType)", [meta_line(v3=True), b'{"me": {"y": {"t": "db"}, "sa": {"ysc": {"v": 1}}}}'],
     (400, 0, 1))
case("v3 me line between events", "processor.go", [meta_line(v3=True), line("e"),
     b'{"me": {"sa": {"ysc": {"v": 1}}}}', line("e")], (400, 2, 1))
HEADER = "nullable.go HTTPHeader decoder: a string or a list of strings per header"
for what, value, ok in [("string", "x", True), ("list", ["x", "y"], True), ("empty list", [], True),
                        ("null", None, False), ("number", 1, False), ("bool", True, False),
                        ("object", {"a": "b"}, False), ("list with null", ["x", None], False),
                        ("list with number", [1], False)]:
    event_case(f"request header {what}", HEADER, "transaction",
               {"context": {"request": {"method": "GET", "headers": {"X-A": value}}}}, ok)
    event_case(f"v3 response header {what}", HEADER, "x", {"c": {"r": {"he": {"X-A": value}}}}, ok)
event_case("span response header null", HEADER, "span", {"context": {"http": {"response": {"headers": {"a": None}}}}},
           False)
event_case("message header null", HEADER, "error",
           {"context": {"message": {"headers": {"a": None}}}}, False)


def test_header_message() -> None:
    result, _ = run(_body([meta_line(), line("transaction", {"context": {"request": {"method": "GET",
                                                                                       "headers": {"a": None}}}})]))
    assert result.errors[0].message == (
        "decode error: data read error: transaction: context: request: headers: "
        "invalid input for HTTPHeader value type: <nil>"
    )


# -- family 7: logs, as apm-data's v2 log model ---------------------------------------------------
# model.go: log (flat ECS keys), EcsLog{Service,Error,Event,Process,Log}Fields with NestedStruct
# maps; model_generated.go: log.IsSet (v2:L2397), log.validate, EcsLog*Fields.validate and
# processNestedSource (a nested value of the wrong type is ignored; a string is held to the flat
# field's maxLength).

LOGM = "v2 model.go log, model_generated.go log.validate"
LONG = "x" * 1025
for what, changes, ok in [
    ("message only", {}, True),
    ("unknown keys only", {"message": DROP, "foo": 1}, False),
    ("labels only", {"message": DROP, "labels": {"a": "b"}}, True),
    ("empty labels only", {"message": DROP, "labels": {}}, False),
    ("service name with spaces", {"flat:service.name": "my service*"}, True),
    ("nested service name with spaces", {"service": {"name": "my service*"}}, True),
    ("nested service name too long", {"service": {"name": LONG}}, False),
    ("flat service name too long", {"flat:service.name": LONG}, False),
    ("nested service name not a string", {"service": {"name": 1}}, True),
    ("nested service unknown keys only", {"message": DROP, "service": {"foo": 1}}, True),
    ("nested service not an object", {"service": "x"}, False),
    ("nested log level null only", {"message": DROP, "log": {"level": None}}, True),
    ("empty nested log only", {"message": DROP, "log": {}}, False),
    ("nested log level too long", {"log": {"level": LONG}}, False),
    ("nested origin line", {"log": {"origin": {"file": {"line": 3}}}}, True),
    ("nested origin line with a fraction", {"log": {"origin": {"file": {"line": 1.5}}}}, False),
    ("nested origin line a string", {"log": {"origin": {"file": {"line": "3"}}}}, True),
    ("origin function too long", {"flat:log.origin.function": LONG}, True),
    ("nested origin function too long", {"log": {"origin": {"function": LONG}}}, True),
    ("error type too long", {"flat:error.type": LONG}, True),
    ("nested error type not a string", {"error": {"type": 1}}, True),
    ("event dataset too long", {"flat:event.dataset": LONG}, False),
    ("nested event dataset too long", {"event": {"dataset": LONG}}, False),
    ("nested thread name too long", {"process": {"thread": {"name": LONG}}}, False),
    ("trace id too long", {"flat:trace.id": LONG}, False),
    ("timestamp key is unknown", {"timestamp": "not a time"}, True),
    ("faas name too long", {"faas": {"name": LONG}}, True),
    ("faas coldstart not a bool", {"faas": {"coldstart": "yes"}}, False),
    ("label too long", {"labels": {"a": LONG}}, False),
    ("label object", {"labels": {"a": {"b": 1}}}, False),
]:
    event_case(f"log {what}", LOGM, "log", changes, ok)


@pytest.mark.parametrize(
    "key, changes, message",
    [
        ("transaction", {"dropped_spans_stats": [{}]}, "transaction: dropped_spans_stats slice element required"),
        ("error", {"exception": {"message": "x", "stacktrace": [FRAME, {}]}},
         "error: exception: stacktrace slice element required"),
        ("x", {"y": [V3_SPAN, {**V3_SPAN, "t": None}]}, "x: y: 't' required"),
        ("metricset", {"samples": {}, "timestamp": 1}, "metricset: 'samples' required"),
        ("error", {"trace_id": TRACE}, "error: 'parent_id' required when 'trace_id' is set"),  # v2:L732
        ("error", {"transaction_id": "0123456789abcdef"},
         "error: 'parent_id' required when 'transaction_id' is set"),  # v2:L729
        ("error", {"parent_id": "0123456789abcdef", "transaction_id": "0123456789abcdef"},
         "error: 'trace_id' required when 'transaction_id' is set"),  # v2:L740
        ("metricset", {"samples": {"a": {"values": [1.0]}}},
         "metricset: samples: a: 'counts' required when 'values' is set"),  # v2:L1540
        ("e", {"tid": TRACE}, "e: 'pid' required when 'tid' is set"),  # v3:L386
        ("transaction", {"duration": None}, "transaction: 'duration' required"),  # v2:L2146
        ("transaction", {"span_count": {}}, "transaction: 'span_count' required"),  # v2:L2140
        ("error", {"exception": {"message": "x", "cause": [{"message": "y", "cause": [{}]}]}},
         "error: exception: cause: cause slice element required"),
    ],
)
def test_slice_messages(key: str, changes: dict[str, Any], message: str) -> None:
    """Upstream's words (model_generated.go): ``<field> slice element required``, no list
    index in paths, ``'<a>' required when '<b>' is set``, ``'<field>' required`` for null."""
    result, _ = run(_body([meta_line(v3=key in ("x", "e")), line(key, changes)]), profile="rum")
    assert result.errors[0].message == "validation error: " + message


def test_port_message() -> None:
    result, _ = run(_body([meta_line(), line("transaction", {"context": {"request": {"method": "GET",
                                                                                       "url": {"port": "x"}}}})]))
    assert result.errors[0].message == (
        "validation error: transaction: context: request: url: 'port': validation rule 'targetType(int)' violated"
    )


def test_timestamp_message() -> None:
    """Upstream makes an unparsable time string a decode error (nullable.go)."""
    result, _ = run(_body([meta_line(), line("log", {"@timestamp": "yesterday"})]))
    assert result.errors[0].message == (
        "decode error: data read error: log: @timestamp: failed to parse the provided time string"
    )


def test_integer_written_as_float_message() -> None:
    """json-iterator's assertInteger words it "can not decode float as int"; the path as ndintake writes paths."""
    result, _ = run(_body([meta_line(), line("transaction", {"span_count": {"started": 1.0}})]))
    assert result.errors[0].message == (
        "decode error: data read error: transaction: span_count: started: can not decode float as int"
    )


def test_enum_message_has_no_null() -> None:
    """Upstream names the enum (``enum(enumOutcome)``); ndintake lists the values, never None."""
    result, _ = run(_body([meta_line(), line("span", {"outcome": "fail"})]))
    assert result.errors[0].message == (
        "validation error: span: 'outcome': validation rule 'enum(success;failure;unknown)' violated"
    )


def _body(lines: list[bytes]) -> bytes:
    return b"".join(one + b"\n" for one in lines)


@pytest.mark.parametrize("name, ref, lines, expected", CASES, ids=[c[0] for c in CASES])
def test_decision(name: str, ref: str, lines: list[bytes], expected: tuple[int, int, int]) -> None:
    """Status, accepted count and number of errors as upstream; the same whole and byte by byte."""
    profile = "rum" if lines[0].startswith(b'{"m"') else "apm"
    result, events = run(_body(lines), profile=profile)
    assert (result.status, result.accepted, len(result.errors)) == expected, (ref, result.errors)
    assert len(events) == result.accepted
    if len(_body(lines)) < 2000:
        again, _ = run(_body(lines), chunk_sizes=1, profile=profile)
        assert (again.status, again.accepted, len(again.errors)) == expected


def _validators() -> dict[str, Any]:
    return {key: v for p in PROFILES.values() for key, v in {**p.metadata, **p.events}.items()}


@pytest.mark.parametrize("name, ref, lines, expected", CASES, ids=[c[0] for c in CASES])
def test_backends_and_batch_agree(name: str, ref: str, lines: list[bytes], expected: tuple[int, int, int]) -> None:
    """Each line's decision is the same on jsonschema-rs, fastjsonschema and the batch check."""
    validators = _validators()
    for raw in lines:
        obj = parse_line(raw, strict=False, repair=True)
        key, value = next(iter(obj.items()))
        if key not in validators:
            continue
        validator = validators[key]
        decisions = {backend: validator.accept(backend)(value) for backend in _schemas.BACKENDS}
        assert len(set(decisions.values())) == 1, (ref, raw, decisions)
        verdict = decisions["fastjsonschema"] or validator.refusal(value) is None
        assert verdict == decisions["fastjsonschema"]
        batch = _schemas.lines_accept(((key, validator),), "jsonschema-rs")
        assert batch is not None and batch([obj]) == verdict, (ref, raw)


def test_at_least_150_cases() -> None:
    assert len(CASES) >= 150
