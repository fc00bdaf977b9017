"""Bounded streaming content decoders (identity, gzip, deflate, zstd, br) and sniffing.

Every decoder is pushed compressed bytes and pushes decoded pieces of at most
``OUTPUT_CHUNK`` bytes to a *sink* callable, one at a time. The sink may raise
to stop decoding, so a decompression bomb costs one piece of memory and the
time to inflate up to the body limit, never more.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable, Protocol

import brotli
import zstandard

if TYPE_CHECKING:  # zlib-ng's stubs declare less; it has the same API as zlib
    import zlib
else:
    try:  # zlib-ng (ndintake[fast]): the same API and messages as zlib, inflating about 1.7x faster
        from zlib_ng import zlib_ng as zlib
    except ImportError:  # pragma: no cover - depends on what is installed
        import zlib

from .errors import DecodeError

Sink = Callable[[bytes], None]

#: Largest piece a decoder hands to its sink.
OUTPUT_CHUNK = 64 * 1024
#: A compressed body cut short, as APM Server says it (Go's io.ErrUnexpectedEOF): no codec named.
UNEXPECTED_EOF = "unexpected EOF"
#: Most output a br decoder hands on per ``decode`` call (the rest waits: ``pending``).
STEP_OUTPUT = OUTPUT_CHUNK
#: Largest zstd window accepted (RFC 9659: 8 MB for the HTTP content coding);
#: a frame asking for more is refused instead of allocating it.
ZSTD_MAX_WINDOW = 8 * 1024 * 1024

#: Input slice used to recover the output decoded before an error (zlib), and
#: fed to brotli per call.
_SALVAGE_SLICE = 16
_BROTLI_SLICE = 1024
#: Compressed br input held for salvage before a second decoder takes it (see BrotliDecoder).
_BROTLI_HOLD = 1 << 20
#: Raw deflate is trusted once it has produced a newline or this many bytes;
#: an error before that means the body was no deflate stream at all.
_RAW_PROBE = 4096

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Decoder(Protocol):
    """What the stream needs from a content decoder.

    ``pending`` is true when a decoder stopped before it handed on all the
    output of what it was given (only br does, after ``STEP_OUTPUT`` bytes: a
    few bytes of br can stand for megabytes); ``decode(b"", sink)`` then goes on
    from where it stopped.
    """

    @property
    def pending(self) -> bool:
        """True while output of what was given is still owed."""

    def decode(self, data: bytes, sink: Sink) -> None:
        """Decode one chunk of the body, pushing output pieces to ``sink``."""

    def finish(self, sink: Sink) -> None:
        """End of body: push what is left, raise :class:`DecodeError` if truncated."""


class IdentityDecoder:
    """No content coding: bytes pass through, cut into bounded pieces."""

    pending = False

    def decode(self, data: bytes, sink: Sink) -> None:
        if len(data) <= OUTPUT_CHUNK:
            sink(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), OUTPUT_CHUNK):
            sink(bytes(view[start : start + OUTPUT_CHUNK]))

    def finish(self, sink: Sink) -> None:
        pass


def _zlib_reason(exc: zlib.error) -> str:
    text = str(exc)
    return text.split("while decompressing data: ", 1)[-1]


def _is_zlib_header(head: bytes) -> bool:
    """RFC 1950 header: deflate method, window <= 32 KiB, header checksum."""
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


class ZlibDecoder:
    """gzip (all members of a multi-member body) or deflate (zlib-wrapped, else raw).

    Output per ``inflate`` call is capped with ``max_length`` and
    ``unconsumed_tail``, and per ``decode`` call at ``STEP_OUTPUT`` bytes: the
    rest waits for the next call (``pending``), so a step's work stays bounded
    (deflate inflates up to ~1000 times).
    """

    def __init__(self, coding: str) -> None:
        self._coding = coding  # "gzip" or "deflate"
        self._head = b""  # bytes waiting for a member's magic check
        self._inflate: zlib._Decompress | None = None
        self._raw_probe = False  # deflate fell back to raw: errors before a newline mean a bad header
        self._probed = 0  # output bytes while probing
        self._done = False  # a deflate stream ended: the rest is ignored, as APM Server does
        self._output = False  # any output yet (a bad gzip member header later is a mid-stream error)
        self._resume: bytes | None = None  # input to go on with once the step's output budget ran out

    @property
    def pending(self) -> bool:
        return self._resume is not None

    def _start(self, head: bytes) -> None:
        if self._coding == "gzip":
            if head != _GZIP_MAGIC:
                raise DecodeError("gzip: invalid header", at_header=not self._output)
            self._inflate = zlib.decompressobj(31)
        elif _is_zlib_header(head):
            self._inflate = zlib.decompressobj(15)
        else:
            self._inflate = zlib.decompressobj(-15)
            self._raw_probe = True

    def decode(self, data: bytes, sink: Sink) -> None:
        budget = _Budget(STEP_OUTPUT)
        if self._resume is not None:
            data, self._resume = self._resume + data, None
            if self._inflate is not None:  # stopped inside a member: go on with it, even with no input
                data = self._inflate_some(data, sink, budget)
        while data and not self._done and self._resume is None:
            if self._inflate is None:
                data = self._head + data
                if len(data) < 2:
                    self._head = data
                    return
                self._head = b""
                self._start(data[:2])
            data = self._inflate_some(data, sink, budget)

    def _inflate_some(self, data: bytes, sink: Sink, budget: _Budget) -> bytes:
        """Inflate ``data`` into the current member; return the bytes after its
        end. Once ``budget`` is spent, stop and keep the rest in ``_resume``."""
        inflate = self._inflate
        assert inflate is not None
        while True:
            if budget.left <= 0:
                self._resume = data
                return b""
            before = inflate.copy()
            try:
                out = inflate.decompress(data, OUTPUT_CHUNK)
            except zlib.error as exc:
                _salvage(before, data, lambda piece: self._emit(piece, sink))
                raise self._error(_zlib_reason(exc)) from None
            if out:
                budget.left -= len(out)
                self._emit(out, sink)
            if inflate.eof:
                self._inflate = None
                if self._coding == "deflate":
                    self._done = True
                return inflate.unused_data
            data = inflate.unconsumed_tail
            if not data and len(out) < OUTPUT_CHUNK:
                return b""

    def _emit(self, out: bytes, sink: Sink) -> None:
        if self._raw_probe:
            self._probed += len(out)
            if b"\n" in out or self._probed >= _RAW_PROBE:
                self._raw_probe = False  # raw deflate that makes lines (or enough text): past the header
        self._output = True
        sink(out)

    def _error(self, reason: str, *, corrupt: bool = True) -> DecodeError:
        if self._raw_probe and (corrupt or not self._output):
            return DecodeError("zlib: invalid header", at_header=True)
        if reason == UNEXPECTED_EOF:  # Go's io.ErrUnexpectedEOF, which names no codec
            return DecodeError(reason)
        return DecodeError(f"{'gzip' if self._coding == 'gzip' else 'flate'}: {reason}")

    def finish(self, sink: Sink) -> None:
        while self._resume is not None:
            self.decode(b"", sink)
        if self._head or (self._inflate is not None and not self._done):
            # cut short: once raw deflate has decoded something, it was deflate
            raise self._error(UNEXPECTED_EOF, corrupt=False)


class _Budget:
    """Output a decoder may still hand on in this call."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _salvage(inflate: zlib._Decompress, data: bytes, sink: Sink, step: int = _SALVAGE_SLICE) -> None:
    """``data`` made ``inflate`` fail, losing that call's output: decode it again
    from a copy of the state before, in slices of ``step`` bytes and then byte by
    byte within the failing slice, pushing all that comes out before the error
    (so a bad checksum at the end loses nothing)."""
    for start in range(0, len(data), step):
        piece = data[start : start + step]
        before = inflate.copy() if step > 1 else inflate
        try:
            while True:
                out = inflate.decompress(piece, OUTPUT_CHUNK)
                if out:
                    sink(out)
                if inflate.eof:
                    return
                piece = inflate.unconsumed_tail
                if not piece and len(out) < OUTPUT_CHUNK:
                    break
        except zlib.error:
            if step > 1:
                _salvage(before, data[start : start + step], sink, 1)
            return


