"""Hostile bodies for ``test_hostile.py`` and ``test_invariants.py``, and a runner
that feeds a body to an IntakeStream in a child process, to measure its peak
memory (C allocations included) and to survive a crash, a hang or a runaway
allocation of the library under test.

Run as a script (``python hostile.py '<json spec>'``) it is that child: it
builds the body, feeds it, and prints one JSON line with the outcome.

Large bodies are never held whole: each source yields chunks, reusing the same
bytes objects, so a 200 MiB line costs one 1 MiB chunk.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import traceback
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import brotli
import orjson
import zstandard

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "apm-server"

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

# -- the bodies' parts ---------------------------------------------------------------------

#: a valid v2 metadata line and five valid error events (upstream's errors.ndjson)
ERRORS_BODY = (DATA / "intake-v2" / "errors.ndjson").read_bytes()
META = (DATA / "intake-v2" / "minimal.ndjson").read_bytes().split(b"\n", 1)[0]
#: a valid error event line
ERROR = b'{"error": {"id": "abcdef0123456789", "log": {"message": "error log message"}}}'
#: a valid span event line
SPAN = (
    b'{"span": {"id": "0123456a89012345", "trace_id": "0123456789abcdef0123456789abcdef",'
    b' "parent_id": "ab23456a89012345", "name": "GET /api/types", "type": "request", "start": 1.845,'
    b' "duration": 3.5642981}}'
)
#: a valid prodlytics item (compact JSON, as orjson writes it)
ITEM_OBJ = {"type": "server", "application": {"id": "app-1"}, "event": {"name": "checkout"}, "usr": {"id": "u1"}}
ITEM = orjson.dumps(ITEM_OBJ)
#: 1 MiB of whitespace lines: blank lines are skipped, so only the body limit stops them
PAD = (b" " * 1023 + b"\n") * 1024

APM_MAX_BODY = 64 * MIB
PRODLYTICS_MAX_BODY = 5_000_000


def item_with(extra: bytes) -> bytes:
    """ITEM with ``extra`` (``"key": value``) added as its last member."""
    return ITEM[:-1] + b"," + extra + b"}"


def error_with(extra: bytes) -> bytes:
    """ERROR with ``extra`` (``"key": value``) added to the error object."""
    return ERROR[:-2] + b", " + extra + b"}}"


def too_large_message(limit: int) -> str:
    return f"request body too large: more than {limit} bytes after decompression"


# -- codecs --------------------------------------------------------------------------------

#: codec name -> Content-Encoding to declare
DECLARED: dict[str, str | None] = {
    "identity": "identity",
    "sniff": None,
    "gzip": "gzip",
    "sniff-gzip": None,
    "deflate": "deflate",
    "deflate-raw": "deflate",
    "sniff-deflate": None,
    "zstd": "zstd",
    "sniff-zstd": None,
    "br": "br",
    "gzip, br": "gzip, br",
}

#: codec name -> the name of the codec library in ndintake's messages

_WBITS = {"gzip": 31, "sniff-gzip": 31, "deflate": 15, "sniff-deflate": 15, "deflate-raw": -15}


def compress(data: bytes, codec: str) -> bytes:
    if codec in ("identity", "sniff"):
        return data
    if codec in _WBITS:
        c = zlib.compressobj(6, zlib.DEFLATED, _WBITS[codec])
        return c.compress(data) + c.flush()
    if codec in ("zstd", "sniff-zstd"):
        return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    if codec == "br":
        return brotli.compress(data, quality=5)
    if codec == "gzip, br":
        return brotli.compress(compress(data, "gzip"), quality=5)
    raise AssertionError(codec)


def flushed(parts: list[bytes], codec: str) -> tuple[bytes, list[int]]:
    """``parts`` compressed with a flush after each; also the offset where each
    part's flushed data ends (cut there, exactly the first k parts were sent)."""
    data = b""
    ends: list[int] = []
    if codec in _WBITS:
        c = zlib.compressobj(6, zlib.DEFLATED, _WBITS[codec])
        for part in parts:
            data += c.compress(part) + c.flush(zlib.Z_SYNC_FLUSH)
            ends.append(len(data))
        data += c.flush()
    elif codec in ("zstd", "sniff-zstd"):
        z = zstandard.ZstdCompressor(write_checksum=True).compressobj()
        for part in parts:
            data += z.compress(part) + z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            ends.append(len(data))
        data += z.flush()
    elif codec == "br":
        b = brotli.Compressor(quality=5)
        for part in parts:
            data += b.process(part) + b.flush()
            ends.append(len(data))
        data += b.finish()
    elif codec == "gzip, br":
        g = zlib.compressobj(6, zlib.DEFLATED, 31)
        b = brotli.Compressor(quality=5)
        for part in parts:
            data += b.process(g.compress(part) + g.flush(zlib.Z_SYNC_FLUSH)) + b.flush()
            ends.append(len(data))
        data += b.process(g.flush()) + b.finish()
    else:
        raise AssertionError(codec)
    return data, ends


