"""The batch fast path (one parse and one check per decoded piece) decides every
line exactly as the line-by-line path does.

The batch path exists on the jsonschema-rs backend only. These tests switch it on
explicitly (with jsonschema-rs) against the line-by-line path of the backend in
use, so under ``NDINTAKE_BACKEND=fastjsonschema`` they compare the batch check
with fastjsonschema's decisions rather than the line path with itself."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndintake
from ndintake.profiles.apm.envelope import EnvelopeReader
from ndintake.core.schemas import lines_accept
from conftest import realistic_corpus
from test_backends import REPLACEMENTS, _paths, mutate

DATA = Path(__file__).parent / "data" / "apm-server"
METADATA = b'{"metadata": {"service": {"name": "svc", "agent": {"name": "python", "version": "1.0"}}}}'


def _upstream_lines() -> list[bytes]:
    """Every line after the first of the upstream payloads (valid, invalid, v2 and v3)."""
    lines = set()
    for path in sorted(DATA.glob("intake-v*/*.ndjson")):
        lines.update(path.read_bytes().split(b"\n")[1:])
    return sorted(lines)


CRAFTED = [
    b"",
    b"   ",
    b'{"span": {}}',
    b'{"metricset": {"samples": null}}',
    b'{"log": {"message": null}}',
    b'{"log": {"message": "hi"}, "span": {}}',  # two keys: the first decides
    b'{"transaction": null}',
    b'{"transaction": []}',
    b'{"unknown": {}}',
    b"{}",
    b"[]",
    b'{"log": {"message": "x"}} trailing',
    b'{"log": {"message": "\xff"}}',
    b'{"log": {"message": "' + b"x" * 4000 + b'"}}',
]
def _corpus_lines() -> list[bytes]:
    """Some events of the benchmark's realistic corpus."""
    return realistic_corpus(60_000).split(b"\n")[1:]


LINES = _upstream_lines() + CRAFTED + _corpus_lines()


def _batched_init(original):
    """EnvelopeReader.__init__, then the batch path on with jsonschema-rs whatever the backend."""

    def init(self, stream, profile) -> None:
        original(self, stream, profile)
        self._lines_accept = lines_accept(tuple(profile.events.items()), "jsonschema-rs")
        self._batching = True

    return init


def _run(body: bytes, chunk: int) -> tuple[object, list[tuple[str, object, bytes, int, bool]]]:
    events: list[ndintake.Event] = []
    stream = ndintake.IntakeStream(sink=events.extend, limits=ndintake.Limits(max_event_size=3000))
    for start in range(0, len(body), chunk):
        stream.feed(body[start : start + chunk])
    result = stream.close()
    summary = (result.status, result.accepted, result.invalid, result.dropped, result.errors)
    return summary, [(e.kind, e.data, e.raw, e.line, e.abbreviated) for e in events]


@pytest.fixture
def line_by_line(monkeypatch: pytest.MonkeyPatch):
    """Run a body with the batch path switched off."""

    def run(body: bytes, chunk: int):
        with monkeypatch.context() as patch:
            patch.setattr(EnvelopeReader, "_take_batch", lambda self, lines, numbers: False)
            return _run(body, chunk)

    return run


@pytest.fixture
def batched(monkeypatch: pytest.MonkeyPatch):
    """Run a body with the batch path on (jsonschema-rs), counting the pieces it took."""
    taken: list[bool] = []
    original = EnvelopeReader._take_batch

    def take_batch(self, lines, numbers):
        taken.append(original(self, lines, numbers))
        return taken[-1]

    def run(body: bytes, chunk: int):
        with monkeypatch.context() as patch:
            patch.setattr(EnvelopeReader, "__init__", _batched_init(EnvelopeReader.__init__))
            patch.setattr(EnvelopeReader, "_take_batch", take_batch)
            return _run(body, chunk)

    run.taken = taken  # type: ignore[attr-defined]
    return run


def test_the_batch_path_is_taken_for_valid_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """On by default with jsonschema-rs. fastjsonschema has no batch check (it would
    only compile the schemas twice): a piece is then taken whole only when the typed
    check takes every line, which this body's metricset never is."""
    taken = []
    original = EnvelopeReader._take_batch
    monkeypatch.setattr(EnvelopeReader, "_take_batch", lambda self, lines, numbers: taken.append(original(self, lines, numbers)) or taken[-1])
    body = (DATA / "intake-v2" / "events.ndjson").read_bytes()
    assert ndintake.validate(body).status == 202
    if ndintake.backend() == "jsonschema-rs":
        assert taken and all(taken)
    else:
        assert not any(taken)


def test_the_forced_batch_path_is_taken(batched) -> None:
    body = (DATA / "intake-v2" / "events.ndjson").read_bytes()
    (status, accepted, *_), events = batched(body, 1 << 16)
    assert (status, accepted) == (202, 4)
    assert batched.taken and all(batched.taken)


def test_the_batch_check_is_compiled_once() -> None:
    events = tuple(ndintake.IntakeStream()._reader._profile.events.items())
    check = lines_accept(events, "jsonschema-rs")
    assert check is not None and lines_accept(events, "jsonschema-rs") is check
    first, second = ndintake.IntakeStream(), ndintake.IntakeStream(profile="rum")
    assert first._reader._lines_accept is second._reader._lines_accept
    assert (first._reader._lines_accept is not None) == (ndintake.backend() == "jsonschema-rs")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.sampled_from(LINES), min_size=1, max_size=40),
    chunk=st.sampled_from([7, 200, 1000, 1 << 16]),
)
def test_same_result_with_and_without_batches(batched, line_by_line, picks: list[bytes], chunk: int) -> None:
    body = b"\n".join([METADATA, *picks]) + b"\n"
    assert batched(body, chunk) == line_by_line(body, chunk)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.sampled_from(LINES), min_size=1, max_size=12),
    at=st.integers(min_value=0),
    where=st.integers(min_value=0),
    replacement=REPLACEMENTS,
)
def test_same_result_with_a_mutated_event(batched, line_by_line, picks: list[bytes], at: int, where: int, replacement) -> None:
    """One field of one event replaced or dropped, among other lines."""
    parsed = [orjson.loads(line) for line in picks if _is_event(line)]
    if not parsed:
        return
    target = parsed[at % len(parsed)]
    paths = [path for path in _paths(target) if len(path) > 1]
    if paths:
        mutate(target, paths[where % len(paths)], replacement)
    body = b"\n".join([METADATA, *(json.dumps(obj).encode() for obj in parsed)]) + b"\n"
    assert batched(body, 1 << 16) == line_by_line(body, 1 << 16)


def _is_event(line: bytes) -> bool:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return type(obj) is dict and len(obj) == 1 and type(next(iter(obj.values()))) is dict
