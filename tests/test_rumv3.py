"""RUM v3: abbreviated keys, transactions carrying spans and metricsets, expansion."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

import ndintake

V3 = Path(__file__).parent / "data" / "apm-server" / "intake-v3"
V2 = Path(__file__).parent / "data" / "apm-server" / "intake-v2"
EXPECTED = json.loads((Path(__file__).parent / "data" / "apm-server" / "derived-results.json").read_text())["files"]

META = b'{"m": {"se": {"n": "shop-ui", "a": {"n": "rum-js", "ve": "5.16.0"}}}}\n'
SPAN = {"id": "aaaaaaaaaaaaaaaa", "n": "GET /api", "t": "external", "s": 1.5, "d": 2.0}
X = {
    "id": "ec2e280be8345240",
    "tid": "286ac3ad697892c406528f13c82e0ce1",
    "n": "page-load",
    "t": "page-load",
    "d": 295,
    "yc": {"sd": 2},
    "y": [SPAN, {**SPAN, "id": "bbbbbbbbbbbbbbbb", "pi": 0}],
    "me": [
        {"y": {"t": "external"}, "sa": {"ysc": {"v": 1}, "yss": {"v": 2}}},
        {"sa": {"ysc": {"v": 1}}},  # no span: dropped, as upstream (an unset "sa" is refused: issue 12)
    ],
}


def run(body: bytes, profile: str = "rum") -> tuple[ndintake.IntakeResult, list[ndintake.Event]]:
    stream = ndintake.IntakeStream(profile=profile)
    events = []
    for i in range(0, len(body), 7):
        events += stream.feed(body[i : i + 7])
    result = stream.close()
    return result, events + result.final_events


@pytest.mark.parametrize("name", ["rum_events.ndjson", "rum_errors.ndjson", "metadata.ndjson"])
@pytest.mark.parametrize("profile", ["rum", "apm"])
def test_upstream_v3_payloads(name: str, profile: str) -> None:
    expected = EXPECTED[f"intake-v3/{name}"]
    result, events = run((V3 / name).read_bytes(), profile)
    assert (result.status, result.accepted, len(result.errors)) == (
        expected["status"],
        expected["accepted"],
        len(expected["errors"]),
    )
    assert [e.message for e in result.errors] == [e["message"] for e in expected["errors"]]
    assert len(events) == result.accepted


def test_rum_events_yield_a_transaction_eight_spans_two_metricsets() -> None:
    result, events = run((V3 / "rum_events.ndjson").read_bytes())
    assert [e.kind for e in events] == ["transaction"] + ["span"] * 8 + ["metricset"] * 2
    assert all(e.abbreviated and e.line == 2 for e in events)
    transaction = events[0].expanded()
    assert transaction["trace_id"] == "286ac3ad697892c406528f13c82e0ce1"
    assert "spans" not in transaction and "metricsets" not in transaction
    assert transaction["span_count"] == {"started": 8, "dropped": 1}


def test_hand_built_x_line() -> None:
    body = META + orjson.dumps({"x": X}) + b"\n"
    result, events = run(body)
    assert (result.status, result.accepted, result.dropped) == (202, 4, 1)
    tx, first, second, metricset = events
    assert tx.expanded()["name"] == "page-load"
    assert first.expanded() == {
        "id": "aaaaaaaaaaaaaaaa",
        "name": "GET /api",
        "type": "external",
        "start": 1.5,
        "duration": 2.0,
        "trace_id": X["tid"],
        "transaction_id": X["id"],
        "parent_id": X["id"],
    }
    assert second.expanded()["parent_id"] == "aaaaaaaaaaaaaaaa"  # "pi": 0 points at the first span
    assert second.expanded()["parent_idx"] == 0
    assert metricset.expanded() == {
        "span": {"type": "external"},
        "samples": {"span.self_time.count": {"value": 1}, "span.self_time.sum.us": {"value": 2}},
        "transaction": {"name": "page-load", "type": "page-load"},
    }


def test_invalid_y_span_rejects_the_whole_line() -> None:
    bad = {**X, "y": [SPAN, {"id": "cccccccccccccccc", "n": "no type", "s": 1, "d": 1}]}
    body = META + orjson.dumps({"x": bad}) + b"\n" + orjson.dumps({"x": X}) + b"\n"
    result, events = run(body)
    assert (result.status, result.accepted, len(events)) == (400, 4, 4)
    [error] = result.errors
    assert error.message == "validation error: x: y: 't' required"
    assert error.line == 2


def test_unknown_abbreviated_line_key() -> None:
    body = META + b'{"zz": {"id": "x"}}\n'
    result, _ = run(body)
    assert (result.status, result.accepted) == (400, 0)
    assert result.errors[0].message == 'did not recognize object type: "zz"'


def test_unknown_key_inside_an_event_is_kept_as_is() -> None:
    body = META + orjson.dumps({"x": {**X, "qq": {"n": 1}}}) + b"\n"
    result, events = run(body)
    assert result.status == 202
    assert events[0].expanded()["qq"] == {"n": 1}  # not an abbreviation: not expanded


def test_v3_error_and_its_expansion() -> None:
    result, events = run((V3 / "rum_errors.ndjson").read_bytes())
    [error] = events
    assert error.kind == "error" and error.abbreviated
    long = error.expanded()
    assert long["exception"]["message"].startswith("Uncaught Error: timeout test e")
    assert long["exception"]["stacktrace"][0]["function"] == "generateError"
    assert long["context"]["page"]["referer"] == "http://localhost:8000/test/e2e/"
    assert long["context"]["tags"] == {"testTagKey": "testTagValue"}  # free-form: kept as is


def test_invalid_v3_error() -> None:
    body = META + b'{"e": {"ex": {"mg": "boom"}}}\n'
    result, _ = run(body)
    assert (result.status, result.accepted) == (400, 0)
    assert result.errors[0].message == "validation error: e: 'id' required"


def test_top_level_me_is_no_event_type() -> None:
    """Only ``e`` and ``x`` are RUM v3 event keys upstream (apm-data processor.go);
    a metricset is sent inside a transaction's ``me`` list."""
    body = META + b'{"me": {"sa": {"ysc": {"v": 3}}, "y": {"t": "db"}}}\n'
    result, events = run(body)
    assert (result.status, result.accepted, events) == (400, 0, [])
    assert result.errors[0].message == 'did not recognize object type: "me"'


