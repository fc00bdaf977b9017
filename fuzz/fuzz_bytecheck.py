#!/usr/bin/env python3
"""Coverage-guided fuzz harness (atheris / libFuzzer) over the compiled byte
scanner, ``ndintake/core/_bytecheck.c``, as the APM reader builds it.

Run by hand, not in CI (see fuzz/README.md, "fuzz_bytecheck.py"):

    pip install atheris
    python fuzz/fuzz_bytecheck.py --make-seeds fuzz/seeds-bytecheck      # once
    mkdir -p fuzz/corpus-bytecheck fuzz/artifacts
    python fuzz/fuzz_bytecheck.py fuzz/corpus-bytecheck fuzz/seeds-bytecheck \
        -max_total_time=600 -timeout=10 -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1

Input format: one event line's bytes (newlines are replaced by spaces).

The line goes to the APM check (``typed.envelope_check`` over every APM event
key but the abbreviated RUM v3 ones). The scanner may refuse anything; when it
takes a line (returns a key), the slow path must take it too: the line after a
metadata line, every line parsed and checked (the reader's check disabled), is
accepted (or dropped, for a metricset) with no error, and ``orjson.loads`` of
it is a dict whose only key is the returned key. Anything else raises (a
finding), as do a crash, a sanitizer report, a hang (``-timeout``) and an RSS
above ``-rss_limit_mb``.

``--sweep FILE|DIR...`` runs a plain loop instead (no libFuzzer): every line
whole, cut after every byte, and with every byte replaced by each of a few
bytes that matter to the scanner (see ``sweep``).

Coverage: atheris instruments the Python code of ``ndintake``; the C scanner
itself is a black box to libFuzzer unless it is built with coverage, see
``fuzz/covshim.c`` (gcc has no ``-fsanitize=fuzzer-no-link``, so the shim turns
gcc's ``-fsanitize-coverage=trace-pc,trace-cmp`` into counters libFuzzer reads).
"""

from __future__ import annotations

import copy
import ctypes
import gzip
import hashlib
import json
import os
import random
import re
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["ndintake"]):
    from ndintake.core import bytecheck
    from ndintake.profiles.apm import typed as _typed
    from ndintake.profiles.base import APM

import orjson

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT / "tests"))
from slowpath import slow_result  # noqa: E402  (the tests' helper: the slow path's decision on a line)
from test_backends import _paths as _spots  # noqa: E402  (the tests' helper: every value's path)
CHECKED = tuple((key, v) for key, v in APM.events.items() if key not in APM.abbreviated)
CHECK = _typed.envelope_check(CHECKED)
assert CHECK is not None and bytecheck.is_scanner(CHECK), "the C extension ndintake.core._bytecheck is not built"


_hooked = False


def TestOneInput(data: bytes) -> None:
    global _hooked
    if not _hooked:
        _hooked = True
        _hook_coverage()
    line = data.replace(b"\n", b" ")
    key = CHECK(line)
    if key is None:
        return
    if type(key) is not str:
        raise AssertionError(f"the scanner returned {key!r}")
    verdict = slow_result(line)
    wanted = ((1, 0, 0), (0, 0, 1)) if key == "metricset" else ((1, 0, 0),)
    if verdict not in wanted:
        raise AssertionError(f"the scanner took a {key!r} line the slow path gives {verdict}: {line!r}")
    obj = orjson.loads(line)  # a JSONDecodeError here is a finding too
    if type(obj) is not dict or list(obj) != [key]:
        raise AssertionError(f"the scanner took a {key!r} line that orjson reads as {type(obj).__name__} "
                             f"with keys {list(obj) if type(obj) is dict else None}: {line!r}")


# -- C coverage (optional) ------------------------------------------------------------------


def _hook_coverage() -> None:
    """If the extension was linked with fuzz/covshim.c, hand its counters to libFuzzer."""
    lib = ctypes.CDLL(bytecheck._bytecheck.__file__)
    if not hasattr(lib, "ndfuzz_register"):
        if os.environ.get("NDINTAKE_FUZZ_NEED_COVERAGE") == "1":
            raise SystemExit("the extension is not built with fuzz/covshim.c")
        return
    # atheris.Fuzz has loaded libFuzzer (atheris/core_with_libfuzzer*.so) by the first input
    found = re.findall(r"(/\S*core_with_libfuzzer\S*\.so)$", Path("/proc/self/maps").read_text(), re.M)
    if not found:
        raise SystemExit("fuzz_bytecheck: libFuzzer not found in this process; C coverage needs atheris's own")
    fuzzer = ctypes.CDLL(found[0])
    names = ["__sanitizer_cov_8bit_counters_init", "__sanitizer_cov_pcs_init", "__sanitizer_cov_trace_cmp1",
             "__sanitizer_cov_trace_cmp2", "__sanitizer_cov_trace_cmp4", "__sanitizer_cov_trace_cmp8",
             "__sanitizer_cov_trace_const_cmp1", "__sanitizer_cov_trace_const_cmp2",
             "__sanitizer_cov_trace_const_cmp4", "__sanitizer_cov_trace_const_cmp8", "__sanitizer_cov_trace_switch"]
    table = (ctypes.c_void_p * len(names))(*(ctypes.cast(getattr(fuzzer, n), ctypes.c_void_p).value for n in names))
    count = lib.ndfuzz_register(table)
    print(f"fuzz_bytecheck: C coverage on ({count} counters)", file=sys.stderr)


