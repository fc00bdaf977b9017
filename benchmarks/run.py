"""The benchmark runner: throughput of every pipeline, streaming RSS, import time.

Throughput: for each corpus, every pipeline runs once untimed (warm-up, and the
accepted count is checked), then ``repeat`` timed rounds follow. A round runs
every pipeline once, in an order rotated by one each round, so slow drift of
the machine (other tenants, CPU frequency) spreads over all of them alike.
Each pipeline's time is the median of its rounds. MB/s counts decompressed
bytes (10^6 bytes per MB), whatever the input coding.

Every pipeline must accept exactly the corpus's events (all of them are valid);
any disagreement is printed loudly and makes the run exit with status 1.

No assertion here is about time: numbers are reported, never judged.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from . import corpus as corpora
from .competitors import CODECS, LEVELS, Pipeline, chunked, encode, make_pipelines

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "ndintake",
    "orjson",
    "fastjsonschema",
    "jsonschema-rs",
    "jsonschema",
    "ijson",
    "zstandard",
    "brotli",
    "zlib-ng",
    "matplotlib",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- machine -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {}
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    info["cpu"] = models[0].strip() if models else platform.processor() or "unknown"
    mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)$", cpuinfo, re.M)
    if mhz:
        info["cpu_mhz"] = round(float(mhz[0]))
    info["logical_cpus"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.M)
        if total:
            info["memory_gb"] = round(int(total.group(1)) / 1024**2, 1)
    info["os"] = platform.platform()
    info["python"] = f"{platform.python_implementation()} {platform.python_version()}"
    info["packages"] = {}
    for name in PACKAGES:
        try:
            info["packages"][name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            info["packages"][name] = None
    try:
        import ijson

        info["ijson_backend"] = ijson.backend
    except ImportError:  # pragma: no cover
        pass
    try:
        from ndintake.core import schemas as _schemas

        info["ndintake_backend"] = _schemas.backend()  # internal; may move
    except (ImportError, AttributeError):
        pass
    info["NDINTAKE_BACKEND"] = os.environ.get("NDINTAKE_BACKEND")
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "ndintake"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0:
            info["git"] = head.stdout.strip() + (" (ndintake/ modified)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def cpu_snapshot() -> dict[str, float] | None:
    """Machine-wide busy and steal CPU seconds (``/proc/stat``) and this process's
    own CPU seconds, children included: the difference of two snapshots tells how
    much CPU other processes took during the run."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) / ticks for x in fields[:8])
    own = os.times()
    return {
        "busy": user + nice + system + irq + softirq,
        "steal": steal,
        "own": own.user + own.system + own.children_user + own.children_system,
        "wall": time.monotonic(),
    }


def cpu_contention(start: dict[str, float] | None, end: dict[str, float] | None) -> dict[str, float] | None:
    if not start or not end:
        return None
    wall = end["wall"] - start["wall"]
    others = max(0.0, (end["busy"] - start["busy"]) - (end["own"] - start["own"]))
    return {
        "wall_s": round(wall, 1),
        "own_cpu_s": round(end["own"] - start["own"], 1),
        "other_processes_cpu_s": round(others, 1),
        "other_processes_cores": round(others / wall, 2) if wall else 0.0,
        "steal_s": round(end["steal"] - start["steal"], 1),
    }


# -- throughput ------------------------------------------------------------------


@dataclass
class Outcome:
    pipeline: Pipeline
    chunks: list[bytes]  # its input
    input_bytes: int  # decompressed bytes of the body it is timed on
    input_events: int
    times: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    error: str | None = None  # what it raised, if it did

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mb_s(self) -> float:
        return self.input_bytes / self.median / 1e6

    @property
    def events_s(self) -> float:
        return self.input_events / self.median

    @property
    def spread(self) -> float:
        """(max - min) / median of the timed rounds."""
        return (max(self.times) - min(self.times)) / self.median if len(self.times) > 1 else 0.0

    @property
    def iqr(self) -> float:
        """Interquartile range / median of the timed rounds (robust to one disturbed round)."""
        if len(self.times) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.times, n=4)
        return (q3 - q1) / self.median


def _timed(pipeline: Pipeline, chunks: list[bytes]) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    count = pipeline.run(chunks)
    return time.perf_counter() - start, count


