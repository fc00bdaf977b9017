"""The JSON Lines sink keeps the broker sinks' promise: nothing counted that is
not wholly written, no record glued onto a torn one."""

from __future__ import annotations

import json
import os
from pathlib import Path
import pytest

import ndintake
from ndintake.asgi import IntakeASGI
from ndintake.sinks import JsonLinesSink, open_sink
from ndintake.sinks.records import encode_batch, event_key

from httpkit import NDJSON, body_of, call_asgi

ERRORS = body_of("intake-v2/errors.ndjson")


def test_a_torn_last_line_is_cut_back_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"kind": "span"}\n{"kind": "tra')  # the process died in the middle of a record
    sink = JsonLinesSink(path)
    reply = call_asgi(IntakeASGI(sink=sink), body=ERRORS, headers=NDJSON)
    sink.close()
    assert reply.status == 202
    lines = path.read_bytes().splitlines()
    assert lines[0] == b'{"kind": "span"}'
    assert [json.loads(line)["kind"] for line in lines[1:]] == ["error"] * 5


def test_a_file_that_is_one_torn_line_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"x" * 200_000)
    JsonLinesSink(path).close()
    assert path.read_bytes() == b""


def test_a_failed_write_leaves_no_partial_record_and_is_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(path)
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:  # a disk that fills up mid-record
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", short_write)
    reply = call_asgi(IntakeASGI(sink=sink), body=ERRORS, headers=NDJSON)
    monkeypatch.setattr(os, "write", real_write)
    assert reply.status == 500 and reply.json["accepted"] == 0
    assert path.read_bytes() == b"" and sink.count == 0
    assert call_asgi(IntakeASGI(sink=sink), body=ERRORS, headers=NDJSON).status == 202  # the next one is whole
    sink.close()
    assert len(path.read_bytes().splitlines()) == 5


def test_fsync_syncs_each_batch_before_it_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    sink = open_sink(f"jsonl:{tmp_path / 'e.jsonl'}?fsync=1")
    assert call_asgi(IntakeASGI(sink=sink), body=ERRORS, headers=NDJSON).status == 202
    sink.close()
    assert len(synced) == 1  # one batch of ten lines
    plain = open_sink(f"jsonl:{tmp_path / 'f.jsonl'}")
    call_asgi(IntakeASGI(sink=plain), body=ERRORS, headers=NDJSON)
    plain.close()
    assert len(synced) == 1


def test_format_batch_writes_replayable_intake_bodies(tmp_path: Path) -> None:
    path = tmp_path / "batches.ndjson"
    sink = open_sink(f"jsonl:{path}?format=batch")
    events_body = body_of("intake-v2/events.ndjson")
    assert call_asgi(IntakeASGI(sink=sink), body=events_body, headers=NDJSON).status == 202
    sink.close()
    original = ndintake.validate(events_body)
    written = path.read_bytes()
    # every batch body is itself a valid intake body; together they hold every event
    bodies = [b'{"metadata"' + part for part in written.split(b'{"metadata"')[1:]]
    replayed = [ndintake.validate(part) for part in bodies]
    assert all(r.status == 202 for r in replayed)
    assert sum(r.accepted for r in replayed) == original.accepted
    assert len(written) < len(b"".join(_records(events_body)))  # the metadata once per batch


def test_record_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    sink = JsonLinesSink(path)
    reply = call_asgi(IntakeASGI(sink=sink), path="/intake/v3/rum/events", body=body_of("intake-v3/rum_events.ndjson"),
                      headers=NDJSON)
    sink.close()
    assert reply.status == 202
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert {r["route"] for r in records} == {"/intake/v3/rum/events"} and {r["profile"] for r in records} == {"rum"}
    transaction = next(r for r in records if r["kind"] == "transaction")
    assert "trace_id" in transaction["data"] and "tid" not in transaction["data"]  # expanded keys
    assert "service" in transaction["metadata"]


def test_event_keys_are_stable_and_distinct() -> None:
    from ndintake.server import Batch

    events = ndintake.validate(ERRORS)
    stream = ndintake.IntakeStream()
    accepted = stream.feed(ERRORS) + stream.close().final_events
    batch = Batch(accepted, metadata=stream.metadata, path="/intake/v2/events")
    keys = [event_key(e, batch) for e in batch]
    assert len(set(keys)) == len(keys) == events.accepted
    again = ndintake.IntakeStream()
    batch2 = Batch(again.feed(ERRORS) + again.close().final_events, metadata=again.metadata, path="/intake/v2/events")
    assert [event_key(e, batch2) for e in batch2] == keys  # the same body again: the same keys
    assert encode_batch(batch).startswith(b'{"metadata"')


def _records(body: bytes) -> list[bytes]:
    """The body as per-event records with the metadata in each."""
    out: list[bytes] = []
    stream = ndintake.IntakeStream()
    events = stream.feed(body) + stream.close().final_events
    for event in events:
        out.append(json.dumps({"kind": event.kind, "data": event.data, "metadata": stream.metadata}).encode())
    return out