# -- seeds ----------------------------------------------------------------------------------


def seed_lines() -> list[bytes]:
    lines: list[bytes] = []
    for name in ("realistic.ndjson.gz", "agents.ndjson.gz"):
        lines += gzip.decompress((DATA / name).read_bytes()).split(b"\n")
    for path in sorted((DATA / "apm-server" / "intake-v2").glob("*.ndjson")):
        lines += path.read_bytes().split(b"\n")
    return [line for line in dict.fromkeys(lines) if line.strip()]


def make_seeds(directory: Path) -> int:
    """One seed per distinct non-blank line of the test data (named by its sha1)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = seed_lines()
    for line in lines:
        (directory / hashlib.sha1(line).hexdigest()).write_bytes(line)
    return len(lines)


#: JSON tokens and the corner cases of the scanner's number, string and UTF-8 rules
_TOKENS = [b"{", b"}", b"[", b"]", b":", b",", b'"', b"true", b"false", b"null", b"-", b".", b"e", b"E+", b"e-",
           b"0", b"-0", b"1.0", b"1e308", b"1e309", b"123456789012345678", b"1234567890123456789", b"\\u",
           b"\\ud83d", b"\\ude00", b"\\ud800\\udc00", b"\\n", b"\\\"", b"\xc2\x80", b"\xed\x9f\xbf", b"\xed\xa0\x80",
           b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xef\xbb\xbf", b"\x7f", b"\x00",
           b"\t", b"\r"]


def schema_words() -> tuple[list[str], list[object]]:
    """Every property name and every enum value of the APM event schemas."""
    from ndintake.core.schemas import raw_schema

    names: dict[str, None] = dict.fromkeys(key for key, _ in CHECKED)
    values: list[object] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, sub in node.items():
                if key in ("properties", "patternProperties") and isinstance(sub, dict):
                    names.update(dict.fromkeys(sub))
                if key == "enum" and isinstance(sub, list):
                    values.extend(v for v in sub if v not in values)
                walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    for _, validator in CHECKED:
        walk(raw_schema(validator.schema_name))
    return list(names), values


def make_dict(path: Path) -> int:
    """A libFuzzer dictionary (-dict=): JSON tokens, and every property name and
    enum value of the APM event schemas, quoted."""
    names, values = schema_words()
    words = dict.fromkeys(_TOKENS + [orjson.dumps(name) for name in names] + [orjson.dumps(v) for v in values])
    lines = ['"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in w) + '"'
             for w in words]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


# -- a JSON-aware mutator (NDINTAKE_FUZZ_JSON=1) ----------------------------------------------

#: values that sit on the scanner's edges: types, integer sizes, float forms, string lengths and code points
_VALUES: list[object] = [
    None, True, False, 0, -1, 1, 2, 99, 100, 599, 600, 65535, 65536, 2**31 - 1, 2**31, 2**53, 10**18 - 1, 10**18,
    2**63 - 1, -(2**63), -(10**17), 0.0, -0.0, 0.5, 1.5, -1.5, 1e-320, 1e300, "", "a", "0", "GET", "success",
    "failure", "unknown", "x" * 1024, "x" * 1025, "\u00e9" * 1024, "\u00e9" * 1025, "\U0001F600" * 512,
    "\U0001F600" * 1025, "\u0000", "\ud7ff\ue000\ufffd", "a.b", "a*b", 'a"b', "a\\b", [], [None], [1], [""],
    [{}], {}, {"a": 1}, {"a": None}, {"a": {}}, {"a": []}, {"value": 1},
]


def _get(obj: object, path: tuple) -> object:
    for step in path:
        obj = obj[step]  # type: ignore[index]
    return obj


def _put(obj: object, path: tuple, value: object) -> object:
    if not path:
        return value
    _get(obj, path[:-1])[path[-1]] = value  # type: ignore[index]
    return obj


class _Raw:
    """Text put into the output as it is (a number orjson would not write)."""

    def __init__(self, text: str) -> None:
        self.text = text


_RAW_NUMBERS = ["1.0", "1e2", "1E+2", "-0", "-0.0", "0e999", "1e-999", "1e308", "1.7976931348623157e308", "2e308",
                "123456789012345678", "1234567890123456789", "-123456789012345678", "0.000001", "1." + "0" * 300,
                "9" * 18 + ".5", "5e-324"]


def _dumps(obj: object, rng: "random.Random") -> bytes:
    """``obj`` as JSON with random spacing, escapes, raw numbers and duplicate keys."""
    sep = rng.choice([("", ""), (" ", " "), ("\t", "\r"), ("  ", "")])
    ascii_ = rng.random() < 0.3

    def dump(o: object) -> str:
        if isinstance(o, _Raw):
            return o.text
        if isinstance(o, dict):
            items = [f"{dump(k)}{sep[1]}:{sep[0]}{dump(v)}" for k, v in o.items()]
            if items and rng.random() < 0.05:
                items.insert(rng.randrange(len(items) + 1), rng.choice(items))  # a duplicate key
            return "{" + sep[0] + f",{sep[0]}".join(items) + sep[1] + "}"
        if isinstance(o, list):
            return "[" + f",{sep[0]}".join(dump(v) for v in o) + "]"
        if isinstance(o, str) and (ascii_ or rng.random() < 0.05):
            return json.dumps(o, ensure_ascii=True)
        return orjson.dumps(o).decode()

    return dump(obj).encode()


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """A structural change to a JSON line (a value replaced, moved, copied or
    removed, a key added) written back with random spacing and escapes; a byte
    mutation (libFuzzer's) for lines that are no JSON object, and now and then."""
    rng = random.Random(seed)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is not dict or rng.random() < 0.2:
        return atheris.Mutate(data, max_size)
    names, enums = _WORDS
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        spots = _spots(obj)
        where = rng.choice(spots)
        op = rng.randrange(6)
        if op == 0 and where:  # replace a value
            pick = rng.random()
            value = (rng.choice(_VALUES) if pick < 0.5 else rng.choice(enums) if pick < 0.6 else
                     _Raw(rng.choice(_RAW_NUMBERS)) if pick < 0.8 else _get(obj, rng.choice(spots)))
            obj = _put(obj, where, copy.deepcopy(value))
        elif op == 1 and where:  # remove it
            parent = _get(obj, where[:-1])
            del parent[where[-1]]  # type: ignore[union-attr]
        elif op in (2, 3):  # add a key (a schema name) to an object
            target = _get(obj, where)
            if isinstance(target, dict):
                value = rng.choice(_VALUES) if rng.random() < 0.7 else _get(obj, rng.choice(spots))
                target[rng.choice(names)] = copy.deepcopy(value)
        elif op == 4 and where:  # wrap in a list
            obj = _put(obj, where, [_get(obj, where)])
        elif op == 5:  # copy a subtree over another
            source = _get(obj, rng.choice(spots))
            if where:
                obj = _put(obj, where, copy.deepcopy(source))
        if type(obj) is not dict:
            break
    try:
        out = _dumps(obj, rng)
    except (TypeError, orjson.JSONEncodeError):
        return atheris.Mutate(data, max_size)
    return out[:max_size]


_WORDS: tuple[list[str], list[object]] = ([], [])


#: bytes put at every position by --sweep
_SWEEP_BYTES = b'\x00 "\\}]:,0e\x80\xbf\xc3\xed\xf4\xff'


def sweep(paths: list[str]) -> int:
    """A plain loop, no libFuzzer (for the sanitizer build, or to replay a corpus
    systematically): each line of each file (a directory: its files) whole, cut
    after every byte, and with every byte replaced by each of _SWEEP_BYTES.
    Returns the number of inputs run."""
    files: list[Path] = []
    for arg in paths:
        p = Path(arg)
        files += sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    count = 0
    for f in files:
        line = f.read_bytes().replace(b"\n", b" ")
        TestOneInput(line)
        for at in range(len(line)):
            TestOneInput(line[:at])
            for b in _SWEEP_BYTES:
                TestOneInput(line[:at] + bytes((b,)) + line[at + 1 :])
        count += 1 + len(line) * (1 + len(_SWEEP_BYTES))
    return count


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--sweep":
        global _hooked
        _hooked = True  # no libFuzzer here
        print(f"{sweep(sys.argv[2:])} inputs run, no finding")
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        print(f"{make_seeds(Path(sys.argv[2]))} seeds written to {sys.argv[2]}")
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--make-dict":
        print(f"{make_dict(Path(sys.argv[2]))} tokens written to {sys.argv[2]}")
        return
    if os.environ.get("NDINTAKE_FUZZ_JSON") == "1":
        _WORDS[0][:], _WORDS[1][:] = schema_words()
        atheris.Setup(sys.argv, TestOneInput, custom_mutator=mutate)
    else:
        atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