# -- decompression bombs -------------------------------------------------------------------


def _deflate_blocks(prefix: bytes, unit: bytes) -> tuple[bytes, bytes, bytes]:
    """Raw deflate data for prefix, one unit, and the end: after a full flush the
    compressed block for ``unit`` is always the same, so a bomb is that block repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH) == block
    return head, block, c.flush()


def bomb(codec: str, prefix: bytes, unit: bytes, count: int) -> bytes:
    """A valid stream of ``prefix + unit * count`` for ``codec`` (gzip, deflate
    (zlib), deflate-raw, zstd, br, "gzip, br"), built without holding its output."""
    if codec in ("gzip", "deflate", "deflate-raw"):
        head, block, tail = _deflate_blocks(prefix, unit)
        raw = head + block * count + tail
        size = len(prefix) + len(unit) * count
        if codec == "deflate-raw":
            return raw
        if codec == "gzip":
            crc = zlib.crc32(prefix)
            for _ in range(count):
                crc = zlib.crc32(unit, crc)
            return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + raw + struct.pack("<II", crc, size & 0xFFFFFFFF)
        adler = zlib.adler32(prefix)
        for _ in range(count):
            adler = zlib.adler32(unit, adler)
        return b"\x78\xda" + raw + struct.pack(">I", adler)
    if codec == "zstd":
        z = zstandard.ZstdCompressor(level=3).compressobj()
        return z.compress(prefix) + b"".join(z.compress(unit) for _ in range(count)) + z.flush()
    if codec == "br":  # quality 1: 8x faster to build than 5, still > 4000x
        b = brotli.Compressor(quality=1)
        return b.process(prefix) + b"".join(b.process(unit) for _ in range(count)) + b.finish()
    if codec == "gzip, br":  # a gzip bomb inside a brotli bomb
        return brotli.compress(bomb("gzip", prefix, unit, count), quality=5)
    raise AssertionError(codec)


# -- chunk sources (run in the child; each yields the body in chunks) ----------------------


def _repeat(chunk: bytes, total: int) -> Iterator[bytes]:
    """``total`` bytes of ``chunk`` repeated, as whole chunks (the same object)."""
    full, rest = divmod(total, len(chunk))
    for _ in range(full):
        yield chunk
    if rest:
        yield chunk[:rest]


def source_file(path: str, chunk: int) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        yield bytes(view[start : start + chunk])


def source_long_line(head: str, size: int, tail: str, chunk: int, fill: str = "a") -> Iterator[bytes]:
    """``head`` + ``size`` bytes of ``fill`` + ``tail`` (latin-1 strings in the spec)."""
    yield head.encode("latin-1")
    yield from _repeat(fill.encode("latin-1") * chunk, size)
    yield tail.encode("latin-1")


def source_gzip_long_line(head: str, size: int, tail: str, chunk: int, fill: str = "a") -> Iterator[bytes]:
    """The same body gzip-compressed on the fly, handed on ``chunk`` bytes at a time."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    pending = bytearray()
    for piece in source_long_line(head, size, tail, MIB, fill):
        pending += c.compress(piece)
        while len(pending) >= chunk:
            yield bytes(pending[:chunk])
            del pending[:chunk]
    pending += c.flush()
    for start in range(0, len(pending), chunk):
        yield bytes(pending[start : start + chunk])