def bench_corpus(
    name: str, size: int, repeat: int, slice_size: int, seed: int, mismatches: list[str]
) -> dict[str, Any]:
    log(f"[{name}] building a {size / 1e6:g} MB corpus")
    body = corpora.build(name, size, seed)
    info = corpora.stats(body)
    sliced_body = corpora.build(name, min(slice_size, len(body)), seed)
    sliced_events = corpora.event_count(sliced_body)
    encoded = {codec: encode(body, codec) for codec in CODECS}
    info["encoded_bytes"] = {codec: len(data) for codec, data in encoded.items()}
    info["slice_bytes"] = len(sliced_body)
    info["slice_events"] = sliced_events
    inputs = {codec: chunked(data) for codec, data in encoded.items()}
    sliced_inputs = {codec: chunked(encode(sliced_body, codec)) for codec in CODECS}

    outcomes = [
        Outcome(p, sliced_inputs[p.codec], len(sliced_body), sliced_events)
        if p.sliced
        else Outcome(p, inputs[p.codec], len(body), info["events"])
        for p in make_pipelines(max(len(body) * 2, 1 << 26))
    ]

    def loud(message: str) -> None:
        message = f"[{name}] {message}"
        if message not in mismatches:
            mismatches.append(message)
            log("!" * 78 + f"\n!!! DISAGREEMENT: {message}\n" + "!" * 78)

    def attempt(outcome: Outcome) -> float | None:
        try:
            seconds, count = _timed(outcome.pipeline, outcome.chunks)
        except Exception as exc:  # a broken pipeline must not hide the others' numbers
            outcome.error = f"{type(exc).__name__}: {exc}"
            loud(f"{outcome.pipeline.name} raised {outcome.error}")
            return None
        outcome.counts.append(count)
        if count != outcome.input_events:
            loud(f"{outcome.pipeline.name} accepted {count} events, expected {outcome.input_events}")
        return seconds

    log(f"[{name}] warm-up: one untimed run per pipeline ({len(outcomes)} pipelines)")
    for outcome in outcomes:
        attempt(outcome)
    for round_no in range(repeat):
        shift = round_no % len(outcomes)
        log(f"[{name}] round {round_no + 1}/{repeat}")
        for outcome in outcomes[shift:] + outcomes[:shift]:
            if outcome.error is None:
                seconds = attempt(outcome)
                if seconds is not None:
                    outcome.times.append(seconds)

    def rate(kind: str) -> float | None:
        found = [o for o in outcomes if getattr(o.pipeline, kind) and o.times]
        return found[0].mb_s if found else None

    ceiling, naive = rate("ceiling"), rate("naive")
    parse_only = {
        o.pipeline.tags["parse_only"]: o.mb_s for o in outcomes if "parse_only" in o.pipeline.tags and o.times
    }
    results = []
    for outcome in outcomes:
        p = outcome.pipeline
        entry: dict[str, Any] = {
            "pipeline": p.name,
            "codec": p.codec,
            "description": p.description,
            "accepted": outcome.counts[-1] if outcome.counts else None,
            "expected": outcome.input_events,
            "agrees": outcome.error is None and all(c == outcome.input_events for c in outcome.counts),
            "error": outcome.error,
            "timed_bytes": outcome.input_bytes,
            "wire_bytes": sum(map(len, outcome.chunks)),
            "sliced": p.sliced,
            "ceiling": p.ceiling,
            "naive": p.naive,
            "times_s": [round(t, 6) for t in outcome.times],
        }
        if outcome.times:
            entry.update(
                mb_s=round(outcome.mb_s, 3),
                events_s=round(outcome.events_s),
                median_s=round(outcome.median, 6),
                spread=round(outcome.spread, 4),
                iqr=round(outcome.iqr, 4),
                vs_ceiling=round(outcome.mb_s / ceiling, 4) if ceiling else None,
                vs_naive=round(outcome.mb_s / naive, 3) if naive else None,
            )
            baseline = parse_only.get(p.tags.get("against", ""))
            if baseline:
                entry["vs_parse_only"] = round(outcome.mb_s / baseline, 4)
        results.append(entry)
    return {"info": info, "results": results}


# -- junk: lines per second of an error-heavy body ----------------------------------


