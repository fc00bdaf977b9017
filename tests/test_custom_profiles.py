"""Profiles from the user's own JSON Schemas (``ndintake.define_profile``), and the
seams that make them possible: the core imports no protocol and no server."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import ndintake
from ndintake import Limits, NdintakeError, define_profile

ROOT = Path(__file__).resolve().parent.parent

ORDER = {
    "type": "object",
    "required": ["type", "id", "total"],
    "properties": {
        "type": {"const": "order"},
        "id": {"type": "string", "minLength": 1},
        "total": {"type": "number", "minimum": 0},
    },
}
REFUND = {
    "type": "object",
    "required": ["type", "order"],
    "properties": {"type": {"const": "refund"}, "order": {"type": "string"}, "reason": {"type": "string"}},
}
SHOP = define_profile("shop", {"order": ORDER, "refund": REFUND}, classify="field:type")

BODY = (
    b'{"type": "order", "id": "o-1", "total": 12.5}\n'
    b'{"type": "refund", "order": "o-1"}\n'
    b'{"type": "order", "id": "", "total": 3}\n'
    b'{"type": "coupon", "code": "X"}\n'
    b'{"id": "o-2"}\n'
    b"not json\n"
    b'{"type": "order", "id": "o-3", "total": 1}'
)


def chunked(profile, body: bytes, size: int, **kwargs):
    """The events and result of ``body`` fed ``size`` bytes at a time."""
    stream = ndintake.IntakeStream(profile=profile, **kwargs)
    events = []
    for start in range(0, len(body), size):
        events += stream.feed(body[start : start + size])
    result = stream.close()
    return [(e.kind, e.data, e.line) for e in events + result.final_events], result


def test_discriminator_profile_classifies_by_field_and_explains_each_error():
    events, result = chunked(SHOP, BODY, len(BODY))
    assert [(kind, line) for kind, _, line in events] == [("order", 1), ("refund", 2), ("order", 7)]
    assert events[0][1] == {"type": "order", "id": "o-1", "total": 12.5}  # the whole item is the event
    assert (result.status, result.accepted, result.invalid, result.profile) == (400, 3, 4, "shop")
    assert [(e.message, e.line) for e in result.errors] == [
        ("item 2: validation error: 'id': validation rule 'minLength(1)' violated", 3),
        ('item 3: validation error: unknown \'type\': "coupon"', 4),
        ("item 4: validation error: 'type' required", 5),
        ("item 5: decode error: invalid literal, expected 'null': line 1 column 1 (char 0)", 6),
    ]
    assert result.to_json()["accepted"] == 3  # APM's response shape by default


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_byte_at_a_time_gives_the_whole_body_result(size):
    whole_events, whole = chunked(SHOP, BODY, len(BODY))
    events, result = chunked(SHOP, BODY, size)
    assert events == whole_events
    assert result == whole and result.to_json() == whole.to_json()


def test_envelope_profile_classifies_by_key_with_metadata_first():
    profile = define_profile(
        "shop-envelope",
        {"order": {k: v for k, v in ORDER.items() if k != "required"} | {"required": ["id"]}},
        classify="key",
        metadata={"type": "object", "required": ["store"], "properties": {"store": {"type": "string"}}},
    )
    body = b'{"metadata": {"store": "s1"}}\n{"order": {"id": "o-1"}}\n{"refund": {}}\n{"order": {"total": -1}}\n'
    for size in (1, 5, len(body)):
        stream = ndintake.IntakeStream(profile=profile)
        events = [e for start in range(0, len(body), size) for e in stream.feed(body[start : start + size])]
        result = stream.close()
        assert stream.metadata == {"store": "s1"}
        assert [(e.kind, e.data, e.line) for e in events] == [("order", {"id": "o-1"}, 2)]
        assert [(e.message, e.line) for e in result.errors] == [
            ('item 2: did not recognize object type: "refund"', 3),
            ("item 3: validation error: 'id' required", 4),
        ]


def test_bad_metadata_refuses_the_body():
    profile = define_profile("m", {"order": ORDER}, classify="field:type", metadata={"required": ["store"]})
    result = ndintake.validate(b'{"shop": 1}\n{"type": "order", "id": "o", "total": 1}\n', profile=profile)
    assert (result.status, result.accepted) == (400, 0)
    assert result.fatal is not None and result.fatal.message == "item 0: metadata: validation error: 'store' required"
    envelope = define_profile("e", {"order": ORDER}, metadata={"type": "object"})
    refused = ndintake.validate(b'{"order": {}}\n', profile=envelope)
    assert refused.fatal is not None and refused.fatal.message == 'item 0: "metadata" required'


def test_body_forms_array_and_single_object_and_refused_forms():
    items = [{"type": "order", "id": "a", "total": 1}, {"type": "refund", "order": "a"}]
    assert ndintake.validate(json.dumps(items).encode(), profile=SHOP).accepted == 2
    pretty = json.dumps(items[0], indent=2).encode()
    assert ndintake.validate(pretty, profile=SHOP).accepted == 1
    only_lines = define_profile("lines", {"order": ORDER}, classify="field:type", forms=["ndjson"])
    result = ndintake.validate(json.dumps(items).encode(), profile=only_lines)
    assert (result.status, result.accepted) == (400, 0)
    assert result.fatal is not None and result.fatal.message == "cannot read a body of array: this intake takes ndjson"
    assert ndintake.validate(json.dumps(items[0]).encode(), profile=only_lines).accepted == 1


def test_limits_error_cap_and_response_shapes():
    capped = define_profile("capped", {"order": ORDER}, classify="field:type", max_errors=2, limits=Limits(max_event_size=40))
    long = b'{"type": "order", "id": "a-long-identifier", "total": 1}\n'
    result = ndintake.validate(b'{"type": "order"}\n' * 3 + long, profile=capped)
    assert (len(result.errors), result.invalid) == (2, 4)
    assert ndintake.validate(long, profile=capped).errors[0].message == "item 0: item exceeded the permitted size"
    datadog = define_profile("dd", {"order": ORDER}, classify="field:type", response="datadog")
    assert ndintake.validate(b'{"type": "order"}', profile=datadog).to_json() == {
        "errors": [{"status": "400", "title": "Bad Request", "detail": "item 0: validation error: 'id' required"}]
    }
    own = define_profile("own", {"order": ORDER}, classify="field:type", response=lambda r: {"ok": r.ok, "n": r.accepted})
    assert ndintake.validate(b'{"type": "order", "id": "a", "total": 0}', profile=own).body() == b'{"ok":true,"n":1}'


def test_schemas_from_files(tmp_path):
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    profile = define_profile("files", {"order": tmp_path / "order.json"}, classify=None)
    assert ndintake.validate(b'{"type": "order", "id": "a", "total": 0}', profile=profile).accepted == 1
    with pytest.raises(NdintakeError, match="cannot read the schema of 'refund'"):
        define_profile("files", {"refund": tmp_path / "refund.json"})


@pytest.mark.parametrize(
    ("kinds", "options", "message"),
    [
        ({"order": {"type": "nope"}}, {}, "bad schema for 'order'"),
        ({"order": {"required": "id"}}, {}, "bad schema for 'order'"),
        ({"order": {"properties": {"id": {"pattern": "("}}}}, {}, "bad schema for 'order'"),
        ({"order": ORDER}, {"classify": "field:"}, "classify must be 'key' or 'field:NAME'"),
        ({"order": ORDER}, {"classify": "type"}, "classify must be 'key' or 'field:NAME'"),
        ({"refund": ORDER}, {"classify": "field:type"}, "does not allow 'type' to be 'refund'"),
        ({"order": ORDER, "refund": REFUND}, {"classify": None}, "classify=None takes one kind"),
        ({}, {}, "no event kinds"),
        ({"order": ORDER}, {"forms": ["xml"]}, "forms must be some of"),
        ({"order": ORDER}, {"response": "graphql"}, "response must be"),
        ({"order": ORDER}, {"metadata": {"type": 3}}, "bad schema for 'metadata'"),
        ({"order": ORDER}, {"max_errors": 0}, "max_errors must be at least 1"),
    ],
)
def test_bad_definitions_are_refused_when_defined(kinds, options, message):
    with pytest.raises(NdintakeError, match=message):
        define_profile("bad", kinds, **options)


def test_profiles_are_objects_or_registered_names():
    assert ndintake.get_profile("apm") is ndintake.PROFILES["apm"]
    assert ndintake.get_profile(SHOP) is SHOP
    with pytest.raises(NdintakeError, match="unknown profile 'shop'"):
        ndintake.IntakeStream(profile="shop")
    registered = ndintake.register_profile(define_profile("shop-registered", {"order": ORDER}, classify="field:type"))
    try:
        assert ndintake.validate(b'{"type": "order", "id": "a", "total": 0}', profile="shop-registered").accepted == 1
        with pytest.raises(NdintakeError, match="already registered"):
            ndintake.register_profile(define_profile("shop-registered", {"order": ORDER}))
    finally:
        del ndintake.PROFILES[registered.name]


def test_builtins_are_defined_through_the_public_api():
    for name in ("apm", "rum", "prodlytics"):
        assert isinstance(ndintake.PROFILES[name], ndintake.Profile)
    assert ndintake.PROFILES["prodlytics"].render(ndintake.validate(b"[]", profile="prodlytics")) == {}


def _imports(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (relative ones resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                names.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
            else:
                names.add(node.module or "")
    return names


def test_the_core_imports_no_protocol_and_no_server():
    core = sorted((ROOT / "ndintake" / "core").glob("*.py"))
    assert len(core) > 10
    for path in core:
        inside = {name for name in _imports(path) if name.split(".")[0] == "ndintake"}
        outside = {name for name in inside if not name.startswith("ndintake.core")}
        assert not outside, f"{path.name} imports {outside}"
    # the check sees relative imports: profiles/base.py imports the core this way
    assert "ndintake.core.profile" in _imports(ROOT / "ndintake" / "profiles" / "base.py")


def test_the_protocols_import_no_server():
    protocols = sorted((ROOT / "ndintake" / "profiles").rglob("*.py"))
    assert len(protocols) > 8
    for path in protocols:
        outside = {name for name in _imports(path) if name.startswith(("ndintake.server", "ndintake.cli", "ndintake.sinks"))}
        assert not outside, f"{path.name} imports {outside}"


@pytest.fixture
def schema_dir(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "order.json").write_text(json.dumps(ORDER))
    (folder / "refund.json").write_text(json.dumps(REFUND))
    (folder / "notes.txt").write_text("not a schema")
    return folder


def test_cli_check_with_schemas(schema_dir, tmp_path, capsysbinary):
    from ndintake import cli

    body = tmp_path / "body.ndjson"
    body.write_bytes(b'{"type": "order", "id": "o", "total": 1}\n{"type": "refund"}\n')
    assert cli.main(["check", "--schemas", str(schema_dir), "--classify", "field:type", str(body)]) == 1
    assert json.loads(capsysbinary.readouterr().out) == {
        "status": 400,
        "accepted": 1,
        "errors": [{"message": "item 1: validation error: 'order' required", "document": '{"type": "refund"}', "line": 2}],
    }
    # classified by envelope key (the default), with a metadata first line
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"type": "object", "required": ["store"]}))
    envelope = tmp_path / "envelope.ndjson"
    envelope.write_bytes(b'{"metadata": {"store": "s"}}\n{"refund": {"type": "refund", "order": "o"}}\n')
    assert cli.main(["check", "--schemas", str(schema_dir), "--metadata-schema", str(meta), str(envelope)]) == 0
    assert json.loads(capsysbinary.readouterr().out) == {"status": 202, "accepted": 1, "errors": []}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--schemas", "{dir}", "--classify", "type"], "classify must be 'key' or 'field:NAME'"),
        (["--schemas", "{dir}/missing"], "cannot read the schema directory"),
        (["--schemas", "{dir}", "--metadata-schema", "{dir}/none.json"], "cannot read the schema of 'metadata'"),
        (["--classify", "field:type"], "--classify and --metadata-schema go with --schemas"),
        (["--schemas", "{dir}", "--profile", "apm"], "not allowed with argument --schemas"),
    ],
)
def test_cli_schemas_usage_errors(schema_dir, tmp_path, capsys, argv, message):
    from ndintake import cli

    body = tmp_path / "body.ndjson"
    body.write_bytes(b"{}\n")
    with pytest.raises(SystemExit) as exit:
        cli.main(["check", *(arg.format(dir=schema_dir) for arg in argv), str(body)])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_schema_file_is_a_usage_error(schema_dir, tmp_path, capsys):
    from ndintake import cli

    (schema_dir / "coupon.json").write_text('{"type": "nope"}')
    with pytest.raises(SystemExit):
        cli.main(["check", "--schemas", str(schema_dir), str(tmp_path)])
    assert "bad schema for 'coupon'" in capsys.readouterr().err


# -- serving a profile of one's own -----------------------------------------------------------


def test_intake_serves_a_custom_endpoint_with_its_style():
    from httpkit import Recorder, drive, request
    from ndintake.server import Intake
    from ndintake.server.endpoints import DATADOG_STYLE, Endpoint

    sink = Recorder()
    datadog = define_profile("shop-dd", {"order": ORDER, "refund": REFUND}, classify="field:type", response="datadog")
    intake = Intake(
        sink=sink,
        endpoints={"/shop": Endpoint.of(SHOP), "/shop-dd": Endpoint.of(datadog, DATADOG_STYLE)},
        limits={"shop": Limits(max_body_size=len(BODY) + 10)},
    )
    out = drive(intake, request("POST", "/shop", {"Content-Type": "application/json"}), [BODY[:5], BODY[5:]])
    assert out.response.status == 400 and out.json["accepted"] == 3
    assert [e.kind for e in sink.events] == ["order", "refund", "order"]
    assert {batch.profile for batch in sink.batches} == {"shop"}
    big = drive(intake, request("POST", "/shop", {"Content-Type": "application/x-ndjson"}), [BODY * 2])
    assert big.json["errors"][-1]["message"].startswith("request body too large")  # the limits given for "shop"
    xml = drive(intake, request("POST", "/shop", {"Content-Type": "text/xml"}), [BODY])
    assert (xml.response.status, xml.json["errors"][0]["message"]) == (400, "invalid content type: 'text/xml'")
    dd = drive(intake, request("GET", "/shop-dd"))
    assert (dd.response.status, dd.json) == (
        405,
        {"errors": [{"status": "405", "title": "Method Not Allowed", "detail": "only POST requests are supported"}]},
    )
    assert intake.routes["/shop"].profile == "shop" and not intake.routes["/shop"].rum


@pytest.mark.e2e
def test_ndintake_serve_mounts_a_custom_profile(schema_dir, tmp_path):
    from servekit import ServeProcess, post

    out = tmp_path / "events.jsonl"
    server = ServeProcess(
        "--sink", f"jsonl:{out}", "--profile", f"/intake/shop={schema_dir};classify=field:type;response=datadog"
    )
    try:
        status, body = post(server.port, "/intake/shop", BODY, {"Content-Type": "application/json"})
        assert status == 400
        assert [e["detail"] for e in json.loads(body)["errors"]][:2] == [
            "item 2: validation error: 'id': validation rule 'minLength(1)' violated",
            'item 3: validation error: unknown \'type\': "coupon"',
        ]
        # the built-in routes are still there
        assert post(server.port, "/intake/v2/events", b"", {"Content-Type": "application/x-ndjson"})[0] == 202
    finally:
        server.kill()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["kind"], r["profile"], r["route"]) for r in records] == [
        ("order", "shop", "/intake/shop"),
        ("refund", "shop", "/intake/shop"),
        ("order", "shop", "/intake/shop"),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/shop", "expected PATH=DIR"),
        ("shop={dir}", "expected PATH=DIR"),
        ("/shop={dir};colour=red", "unknown setting 'colour=red'"),
        ("/shop={dir};response=xml", "response must be apm or datadog"),
        ("/intake/v2/events={dir}", "/intake/v2/events is already served"),
        ("/shop={dir};classify=field:", "classify must be 'key' or 'field:NAME'"),
    ],
)
def test_serve_refuses_a_bad_mount(schema_dir, capsys, spec, message):
    from ndintake import cli

    assert cli.main(["serve", "--port", "0", "--profile", spec.format(dir=schema_dir)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("size", [3, None])
def test_the_asgi_and_wsgi_apps_serve_a_custom_profile_alike(size):
    from httpkit import Recorder, call_asgi, call_wsgi
    from ndintake.asgi import IntakeASGI
    from ndintake.wsgi import IntakeWSGI

    replies = []
    for app_class, call in ((IntakeASGI, call_asgi), (IntakeWSGI, call_wsgi)):
        sink = Recorder()
        app = app_class(sink=sink, endpoints={"/shop": SHOP})  # a profile: served as Endpoint.of(SHOP)
        reply = call(app, "POST", "/shop", BODY, {"Content-Type": "application/x-ndjson"}, chunk=size)
        replies.append((reply.status, json.loads(reply.body), [(e.kind, e.line) for e in sink.events]))
    assert replies[0] == replies[1]
    assert replies[0][0] == 400 and replies[0][1]["accepted"] == 3
    assert replies[0][2] == [("order", 1), ("refund", 2), ("order", 7)]


def test_serve_mounts_come_from_flags_environment_and_config_file(schema_dir, tmp_path, capsys, monkeypatch):
    from ndintake import cli
    from ndintake.server.serve import mounted_endpoints

    config = tmp_path / "ndintake.toml"
    config.write_text(f'profiles = ["/shop={schema_dir};classify=field:type"]\n')
    assert cli.main(["serve", "--config", str(config), "--print-config"]) == 0
    assert f'profiles = ["/shop={schema_dir};classify=field:type"]  # file' in capsys.readouterr().out
    monkeypatch.setenv("NDINTAKE_PROFILES", f"/a={schema_dir},/b={schema_dir};response=datadog")
    assert cli.main(["serve", "--print-config"]) == 0
    assert f'profiles = ["/a={schema_dir}", "/b={schema_dir};response=datadog"]  # env' in capsys.readouterr().out
    endpoints = mounted_endpoints([f"/a={schema_dir}", f"/b={schema_dir};response=datadog;classify=field:type"])
    assert endpoints["/a"].profile.discriminator is None and endpoints["/a"].style.timeout_status == 503
    assert endpoints["/b"].profile.discriminator == "type" and endpoints["/b"].style.timeout_status == 408
    assert sorted(endpoints["/b"].profile.events) == ["order", "refund"]  # notes.txt is not a schema


ARRAY = json.dumps(
    [{"type": "order", "id": "a", "total": 1}, {"type": "refund"}, 7, {"type": "order", "id": "b", "total": -1}]
).encode()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), body=st.sampled_from([BODY, ARRAY, json.dumps({"type": "refund", "order": "x"}, indent=2).encode()]))
def test_any_chunking_gives_the_whole_body_result(data, body):
    cuts = sorted(data.draw(st.sets(st.integers(1, len(body) - 1), max_size=12)))
    stream = ndintake.IntakeStream(profile=SHOP)
    events = []
    for start, end in zip([0, *cuts], [*cuts, len(body)]):
        events += stream.feed(body[start:end])
    result = stream.close()
    events += result.final_events
    whole_events, whole = chunked(SHOP, body, len(body))
    assert [(e.kind, e.data, e.line) for e in events] == whole_events
    assert result == whole
