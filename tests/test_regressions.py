"""Bugs found and fixed, one test each."""

from __future__ import annotations

from pathlib import Path

import brotli
import zstandard

import ndintake
from conftest import ZSTD_SKIPPABLE

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


def test_zstd_block_before_a_partial_frame_magic_is_handed_on() -> None:
    """Found by test_properties: a chunk that ended a zstd frame's last block and
    then held the first bytes of the next (skippable) frame's magic kept that
    block's output back; a body cut short right after lost it, and the result
    depended on the chunking (400 'zstd: unexpected EOF' instead of 500 once the
    metadata line was read)."""
    metadata = (
        b'{"metadata": { "service": {"name": "1234_service-12a3", "language": {"name": "ecmascript"},'
        b' "agent": {"version": "3.14.0", "name": "elastic-node"}}}}\r\n'
    )
    first = zstandard.ZstdCompressor(level=3).compress(metadata)
    payload = first + ZSTD_SKIPPABLE[:5]  # cut short in the skippable frame's header
    expected = (500, 0, "cannot handle stream: unexpected EOF")
    for cut in range(len(first) - 2, len(payload)):  # before, in and after the skippable magic
        stream = ndintake.IntakeStream(content_encoding="zstd")
        stream.feed(payload[:cut])
        stream.feed(payload[cut:])
        result = stream.close()
        assert (result.status, result.accepted, result.errors[-1].message) == expected, cut
