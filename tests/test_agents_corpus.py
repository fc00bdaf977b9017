"""The official agents' capture (``tests/data/agents.ndjson.gz``, written by
``python -m benchmarks.capture_agents``) is accepted whole: what the Python and
Node.js agents really send, every event line accepted (or dropped the way APM
Server drops internal metricsets)."""

from __future__ import annotations

import gzip
from collections import Counter
from functools import cache
from pathlib import Path

import orjson

import ndintake
from ndintake.profiles.base import PROFILES

CAPTURE = Path(__file__).parent / "data" / "agents.ndjson.gz"


@cache
def capture() -> bytes:
    return gzip.decompress(CAPTURE.read_bytes())


def event_lines(body: bytes) -> list[bytes]:
    return [line for line in body.split(b"\n")[1:] if line.strip()]


def test_the_capture_is_one_body_of_both_agents() -> None:
    body = capture()
    assert 300_000 <= len(body) <= 600_000 and body.endswith(b"\n")
    lines = body.split(b"\n")[:-1]
    assert orjson.loads(lines[0])["metadata"]["service"]["agent"]["name"] == "python"
    kinds = Counter(next(iter(orjson.loads(line))) for line in lines[1:])
    assert set(kinds) >= {"transaction", "span", "error", "metricset"}
    assert kinds["metadata"] == 0  # the other bodies' metadata lines are left out
    assert b'"nodejs.eventloop.delay.avg.ms"' in body  # the Node.js agent's metricsets


def test_every_event_of_the_capture_is_accepted() -> None:
    body = capture()
    result = ndintake.validate(body)
    assert result.status == 202 and result.errors == [] and result.invalid == 0
    assert result.accepted + result.dropped == len(event_lines(body))


def test_the_capture_streamed_gzip_in_64k_chunks() -> None:
    wire = CAPTURE.read_bytes()
    chunks = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]
    result = ndintake.validate_chunks(chunks, content_encoding="gzip")
    whole = ndintake.validate(capture())
    assert (result.status, result.accepted, result.dropped) == (202, whole.accepted, whole.dropped)


def test_both_backends_accept_every_line() -> None:
    profile = PROFILES["apm"]
    validators = {**profile.metadata, **profile.events}
    for line in capture().split(b"\n")[:-1]:
        obj = orjson.loads(line)
        key = next(iter(obj))
        validator = validators[key]
        assert validator.accept("jsonschema-rs")(obj[key]) and validator.accept("fastjsonschema")(obj[key]), line[:200]
