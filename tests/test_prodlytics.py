"""The prodlytics profile: Datadog Product Analytics server-side events."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest
import zstandard

import ndintake

DATA = Path(__file__).parent / "data" / "datadog"
CAPTURES = sorted((DATA / "client-captures").glob("*.body.bin"))
OPENAPI = json.loads((DATA / "prodlytics-openapi-extract.json").read_text())
EXAMPLES = OPENAPI["paths"]["/api/v2/prodlytics"]["post"]["requestBody"]["content"]["application/json"]["examples"]

VALID = {"type": "server", "application": {"id": "app-1"}, "event": {"name": "payment.processed"}, "usr": {"id": "u1"}}


def item(**changes: object) -> dict[str, object]:
    out = dict(VALID)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def feed_bytewise(body: bytes, **options: object) -> tuple[ndintake.IntakeResult, list[ndintake.Event]]:
    stream = ndintake.IntakeStream(profile="prodlytics", **options)  # type: ignore[arg-type]
    events = []
    for i in range(len(body)):
        events += stream.feed(body[i : i + 1])
    result = stream.close()
    return result, events + result.final_events


def test_three_captures_exist() -> None:
    assert len(CAPTURES) == 3


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_official_client_captures_are_accepted(capture: Path) -> None:
    body = capture.read_bytes()
    request = json.loads(capture.with_name(capture.name.replace(".body.bin", ".request.json")).read_text())
    assert dict(request["headers"])["Content-Type"] == "application/json"
    result = ndintake.validate(body, profile="prodlytics")
    assert (result.status, result.accepted, result.errors) == (202, 1, [])
    assert result.body() == b"{}"
    bytewise, events = feed_bytewise(body)
    assert (bytewise.status, bytewise.accepted, len(events)) == (202, 1, 1)
    assert events[0].data == json.loads(body)
    assert events[0].kind == "prodlytics"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_openapi_examples_are_accepted(name: str) -> None:
    body = json.dumps(EXAMPLES[name]["value"]).encode()
    result = ndintake.validate(body, profile="prodlytics")
    assert (result.status, result.accepted) == (202, 1), result.errors


@pytest.mark.parametrize(
    "bad, detail",
    [
        (item(application=None), "validation error: 'application' required"),
        (item(usr=None), "validation error: requires at least one of the fields 'usr;account;session'"),
        (item(type="client"), "validation error: 'type': validation rule 'enum(server)' violated"),
        (item(usr={"id": 42}), "validation error: usr: 'id': validation rule 'type(string)' violated"),
        (item(application={"id": 7}), "validation error: application: 'id': validation rule 'type(string)' violated"),
        (item(event={}), "validation error: event: 'name' required"),
        (item(event={"name": ""}), "validation error: event: 'name': validation rule 'minLength(1)' violated"),
        (item(account={"name": "no id"}), "validation error: account: 'id' required"),
        (item(type=None), "validation error: 'type' required"),
        ("server", "decode error: data read error: expected an object, got string"),
    ],
)
def test_invalid_items(bad: object, detail: str) -> None:
    result = ndintake.validate(json.dumps(bad).encode(), profile="prodlytics")
    assert (result.status, result.accepted) == (400, 0)
    assert [e.message for e in result.errors] == [f"item 0: {detail}"]
    assert orjson.loads(result.body()) == {"errors": [{"status": "400", "title": "Bad Request", "detail": f"item 0: {detail}"}]}


def test_custom_attributes_anywhere_are_allowed() -> None:
    body = json.dumps(item(usr={"id": "u", "plan": "pro"}, application={"id": "a", "x": [1]}, extra={"deep": {"er": 1}}))
    assert ndintake.validate(body.encode(), profile="prodlytics").accepted == 1


MIXED = [VALID, item(type="client"), item(account={"id": "acct"}, usr=None), 5, item(session={"id": "s"}, usr=None)]


def test_array_batch_with_mixed_items() -> None:
    result = ndintake.validate(json.dumps(MIXED).encode(), profile="prodlytics")
    assert (result.status, result.accepted, result.invalid) == (400, 3, 2)
    assert [e.message.split(":")[0] for e in result.errors] == ["item 1", "item 3"]
    assert result.errors[1].message == "item 3: decode error: data read error: expected an object, got number"


def test_ndjson_batch_with_mixed_items_and_a_broken_line() -> None:
    lines = [json.dumps(x).encode() for x in MIXED] + [b"{broken", b"", json.dumps(VALID).encode()]
    body = b"\n".join(lines) + b"\n"
    result, events = feed_bytewise(body)
    assert (result.status, result.accepted, len(events), result.invalid) == (400, 4, 4, 3)
    assert [e.line for e in events] == [1, 3, 5, 8]
    assert result.errors[2].message.startswith("item 5: decode error: ")
    assert result.errors[2].document == "{broken"


def test_array_is_streamed_item_by_item() -> None:
    stream = ndintake.IntakeStream(profile="prodlytics")
    first = json.dumps(VALID).encode()
    assert stream.feed(b"[" + first + b",") == [ndintake.Event("prodlytics", VALID, first, 0)]
    assert len(stream.feed(first + b"]")) == 1
    assert stream.close().accepted == 2


def test_pretty_printed_object_is_one_item() -> None:
    body = json.dumps(VALID, indent=2).encode()
    result, events = feed_bytewise(body)
    assert (result.status, result.accepted, len(events)) == (202, 1, 1)
    assert events[0].data == VALID


def test_malformed_array_is_fatal_after_the_items_before() -> None:
    body = b"[" + json.dumps(VALID).encode() + b", {oops"
    result = ndintake.validate(body, profile="prodlytics")
    assert (result.status, result.accepted) == (400, 1)
    assert result.fatal is not None and result.fatal.message.startswith("malformed JSON array after item 1: ")


def test_truncated_array_is_fatal() -> None:
    result = ndintake.validate(b"[" + json.dumps(VALID).encode() + b",", profile="prodlytics")
    assert (result.status, result.accepted) == (400, 1)
    assert result.fatal is not None
    assert result.fatal.message == "malformed JSON array after item 1: unexpected end of the body inside the array"


@pytest.mark.parametrize("body", [b"", b"   \n\n", b"[]", b"[ ]\n"])
def test_empty_bodies(body: bytes) -> None:
    result = ndintake.validate(body, profile="prodlytics")
    assert (result.status, result.accepted, result.errors) == (202, 0, [])


@pytest.mark.slow
def test_over_five_megabytes_uncompressed_is_413() -> None:
    one = json.dumps(VALID).encode()
    count = 5_000_000 // (len(one) + 1) + 100
    body = gzip.compress(b"[" + b",".join([one] * count) + b"]")
    assert len(body) < 100_000  # small on the wire
    result = ndintake.validate(body, profile="prodlytics", content_encoding="gzip")
    assert result.status == 413
    assert 0 < result.accepted < count
    assert orjson.loads(result.body())["errors"][-1]["title"] == "Payload Too Large"


def test_just_under_the_limit_is_accepted() -> None:
    one = json.dumps(VALID).encode()
    count = 4_900_000 // (len(one) + 1)
    body = b"\n".join([one] * count)
    assert len(body) < 5_000_000
    result = ndintake.validate(zstandard.ZstdCompressor().compress(body), profile="prodlytics")
    assert (result.status, result.accepted) == (202, count)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "br", None])
def test_compressed_single_object(encoding: str | None) -> None:
    import brotli
    import zlib

    raw = CAPTURES[0].read_bytes()
    pack = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "br": brotli.compress,
        None: lambda b: b,
    }[encoding]
    result = ndintake.validate(pack(raw), profile="prodlytics", content_encoding=encoding)
    assert (result.status, result.accepted) == (202, 1)


def test_facets_of_an_accepted_event() -> None:
    body = (DATA / "client-captures" / "02-account-session-nested-custom.body.bin").read_bytes()
    stream = ndintake.IntakeStream(profile="prodlytics")
    events = stream.feed(body)
    [event] = events + stream.close().final_events
    assert event.facets()["customer.tier"] == "premium"
    assert event.facets()["customer.plan.seats"] == 25
    assert event.facets()["cart.items"] == [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]


def test_facets_flattening_rules() -> None:
    assert ndintake.facets({"customer": {"tier": "premium"}}) == {"customer.tier": "premium"}
    assert ndintake.facets({"a": {}, "n": None, "l": [1, {"x": 1}]}) == {"n": None, "l": [1, {"x": 1}]}
    # a dotted key and a nested object naming the same facet: the later one wins
    assert ndintake.facets({"a.b": 1, "a": {"b": 2}}) == {"a.b": 2}
    assert ndintake.facets({"a": {"b": 2}, "a.b": 1}) == {"a.b": 1}
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["k"] = node = {}
    node["leaf"] = True
    [(path, value)] = ndintake.facets(deep).items()
    assert value is True and path.count(".") == 5000


def test_datadog_error_shape_for_decoding_errors() -> None:
    result = ndintake.validate(b"not gzip", profile="prodlytics", content_encoding="gzip")
    assert orjson.loads(result.body()) == {
        "errors": [{"status": "400", "title": "Bad Request", "detail": "data decoding error: gzip: invalid header"}]
    }