def test_v2_and_v3_keys_mix_on_any_route() -> None:
    v2_metadata = (V2 / "errors.ndjson").read_bytes().split(b"\n", 1)[0] + b"\n"
    v2_span = (V2 / "spans.ndjson").read_bytes().split(b"\n")[1] + b"\n"
    body = v2_metadata + orjson.dumps({"x": X}) + b"\n" + v2_span
    for profile in ("apm", "rum"):
        result, events = run(body, profile)
        assert (result.status, result.accepted) == (202, 5)
        assert [e.abbreviated for e in events] == [True] * 4 + [False]
        assert events[-1].expanded() is events[-1].data


def test_v3_metadata_is_expanded_on_the_stream() -> None:
    stream = ndintake.IntakeStream(profile="rum")
    stream.feed(META)
    assert stream.metadata == {"service": {"name": "shop-ui", "agent": {"name": "rum-js", "version": "5.16.0"}}}


def test_v3_metadata_errors_use_short_keys() -> None:
    result, _ = run(b'{"m": {"se": {"a": {"n": "rum-js", "ve": "1"}}}}\n')
    assert result.errors[0].message == "validation error: m: se: 'n' required"
    result, _ = run(b'{"m": {"u": null}}\n')
    assert result.errors[0].message == "validation error: 'm' required"