def source_repeat(head: str, unit: str, count: int, tail: str, chunk: int) -> Iterator[bytes]:
    """``head`` + ``unit * count`` + ``tail``, in chunks of about ``chunk`` bytes."""
    yield head.encode("latin-1")
    block = unit.encode("latin-1") * max(1, chunk // len(unit))
    yield from _repeat(block, len(unit) * count)
    yield tail.encode("latin-1")


SOURCES: dict[str, Callable[..., Iterable[bytes]]] = {
    "file": source_file,
    "long_line": source_long_line,
    "gzip_long_line": source_gzip_long_line,
    "repeat": source_repeat,
}


# -- the child -----------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kib() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def _warm_up(ndintake: Any) -> None:
    """Compile every schema and touch every decoder once, so the measurement is
    the body's and not the first use's."""
    for profile, body in (("apm", ERRORS_BODY + SPAN + b"\n"), ("rum", ERRORS_BODY), ("prodlytics", ITEM)):
        for codec in ("identity", "gzip", "deflate", "zstd", "br"):
            ndintake.validate(compress(body, codec), profile=profile, content_encoding=DECLARED[codec])
    ndintake.validate(b"[" + ITEM + b"," + b'{"type": 1}' + b"]", profile="prodlytics")
    ndintake.validate(ERRORS_BODY + b'{"span": {}}\n{"x": {}}\n{"e": {}}\n')


def _reset_peak() -> bool:
    """Reset the peak RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_kib() -> int:
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else _maxrss_kib()


def _cap_address_space(cap_mib: int | None) -> None:
    """Cap the address space ``cap_mib`` above the current size (Linux): a runaway
    allocation of the library becomes a MemoryError, not the OOM killer's victim."""
    if not cap_mib or not sys.platform.startswith("linux"):
        return
    import resource

    size = _status_kib("VmSize")
    if size is not None:
        limit = size * KIB + cap_mib * MIB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run_spec(ndintake: Any, spec: dict[str, Any], reset: bool) -> dict[str, Any]:
    limits = ndintake.Limits(**spec["limits"]) if spec.get("limits") else None
    source = SOURCES[spec["source"]](**spec["args"])
    out: dict[str, Any] = {"crash": None}
    baseline = _status_kib("VmRSS") if reset else _maxrss_kib()
    started = time.perf_counter()
    delivered = 0
    batches = []

    def sink(events: list[Any]) -> None:
        batches.append(len(events))

    try:
        options = {"sink": sink} if spec.get("sink") else {}
        stream = ndintake.IntakeStream(
            profile=spec["profile"], content_encoding=spec.get("encoding"), limits=limits, **options
        )
        for chunk in source:
            delivered += len(stream.feed(chunk))
            if stream.finished and spec.get("stop_at_fatal", True):
                break
        result = stream.close()
        delivered += len(result.final_events) + sum(batches)
        out["elapsed"] = time.perf_counter() - started
        out["largest_batch"] = max(batches, default=0)
        out.update(
            status=result.status,
            accepted=result.accepted,
            delivered=delivered,
            invalid=result.invalid,
            dropped=result.dropped,
            errors=[
                {
                    "message": e.message,
                    "document_head": (e.document or "")[:64],
                    "document_len": len(e.document or ""),
                    "document_chars": sorted(set(e.document or ""))[:4],
                    "line": e.line,
                    "status": e.status,
                    "fatal": e.fatal,
                }
                for e in result.errors
            ],
            body_keys=sorted(json.loads(result.body())),
        )
        del stream, result
    except BaseException as exc:  # report it: the parent turns it into a failure
        out["elapsed"] = time.perf_counter() - started
        out["crash"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        out["traceback"] = traceback.format_exc()[-3000:]
    peak = _peak_kib() if reset else _maxrss_kib()
    out["rss_growth_mib"] = max(0, peak - (baseline or 0)) / 1024
    return out


def _release_free_memory() -> None:
    """Hand freed heap pages back to the system (glibc), so that the next spec's
    peak is measured from what is really in use."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run each spec in turn; each one's peak RSS growth is measured from a reset
    peak (on Linux; elsewhere a batch should hold one spec)."""
    import gc

    import ndintake

    _warm_up(ndintake)
    _cap_address_space(max((spec.get("cap_mib") or 0) for spec in specs))
    outs = []
    for spec in specs:
        gc.collect()
        _release_free_memory()
        reset = _reset_peak() and _status_kib("VmRSS") is not None
        outs.append(_run_spec(ndintake, spec, reset))
    return outs


def run_isolated(spec: dict[str, Any] | list[dict[str, Any]], timeout: float = 90.0) -> Any:
    """Run ``spec`` (or a list of specs, in one process) in a child process (see
    :func:`child`); a hang past ``timeout`` seconds or a dead child raises
    AssertionError with what it printed."""
    specs = spec if isinstance(spec, list) else [spec]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__)), json.dumps(specs)],
            capture_output=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hang: no result within {timeout} s for {specs}") from None
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"child died (exit {proc.returncode}) for {specs}\nstdout: {proc.stdout[-2000:]!r}\nstderr: {proc.stderr[-4000:]!r}"
        )
    outs = json.loads(lines[-1])
    return outs if isinstance(spec, list) else outs[0]


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))


