"""docs/: the driver example runs as printed; the API reference builds without warnings."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "docs" / "drivers.md"


def test_the_driver_example_runs_and_prints_what_it_says(monkeypatch):
    monkeypatch.chdir(ROOT)  # it opens examples/events.ndjson
    [code] = re.findall(r"```python\n(.*?)```", DRIVERS.read_text(), re.S)
    expected = [line.split("  # ", 1)[1] for line in code.splitlines() if line.startswith("print(")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DRIVERS), "exec"), {"__name__": "drivers_example"})
    assert out.getvalue().splitlines() == expected


@pytest.mark.slow
def test_the_api_reference_builds(tmp_path):
    pytest.importorskip("pdoc")
    done = subprocess.run(
        ["bash", str(ROOT / "docs" / "build.sh"), str(tmp_path / "api")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "api" / "ndintake.html").is_file()
    assert (tmp_path / "api" / "ndintake" / "server.html").is_file()
