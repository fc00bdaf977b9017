"""The slow path's decision on one APM event line: every line parsed and checked, no
accept check before it. Shared by tests/test_bytecheck.py and fuzz/fuzz_bytecheck.py."""

from __future__ import annotations

from pathlib import Path

import ndintake
from ndintake.profiles.apm import envelope as _envelope

#: The first line of upstream's intake-v2/minimal.ndjson (as conftest.metadata_line()).
META = (Path(__file__).parent / "data" / "apm-server" / "intake-v2" / "minimal.ndjson").read_bytes().split(b"\n", 1)[0]


def slow_result(line: bytes) -> tuple[int, int, int]:
    """(accepted, invalid, dropped) of ``line`` after a metadata line, with the
    reader's accept check (the scanner, or msgspec's) switched off."""
    saved = _envelope.envelope_check
    _envelope.envelope_check = lambda checked: None  # type: ignore[assignment]
    try:
        result = ndintake.validate(META + b"\n" + line + b"\n")
    finally:
        _envelope.envelope_check = saved
    return result.accepted, result.invalid, result.dropped
