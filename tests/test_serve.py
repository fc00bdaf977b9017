"""``ndintake serve``'s pieces: the JSON Lines sink, option handling, a missing uvicorn."""

from __future__ import annotations

import io
import json
import socket
import sys
from pathlib import Path

import pytest

import ndintake
from ndintake import cli
from ndintake.server.serve import MISSING_UVICORN
from ndintake.asgi import IntakeASGI
from ndintake.server import Batch, JsonLinesSink, open_sink

from httpkit import NDJSON, body_of, call_asgi

ERRORS = body_of("intake-v2/errors.ndjson")


def test_jsonl_sink_writes_one_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    reply = call_asgi(IntakeASGI(sink=sink), body=ERRORS, headers=NDJSON, chunk=50)
    assert reply.status == 202
    sink.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    metadata = json.loads(ERRORS.split(b"\n")[0])["metadata"]
    assert [(r["kind"], r["line"]) for r in records] == [("error", n) for n in range(2, 7)]
    assert all(r["metadata"] == metadata for r in records)
    assert records[0]["data"] == json.loads(ERRORS.split(b"\n")[1])["error"]
    assert sink.count == 5


def test_jsonl_sink_appends_and_leaves_foreign_files_open(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"kind": "old"}\n')
    event = ndintake.Event("prodlytics", {"big": 2**63 - 1, "s": "é"}, b"{}", 0)
    sink = JsonLinesSink(path)
    sink(Batch([event], profile="prodlytics", path="/api/v2/prodlytics"))
    sink.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1]) == {
        "kind": "prodlytics",
        "profile": "prodlytics",
        "route": "/api/v2/prodlytics",
        "line": 0,
        "data": {"big": 2**63 - 1, "s": "é"},
    }
    buffer = io.BytesIO()
    foreign = JsonLinesSink(buffer)
    foreign(Batch([event]))
    foreign.close()
    assert not buffer.closed and buffer.getvalue().endswith(b"\n")


def test_open_sink_spellings(tmp_path: Path) -> None:
    assert open_sink("null") is None
    stdout = open_sink("stdout")
    assert isinstance(stdout, JsonLinesSink)
    target = open_sink(f"jsonl:{tmp_path / 'x.jsonl'}")
    assert isinstance(target, JsonLinesSink)
    target.close()
    for bad in ("jsonl:", "kafka:topic", "file.jsonl", f"jsonl:{tmp_path / 'y'}?fsync=2", f"jsonl:{tmp_path / 'y'}?nope=1"):
        with pytest.raises(ValueError):
            open_sink(bad)


def test_serve_without_uvicorn_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert cli.main(["serve", "--port", "0", "--sink", "null"]) == 2
    assert MISSING_UVICORN in capsys.readouterr().err
    assert "ndintake[server]" in MISSING_UVICORN


def test_serve_refuses_a_bad_sink(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--port", "0", "--sink", "kafka:events"]) == 2
    assert "unknown sink" in capsys.readouterr().err


def test_serve_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--host", "127.0.0.1", "--port", str(port), "--sink", "null"]) == 2
    assert "cannot listen" in capsys.readouterr().err


def test_check_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    assert cli.main(["check", str(root / "examples" / "events.ndjson.gz")]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": 202, "accepted": 4, "errors": []}
