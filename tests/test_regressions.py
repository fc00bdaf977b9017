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


def test_an_oversized_line_that_starts_blank_is_refused_however_it_is_cut() -> None:
    """Found by the fuzzer (its feed_paced run): a prodlytics NDJSON line longer
    than max_event_size whose first max_event_size bytes are blanks was refused
    as too large when it came in one piece, and skipped as a blank line when
    cut while read (only its start is kept). The fuzzer's input, as the body."""
    body = bytes.fromhex(
        "0b" * 72 + "0203017b5b7b2275730100000000000106060606060606060606062b002d00000000000000000000000000"
        "de0000000000350000000000227d5d00000000350000000000227d5d7d0a"
    )
    limits = ndintake.Limits(max_event_size=64, max_body_size=512)
    for profile in ("prodlytics", "apm"):
        whole = ndintake.validate(body, profile=profile, limits=limits)
        for size in (1, 7, 64, 100):
            cut = ndintake.validate_chunks([body[i : i + size] for i in range(0, len(body), size)], profile=profile, limits=limits)
            assert (cut.status, cut.accepted, cut.invalid) == (whole.status, whole.accepted, whole.invalid), (profile, size)
        paced = ndintake.IntakeStream(profile=profile, limits=limits)
        list(paced.feed_paced(body))
        assert paced.close().status == whole.status
    assert ndintake.validate(body, profile="prodlytics", limits=limits).errors[0].message.endswith(
        "item exceeded the permitted size"
    )