class _ZstdFrames:
    """Tracks zstd frame and block boundaries in the compressed input.

    The zstandard streaming writer cannot tell whether input stopped inside a
    frame; this scanner can, from the frame and block headers alone. It also
    tells where blocks end, so the decoder can feed zstd one block at a time.
    """

    __slots__ = ("_buf", "_need", "_skip", "_state", "_checksum", "frames", "bad")

    def __init__(self) -> None:
        self._buf = b""
        self._need = 4
        self._skip = 0
        self._state = "magic"
        self._checksum = 0
        self.frames = 0  # frame magics seen and valid
        self.bad = False  # stopped on bytes that are no frame

    @property
    def at_boundary(self) -> bool:
        return self._state == "magic" and not self._buf and not self._skip

    @property
    def partial_magic(self) -> int:
        """How many bytes of a frame magic have been seen, while it is incomplete."""
        return len(self._buf) if self._state == "magic" else 0

    def feed(self, data: bytes) -> list[int]:
        """Scan ``data``; return the offsets where a block's content ends, and last
        the offset where scanning stopped (``len(data)`` unless ``bad``)."""
        cuts = []
        pos, size = 0, len(data)
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                if not self._skip and pos < size:
                    cuts.append(pos)
                continue
            step = min(self._need - len(self._buf), size - pos)
            self._buf += data[pos : pos + step]
            pos += step
            if self._state == "magic" and not _magic_prefix(self._buf):
                self.bad = True  # junk: no frame starts like this, however it is cut
                cuts.append(pos - len(self._buf))
                self._buf = b""
                return cuts
            if len(self._buf) == self._need:
                header, self._buf = self._buf, b""
                if not self._advance(header):
                    self.bad = True
                    cuts.append(pos - self._need)
                    return cuts
        cuts.append(size)
        return cuts

    @property
    def between_blocks(self) -> bool:
        """True when no block is half read: all output so far is final."""
        return not self._skip and not self._buf and self._state != "descriptor"

    def _advance(self, header: bytes) -> bool:
        state = self._state
        if state == "magic":
            if header == _ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif header[1:] == b"\x2a\x4d\x18" and header[0] & 0xF0 == 0x50:
                self._state, self._need = "skippable", 4
            else:
                return False
            self.frames += 1
        elif state in ("skippable", "checksum"):
            self._skip = int.from_bytes(header, "little") if state == "skippable" else 0
            self._state, self._need = "magic", 4
        elif state == "descriptor":
            descriptor = header[0]
            single_segment = descriptor >> 5 & 1
            self._checksum = descriptor >> 2 & 1
            content_size = (single_segment, 2, 4, 8)[descriptor >> 6]
            self._skip = (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3] + content_size
            self._state, self._need = "block", 3
        else:  # block header
            value = int.from_bytes(header, "little")
            block_type, block_size = value >> 1 & 3, value >> 3
            self._skip = 1 if block_type == 1 else block_size
            if value & 1:  # last block of the frame
                self._state, self._need = ("checksum", 4) if self._checksum else ("magic", 4)
        return True


