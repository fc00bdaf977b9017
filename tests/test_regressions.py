"""Bugs found and fixed, one test each."""

from __future__ import annotations

import brotli

import ndintake
from pathlib import Path

HEAVY = Path(__file__).parent / "data" / "apm-server" / "intake-v2" / "heavy.ndjson"


def test_brotli_drains_output_pending_after_all_input_is_consumed() -> None:
    """Found by the benchmark harness: a br body whose 1 KiB slices inflate past the
    256 KiB output cap lost the pending output (brotli 1.2 says it can take more
    input while output is still waiting), ending in 'br: unexpected EOF'."""
    metadata, events = HEAVY.read_bytes().split(b"\n", 1)
    body = metadata + b"\n" + events * 3
    for quality in (5, 11):
        result = ndintake.validate(brotli.compress(body, quality=quality), content_encoding="br")
        assert (result.status, result.accepted, result.errors) == (202, 3 * 1920, [])
