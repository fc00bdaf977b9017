"""``python -m benchmarks.load --quick``: the load harness runs end to end and its JSON is sane.

Tiny bounds (1 s cells, concurrency 1 and 2, the 50 KB body) against the bare
app and ``ndintake serve --sink null``, on 127.0.0.1 only. Nothing here is about
speed: only that requests are counted, every 202 accepted the body's events,
nothing was refused on a quiet server, the probe was answered, and every server
the harness started is gone afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn  # noqa: F401  (the harness runs servers on it; in the test extra)

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness reads /proc")
def test_quick_run_produces_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load",
            "--quick",
            "--seconds",
            "0.6",
            "--drain",
            "10",
            "--concurrency",
            "1,2",
            "--sizes",
            "50kb",
            "--servers",
            "bare,null",
            "--max-requests",
            "300",
            "--validate-seconds",
            "0.1",
            "--pause",
            "0.1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())

    body = report["bodies"]["50kb"]
    assert 40_000 <= body["wire_bytes"] <= 60_000
    assert body["decoded_bytes"] > body["wire_bytes"]
    assert body["events"] > 100
    assert report["validate"]["50kb"]["agrees"] is True
    assert report["validate"]["50kb"]["events_s"] > 0
    assert report["mismatches"] == []

    cells = {(c["server"], c["concurrency"]): c for c in report["cells"]}
    assert set(cells) == {("bare", 1), ("bare", 2), ("null", 1), ("null", 2)}
    for (server, _), cell in cells.items():
        assert cell["body"] == "50kb"
        assert cell["requests"] >= 1
        assert cell["requests"] <= 300
        assert cell["unfinished"] == 0
        assert cell["status"] == {"202": cell["requests"], "refused": 0, "other": 0}, cell
        assert cell["errors"] == {}
        assert cell["latency_202"]["count"] == cell["requests"]
        assert 0 < cell["latency_202"]["p50_ms"] <= cell["latency_202"]["p99_ms"] <= cell["latency_202"]["max_ms"]
        assert cell["latency_refused"]["count"] == 0 and cell["latency_refused"]["p99_ms"] is None
        assert cell["requests_s"] > 0 and cell["wire_mb_s"] > 0
        assert cell["server_peak_rss_mb"] > 5
        assert cell["server_processes"] >= 1
        assert cell["probe"]["count"] >= 1 and cell["probe"]["failures"] == {}
        assert cell["cpu"]["client_cpu_s"] >= 0
        if server == "null":
            # every 202 carried {"accepted": N} with N the body's events
            assert cell["accepted_counts_checked"] == cell["requests"]
            assert cell["accepted_mismatches"] == 0
            assert cell["accepted_events"] == body["events"] * cell["requests"]
            assert cell["events_s"] > 0 and cell["decoded_mb_s"] > 0
            assert cell["vs_bare"] > 0 and cell["vs_validate"] > 0
        else:
            assert cell["events_s"] is None and "vs_bare" not in cell

    assert "| server | body | c |" in proc.stdout
    assert "null-w2" not in proc.stdout or "skipped" in proc.stdout
    # every server process the harness saw (servers and their workers) is gone
    pids = [pid for group in report["server_pids"].values() for pid in group]
    assert len(pids) >= 2
    assert [pid for pid in pids if _alive(pid)] == []


def test_server_rows_follow_the_options_serve_lists(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from argparse import Namespace

    from benchmarks.load import server_rows

    args = Namespace(max_concurrent_decoders=3, server_arg=["--timeout=5", "--future-flag"])
    names = ["bare", "bare-w2", "null", "null-w2", "jsonl"]

    # today's serve: no --workers, no --max-concurrent-decoders
    today = {"--host", "--port", "--sink", "--timeout", "--grace", "--log-level"}
    rows, skipped, extra = server_rows(names, today, args, tmp_path)
    assert [server.name for server, _ in rows] == ["bare", "null", "jsonl"]
    assert extra == ["--timeout", "5"]
    assert any("null-w2" in s and "--workers" in s for s in skipped)
    assert any("--max-concurrent-decoders" in s for s in skipped)
    assert any("--future-flag" in s for s in skipped)
    null = dict((server.name, server) for server, _ in rows)["null"]
    assert "--workers" not in null.argv and null.argv[-2:] == ["--timeout", "5"]
    assert [counts for _, counts in rows] == [False, True, True]

    # once serve has them, they are passed on
    later = today | {"--workers", "--max-concurrent-decoders", "--future-flag"}
    rows, skipped, extra = server_rows(names, later, args, tmp_path)
    by_name = {server.name: server for server, _ in rows}
    assert list(by_name) == names and skipped == []
    assert extra == ["--max-concurrent-decoders", "3", "--timeout", "5", "--future-flag"]
    w2 = by_name["null-w2"].argv
    assert w2[w2.index("--workers") + 1] == "2" and w2[w2.index("--sink") + 1] == "null"
    assert by_name["null"].argv[by_name["null"].argv.index("--workers") + 1] == "1"
    assert by_name["bare-w2"].argv[-2:] == ["--workers", "2"]
    assert by_name["jsonl"].argv[by_name["jsonl"].argv.index("--sink") + 1].startswith("jsonl:")