def bench_junk(lines: int, repeat: int, seed: int, mismatches: list[str]) -> list[dict[str, Any]]:
    """``ndintake.validate`` on identity junk bodies (``corpus.junk``), one per kind
    of junk line and one mixing them all: lines per second. One warm-up run each,
    then ``repeat`` interleaved rounds; median per body. Each result is checked
    against the corpus's own count of events and refused lines."""
    import ndintake

    limits = ndintake.Limits(max_body_size=1 << 31)
    kinds = [*corpora.JUNK_LINES, "mix"]
    log(f"[junk] building {len(kinds)} bodies of {lines:,} lines")
    bodies = {kind: corpora.junk(lines, kind, seed) for kind in kinds}
    expected = {kind: corpora.junk_expected(body) for kind, body in bodies.items()}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_no in range(repeat + 1):
        log(f"[junk] {'warm-up' if round_no == 0 else f'round {round_no}/{repeat}'}")
        shift = round_no % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            gc.collect()
            start = time.perf_counter()
            result = ndintake.validate(bodies[kind], limits=limits)
            seconds = time.perf_counter() - start
            if round_no:
                times[kind].append(seconds)
            if (result.accepted, result.invalid) != expected[kind]:
                message = (
                    f"[junk] {kind}: accepted {result.accepted}, invalid {result.invalid}; "
                    f"expected {expected[kind][0]} and {expected[kind][1]}"
                )
                if message not in mismatches:
                    mismatches.append(message)
                    log("!" * 78 + f"\n!!! DISAGREEMENT: {message}\n" + "!" * 78)
    results = []
    for kind in kinds:
        median = statistics.median(times[kind])
        q1, _, q3 = statistics.quantiles(times[kind], n=4) if len(times[kind]) > 1 else (median, 0, median)
        results.append(
            {
                "kind": kind,
                "line": corpora.JUNK_LINES.get(kind, b"").decode() if kind != "mix" else None,
                "lines": lines,
                "bytes": len(bodies[kind]),
                "events": expected[kind][0],
                "refused": expected[kind][1],
                "times_s": [round(t, 6) for t in times[kind]],
                "median_s": round(median, 6),
                "iqr": round((q3 - q1) / median, 4),
                "lines_s": round(lines / median),
                "mb_s": round(len(bodies[kind]) / median / 1e6, 3),
            }
        )
    return results


