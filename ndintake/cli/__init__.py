"""``ndintake check``: validate request bodies stored in files, print JSON results;
``ndintake serve``: run the reference intake server (see :mod:`ndintake.server.serve`)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from . import check as checking
from .args import content_encoding, positive_int
from ..core.decode import SUPPORTED_ENCODINGS
from ..core.profile import PROFILES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndintake", description="Validate event intake bodies.")
    version = f"ndintake {__version__}"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="validate request bodies stored in files",
        description="Check each FILE as one request body, as the server would: print one JSON result per file "
        "(with a \"file\" key and a final total line for several). Exit status: 0 when every body gets 202, "
        "1 otherwise (an unreadable file included: its line has an \"error\"), 2 on usage errors.",
        epilog="Request limits apply: a body that decodes to more than --max-body-size bytes stops with 413, "
        "as it would at the server (raise the option to check a larger capture). Progress (decoded bytes and "
        "events) shows on stderr when it is a terminal, once 32 MiB have been decoded; "
        f"{checking.PROGRESS_ENV}=1 forces it, =0 turns it off.",
    )
    check.set_defaults(usage_error=check.error)
    check.add_argument("files", nargs="+", metavar="FILE", help="a body file, or - for standard input (once)")
    protocol = check.add_mutually_exclusive_group()
    protocol.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="the protocol: apm (Elastic APM intake v2, default), rum (RUM v2/v3 routes; read as apm), "
        "prodlytics (Datadog Product Analytics: JSON items or arrays, no metadata line)",
    )
    protocol.add_argument(
        "--schemas",
        metavar="DIR",
        help="check against your own event schemas instead: DIR holds one <kind>.json JSON Schema per event kind",
    )
    check.add_argument(
        "--classify",
        default="key",
        metavar="key|field:NAME",
        help="with --schemas, how an item's kind is found: key (default), its envelope key {\"<kind>\": {...}}; "
        "field:NAME, the value of its top-level field NAME (e.g. field:type)",
    )
    check.add_argument(
        "--metadata-schema",
        metavar="FILE",
        help="with --schemas, the JSON Schema of a required first item (metadata)",
    )
    check.add_argument("--version", action="version", version=version)
    check.add_argument(
        "--encoding",
        default="auto",
        type=content_encoding,
        help="Content-Encoding of the files: auto, or one or a comma list of "
        f"{', '.join(SUPPORTED_ENCODINGS)}. auto (default): the suffix (.gz .zst .br .zz) when the bytes agree, "
        "else what the magic bytes say (no suffix: sniffed; br cannot be sniffed)",
    )
    check.add_argument(
        "--max-event-size",
        type=positive_int,
        metavar="N",
        help="refuse lines of N bytes or more (default: the profile's, 307200 for apm and rum, "
        "5000001 for prodlytics)",
    )
    check.add_argument(
        "--max-body-size",
        type=positive_int,
        metavar="N",
        help="stop with 413 past N decompressed bytes (default: the profile's, 67108864 = 64 MiB for apm and rum, "
        "5000000 = 5 MB for prodlytics)",
    )
    serve_command = commands.add_parser(
        "serve",
        help="run an intake server (needs ndintake[server])",
        description="Serve APM intake (/intake/v2/events, RUM /intake/v2/rum/events, /intake/v3/rum/events) "
        "and Datadog prodlytics (/api/v2/prodlytics) on uvicorn; accepted events go to the sink. "
        "SIGINT or SIGTERM stops it gracefully.",
    )
    # imported here: the server's modules use .args, which runs this package first
    from ..server.serve import add_arguments as add_serve_arguments

    add_serve_arguments(serve_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ndintake`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from ..server.serve import serve

        return serve(args)
    return checking.run(args, args.usage_error)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