def _magic_prefix(head: bytes) -> bool:
    """Whether ``head`` can start a zstd frame or a skippable frame."""
    if _ZSTD_MAGIC.startswith(head):
        return True
    return head[0] & 0xF0 == 0x50 and b"\x2a\x4d\x18".startswith(head[1:])


class _SinkWriter:
    """File-like adapter: zstandard's stream writer pushes output to a sink.

    Output is handed on block by block, once the block is complete, so a block
    that fails at its end (a wrong content size) loses the same output however
    the body is cut. An exception from the sink is kept, not raised through
    zstandard (whose writer leaks its output buffer when ``write`` raises); the
    decoder raises it once zstandard returns.
    """

    __slots__ = ("sink", "error", "pending")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.error: BaseException | None = None
        self.pending: list[bytes] = []  # output of the block being read (at most 128 KiB)

    def write(self, data: bytes) -> int:
        if data:
            self.pending.append(bytes(data))
        return len(data)

    def flush(self) -> int:
        """A block is complete: hand on its output; return its size."""
        pending, self.pending = self.pending, []
        for data in pending:
            if self.error is None:
                try:
                    self.sink(data)
                except BaseException as exc:  # handed back by ZstdDecoder
                    self.error = exc
        return sum(map(len, pending))


class ZstdDecoder:
    """zstd, any number of frames (skippable frames included).

    Input is cut at block boundaries and given to zstd block by block; a call
    hands on about ``STEP_OUTPUT`` bytes at most (whole blocks), and the blocks
    it has not reached wait for the next call (``pending``).
    """

    def __init__(self) -> None:
        self._writer = _SinkWriter(_discard)
        self._zstd = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_writer(
            self._writer,  # type: ignore[arg-type]  # only write() is called
            write_size=OUTPUT_CHUNK,
            write_return_read=True,
        )
        self._frames = _ZstdFrames()
        self._held = b""  # the start of a frame magic, not given to zstd yet
        self._segments: deque[tuple[bytes, bool]] = deque()  # (input, ends a block), not given to zstd yet
        self._bad: DecodeError | None = None  # bytes that are no frame, after the segments

    @property
    def pending(self) -> bool:
        return bool(self._segments)

    def decode(self, data: bytes, sink: Sink) -> None:
        self._writer.sink = sink
        try:
            if data:
                self._scan(data)
            self._write()
        finally:
            self._writer.sink = _discard  # no reference back to the stream: no cycle to leak

    def _scan(self, data: bytes) -> None:
        """Cut ``data`` into segments that end where blocks end."""
        frames = self._frames
        held = self._held
        cuts = frames.feed(data)  # offsets in data
        stream = held + data if held else data
        # A frame magic not complete yet is held back: zstd would judge it by its
        # first bytes, and junk must get the same error however the body is cut.
        limit = len(stream) - frames.partial_magic
        start = 0
        last = len(cuts) - 1
        for index, cut in enumerate(cuts):
            end = min(cut + len(held), limit)
            if end > start:
                segment = stream[start:end] if start or end < len(stream) else stream
                # a block ended here (every cut but the last is a block's end, even
                # one followed by a frame magic held back), or the scan stopped between blocks
                self._segments.append((segment, index < last or frames.between_blocks))
                start = end
        self._held = stream[limit:]
        if frames.bad:
            self._bad = DecodeError("zstd: invalid header", at_header=frames.frames == 0)

    def _write(self) -> None:
        """Give zstd the segments, block by block (zstd loses a failing call's
        output, and a bad checksum or junk after the last frame must not cost the
        blocks before), until about ``STEP_OUTPUT`` bytes came out."""
        budget = STEP_OUTPUT
        while self._segments and budget > 0:
            segment, block_end = self._segments.popleft()
            try:
                self._zstd.write(segment)
            except zstandard.ZstdError as exc:
                if not self._frames.frames:  # failed before a frame's magic was even complete
                    raise DecodeError("zstd: invalid header", at_header=True) from None
                raise DecodeError(f"zstd: {str(exc).removeprefix('zstd decompress error: ')}") from None
            if block_end:
                budget -= self._writer.flush()
                if self._writer.error is not None:
                    error, self._writer.error = self._writer.error, None
                    raise error
        if not self._segments and self._bad is not None:
            raise self._bad

    def finish(self, sink: Sink) -> None:
        while self._segments:
            self.decode(b"", sink)
        if not self._frames.at_boundary:
            raise DecodeError(UNEXPECTED_EOF)


