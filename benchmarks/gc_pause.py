"""Does ndintake's GC pause pay off? In-process A/B, rounds interleaved, CPU time.

    python -m benchmarks.gc_pause [--size MB] [--rounds N]

Times one zstd body of the realistic corpus fed in 64 KiB chunks, with
``ndintake.core.stream.gc_paused`` as shipped and replaced by a no-op, for each way
of taking the events: returned by ``feed`` and dropped (``none``) or kept
(``none-keep``); handed to a sink that drops them (``sink``) or keeps them
(``sink-keep``). With a sink the GC is never paused (the sink is user code), so
those two rows show ~1.00 by construction: they are the control.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any, Callable

import zstandard

import ndintake
import ndintake.core.stream as stream_module

from . import corpus


def _once(payload: bytes, mode: str) -> float:
    kept: list[Any] = []
    sinks: dict[str, Callable[[list[ndintake.Event]], object]] = {"sink": lambda events: None, "sink-keep": kept.extend}
    start = time.process_time()
    stream = ndintake.IntakeStream(content_encoding="zstd", sink=sinks.get(mode))
    for offset in range(0, len(payload), 64 * 1024):
        events = stream.feed(payload[offset : offset + 64 * 1024])
        if mode == "none-keep":
            kept.extend(events)
    assert stream.close().status == 202
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gc_pause")
    parser.add_argument("--size", type=float, default=8, metavar="MB")
    parser.add_argument("--rounds", type=int, default=11, metavar="N")
    args = parser.parse_args(argv)
    body = corpus.build("realistic", int(args.size * 1e6))
    payload = zstandard.ZstdCompressor(level=3).compress(body)
    shipped = stream_module.gc_paused
    for mode in ("none", "none-keep", "sink", "sink-keep"):
        times: dict[bool, list[float]] = {True: [], False: []}
        _once(payload, mode)  # warm-up: validators compiled
        for round_ in range(args.rounds):
            for paused in (True, False) if round_ % 2 else (False, True):
                stream_module.gc_paused = shipped if paused else contextlib.nullcontext  # type: ignore[assignment]
                times[paused].append(_once(payload, mode))
        stream_module.gc_paused = shipped
        with_pause, without = statistics.median(times[True]), statistics.median(times[False])
        mb = len(body) / 1e6
        print(
            f"{mode:10s} paused {mb / with_pause:6.1f} MB/s   not paused {mb / without:6.1f} MB/s   "
            f"speed-up {without / with_pause:.3f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
