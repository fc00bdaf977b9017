"""README.md against the code: the Python examples run as written and print what
their comments say (one-line ``# x`` comments and multi-line outputs), and the RUM
v3 key table is the one ``_rumv3.py`` expands with. The ``py`` recipes (they leave
names open) are run by ``test_frameworks.py``, taken from README.md as well."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from ndintake.profiles.apm import rumv3 as _rumv3
from conftest import readme_blocks

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = [code for lang, code in readme_blocks() if lang == "python"]


def _expected_outputs(code: str) -> list[list[str]]:
    """What each commented ``print`` should output, in order: ``print(...)  # text``
    gives one line; a ``print(...)`` alone on its line, followed by ``# ...`` lines,
    gives those lines."""
    lines = code.splitlines()
    outputs = []
    for index, line in enumerate(lines):
        one = re.match(r"^print\(.*\)\s+# (.*)$", line)
        if one:
            outputs.append([one.group(1).strip()])
        elif re.match(r"^print\(.*\)$", line.rstrip()):
            following = []
            for after in lines[index + 1 :]:
                comment = re.match(r"^# ?(.*)$", after)
                if not comment:
                    break
                following.append(comment.group(1).rstrip())
            assert following, f"a print without its expected output: {line}"
            outputs.append(following)
    return outputs


def _run(code: str) -> list[str]:
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    return [line.rstrip() for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example(code: str) -> None:
    printed = _run(code)
    position = 0
    for expected in _expected_outputs(code):
        # each expected output appears, whole and in order, after the previous one
        for start in range(position, len(printed) - len(expected) + 1):
            if printed[start : start + len(expected)] == expected:
                position = start + len(expected)
                break
        else:
            pytest.fail(f"not printed (after line {position}): {expected}\nprinted: {printed}")


def test_readme_has_examples_with_outputs() -> None:
    assert len(BLOCKS) >= 6
    multi_line = [o for code in BLOCKS for o in _expected_outputs(code) if len(o) > 1]
    assert multi_line, "the pretty error body in 'Errors' is a multi-line output"


def test_expected_outputs_are_parsed() -> None:
    code = 'print(1)  # 1\nprint("a\\nb")\n# a\n# b\nx = 2\n'
    assert _expected_outputs(code) == [["1"], ["a", "b"]]
    assert _run(code) == ["1", "a", "b"]


# -- the RUM v3 key table ----------------------------------------------------------------


def _table_rows() -> list[str]:
    """The table as ``_rumv3`` defines it: one row per expansion table, depth first
    in key order, a table shared by several keys listed where it first appears."""
    rows: list[str] = []
    seen: set[int] = set()

    def walk(label: str, table: _rumv3.Table) -> None:
        if id(table) in seen:
            return
        seen.add(id(table))
        rows.append(f"| {label} | " + ", ".join(f"`{short}` {long}" for short, (long, _) in table.items()) + " |")
        for long, inner in table.values():
            if inner is not None:
                walk(f"{label}.{long}", inner)

    for label, table in (("metadata (`m`)", _rumv3.METADATA), ("transaction (`x`)", _rumv3.TRANSACTION),
                         ("error (`e`)", _rumv3.ERROR)):
        walk(label, table)
    return rows


def test_readme_rum_v3_key_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = readme.index("| object | short key → long key |")
    rows = []
    for line in readme[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert rows == _table_rows()
