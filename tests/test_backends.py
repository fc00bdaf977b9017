"""jsonschema-rs and fastjsonschema give the same decision on every event."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndintake
from ndintake.core import schemas as _schemas
from ndintake.profiles.base import PROFILES
from conftest import realistic_corpus

DATA = Path(__file__).parent / "data"
VALIDATORS = {key: v for p in PROFILES.values() for key, v in {**p.metadata, **p.events}.items()}
ITEM = PROFILES["prodlytics"].item


def _samples() -> list[tuple[str, Any]]:
    """(key, object) for every parseable line of the APM test data, and prodlytics items."""
    out = []
    for path in sorted((DATA / "apm-server").glob("intake-v*/*.ndjson")):
        for line in path.read_bytes().splitlines():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and obj:
                key = next(iter(obj))
                if key in VALIDATORS:
                    out.append((key, obj[key]))
    for path in sorted((DATA / "datadog" / "client-captures").glob("*.body.bin")):
        out.append(("prodlytics", orjson.loads(path.read_bytes())))
    unique = {orjson.dumps(sample): sample for sample in out}  # heavy.ndjson repeats itself
    return list(unique.values())


def _corpus() -> list[tuple[str, Any]]:
    """(key, object) for every line of a slice of the benchmark's realistic corpus."""
    pairs = []
    for line in realistic_corpus().splitlines():
        obj = orjson.loads(line)
        key = next(iter(obj))
        pairs.append((key, obj[key]))
    return pairs


SAMPLES = _samples()
CORPUS = _corpus()


def _validator(key: str) -> Any:
    return ITEM if key == "prodlytics" else VALIDATORS[key]


def _decisions(key: str, value: Any) -> tuple[bool, bool]:
    validator = _validator(key)
    return validator.accept("jsonschema-rs")(value), validator.accept("fastjsonschema")(value)


def test_backend_reported() -> None:
    assert ndintake.backend() in ndintake.BACKENDS


def test_samples_cover_every_kind() -> None:
    kinds = {key for key, _ in SAMPLES}
    assert {"metadata", "transaction", "span", "error", "metricset", "log", "prodlytics"} <= kinds


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_same_decision_on_reference_data(index: int) -> None:
    key, value = SAMPLES[index]
    rs, fjs = _decisions(key, value)
    assert rs == fjs


def test_same_decision_on_the_benchmark_corpus() -> None:
    """The benchmark corpus is valid: both backends accept every line of it."""
    assert {key for key, _ in CORPUS} >= {"metadata", "transaction", "span", "error", "metricset", "log"}
    assert {(key, _decisions(key, value)) for key, value in CORPUS} == {(key, (True, True)) for key, _ in CORPUS}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def mutate(value: Any, path: tuple[Any, ...], replacement: Any) -> None:
    """Replace the field at ``path`` in place (``"DROP"``: delete it)."""
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    if replacement == "DROP":
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement


REPLACEMENTS = st.sampled_from(
    [None, 0, -1, 1.5, 10**20, True, "", "x" * 1025, "a*b", [], {}, ["x"], {"k": "v"}, "DROP"]
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SAMPLES + CORPUS), st.integers(min_value=0), REPLACEMENTS)
def test_same_decision_on_mutated_events(sample: tuple[str, Any], where: int, replacement: Any) -> None:
    """One field of a real or benchmark event replaced (or dropped): both backends still agree."""
    key, value = sample
    value = copy.deepcopy(value)
    paths = [p for p in _paths(value) if p]
    if not paths:
        return
    path = paths[where % len(paths)]
    mutate(value, path, replacement)
    rs, fjs = _decisions(key, value)
    assert rs == fjs, (key, path, replacement)


# -- NDINTAKE_BACKEND ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, chosen",
    [
        (None, "jsonschema-rs"),
        ("", "jsonschema-rs"),
        ("  ", "jsonschema-rs"),
        ("fastjsonschema", "fastjsonschema"),
        (" fastjsonschema\n", "fastjsonschema"),
        ("jsonschema-rs", "jsonschema-rs"),
    ],
)
def test_backend_variable_is_parsed(monkeypatch: pytest.MonkeyPatch, value: str | None, chosen: str) -> None:
    if value is None:
        monkeypatch.delenv("NDINTAKE_BACKEND", raising=False)
    else:
        monkeypatch.setenv("NDINTAKE_BACKEND", value)
    assert _schemas._default_backend() == chosen


@pytest.mark.parametrize("value", ["fast", "JSONSCHEMA-RS", "jsonschema", "fastjsonschema,jsonschema-rs"])
def test_unknown_backend_is_an_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NDINTAKE_BACKEND", value)
    with pytest.raises(ndintake.NdintakeError) as error:
        _schemas._default_backend()
    assert str(error.value) == f"NDINTAKE_BACKEND={value!r}; known backends: jsonschema-rs, fastjsonschema"


def test_without_jsonschema_rs_the_default_is_fastjsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_schemas, "jsonschema_rs", None)
    monkeypatch.delenv("NDINTAKE_BACKEND", raising=False)
    assert _schemas._default_backend() == "fastjsonschema"
    monkeypatch.setenv("NDINTAKE_BACKEND", "jsonschema-rs")
    with pytest.raises(ndintake.NdintakeError, match="jsonschema_rs cannot be imported"):
        _schemas._default_backend()


def test_backend_variable_is_read_at_import() -> None:
    code = "import ndintake; print(ndintake.backend())"
    for value, out in (("fastjsonschema", "fastjsonschema"), ("jsonschema-rs", "jsonschema-rs")):
        done = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "NDINTAKE_BACKEND": value},
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert (done.returncode, done.stdout.strip()) == (0, out)
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "NDINTAKE_BACKEND": "nope"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert "ndintake.core.errors.NdintakeError: NDINTAKE_BACKEND='nope'; known backends" in done.stderr