# -- RSS and import time (fresh subprocesses) ------------------------------------


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def rss_runs(plan: list[tuple[int, str]], seed: int) -> list[dict[str, Any]]:
    runs = []
    for size_mb, codec in plan:
        log(f"[rss] streaming {size_mb} MB ({codec}) through IntakeStream in a subprocess")
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.rss", "--size-mb", str(size_mb), "--codec", codec, "--seed", str(seed)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=_python_env(),
            timeout=600,
        )
        if proc.returncode != 0:
            log(f"[rss] failed:\n{proc.stderr}")
            runs.append({"codec": codec, "body_mb": size_mb, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        runs.append(json.loads(proc.stdout))
    return runs


_IMPORT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import ndintake
t1 = time.perf_counter()
body = open(sys.argv[1], "rb").read()
result = ndintake.validate(body)
t2 = time.perf_counter()
result2 = ndintake.validate(body)
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2, result.accepted, result.status]))
"""


def import_time(runs: int, seed: int) -> dict[str, Any]:
    """``import ndintake``, then the first validate (which compiles the six validators
    it needs), each in a fresh interpreter; medians of ``runs`` runs."""
    lines = corpora.realistic_lines(seed)
    sample = [next(lines)]
    wanted = list(corpora.EVENT_KINDS)
    for line in lines:
        kind = line[2 : line.index(b'"', 2)].decode()
        if kind in wanted:
            wanted.remove(kind)
            sample.append(line)
        if not wanted:
            break
    env = _python_env()
    imports, firsts, seconds, cumulative, bare = [], [], [], [], []
    with tempfile.NamedTemporaryFile(suffix=".ndjson") as handle:
        handle.write(b"\n".join(sample) + b"\n")
        handle.flush()
        for run_no in range(runs):
            log(f"[import] fresh interpreter {run_no + 1}/{runs}")
            proc = subprocess.run(
                [sys.executable, "-c", _IMPORT_CHILD, handle.name], capture_output=True, text=True, env=env, timeout=120
            )
            if proc.returncode != 0:
                return {"error": proc.stderr.strip().splitlines()[-1:]}
            t_import, t_first, t_second, accepted, status = json.loads(proc.stdout)
            imports.append(t_import)
            firsts.append(t_first)
            seconds.append(t_second)
            proc = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", "import ndintake"],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            for row in proc.stderr.splitlines():
                parts = [p.strip() for p in row.split("|")]
                if len(parts) == 3 and parts[2] == "ndintake":
                    cumulative.append(int(parts[1]) / 1e6)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], env=env, timeout=60)
            bare.append(time.perf_counter() - start)
    return {
        "runs": runs,
        "import_ms": round(statistics.median(imports) * 1e3, 1),
        "importtime_cumulative_ms": round(statistics.median(cumulative) * 1e3, 1) if cumulative else None,
        "first_validate_ms": round(statistics.median(firsts) * 1e3, 1),
        "second_validate_ms": round(statistics.median(seconds) * 1e3, 2),
        "python_startup_ms": round(statistics.median(bare) * 1e3, 1),
        "sample_events": accepted,
        "sample_status": status,
    }


# -- output ------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def format_report(report: dict[str, Any]) -> str:
    out: list[str] = []
    m = report["machine"]
    cfg = report["config"]
    out.append("ndintake benchmarks")
    out.append(
        f"machine: {m['cpu']}, {m.get('usable_cpus', m['logical_cpus'])} usable CPUs, "
        f"{m.get('memory_gb', '?')} GB, {m['os']}"
    )
    out.append(f"python:  {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v))
    extra = [f"ndintake backend {m['ndintake_backend']}"] if m.get("ndintake_backend") else []
    if m.get("ijson_backend"):
        extra.append(f"ijson backend {m['ijson_backend']}")
    if m.get("git"):
        extra.append(f"git {m['git']}")
    extra.append(f"load avg at start {m['loadavg_start']}, at end {m.get('loadavg_end')}")
    out.append("         " + "; ".join(extra))
    out.append(
        f"method:  {cfg['repeat']} interleaved rounds (order rotated each round) after one warm-up run; "
        f"median per pipeline; 64 KiB chunks; MB = 10^6 decompressed bytes; "
        f"compression: gzip -{LEVELS['gzip']}, zstd -{LEVELS['zstd']}, br -q{LEVELS['br']}"
    )
    for name, data in report["corpora"].items():
        info, results = data["info"], data["results"]
        kinds = ", ".join(f"{k} {v}" for k, v in info["kinds"].items())
        enc = ", ".join(
            f"{c} {_mb(n)} ({n / info['bytes']:.1%})" for c, n in info["encoded_bytes"].items() if c != "identity"
        )
        out.append("")
        out.append(
            f"corpus {name}: {_mb(info['bytes'])}, {info['events']:,} events "
            f"({info['event_bytes_min']}-{info['event_bytes_max']} B, mean {info['event_bytes_mean']:.0f} B; "
            f"{kinds})"
        )
        out.append(f"  compressed: {enc}")
        if name in ("heavy", "agents"):
            out.append(
                "  (a repeated payload compresses far better than real traffic: each compressed chunk "
                "inflates to much more than usual)"
            )
        header = (
            f"  {'pipeline':<40} {'input':<8} {'MB/s':>8} {'events/s':>11} {'median s':>9} {'IQR':>6} "
            f"{'vs ceiling':>10} {'vs naive':>9} {'accepted':>9} {'vs parse-only':>13}"
        )
        out.append(header)
        out.append("  " + "-" * (len(header) - 2))
        for r in results:
            mark = "" if r["agrees"] else f"  <-- DISAGREES (expected {r['expected']})"
            star = " *" if r["sliced"] else ""
            if "mb_s" not in r:
                out.append(f"  {r['pipeline'] + star:<40} {r['codec']:<8} FAILED: {r['error']}")
                continue
            out.append(
                f"  {r['pipeline'] + star:<40} {r['codec']:<8} {_rate(r['mb_s']):>8} {r['events_s']:>11,} "
                f"{r['median_s']:>9.3f} {r['iqr']:>6.0%} {_ratio(r['vs_ceiling']):>10} "
                f"{_ratio(r['vs_naive']):>9} {r['accepted']:>9,} {_ratio(r.get('vs_parse_only')):>13}{mark}"
            )
        sliced = [r for r in results if r["sliced"] and "mb_s" in r]
        for r in sliced:
            full_estimate = info["bytes"] / (r["mb_s"] * 1e6)
            estimate = f"{full_estimate:.0f}" if full_estimate >= 10 else f"{full_estimate:.1f}"
            out.append(
                f"  * {r['pipeline']} is too slow for the whole corpus: timed on its first "
                f"{_mb(info['slice_bytes'])} ({info['slice_events']:,} events); its rates are per byte "
                f"and per event of that slice (the whole corpus would take ~{estimate} s)."
            )
    if report.get("junk"):
        junk = report["junk"]
        out.append("")
        out.append(
            f"corpus junk: ndintake.validate on identity bodies of a metadata line then {junk[0]['lines']:,} "
            f"lines, one valid event every {corpora.JUNK_EVENT_EVERY}"
        )
        header = f"  {'junk line':<30} {'body':>9} {'lines/s':>12} {'MB/s':>8} {'median s':>9} {'IQR':>6} {'refused':>10}"
        out.append(header)
        out.append("  " + "-" * (len(header) - 2))
        for r in junk:
            name = r["kind"] if r["line"] is None else f"{r['kind']} {r['line']!r}"
            out.append(
                f"  {name:<30} {_mb(r['bytes']):>9} {r['lines_s']:>12,} {_rate(r['mb_s']):>8} {r['median_s']:>9.3f} "
                f"{r['iqr']:>6.0%} {r['refused']:>10,}"
            )
    if report.get("rss"):
        out.append("")
        out.append(
            "streaming RSS of one IntakeStream (fresh subprocess; generated body fed in 64 KiB chunks, "
            "never held whole):"
        )
        out.append(
            f"  {'body':>10} {'coding':<9} {'wire':>10} {'seconds':>8}* {'RSS set-up':>11} {'RSS peak':>9} "
            f"{'growth':>8} {'accepted':>10}"
        )
        for r in report["rss"]:
            if "error" in r:
                out.append(f"  {r['body_mb']:>7} MB {r['codec']:<9} failed: {r['error']}")
                continue
            bad = (
                ""
                if r["accepted"] == r["expected"] and r["status"] == 202
                else f"  <-- expected {r['expected']}, status {r['status']}"
            )
            out.append(
                f"  {r['body_mb']:>7.1f} MB {r['codec']:<9} {r['fed_mb']:>7.1f} MB {r['seconds']:>8.2f} "
                f"{r['setup_rss_mb']:>8.1f} MB {r['peak_rss_mb']:>6.1f} MB {r['growth_mb']:>5.1f} MB "
                f"{r['accepted']:>10,}{bad}"
            )
        source = {r.get("peak_source") for r in report["rss"] if "error" not in r}
        how = "VmHWM reset after set-up" if source == {"VmHWM"} else "sampled every MiB"
        out.append(
            f"  (set-up: RSS after imports, the ~2 MB event pool and a first validate; peak: {how}; "
            "growth: peak - set-up; *seconds include generating and compressing the body)"
        )
    imp = report.get("import")
    if imp:
        out.append("")
        if "error" in imp:
            out.append(f"import time: failed: {imp['error']}")
        else:
            out.append(
                f"import time (fresh interpreter, median of {imp['runs']}): import ndintake {imp['import_ms']} ms "
                f"(-X importtime cumulative {imp['importtime_cumulative_ms']} ms); first validate of a 6-line body "
                f"(compiles the metadata and 5 event validators) {imp['first_validate_ms']} ms; second "
                f"{imp['second_validate_ms']} ms; bare interpreter start {imp['python_startup_ms']} ms"
            )
    out.append("")
    out.append(
        f"total wall time {report['wall_s']:.0f} s. Noise: a shared 2-core VM; compare ratios within one run "
        f"rather than MB/s across runs; IQR is the interquartile range of the rounds' times over their median "
        "(the JSON report has every round's time)."
    )
    busy = report.get("contention")
    if busy:
        out.append(
            f"during the run other processes used {busy['other_processes_cpu_s']} CPU-s "
            f"({busy['other_processes_cores']:.2f} cores on average), hypervisor steal {busy['steal_s']} s"
            + (
                ": the machine was busy, expect more noise than usual"
                if busy["other_processes_cores"] > 0.3 or busy["steal_s"] > 0.05 * busy["wall_s"]
                else ""
            )
        )
    if report["mismatches"]:
        out.append("")
        out.append("!" * 78)
        out.append("!!! PIPELINES DISAGREE ON THE ACCEPTED COUNT:")
        out.extend(f"!!!   {m}" for m in report["mismatches"])
        out.append("!" * 78)
    return "\n".join(out)


def chart(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["pipeline"] + (" *" if r["sliced"] else "") for r in next(iter(report["corpora"].values()))["results"]]
    labels = [
        n if "[" in n or "zstd" in n else f"{n} [{r['codec']}]"
        for n, r in zip(names, next(iter(report["corpora"].values()))["results"], strict=True)
    ]
    corpus_names = list(report["corpora"])
    height = 0.8 / len(corpus_names)
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.55 * len(names) * max(1, len(corpus_names) * 0.8)))
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c")
    for i, name in enumerate(corpus_names):
        results = report["corpora"][name]["results"]
        ys = [j + (i - (len(corpus_names) - 1) / 2) * height for j in range(len(results))]
        values = [r.get("mb_s", 0.0) for r in results]
        bar_colours = [("#d62728" if not r["agrees"] else colours[i % len(colours)]) for r in results]
        info = report["corpora"][name]["info"]
        ax.barh(
            ys,
            values,
            height=height * 0.9,
            color=bar_colours,
            label=f"{name} ({info['bytes'] / 1e6:.0f} MB, mean {info['event_bytes_mean']:.0f} B/event)",
        )
        for y, v, r in zip(ys, values, results, strict=True):
            if "mb_s" not in r:
                ax.text(1.05, y, "FAILED", va="center", fontsize=8, color="#d62728")
                continue
            note = "" if r["agrees"] else "  WRONG COUNT"
            ax.text(v * 1.03, y, f"{v:.1f}{note}", va="center", fontsize=8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("MB/s of decompressed body (log scale; median of interleaved rounds)")
    m = report["machine"]
    ax.set_title(
        f"APM intake v2 validation throughput, one core\n{m['cpu']}, {m['python']}, "
        f"ndintake {m['packages'].get('ndintake')}",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    top = max((r.get("mb_s", 1.0) for data in report["corpora"].values() for r in data["results"]), default=1.0)
    ax.set_xlim(left=1, right=top * 2.2)
    fig.text(
        0.01,
        0.005,
        "* timed on a prefix of the corpus. Shared 2-core VM: absolute MB/s move between runs, "
        "ratios within a run much less.",
        fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- entry point ------------------------------------------------------------------


def run(
    *, quick: bool, corpus: str | None, size_mb: float | None, repeat: int | None, seed: int = corpora.DEFAULT_SEED
) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_start = cpu_snapshot()
    size = int((size_mb if size_mb is not None else (4 if quick else 16)) * 1e6)
    repeat = repeat if repeat is not None else (5 if quick else 9)
    names = [corpus] if corpus and corpus != "all" else (["realistic"] if quick else [*corpora.CORPORA, "junk"])
    junk_only = names == ["junk"]
    junk_lines = 250_000 if quick else 1_000_000
    slice_size = 256_000 if quick else 512_000
    rss_plan = (
        [(10, "identity"), (50, "identity")]
        if quick
        else [(10, "identity"), (200, "identity"), (200, "gzip"), (200, "zstd")]
    )
    report: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "quick": quick,
            "size_bytes": size,
            "repeat": repeat,
            "corpora": names,
            "junk_lines": junk_lines if "junk" in names else None,
            "seed": seed,
            "slice_bytes": slice_size,
            "chunk_bytes": 64 * 1024,
            "levels": LEVELS,
            "rss_plan": [{"size_mb": s, "codec": c} for s, c in rss_plan],
        },
        "corpora": {},
        "mismatches": [],
    }
    if not junk_only:
        log("[check] schema-checking a 256 KB realistic corpus with jsonschema (check_corpus)")
        report["corpus_check"] = corpora.check_corpus(size=256 * 1024, seed=seed)
    for name in names:
        if name != "junk":
            report["corpora"][name] = bench_corpus(name, size, repeat, slice_size, seed, report["mismatches"])
    if "junk" in names:
        report["junk"] = bench_junk(junk_lines, repeat, seed, report["mismatches"])
    if not junk_only:
        report["rss"] = rss_runs(rss_plan, seed)
        for r in report["rss"]:
            if "error" not in r and (r["accepted"] != r["expected"] or r["status"] != 202):
                report["mismatches"].append(
                    f"[rss] {r['body_mb']} MB {r['codec']}: accepted {r['accepted']} "
                    f"(expected {r['expected']}), status {r['status']}"
                )
        report["import"] = import_time(3 if quick else 5, seed)
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["contention"] = cpu_contention(cpu_start, cpu_snapshot())
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report
