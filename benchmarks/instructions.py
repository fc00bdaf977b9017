"""Instructions per event (callgrind): ratios that hold on a loaded machine.

``python -m benchmarks.instructions [--corpus realistic|heavy|agents|all] [--size MB]``
runs a few pipelines, each in its own process under ``valgrind --tool=callgrind``,
once with one run and once with two; the difference is one warm run (imports,
schema compilation and the corpus stay out of it). Printed per event and as a
ratio to the ceiling (zstd + split + ``orjson.loads``). Needs valgrind.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from . import corpus as corpora
from .competitors import Pipeline, chunked, encode, ndintake_pipeline, orjson_jsonschema_rs, parse_only

#: The pipelines counted: the ceiling, ndintake with and without reading data,
#: ndintake's path without the scanner, and the fastest competitor.
COUNTED = (
    "ceiling: zstd + orjson, no validation",
    "ndintake [zstd]",
    "ndintake [zstd], data read",
    "ndintake [zstd], without the scanner",
    "ndintake [zstd], without the scanner, data read",
    "ndintake [identity]",
    "ndintake [identity], data read",
    "orjson + jsonschema-rs",
)
_COLLECTED = re.compile(rb"Collected : (\d+)")


def _without_scanner(pipeline: Pipeline) -> Pipeline:
    """The pipeline with the byte scanner (and msgspec's check) off: every line parsed and checked."""
    from ndintake.profiles.apm import envelope

    def run(chunks: list[bytes]) -> int:
        check = envelope.envelope_check
        envelope.envelope_check = lambda plain: None  # type: ignore[assignment]
        try:
            return pipeline.run(chunks)
        finally:
            envelope.envelope_check = check

    name = pipeline.name.replace("[zstd]", "[zstd], without the scanner")
    return Pipeline(name, pipeline.codec, pipeline.description, run)


def pipeline(name: str, max_body_size: int) -> Callable[[list[bytes]], int]:
    """The counted pipeline called ``name``, built alone (compiling every
    competitor's schemas under callgrind would take minutes)."""
    if name.startswith("ceiling"):
        return parse_only("zstd").run
    if name == "orjson + jsonschema-rs":
        return orjson_jsonschema_rs(corpora.load_schemas()).run
    codec = "identity" if "[identity]" in name else "zstd"
    built = ndintake_pipeline(codec, max_body_size, read_data=name.endswith("data read"))
    return _without_scanner(built).run if "without the scanner" in name else built.run


def _child(name: str, path: str, runs: int) -> None:
    data = Path(path).read_bytes()
    codec = "identity" if "[identity]" in name else "zstd"
    chunks = chunked(encode(data, codec))
    run = pipeline(name, len(data) * 2)
    for _ in range(runs):
        run(chunks)


def count(name: str, path: str, runs: int) -> int:
    """Instructions of a child process running ``name`` ``runs`` times."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
         "benchmarks.instructions", "--child", name, path, str(runs)],
        capture_output=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )
    match = _COLLECTED.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-500:]!r}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=(*corpora.CORPORA, "all"), default="all")
    parser.add_argument("--size", type=float, default=2, metavar="MB", help="corpus size in MB (default 2)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    for name in corpora.CORPORA if args.corpus == "all" else (args.corpus,):
        body = corpora.build(name, int(args.size * 1e6))
        events = corpora.event_count(body)
        with tempfile.NamedTemporaryFile(suffix=".ndjson") as file:
            file.write(body)
            file.flush()
            print(f"{name}: {len(body) / 1e6:g} MB, {events} events, {len(body) / events:.0f} B/event")
            ceiling = None
            for pipeline in COUNTED:
                per_event = (count(pipeline, file.name, 2) - count(pipeline, file.name, 1)) / events
                ceiling = ceiling or per_event
                print(f"  {pipeline:<55} {per_event / 1000:7.1f}k instr/event   x{ceiling / per_event:.2f} of the ceiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