# -- in-process runs and the invariants every result must satisfy ------------------------


def chunks_of(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[start : start + size] for start in range(0, len(data), size)] or [b""]


def feed(
    chunks: Iterable[bytes],
    profile: str = "apm",
    encoding: str | None = None,
    limits: Any = None,
    stop_at_fatal: bool = False,
) -> tuple[Any, list[Any]]:
    """Feed ``chunks`` to a stream; return the result and every delivered event."""
    import ndintake

    stream = ndintake.IntakeStream(profile=profile, content_encoding=encoding, limits=limits)
    events: list[Any] = []
    for chunk in chunks:
        events.extend(stream.feed(chunk))
        if stop_at_fatal and stream.finished:
            break
    result = stream.close()
    events.extend(result.final_events)
    return result, events


def outcome(result: Any) -> tuple[Any, ...]:
    """A result as (status, accepted, invalid, [(message, document, line, status, fatal)])."""
    return (
        result.status,
        result.accepted,
        result.invalid,
        [(e.message, e.document, e.line, e.status, e.fatal) for e in result.errors],
    )


def short(value: Any, width: int = 160) -> str:
    """A repr cut to ``width`` characters per string (failure messages stay readable
    and cheap when documents are hundreds of kilobytes)."""
    if isinstance(value, (str, bytes)):
        text = repr(value)
        return text if len(text) <= width else f"{text[:width]}...<{len(value)} long>"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(short(v, width) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {short(v, width)}" for k, v in value.items()) + "}"
    return repr(value)


def expect(result: Any, expected: tuple[Any, ...]) -> None:
    """``outcome(result) == expected``, with a short message when it is not."""
    actual = outcome(result)
    if actual != expected:
        raise AssertionError(f"\nactual:   {short(actual)}\nexpected: {short(expected)}")


def check(result: Any, events: list[Any], profile: str = "apm") -> None:
    """What must hold for every result of every profile."""
    import ndintake

    assert len(events) == result.accepted, "events delivered != accepted"
    per_event = [e for e in result.errors if not e.fatal]
    fatal = [e for e in result.errors if e.fatal]
    assert len(per_event) <= ndintake.MAX_EVENT_ERRORS
    assert len(fatal) <= 1 and (not fatal or result.errors[-1] is fatal[0])
    assert result.fatal is (fatal[0] if fatal else None)
    assert result.invalid >= len(per_event)
    assert result.status == max((e.status for e in result.errors), default=202)
    for error in result.errors:
        assert isinstance(error.message, str) and error.message
        assert error.document is None or isinstance(error.document, str)
    # the response is JSON, whatever went in (orjson refuses lone surrogates)
    body = json.loads(result.body())
    json.loads(result.body(pretty=True))
    assert json.loads(json.dumps(result.to_json())) == body
    if profile == "prodlytics":
        assert (body == {}) == (not result.errors)
    else:
        assert body["accepted"] == result.accepted
    for event in events:
        assert isinstance(event.raw, bytes) and isinstance(event.data, dict)
