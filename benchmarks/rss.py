"""Peak RSS of one streaming ndintake run; meant to run in a fresh subprocess.

``python -m benchmarks.rss --size-mb 200 --codec identity`` streams a realistic
body of that size through one :class:`ndintake.IntakeStream` in 64 KiB chunks
and prints one JSON object. The body is never held whole: a pool of about
2 MB of generated event lines is repeated (and, for gzip or zstd, compressed
on the fly), so the process holds the pool, one block and the stream's own
state. If ndintake buffered the body or the accepted events, RSS would grow
with ``--size-mb``; it should stay flat.

RSS is read from ``/proc/self/statm`` every MiB of input (``samples``) and
the peak from ``VmHWM`` in ``/proc/self/status``, reset after the set-up by
writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), so ``peak_rss_mb``
is the true high-water mark of the streaming part alone (where the reset is
refused, the maximum of the samples is used instead; ``peak_source`` says
which). ``getrusage``'s ``ru_maxrss`` is not used: Linux carries it over from
the parent process across ``exec``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator

import zstandard

import ndintake

from .competitors import CHUNK, LEVELS
from .corpus import DEFAULT_SEED, EVENT_KINDS, realistic_lines

_PAGE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


def high_water_mark() -> int | None:
    """Peak RSS since exec or the last reset (``VmHWM``), in bytes; None if unknown."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_high_water_mark() -> bool:
    """Reset ``VmHWM`` to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "wb") as clear_refs:
            clear_refs.write(b"5")
    except OSError:
        return False
    return True


def pool(seed: int, pool_bytes: int) -> tuple[bytes, bytes, int]:
    """(metadata line, block of event lines, events in the block), lines ending in ``\\n``."""
    lines = realistic_lines(seed)
    head = next(lines) + b"\n"
    parts: list[bytes] = []
    size = 0
    for line in lines:
        parts.append(line)
        size += len(line) + 1
        if size >= pool_bytes:
            break
    return head, b"\n".join(parts) + b"\n", len(parts)


def raw_chunks(head: bytes, block: bytes, repeats: int) -> Iterator[bytes]:
    """``head + block * repeats`` cut into CHUNK-byte chunks, never built whole."""
    pending = head
    for _ in range(repeats):
        data = pending + block
        end = len(data) - len(data) % CHUNK
        for start in range(0, end, CHUNK):
            yield data[start : start + CHUNK]
        pending = data[end:]
    if pending:
        yield pending


def encoded_chunks(chunks: Iterator[bytes], codec: str) -> Iterator[bytes]:
    """Compress a chunk stream on the fly (what an agent's streaming encoder sends)."""
    if codec == "identity":
        yield from chunks
        return
    compress: Callable[[bytes], bytes]
    flush: Callable[[], bytes]
    if codec == "gzip":
        compressor = zlib.compressobj(LEVELS["gzip"], zlib.DEFLATED, 31)
        compress, flush = compressor.compress, compressor.flush
    elif codec == "zstd":
        zobj = zstandard.ZstdCompressor(level=LEVELS["zstd"]).compressobj()
        compress, flush = zobj.compress, zobj.flush
    else:
        raise ValueError(f"codec {codec!r} not supported here (identity, gzip, zstd)")
    for chunk in chunks:
        out = compress(chunk)
        if out:
            yield out
    tail = flush()
    if tail:
        yield tail


def measure(size: int, codec: str, seed: int = DEFAULT_SEED, pool_bytes: int = 2_000_000) -> dict[str, object]:
    head, block, block_events = pool(seed, pool_bytes)
    repeats = max(1, -(-(size - len(head)) // len(block)))
    total = len(head) + repeats * len(block)
    # compile the validators (as a server would at start-up) before the baseline
    sample = [head.rstrip(b"\n")]
    for kind in EVENT_KINDS:
        sample.append(next(line for line in block.split(b"\n") if line.startswith(b'{"' + kind.encode())))
    warm = ndintake.validate(b"\n".join(sample) + b"\n")
    assert warm.accepted == len(EVENT_KINDS), warm
    setup_hwm = high_water_mark()
    reset = reset_high_water_mark()
    setup_rss = current_rss()
    stream = ndintake.IntakeStream(content_encoding=codec, limits=ndintake.Limits(max_body_size=total + 1))
    high = setup_rss
    samples: list[tuple[float, float]] = []  # (decompressed MB produced so far, RSS MB)
    produced = 0
    fed = 0
    next_sample = 0

    def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal produced
        for chunk in chunks:
            produced += len(chunk)
            yield chunk

    start = time.perf_counter()
    for chunk in encoded_chunks(counted(raw_chunks(head, block, repeats)), codec):
        stream.feed(chunk)
        fed += len(chunk)
        if produced >= next_sample:
            rss = current_rss()
            high = max(high, rss)
            if len(samples) < 400:
                samples.append((round(produced / 1e6, 2), round(rss / 1e6, 2)))
            next_sample = produced + (1 << 20)
    result = stream.close()
    seconds = time.perf_counter() - start
    high = max(high, current_rss())
    hwm = high_water_mark() if reset else None
    peak, source = (max(hwm, high), "VmHWM") if hwm is not None else (high, "samples")
    return {
        "codec": codec,
        "body_mb": round(total / 1e6, 2),
        "fed_mb": round(fed / 1e6, 2),
        "pool_mb": round(len(block) / 1e6, 2),
        "status": result.status,
        "accepted": result.accepted,
        "expected": repeats * block_events,
        "seconds": round(seconds, 3),
        "setup_rss_mb": round(setup_rss / 1e6, 2),
        "peak_rss_mb": round(peak / 1e6, 2),
        "peak_source": source,
        "sampled_peak_rss_mb": round(high / 1e6, 2),
        "growth_mb": round((peak - setup_rss) / 1e6, 2),
        "setup_hwm_mb": round(setup_hwm / 1e6, 2) if setup_hwm else None,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rss", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--codec", choices=("identity", "gzip", "zstd"), default="identity")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    print(json.dumps(measure(int(args.size_mb * 1e6), args.codec, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
