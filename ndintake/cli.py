"""``ndintake check``: validate request bodies stored in files, print JSON results;
``ndintake serve``: run the reference intake server (see ``_serve.py``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import BinaryIO, Iterator, Sequence

import orjson

from . import __version__
from ._cliargs import content_encoding, positive_int
from ._event import Event
from ._limits import Limits
from ._profiles import PROFILES
from ._result import IntakeResult
from ._serve import add_arguments as add_serve_arguments
from ._serve import serve
from ._stream import IntakeStream

_SUFFIX_ENCODINGS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".br": "br", ".zz": "deflate"}
_CHUNK = 256 * 1024
_PROGRESS_MIN = 32 * 1024 * 1024  # show progress for inputs at least this large


def _encoding(option: str, name: str) -> str | None:
    """``auto``: from the file suffix if it names a coding, else sniff (None)."""
    if option != "auto":
        return option
    return _SUFFIX_ENCODINGS.get(os.path.splitext(name)[1].lower())


def _chunks(file: BinaryIO, name: str, total: int | None) -> Iterator[bytes]:
    show = total is not None and total >= _PROGRESS_MIN and sys.stderr.isatty()
    done = shown = 0
    for chunk in iter(lambda: file.read(_CHUNK), b""):
        yield chunk
        done += len(chunk)
        if show and total and (percent := done * 100 // total) != shown:
            shown = percent
            sys.stderr.write(f"\r{name}: {percent:3d}% of {total / 1048576:.0f} MiB")
            sys.stderr.flush()
    if show:
        sys.stderr.write("\r" + " " * (len(name) + 24) + "\r")


def _discard(events: list[Event]) -> None:
    """The check prints results only: accepted events are not kept."""


def _check(name: str, args: argparse.Namespace) -> IntakeResult:
    defaults = PROFILES[args.profile].limits  # the profile's own, unless an option says otherwise
    limits = Limits(
        max_event_size=args.max_event_size or defaults.max_event_size,
        max_body_size=args.max_body_size or defaults.max_body_size,
    )
    encoding = _encoding(args.encoding, name)
    stream = IntakeStream(profile=args.profile, content_encoding=encoding, limits=limits, sink=_discard)
    if name == "-":
        file, total = sys.stdin.buffer, None
    else:
        file, total = open(name, "rb"), os.path.getsize(name)
    with file:
        for chunk in _chunks(file, name, total):
            stream.feed(chunk)
            if stream.finished:
                break
    return stream.close()


def _summary(result: IntakeResult) -> dict[str, object]:
    errors = [{**error.to_json(), "line": error.line} if error.line else error.to_json() for error in result.errors]
    return {"status": result.status, "accepted": result.accepted, "errors": errors}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndintake", description="Validate event intake bodies.")
    version = f"ndintake {__version__}"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="validate request bodies stored in files",
        description="Print one JSON result per file (and a total for several); "
        "exit 0 when every body gets 202, 1 otherwise, 2 on usage errors.",
    )
    check.add_argument("--version", action="version", version=version)
    check.add_argument("files", nargs="+", metavar="FILE", help="a body file, or - for standard input")
    check.add_argument("--profile", default="apm", choices=sorted(PROFILES))
    check.add_argument(
        "--encoding",
        default="auto",
        type=content_encoding,
        help="Content-Encoding of the files (gzip, deflate, zstd, br, identity, or a comma list); "
        "auto (default): from the suffix (.gz .zst .br .zz), else sniffed",
    )
    check.add_argument(
        "--max-event-size",
        type=positive_int,
        metavar="N",
        help="refuse lines of N bytes or more (default: the profile's, 307200 for apm and rum)",
    )
    check.add_argument(
        "--max-body-size",
        type=positive_int,
        metavar="N",
        help="stop past N decompressed bytes (default: the profile's, 64 MiB for apm and rum, 5 MB for prodlytics)",
    )
    serve_command = commands.add_parser(
        "serve",
        help="run an intake server (needs ndintake[server])",
        description="Serve APM intake (/intake/v2/events, RUM /intake/v2/rum/events, /intake/v3/rum/events) "
        "and Datadog prodlytics (/api/v2/prodlytics) on uvicorn; accepted events go to the sink. "
        "SIGINT or SIGTERM stops it gracefully.",
    )
    add_serve_arguments(serve_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ndintake`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    results = []
    for name in args.files:
        try:
            result = _check(name, args)
        except OSError as exc:
            parser.error(f"cannot read {name}: {exc.strerror or exc}")
        line = _summary(result)
        if len(args.files) > 1:
            line = {"file": name, **line}
        sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        results.append(result)
    if len(results) > 1:
        total = {
            "files": len(results),
            "status": max(r.status for r in results),
            "accepted": sum(r.accepted for r in results),
            "errors": sum(len(r.errors) for r in results),
        }
        sys.stdout.buffer.write(orjson.dumps({"total": total}) + b"\n")
    sys.stdout.flush()
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