def _discard(data: bytes) -> None:
    pass


class BrotliDecoder:
    """br, with the output of each call capped by ``output_buffer_limit``.

    brotli loses the output of a failing call and its state cannot be copied.
    So a second decoder trails the first: the 1 KiB input slices the first one
    took are held (up to ``_BROTLI_HOLD`` bytes) before the trailing decoder
    takes them all at once. When a slice fails (junk after the end of the
    stream, corruption), the trailing decoder takes the held slices, then the
    failing one byte by byte, and hands on everything decoded before the error.
    A body of up to ``_BROTLI_HOLD`` compressed bytes is decoded once; a longer
    one twice (brotli's CPU cost doubles) and never more than that is held.

    A call hands on at most ``STEP_OUTPUT`` bytes: the rest of its output, and
    the input it has not reached, wait for the next call (``pending``), so a
    step's work stays bounded however much a few bytes of br inflate.
    """

    def __init__(self) -> None:
        self._brotli = brotli.Decompressor()
        self._trailing = brotli.Decompressor()
        self._held: list[bytes] = []  # slices the trailing decoder has not taken yet
        self._held_size = 0
        self._started = False
        self._input = bytearray()  # given, not yet reached
        self._slice = b""  # the slice being decoded, while its output is still pending
        self._slice_out = 0  # bytes of its output handed on so far

    @property
    def pending(self) -> bool:
        return bool(self._slice or self._input)

    def decode(self, data: bytes, sink: Sink) -> None:
        # the output of several slices goes on in one piece (fewer, larger pieces for the reader)
        joined = _Joining(sink)
        self._decode(data, joined)
        joined.flush()

    def _decode(self, data: bytes, sink: _Joining) -> None:
        self._started = True
        self._input += data
        budget = STEP_OUTPUT
        while budget > 0:
            if not self._slice:
                if not self._input:
                    return
                self._slice = bytes(self._input[:_BROTLI_SLICE])
                del self._input[:_BROTLI_SLICE]
                self._slice_out, given = 0, self._slice
            else:
                given = b""  # go on draining the slice's output
            counter = _Counter(sink)
            try:
                drained = _brotli_process(self._brotli, given, counter, budget)
            except (brotli.error, DecodeError):
                sink.flush()  # what came before the failing slice, first
                raise self._salvage(self._slice, _Skipping(sink.sink, self._slice_out + counter.count)) from None
            budget -= counter.count
            self._slice_out += counter.count
            if drained:
                self._held.append(self._slice)
                self._held_size += len(self._slice)
                self._slice = b""
                if self._held_size >= _BROTLI_HOLD:
                    self._catch_up()

    def _catch_up(self) -> None:
        """The trailing decoder takes the held slices (they decoded fine once)."""
        held, self._held, self._held_size = self._held, [], 0
        _brotli_process(self._trailing, b"".join(held), _discard, None)

    def _salvage(self, failed: bytes, sink: Sink) -> DecodeError:
        """Bring the trailing decoder up to ``failed``, then feed it byte by byte:
        hand on what it decodes, and say exactly what went wrong where (the same
        words however the body was cut)."""
        try:
            self._catch_up()
            for byte in range(len(failed)):
                _brotli_process(self._trailing, failed[byte : byte + 1], sink, None)
        except DecodeError as exc:
            return exc
        except brotli.error as exc:
            return DecodeError(f"br: {exc}")
        return DecodeError("br: decoder failed")  # pragma: no cover - the bytes failed once already

    def finish(self, sink: Sink) -> None:
        while self.pending:
            self.decode(b"", sink)
        if self._started and not self._brotli.is_finished():
            raise DecodeError(UNEXPECTED_EOF)


