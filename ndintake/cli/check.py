"""``ndintake check``: validate request bodies stored in files and print one JSON
result per file (see ``cli.py`` for the options).

Each file is checked as one request body with the request limits of its
profile. A file that cannot be read gets a result line of its own and the check
goes on with the others. Hints for likely mistakes (a suffix that lies about
the coding, a Datadog body without ``--profile prodlytics``) go to standard
error; the JSON results are exactly what the server would answer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, BinaryIO, Callable

import orjson

from ..core.decode import _is_zlib_header, make_decoder
from ..core.errors import DecodeError, NdintakeError
from ..core.event import Event
from ..core.limits import Limits
from ..core.profile import Profile, get_profile
from ..core.result import IntakeResult
from ..core.stream import IntakeStream
from ..profiles.custom import profile_from_directory

SUFFIX_ENCODINGS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".br": "br", ".zz": "deflate"}
#: ``NDINTAKE_PROGRESS=1`` shows progress even when stderr is not a terminal, from the first
#: chunk on; ``0`` never shows it. Unset: on a terminal, once 32 MiB have been decoded.
PROGRESS_ENV = "NDINTAKE_PROGRESS"
PROGRESS_MIN = 32 * 1024 * 1024  # decoded bytes before progress shows on a terminal
CLEAR = "\r\x1b[K"  # what ends a progress line: back to the start, erase to the end
_CHUNK = 256 * 1024
_PROGRESS_EVERY = 0.2  # seconds between redraws
_MIB = 1024 * 1024

_LOOKS = {
    "gzip": "gzip data",
    "zstd": "zstd data",
    "deflate": "zlib (deflate) data",
    "identity": "plain JSON",
    "empty": "empty",
    "unknown": "neither JSON nor gzip, zlib or zstd data (br has no magic bytes)",
}
_CODINGS_BY_MAGIC = ("gzip", "zstd", "deflate")


def looks_like(head: bytes) -> str:
    """What the first bytes of a body look like, by their magic bytes:
    ``gzip``, ``zstd``, ``deflate`` (a valid zlib header), ``identity`` (JSON),
    ``empty`` or ``unknown``."""
    if not head:
        return "empty"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if text[:1] in (b"{", b"["):
        return "identity"
    if len(head) >= 2 and _is_zlib_header(head):
        return "deflate"
    return "unknown" if text else "identity"


def choose_encoding(option: str, name: str, head: bytes) -> tuple[str | None, str | None]:
    """The ``content_encoding`` to check ``name`` with, and a note when ``auto``
    overruled the suffix.

    ``auto``: no coding suffix, sniff (None). A ``.gz``/``.zst``/``.zz`` suffix
    is taken when the bytes agree or look like nothing known; when they look
    like another coding or plain JSON, they win. ``.br`` has no magic bytes, so
    only gzip or zstd magic overrules it. Any other value is taken as given.
    """
    if option != "auto":
        return option, None
    suffix = os.path.splitext(name)[1].lower()
    named = SUFFIX_ENCODINGS.get(suffix)
    if named is None:
        return None, None
    seen = looks_like(head)
    overrules = seen in ("gzip", "zstd") if named == "br" else seen in (*_CODINGS_BY_MAGIC, "identity")
    if seen == named or not overrules:
        return named, None
    return seen, f"{name}: named {suffix} but the bytes look like {_LOOKS[seen]}: read as {seen}"


def hints(result: IntakeResult, encoding: str | None, head: bytes, profile: str, limits: Limits) -> list[str]:
    """What probably went wrong, for standard error."""
    out = []
    if result.status == 413:
        out.append(
            f"the body decodes to more than {limits.max_body_size} bytes, the request limit; "
            "--max-body-size N checks a larger capture"
        )
    seen = looks_like(head)
    fatal = result.fatal.message if result.fatal is not None else ""
    if encoding is not None and "," not in encoding:
        coding = encoding.strip().lower().replace("x-gzip", "gzip")
        if coding == "identity" and seen in _CODINGS_BY_MAGIC:
            out.append(
                f"the bytes look like {_LOOKS[seen]}, not plain JSON: "
                f"try --encoding auto (or --encoding {seen})"
            )
        elif coding != "identity" and seen not in (coding, "empty") and (fatal.startswith("data decoding error")
                                                                          or "cannot handle stream" in fatal):
            out.append(f"expected {coding} data, but the bytes look like {_LOOKS[seen]}: try --encoding auto")
    if encoding is None and seen == "unknown" and not result.ok:
        out.append(f"the bytes look like {_LOOKS[seen]}: if the body is br-compressed, use --encoding br")
    if profile in ("apm", "rum") and "metadata" in fatal and _looks_like_prodlytics(head, encoding):
        out.append("this looks like a Datadog body (no metadata line): try --profile prodlytics")
    return out


def _looks_like_prodlytics(head: bytes, encoding: str | None) -> bool:
    pieces: list[bytes] = []
    try:
        make_decoder(encoding).decode(head, pieces.append)
    except DecodeError:
        pass
    text = b"".join(pieces).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if text.startswith(b"["):
        return True  # APM bodies are never arrays
    if not text.startswith(b"{"):
        return False
    first = text.split(b"\n", 1)[0]
    try:
        item = orjson.loads(first)
    except orjson.JSONDecodeError:
        return b'"application"' in first and b'"metadata"' not in first
    if not isinstance(item, dict) or {"metadata", "m"} & item.keys():
        return False
    return bool({"application", "event"} & item.keys())


class Progress:
    """A one-line progress report on standard error, in decoded bytes and events."""

    def __init__(self, name: str, total: int | None, stream: IntakeStream, err: IO[str]) -> None:
        setting = os.environ.get(PROGRESS_ENV, "")
        self.forced = setting == "1"
        self.enabled = self.forced or (setting != "0" and err.isatty())
        self.name, self.total, self.stream, self.err = name, total, stream, err
        self.events = 0
        self.read = 0  # input bytes fed so far
        self.shown = False
        self._last = 0.0

    def count(self, events: list[Event]) -> None:
        """The stream's sink: events are counted, not kept. Called per decoded
        piece, so a small file that inflates a lot shows progress too."""
        self.events += len(events)
        self.update(self.read)

    def update(self, read: int) -> None:
        self.read = read
        if not self.enabled:
            return
        decoded = self.stream._size  # decoded bytes so far, what max_body_size counts
        now = time.monotonic()
        if (not self.forced and decoded < PROGRESS_MIN) or (self.shown and now - self._last < _PROGRESS_EVERY):
            return
        line = f"{self.name}: {decoded / _MIB:.1f} MiB decoded, {self.events:,} events"
        if self.total:
            line += f", {min(read * 100 // self.total, 100)}% of the file read"
        self.err.write(CLEAR + line)
        self.err.flush()
        self.shown, self._last = True, now

    def clear(self) -> None:
        if self.shown:
            self.err.write(CLEAR)
            self.err.flush()
            self.shown = False


def check_one(name: str, file: BinaryIO, total: int | None, args: argparse.Namespace,
              warn: Callable[[str], None]) -> IntakeResult:
    """Check one body read from ``file``."""
    profile: Profile = args.checked_profile
    defaults = profile.limits  # the profile's own, unless an option says otherwise
    limits = Limits(
        max_event_size=args.max_event_size or defaults.max_event_size,
        max_body_size=args.max_body_size or defaults.max_body_size,
    )
    head = file.read(_CHUNK)
    encoding, note = choose_encoding(args.encoding, name, head)
    if note:
        warn(note)
    progress: Progress | None = None
    stream = IntakeStream(profile=profile, content_encoding=encoding, limits=limits,
                          sink=lambda events: progress.count(events) if progress else None)
    progress = Progress(name, total, stream, sys.stderr)
    read = 0
    try:
        chunk = head
        while chunk:
            read += len(chunk)
            progress.read = read
            stream.feed(chunk)
            progress.update(read)
            if stream.finished:
                break
            chunk = file.read(_CHUNK)
        result = stream.close()
    finally:
        progress.clear()
    for hint in hints(result, encoding, head, profile.name, limits):
        warn(f"{name}: hint: {hint}")
    return result


def summary(result: IntakeResult) -> dict[str, object]:
    errors = [{**error.to_json(), "line": error.line} if error.line else error.to_json() for error in result.errors]
    return {"status": result.status, "accepted": result.accepted, "errors": errors}


def checked_profile(args: argparse.Namespace, usage_error: Callable[[str], object]) -> Profile:
    """The profile ``--profile`` names, or the one made from ``--schemas`` (its
    schemas compiled once, before any file is read)."""
    if args.schemas is None:
        if args.classify != "key" or args.metadata_schema is not None:
            usage_error("--classify and --metadata-schema go with --schemas")
        return get_profile(args.profile or "apm")
    try:
        return profile_from_directory(args.schemas, classify=args.classify, metadata=args.metadata_schema)
    except NdintakeError as exc:
        usage_error(f"--schemas {args.schemas}: {exc}")
        raise  # usage_error exits; this is for a usage_error that returns


def run(args: argparse.Namespace, usage_error: Callable[[str], object]) -> int:
    """``ndintake check``: the exit status (0 every body 202, 1 otherwise)."""
    if args.files.count("-") > 1:
        usage_error("standard input (-) can be checked only once")
    args.checked_profile = checked_profile(args, usage_error)

    def warn(message: str) -> None:
        sys.stderr.write(f"ndintake check: {message}\n")
        sys.stderr.flush()

    several = len(args.files) > 1
    results: list[IntakeResult] = []
    unreadable = 0
    out = sys.stdout.buffer
    try:
        for name in args.files:
            try:
                if name == "-":
                    result = check_one(name, sys.stdin.buffer, None, args, warn)
                else:
                    with open(name, "rb") as file:
                        result = check_one(name, file, os.fstat(file.fileno()).st_size, args, warn)
            except OSError as exc:
                unreadable += 1
                reason = f"cannot read {name}: {exc.strerror or exc}"
                warn(reason)
                line: dict[str, object] = {"error": reason}
            else:
                results.append(result)
                line = summary(result)
            if several:
                line = {"file": name, **line}
            out.write(orjson.dumps(line) + b"\n")
            out.flush()
        if several:
            total: dict[str, object] = {
                "files": len(args.files),
                "status": max((r.status for r in results), default=None),
                "accepted": sum(r.accepted for r in results),
                "errors": sum(len(r.errors) for r in results),
            }
            if unreadable:
                total["unreadable"] = unreadable
            out.write(orjson.dumps({"total": total}) + b"\n")
            out.flush()
    except BrokenPipeError:
        # the reader went away (``| head -1``): stop quietly; Python's own flush at
        # exit would fail again, so standard output now goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return 0 if not unreadable and all(r.ok for r in results) else 1
