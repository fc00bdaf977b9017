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


def test_readme_says_exactly_which_api_key_credentials_work():
    # README, Hooks: what `--api-key K` accepts on the APM routes and on prodlytics (status 0: let through)
    import base64

    from ndintake.server import Authenticator

    def apm(key: str, credential: str) -> tuple[int, str]:
        outcome = Authenticator(api_keys=[key]).check_apm({"authorization": f"ApiKey {credential}"})
        return outcome.status, outcome.message

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    assert apm("id:key", b64("id:key"))[0] == 0  # a key written as id:key, sent encoded
    assert apm(b64("id:key"), b64("id:key"))[0] == 0  # a key given encoded, sent as it is
    status, message = apm("id:key", "id:key")  # unencoded: refused
    assert status == 401 and "improperly encoded ApiKey credentials" in message
    status, message = apm("plainkey", b64("plainkey"))  # no colon: refused, raw or encoded
    assert status == 401 and "improperly formatted ApiKey credentials" in message
    assert apm("plainkey", "plainkey")[0] == 401
    datadog = Authenticator(api_keys=["plainkey"]).check_datadog({"dd-api-key": "plainkey"})
    assert datadog.ok
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "A key with no colon, sent raw or encoded, gets 401 there" in readme