class _Counter:
    """A sink that counts what it hands on."""

    __slots__ = ("sink", "count")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.count = 0

    def __call__(self, data: bytes) -> None:
        self.count += len(data)
        self.sink(data)


class _Joining:
    """A sink that hands on what it is given in pieces of up to ``OUTPUT_CHUNK``
    bytes, joined; ``flush`` hands on the rest."""

    __slots__ = ("sink", "parts", "size")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.parts: list[bytes] = []
        self.size = 0

    def __call__(self, data: bytes) -> None:
        if self.size + len(data) > OUTPUT_CHUNK:
            self.flush()
        self.parts.append(data)
        self.size += len(data)

    def flush(self) -> None:
        if self.parts:
            parts, self.parts, self.size = self.parts, [], 0
            self.sink(parts[0] if len(parts) == 1 else b"".join(parts))


class _Skipping:
    """A sink that drops its first ``skip`` bytes (already handed on)."""

    __slots__ = ("sink", "skip")

    def __init__(self, sink: Sink, skip: int) -> None:
        self.sink = sink
        self.skip = skip

    def __call__(self, data: bytes) -> None:
        if self.skip:
            dropped = min(self.skip, len(data))
            self.skip -= dropped
            data = data[dropped:]
        if data:
            self.sink(data)


def _brotli_process(decompressor: brotli.Decompressor, data: bytes, sink: Sink, budget: int | None) -> bool:
    """Feed ``data``, then drain the output it leaves pending (brotli hands out at
    most about ``OUTPUT_CHUNK`` bytes per call; with all input consumed it says it
    can take more while output is still waiting, so drain until it returns nothing).
    Stop once ``budget`` bytes were handed on (None: no limit); return True when
    nothing is left pending."""
    if data and decompressor.is_finished():
        raise DecodeError("br: data after the end of the stream")
    out = decompressor.process(data, output_buffer_limit=OUTPUT_CHUNK)
    while out:
        sink(out)
        if decompressor.is_finished():
            return True
        if budget is not None:
            budget -= len(out)
            if budget <= 0:
                return False
        out = decompressor.process(b"", output_buffer_limit=OUTPUT_CHUNK)
    return True


class UnsupportedDecoder:
    """A declared coding ndintake does not take: refused (415) once a byte arrives."""

    pending = False

    def __init__(self, coding: str, message: str | None = None) -> None:
        self._message = message or f"unsupported content encoding: '{coding}'"

    def decode(self, data: bytes, sink: Sink) -> None:
        raise DecodeError(self._message, at_header=True, status=415)

    def finish(self, sink: Sink) -> None:
        pass


class SniffingDecoder:
    """No declared coding: pick one from the magic bytes (gzip, zlib, zstd), else identity.

    Unlike APM Server, a zlib guess needs a valid RFC 1950 header checksum, so a
    plain body starting with ``x`` or ``(`` is not mistaken for zlib.
    """

    def __init__(self) -> None:
        self._head = b""
        self._chosen: Decoder | None = None

    @property
    def pending(self) -> bool:
        return self._chosen is not None and self._chosen.pending

    def decode(self, data: bytes, sink: Sink) -> None:
        if self._chosen is None:
            data = self._head + data
            self._chosen = _sniff(data, final=False)
            if self._chosen is None:
                self._head = data
                return
        self._chosen.decode(data, sink)

    def finish(self, sink: Sink) -> None:
        if self._chosen is None:
            if not self._head:
                return
            self._chosen = _sniff(self._head, final=True) or IdentityDecoder()
            self._chosen.decode(self._head, sink)
        self._chosen.finish(sink)


def _sniff(head: bytes, *, final: bool) -> Decoder | None:
    """The decoder ``head`` calls for, or None while more bytes could change the answer."""
    if head.startswith(_GZIP_MAGIC):
        return ZlibDecoder("gzip")
    if head.startswith(_ZSTD_MAGIC):
        return ZstdDecoder()
    if len(head) >= 2 and _is_zlib_header(head):
        return ZlibDecoder("deflate")
    undecided = _ZSTD_MAGIC.startswith(head) or _GZIP_MAGIC.startswith(head) or (len(head) < 2 and head[0] & 0x0F == 8)
    if undecided and not final:
        return None
    return IdentityDecoder()


class ChainDecoder:
    """Several codings (``Content-Encoding: gzip, br``): undone last-applied first.

    The chain of sinks is built iteratively; ``make_decoder`` caps the
    number of codings at ``MAX_CODINGS``, so the nesting of calls stays small.
    """

    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders  # in the order they are undone

    def _sinks(self, sink: Sink) -> list[Sink]:
        """``[i]``: what decoder ``i`` pushes its output to. Built per call and not
        kept: ``sink`` refers back to the stream, and a kept one would be a cycle."""
        chain = [sink]
        for decoder in reversed(self._decoders[1:]):
            chain.append(_pushing_to(decoder, chain[-1]))
        chain.reverse()
        return chain

    @property
    def pending(self) -> bool:
        return any(decoder.pending for decoder in self._decoders)

    def decode(self, data: bytes, sink: Sink) -> None:
        sinks = self._sinks(sink)
        if data:
            self._decoders[0].decode(data, sinks[0])
            return
        for decoder, after in zip(self._decoders, sinks):  # go on where a decoder stopped
            if decoder.pending:
                decoder.decode(b"", after)

    def finish(self, sink: Sink) -> None:
        for decoder, after in zip(self._decoders, self._sinks(sink)):
            decoder.finish(after)


def _pushing_to(decoder: Decoder, after: Sink) -> Sink:
    """A sink that decodes each piece with ``decoder`` and pushes the output to ``after``."""

    def push(piece: bytes) -> None:
        decoder.decode(piece, after)

    return push


_CODINGS: dict[str, Callable[[], Decoder]] = {
    "identity": IdentityDecoder,
    "gzip": lambda: ZlibDecoder("gzip"),
    "x-gzip": lambda: ZlibDecoder("gzip"),
    "deflate": lambda: ZlibDecoder("deflate"),
    "zstd": ZstdDecoder,
    "br": BrotliDecoder,
}

#: Content codings accepted in ``content_encoding`` (case-insensitive; ``x-gzip``
#: is gzip, as RFC 9110 asks).
SUPPORTED_ENCODINGS = tuple(_CODINGS)

#: Most codings one body may declare. Neither APM Server nor Go's net/http has
#: such a cap; real clients apply one coding, two at most. More is refused (415).
MAX_CODINGS = 8


def make_decoder(content_encoding: str | None) -> Decoder:
    """The decoder for a ``Content-Encoding`` value; None or empty means sniff."""
    if content_encoding is None or not content_encoding.strip():
        return SniffingDecoder()
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    if len(codings) > MAX_CODINGS:
        return UnsupportedDecoder(
            "", f"unsupported content encoding: {len(codings)} codings, at most {MAX_CODINGS} are accepted"
        )
    decoders = [_CODINGS[c]() if c in _CODINGS else UnsupportedDecoder(c) for c in reversed(codings)]
    return decoders[0] if len(decoders) == 1 else ChainDecoder(decoders)
