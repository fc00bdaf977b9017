"""``python -m benchmarks.load``: the intake server under concurrent load, over loopback HTTP.

For every server row, body size and concurrency level ("cell"), N asyncio clients
send the same pre-built gzip APM intake body over and over (HTTP/1.1 over raw
sockets, keep-alive, ``Content-Length``, ``?verbose``) for ``--seconds``, then
the requests in flight are given ``--drain`` seconds to finish. Reported per
cell: requests/s, events/s (from ``{"accepted": N}``), decoded and wire MB/s,
status counts, latency percentiles of the 202s and of the refusals (503, 429)
apart, peak RSS of the server's process tree (VmRSS summed over the tree every
50 ms), the CPU the server tree, this client and everything else on the machine
took, and the answers of a side probe that sends ``GET /`` every 200 ms on a
new connection (the server must keep answering while loaded).

Server rows: ``bare`` (``benchmarks/bare_app.py``: reads the body, answers 202,
on ndintake serve's uvicorn set-up: the transport ceiling), ``null``
(``ndintake serve --sink null``, one worker), ``null-w2`` (``--workers 2``;
skipped, and said so, while ``ndintake serve --help`` has no ``--workers``) and
``jsonl`` (``--sink jsonl:<tmp file>``, not run by default), ``redis`` and
``nats`` (and their ``-w2``: the broker sinks into the machine's Redis on
6379 and NATS on 4222, a stream of their own, capped and deleted at the end;
not run by default; see ``benchmarks/sinks.py`` for the sinks alone). Options such as
``--max-concurrent-decoders`` are passed on only when ``ndintake serve --help``
lists them.

Baseline: in-process ``ndintake.validate`` on the same bodies, measured in this
process before any server starts; ``vs validate`` is a row's events/s over it,
``vs bare`` its requests/s over the bare app's in the same cell.

Every loop is bounded in count and in time; every server started is stopped
(SIGTERM to its process group, then SIGKILL) on the way out, also on Ctrl-C.
All traffic is on 127.0.0.1. No figure is judged here: numbers are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from . import corpus as corpora
from .competitors import LEVELS

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SIZES = {"1mb": 1_000_000, "50kb": 50_000}
SERVERS = ("bare", "bare-w2", "null", "null-w2", "jsonl", "redis", "redis-w2", "nats", "nats-w2", "kafka", "kafka-w2")
DEFAULT_SERVERS = ("bare", "bare-w2", "null", "null-w2")  # the -w2 rows only when serve has --workers
REFUSALS = (503, 429)
PROBE_EVERY = 0.2
PROBE_OUTSTANDING = 64
CLIENT_BOUND = 0.7  # client cores from which a cell is marked as possibly client-bound
SAMPLE_EVERY = 0.05
JSONL_CAP = 256 * 1024 * 1024  # the jsonl sink's file is truncated past this size
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[str, int]:
    """``1mb`` -> ("1mb", 1_000_000), ``50kb``, ``200k``, ``2m`` or a byte count (decimal units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([km]?)b?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (say 1mb, 50kb or a byte count)")
    number, unit = float(match.group(1)), match.group(2)
    value = int(number * {"": 1, "k": 1_000, "m": 1_000_000}[unit])
    if value < 2_000:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small (at least 2kb)")
    name = f"{match.group(1)}{unit}b" if unit else f"{value}b"
    return name, value


# -- bodies ----------------------------------------------------------------------


@dataclass
class Body:
    name: str
    wire: bytes  # gzip
    decoded_bytes: int
    events: int
    request: bytes = b""  # the whole HTTP request, head and body

    def info(self) -> dict[str, Any]:
        return {
            "wire_bytes": len(self.wire),
            "decoded_bytes": self.decoded_bytes,
            "events": self.events,
            "ratio": round(self.decoded_bytes / len(self.wire), 2),
        }


def gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(LEVELS["gzip"], zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def build_body(name: str, target: int, seed: int) -> Body:
    """A realistic body whose gzip form is about ``target`` bytes (within 2%, a few tries)."""
    decoded_size = int(target * 9.3)  # the realistic corpus's gzip ratio at level 6
    best: tuple[bytes, bytes] | None = None
    for _ in range(5):
        raw = corpora.realistic(decoded_size, seed)
        wire = gzip(raw)
        if best is None or abs(len(wire) - target) < abs(len(best[1]) - target):
            best = (raw, wire)
        if abs(len(wire) - target) <= 0.02 * target:
            break
        decoded_size = max(2_000, int(decoded_size * target / len(wire)))
    assert best is not None
    raw, wire = best
    body = Body(name, wire, len(raw), corpora.event_count(raw))
    head = (
        "POST /intake/v2/events?verbose HTTP/1.1\r\n"
        f"Host: {HOST}\r\n"
        "User-Agent: ndintake-load/1\r\n"
        "Content-Type: application/x-ndjson\r\n"
        "Content-Encoding: gzip\r\n"
        f"Content-Length: {len(wire)}\r\n"
        "\r\n"
    ).encode("ascii")
    body.request = head + wire
    return body


def validate_baseline(body: Body, seconds: float, max_rounds: int = 50, min_rounds: int = 3) -> dict[str, Any]:
    """In-process ``ndintake.validate`` on the gzip body: median of timed rounds."""
    import ndintake

    warm = ndintake.validate(body.wire, content_encoding="gzip")
    times: list[float] = []
    accepted = [warm.accepted]
    deadline = time.monotonic() + seconds
    while len(times) < max_rounds and (len(times) < min_rounds or time.monotonic() < deadline):
        start = time.perf_counter()
        result = ndintake.validate(body.wire, content_encoding="gzip")
        times.append(time.perf_counter() - start)
        accepted.append(result.accepted)
    median = statistics.median(times)
    return {
        "rounds": len(times),
        "median_s": round(median, 6),
        "events_s": round(body.events / median),
        "decoded_mb_s": round(body.decoded_bytes / median / 1e6, 2),
        "requests_s": round(1 / median, 2),
        "agrees": all(a == body.events for a in accepted),
        "status": warm.status,
    }


# -- /proc -----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                kids.extend(int(x) for x in handle.read().split())
        except (OSError, ValueError):
            pass
    return kids


def process_tree(root: int, limit: int = 256) -> list[int]:
    """``root`` and its descendants (bounded), from ``/proc/<pid>/task/*/children``."""
    seen = [root]
    index = 0
    while index < len(seen) and len(seen) < limit:
        seen.extend(k for k in _children(seen[index]) if k not in seen)
        index += 1
    return seen


def _status_kb(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            pass
    return total


def reset_hwm(pids: list[int]) -> bool:
    done = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "wb") as handle:
                handle.write(b"5")
        except OSError:
            done = False
    return done


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total / _TICK


def machine_busy() -> float | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / _TICK


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


# -- servers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def serve_options() -> tuple[set[str], str | None]:
    """The options ``ndintake serve --help`` lists, and an error if it could not run."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ndintake", "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=python_env(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return set(), f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        return set(), (proc.stderr.strip().splitlines() or ["ndintake serve --help failed"])[-1]
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", proc.stdout)), None


_LIVE: list[Server] = []


class Server:
    """A server subprocess in its own process group (so its workers are stopped with it)."""

    def __init__(self, name: str, argv: list[str], workdir: Path, grace: float = 1.0) -> None:
        self.name = name
        self.argv = argv
        self.port = 0
        self.grace = grace
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.jsonl: Path | None = None
        self.seen_pids: set[int] = set()  # every process of its tree the sampler saw

    def start(self, timeout: float = 30.0) -> None:
        last: Exception | None = None
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            with open(self.log_path, "ab") as log_file:
                self.proc = subprocess.Popen(
                    [*self.argv, "--port", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,
                    cwd=ROOT,
                    env=python_env(),
                    start_new_session=True,
                )
            _LIVE.append(self)
            try:
                self.wait_ready(timeout)
                return
            except RuntimeError as exc:
                last = exc
                self.stop()
        raise RuntimeError(f"{self.name} did not start: {last}")

    def wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _ = http_get(self.port, timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no answer to GET / within {timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=self.grace + 10)
                except subprocess.TimeoutExpired:
                    pass
            # the group: the server's own workers, whether or not the server is gone
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {proc.pid}) did not exit after SIGKILL")
        finally:
            if self in _LIVE:
                _LIVE.remove(self)


def stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def http_get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, float]:
    """``GET path`` on a new connection; (status, seconds)."""
    start = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode("ascii"))
        data = b""
        deadline = start + timeout
        while b"\r\n\r\n" not in data and len(data) < 65536 and time.perf_counter() < deadline:
            piece = sock.recv(4096)
            if not piece:
                break
            data += piece
        if not data.startswith(b"HTTP/1."):
            raise OSError("no HTTP answer")
        status = int(data.split(b" ", 2)[1])
        head, _, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        want = int(length.group(1)) if length else 0
        while len(rest) < want and time.perf_counter() < deadline:
            piece = sock.recv(65536)
            if not piece:
                break
            rest += piece
    return status, time.perf_counter() - start


# -- one cell ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def latency_summary(values: list[float]) -> dict[str, Any]:
    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 2)

    return {
        "count": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
    }


def within(values: list[float], seconds: float) -> float | None:
    """The share of ``values`` (every answer's latency) at most ``seconds``."""
    return round(sum(1 for x in values if x <= seconds) / len(values), 4) if values else None


@dataclass
class Tally:
    expected_events: int | None  # None: the server does not count (the bare app)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    accepted_latency: list[float] = field(default_factory=list)
    refused_latency: list[float] = field(default_factory=list)
    other_latency: list[float] = field(default_factory=list)
    accepted_events: int = 0
    accepted_counts_checked: int = 0
    mismatches: int = 0
    mismatch_examples: list[str] = field(default_factory=list)
    sent: int = 0  # requests started
    answered: int = 0  # requests with an HTTP answer
    unfinished: int = 0  # cut off at the drain deadline
    last_done: float = 0.0

    def record(self, status: int, seconds: float, payload: bytes) -> None:
        self.answered += 1
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if status == 202:
            self.accepted_latency.append(seconds)
            if self.expected_events is not None:
                try:
                    accepted = json.loads(payload)["accepted"]
                except (ValueError, KeyError, TypeError):
                    accepted = None
                self.accepted_counts_checked += 1
                if isinstance(accepted, int):
                    self.accepted_events += accepted
                if accepted != self.expected_events:
                    self.mismatches += 1
                    if len(self.mismatch_examples) < 3:
                        self.mismatch_examples.append(payload[:200].decode("utf-8", "replace"))
        elif status in REFUSALS:
            self.refused_latency.append(seconds)
        else:
            self.other_latency.append(seconds)

    def error(self, kind: str, seconds: float) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.other_latency.append(seconds)


def parse_response(buffer: bytearray) -> tuple[int, dict[bytes, bytes], bytes, int] | None:
    """(status, headers, payload, bytes used) of the HTTP/1.1 answer at the start of
    ``buffer``, or None while it is incomplete. Raises ValueError on garbage."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > 65536:
            raise ValueError("answer head over 64 KiB")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    at = end + 4
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        payload = bytearray()
        for _ in range(100_000):
            eol = buffer.find(b"\r\n", at)
            if eol < 0:
                return None
            size = int(bytes(buffer[at:eol]).split(b";")[0], 16)
            at = eol + 2
            if len(buffer) < at + size + 2:
                return None
            payload += buffer[at : at + size]
            at += size + 2
            if size == 0:
                return status, headers, bytes(payload), at
        raise ValueError("too many chunks")
    length = int(headers.get(b"content-length", b"0") or 0)
    if len(buffer) < at + length:
        return None
    return status, headers, bytes(buffer[at : at + length]), at + length


class Connection(asyncio.Protocol):
    """One client connection: writes a request, waits for its answer. An answer that
    arrived before the server closed (a refusal sent before the body was read) is
    still delivered; otherwise a closed connection raises ConnectionError."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, dict[bytes, bytes], bytes]] | None = None
        self.closed = False
        self.reason: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._check()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reason = exc
        self._check()

    def _check(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = parse_response(self.buffer)
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if answer is not None:
            status, headers, payload, used = answer
            del self.buffer[:used]
            waiter.set_result((status, headers, payload))
        elif self.closed:
            reason = self.reason
            kind = type(reason).__name__ if reason is not None else "closed by server"
            waiter.set_exception(ConnectionError(kind))

    async def request(self, data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.closed or self.transport is None:
            raise ConnectionError("closed by server")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        self._check()
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def client(
    port: int, body: Body, tally: Tally, stop_at: float, budget: list[int], in_flight: list[int], timeout: float
) -> None:
    """One keep-alive connection (re-opened after errors and refusals), requests back to back."""
    loop = asyncio.get_running_loop()
    conn: Connection | None = None
    try:
        for _ in range(budget[0]):
            if time.monotonic() >= stop_at or budget[0] <= 0:
                break
            budget[0] -= 1
            tally.sent += 1
            in_flight[0] += 1
            start = time.perf_counter()
            try:
                if conn is None:
                    _, conn = await asyncio.wait_for(loop.create_connection(Connection, HOST, port), timeout)
                status, headers, payload = await asyncio.wait_for(conn.request(body.request), timeout)
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                in_flight[0] -= 1
                kind = str(exc) if isinstance(exc, ConnectionError) and str(exc) else type(exc).__name__
                tally.error(kind, time.perf_counter() - start)
                tally.last_done = time.monotonic()
                if conn is not None:
                    conn.close()
                conn = None
                await asyncio.sleep(0.01)  # no tight loop against a server that is gone
                continue
            in_flight[0] -= 1
            tally.record(status, time.perf_counter() - start, payload)
            tally.last_done = time.monotonic()
            if status >= 400 or headers.get(b"connection", b"").lower() == b"close":
                assert conn is not None
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


class Sampler(threading.Thread):
    """Every 50 ms: summed VmRSS of the server's process tree (the tree re-read every
    0.5 s); also keeps a jsonl sink's file under JSONL_CAP."""

    def __init__(self, server: Server, max_seconds: float) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.max_seconds = max_seconds
        self.halt = threading.Event()
        self.peak = 0
        self.samples = 0
        self.pids: list[int] = process_tree(server.pid)
        self.max_pids = len(self.pids)
        self.seen: set[int] = set(self.pids)
        self.truncated = 0

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        ticks = 0
        while not self.halt.is_set() and time.monotonic() < deadline:
            if ticks % 10 == 0:
                self.pids = process_tree(self.server.pid)
                self.max_pids = max(self.max_pids, len(self.pids))
                self.seen.update(self.pids)
                jsonl = self.server.jsonl
                if jsonl is not None:
                    try:
                        if jsonl.stat().st_size > JSONL_CAP:
                            os.truncate(jsonl, 0)
                            self.truncated += 1
                    except OSError:
                        pass
            self.peak = max(self.peak, rss_bytes(self.pids))
            self.samples += 1
            ticks += 1
            self.halt.wait(SAMPLE_EVERY)


class Probe(threading.Thread):
    """``GET /`` on a new connection every 200 ms while the load runs. Each probe runs
    in its own short thread, so a server that stalls for seconds still gets one probe
    per 200 ms (at most PROBE_OUTSTANDING at once) and every stalled one is timed."""

    def __init__(self, port: int, max_seconds: float, timeout: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []  # every attempt, failed ones included (up to their failure)
        self.failures: dict[str, int] = {}
        self.ok = 0

    def _fail(self, kind: str) -> None:
        with self.lock:
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def _one(self) -> None:
        start = time.perf_counter()
        try:
            status, seconds = http_get(self.port, timeout=self.timeout)
        except OSError as exc:
            kind = "timeout" if isinstance(exc, (socket.timeout, TimeoutError)) else type(exc).__name__
            with self.lock:
                self.latencies.append(time.perf_counter() - start)
            self._fail(kind)
            return
        with self.lock:
            self.latencies.append(seconds)
            if status == 200:
                self.ok += 1
        if status != 200:
            self._fail(str(status))

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        workers: list[threading.Thread] = []
        for _ in range(int(self.max_seconds / PROBE_EVERY) + 2):
            if self.halt.is_set() or time.monotonic() >= deadline:
                break
            workers = [w for w in workers if w.is_alive()]
            if len(workers) < PROBE_OUTSTANDING:
                worker = threading.Thread(target=self._one, daemon=True)
                worker.start()
                workers.append(worker)
            else:
                self._fail("not sent: too many outstanding")
            next_at += PROBE_EVERY
            self.halt.wait(max(0.0, next_at - time.monotonic()))
        end = time.monotonic() + 2 * self.timeout + 2  # http_get may take two socket timeouts
        for worker in workers:
            worker.join(max(0.0, end - time.monotonic()))

    def summary(self) -> dict[str, Any]:
        with self.lock:
            out = latency_summary(self.latencies)
            out["answered"] = self.ok
            out["failures"] = dict(self.failures)
        return out


async def _load(
    port: int, body: Body, tally: Tally, concurrency: int, seconds: float, drain: float, max_requests: int, timeout: float
) -> float:
    start = time.monotonic()
    stop_at = start + seconds
    budget = [max_requests]
    in_flight = [0]
    tasks = [
        asyncio.ensure_future(client(port, body, tally, stop_at, budget, in_flight, timeout))
        for _ in range(concurrency)
    ]
    done, pending = await asyncio.wait(tasks, timeout=seconds + drain)
    tally.unfinished = in_flight[0]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    for task in done:
        if task.exception() is not None:
            tally.error(f"client crashed: {type(task.exception()).__name__}", 0.0)
    end = time.monotonic() if pending else max(tally.last_done, start + 1e-6)
    return end - start


def run_cell(
    server: Server,
    body: Body,
    concurrency: int,
    counts_events: bool,
    seconds: float,
    drain: float,
    max_requests: int,
    timeout: float,
    loop_factory: Any,
    probe_timeout: float = 10.0,
) -> dict[str, Any]:
    tally = Tally(body.events if counts_events else None)
    pids = process_tree(server.pid)
    rss_start = rss_bytes(pids)
    hwm_reset = reset_hwm(pids)
    sampler = Sampler(server, seconds + drain + 10)
    probe = Probe(server.port, seconds + drain + 10, probe_timeout)
    cpu0 = (own_cpu(), cpu_seconds(pids), machine_busy(), time.monotonic())
    sampler.start()
    probe.start()
    try:
        elapsed = loop_factory(_load(server.port, body, tally, concurrency, seconds, drain, max_requests, timeout))
    finally:
        probe.halt.set()
        sampler.halt.set()
        probe.join(timeout=2 * probe_timeout + 5)
        sampler.join(timeout=5)
    pids = sampler.pids
    cpu1 = (own_cpu(), cpu_seconds(pids), machine_busy(), time.monotonic())
    hwm = sum(_status_kb(pid, b"VmHWM:") for pid in pids) * 1024
    wall = cpu1[3] - cpu0[3]
    client_cpu = cpu1[0] - cpu0[0]
    server_cpu = max(0.0, cpu1[1] - cpu0[1])  # a process of the tree that went away takes its CPU with it
    busy = (cpu1[2] - cpu0[2]) if cpu0[2] is not None and cpu1[2] is not None else None
    ok = tally.statuses.get("202", 0)
    refused = sum(tally.statuses.get(str(s), 0) for s in REFUSALS)
    other = tally.answered - ok - refused + sum(tally.errors.values())
    cell: dict[str, Any] = {
        "server": server.name,
        "body": body.name,
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 3),
        "requests": tally.answered + sum(tally.errors.values()),
        "answered": tally.answered,
        "unfinished": tally.unfinished,
        "status": {"202": ok, "refused": refused, "other": other},
        "statuses": dict(sorted(tally.statuses.items())),
        "errors": tally.errors,
        "requests_s": round(tally.answered / elapsed, 3),
        "accepted_requests_s": round(ok / elapsed, 3),
        "events_s": round(tally.accepted_events / elapsed) if counts_events else None,
        "accepted_events": tally.accepted_events if counts_events else None,
        "accepted_counts_checked": tally.accepted_counts_checked,
        "accepted_mismatches": tally.mismatches,
        "mismatch_examples": tally.mismatch_examples,
        "decoded_mb_s": round(ok * body.decoded_bytes / elapsed / 1e6, 2) if counts_events else None,
        "wire_mb_s": round(tally.answered * len(body.wire) / elapsed / 1e6, 2),
        "latency_202": latency_summary(tally.accepted_latency),
        "latency_refused": latency_summary(tally.refused_latency),
        "latency_other": latency_summary(tally.other_latency),
        "within_2s": within(tally.accepted_latency + tally.refused_latency + tally.other_latency, 2.0),
        "server_rss_start_mb": round(rss_start / 1e6, 1),
        "server_peak_rss_mb": round(max(sampler.peak, rss_start) / 1e6, 1),
        "server_hwm_sum_mb": round(hwm / 1e6, 1) if hwm_reset else None,
        "server_processes": sampler.max_pids,
        "rss_samples": sampler.samples,
        "probe": probe.summary(),
        "cpu": {
            "wall_s": round(wall, 2),
            "client_cpu_s": round(client_cpu, 2),
            "client_cores": round(client_cpu / wall, 3) if wall else None,
            "server_cpu_s": round(server_cpu, 2),
            "server_cores": round(server_cpu / wall, 3) if wall else None,
            "machine_busy_cores": round(busy / wall, 3) if busy is not None and wall else None,
            "others_cores": round(max(0.0, busy - client_cpu - server_cpu) / wall, 3)
            if busy is not None and wall
            else None,
        },
    }
    server.seen_pids.update(sampler.seen)
    if sampler.truncated:
        cell["jsonl_truncations"] = sampler.truncated
    return cell


# -- report ----------------------------------------------------------------------------


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("ndintake", "uvicorn", "httptools", "uvloop", "h11", "orjson", "jsonschema-rs", "zlib-ng"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def uvicorn_auto() -> dict[str, str]:
    """What the servers run on here: ``ndintake serve``'s own choices (its HTTP
    protocol on httptools when it imports, else h11; its default event loop),
    which the bare app shares."""
    from ndintake.server.serve import event_loop, http_protocol

    base = http_protocol(10.0, 1000).__mro__[1].__name__
    return {"http": "httptools" if base.startswith("HttpTools") else "h11", "loop": event_loop()}


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        from .run import machine

        info.update(machine())
    except Exception as exc:  # the run module's extras are optional here
        info["machine_error"] = f"{type(exc).__name__}: {exc}"
        info["python"] = f"{platform.python_implementation()} {platform.python_version()}"
        info["logical_cpus"] = os.cpu_count()
    info["packages"] = versions()
    info["uvicorn_auto"] = uvicorn_auto()
    info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    m = report["machine"]
    pk = m.get("packages", {})
    out = ["# ndintake load harness", ""]
    out.append(
        f"- machine: {m.get('cpu', '?')}, {m.get('logical_cpus', '?')} logical CPUs"
        f" ({m.get('usable_cpus', '?')} usable), {m.get('memory_gb', '?')} GB; {m.get('os', '')}"
    )
    out.append(
        f"- {m.get('python', '?')}; uvicorn {pk.get('uvicorn')}, httptools {pk.get('httptools')},"
        f" uvloop {pk.get('uvloop')}; servers run http={m.get('uvicorn_auto', {}).get('http')},"
        f" loop={m.get('uvicorn_auto', {}).get('loop')}; ndintake {pk.get('ndintake')} ({m.get('git', '?')});"
        f" load clients' loop: {report['config']['client_loop']}"
    )
    cfg = report["config"]
    out.append(
        f"- cells: {cfg['seconds']:g} s of load + up to {cfg['drain']:g} s drain, at most {cfg['max_requests']}"
        f" requests; concurrency {', '.join(map(str, cfg['concurrency']))}; server args: {cfg['server_args'] or 'none'}"
    )
    for name, info in report["bodies"].items():
        base = report["validate"].get(name, {})
        again = [c["validate_before"]["events_s"] for c in report["cells"] if c["body"] == name and "validate_before" in c]
        out.append(
            f"- body {name}: {info['wire_bytes']:,} B gzip, {info['decoded_bytes']:,} B decoded, {info['events']:,}"
            f" events; in-process `ndintake.validate`: {_num(base.get('events_s'))} events/s,"
            f" {_num(base.get('decoded_mb_s'))} MB/s, {_num(base.get('requests_s'), 2)} bodies/s at start"
            + (f"; {_num(min(again))}–{_num(max(again))} events/s when re-timed before each cell" if again else "")
        )
    for skipped in report["skipped"]:
        out.append(f"- skipped: {skipped}")
    noise = report.get("noise", {})
    out.append(
        f"- noise: load average {m.get('loadavg_start')} at start, {noise.get('loadavg_end')} at end; other processes"
        f" took {_num(noise.get('others_cores_mean'), 2)} cores on average during the cells (max"
        f" {_num(noise.get('others_cores_max'), 2)}). The machine is shared: compare ratios within one run, not"
        f" absolute figures across runs."
    )
    out.append("")
    out.append(
        "| server | body | c | req/s | events/s | dec MB/s | wire MB/s | 202 / refused / other |"
        " 202 p50 / p99 ms | refused p50 / p99 ms | within 2 s | peak RSS MB | probe p99 / max ms | vs bare | vs validate |"
        " server cores | client cores |"
    )
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    def mark(cell: dict[str, Any]) -> str:
        cores = cell["cpu"]["client_cores"]
        return " †" if cores is not None and cores >= CLIENT_BOUND else ""

    for c in report["cells"]:
        s = c["status"]
        a, r, p = c["latency_202"], c["latency_refused"], c["probe"]
        probe = f"{_num(p['p99_ms'])} / {_num(p['max_ms'])} ({p['answered']}/{p['count']}"
        probe += f", {sum(p['failures'].values())} failed)" if p["failures"] else ")"
        out.append(
            f"| {c['server']} | {c['body']} | {c['concurrency']} | {_num(c['requests_s'])}{mark(c)} | {_num(c['events_s'])}"
            f" | {_num(c['decoded_mb_s'])} | {_num(c['wire_mb_s'])} | {s['202']} / {s['refused']} / {s['other']}"
            f" | {_num(a['p50_ms'])} / {_num(a['p99_ms'])} | {_num(r['p50_ms'])} / {_num(r['p99_ms'])}"
            f" | {_num(c.get('within_2s'), 3)} | {_num(c['server_peak_rss_mb'])} | {probe} | {_num(c.get('vs_bare'), 2)} | {_num(c.get('vs_validate'), 2)}"
            f" | {_num(c['cpu']['server_cores'], 2)} | {_num(c['cpu']['client_cores'], 2)} |"
        )
    out.append("")
    out.append(
        "req/s counts answered requests over the cell (load + drain); events/s and dec MB/s count 202s only."
        " vs bare: accepted req/s over the bare app's req/s in the same cell; vs validate: events/s over in-process"
        " `ndintake.validate` (one core) timed just before the cell. Peak RSS: server process tree, VmRSS summed"
        f" every 50 ms{'' if report['config'].get('reuse_servers') else ', a fresh server per cell'}."
        " client cores: CPU of this harness process (load clients, probe, sampler) per second of wall time."
        f" wire MB/s: gzip bodies of the answered requests (a refusal may come before the body is read)."
        f" †: the load client took {CLIENT_BOUND} cores or more, so it may have been the bound."
    )
    client = report.get("client_cpu", {})
    if client:
        out.append(
            f"Load client's own CPU: {_num(client.get('cores_mean'), 3)} cores on average,"
            f" {_num(client.get('cores_max'), 3)} at most"
            + "".join(f"; {us:,.0f} µs per {body} request" for body, us in client.get("us_per_request_bare", {}).items())
            + (" (over the bare-app cells)." if client.get("us_per_request_bare") else ".")
        )
    if report["mismatches"]:
        out.append("")
        out.append("**DISAGREEMENTS:** " + "; ".join(report["mismatches"]))
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad list {text!r}") from None
    if not values or any(v < 1 or v > 1024 for v in values):
        raise argparse.ArgumentTypeError("concurrency levels are 1..1024")
    return values


def _servers(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in SERVERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown server {bad} (choose from {', '.join(SERVERS)})")
    return names


def server_rows(
    names: list[str], options: set[str], args: argparse.Namespace, workdir: Path, explicit: bool = False
) -> tuple[list[tuple[Server, bool]], list[str], list[str]]:
    """(server, counts events) rows to run, what was skipped and why, the extra args passed."""
    rows: list[tuple[Server, bool]] = []
    skipped: list[str] = []
    extra: list[str] = []
    wanted: list[tuple[str, str | None]] = []
    if args.max_concurrent_decoders is not None:
        wanted.append(("--max-concurrent-decoders", str(args.max_concurrent_decoders)))
    for raw in args.server_arg:
        name, eq, value = raw.partition("=")
        wanted.append((name, value if eq else None))
    for name, value in wanted:
        if name in options:
            extra += [name] + ([value] if value is not None else [])
        else:
            skipped.append(f"server option {name} (ndintake serve --help does not list it)")
    base = [sys.executable, "-m", "ndintake", "serve", "--host", HOST, "--log-level", "warning", "--grace", "1"]
    has_workers = "--workers" in options
    explicit = set(names) if explicit else set()
    for name in names:
        workers = 2 if name.endswith("-w2") else 1
        if name.startswith("bare"):
            if workers > 1 and not has_workers and name not in explicit:
                skipped.append(f"server {name}: only run next to null-w2, and `ndintake serve` has no --workers yet")
                continue
            argv = [sys.executable, "-m", "benchmarks.bare_app", "--host", HOST, "--log-level", "warning", "--grace", "1"]
            rows.append((Server(name, argv + ["--workers", str(workers)], workdir), False))
            continue
        if workers > 1 and not has_workers:
            skipped.append(f"server {name}: `ndintake serve` has no --workers option yet")
            continue
        sink = "null"
        jsonl_path = None
        if name == "jsonl":
            jsonl_path = workdir / "events.jsonl"
            sink = f"jsonl:{jsonl_path}"
        elif name.startswith(("redis", "nats", "kafka")):
            sink = broker_sink(name.partition("-")[0])
        argv = [*base, "--sink", sink, *(["--workers", str(workers)] if has_workers else []), *extra]
        server = Server(name, argv, workdir)
        server.jsonl = jsonl_path
        rows.append((server, True))
    return rows, skipped, extra


def broker_sink(broker: str) -> str:
    """A ``--sink`` into the machine's Redis or NATS, on a stream of this run's own,
    capped (Redis ``maxlen``; a JetStream stream made beforehand with ``max_bytes``
    and ``discard: old``) and deleted when the run ends; or into a Kafka-protocol
    broker started for the run (librdkafka's mock cluster, ``tests/kafka_broker.py``:
    three brokers in memory, a 6-partition topic), stopped when the run ends."""
    name = f"ndintake_load_{os.getpid()}"
    if broker == "kafka":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from kafka_broker import KafkaBroker

        cluster = KafkaBroker(3)
        atexit.register(cluster.stop)
        cluster.create_topic(name, 6)
        return f"kafka://{cluster.first}?topic={name}"
    if broker == "redis":
        import redis

        def drop_key() -> None:
            with redis.Redis(host=HOST, port=6379, socket_timeout=5) as client:
                client.delete(name)

        atexit.register(drop_key)
        return f"redis://{HOST}:6379/0?stream={name}&maxlen=50000"
    import nats
    from nats.js.api import DiscardPolicy, StreamConfig

    async def stream(create: bool) -> None:
        nc = await nats.connect(f"nats://{HOST}:4222", connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            if create:
                config = StreamConfig(name=name, subjects=[f"{name}.*"], max_bytes=256 << 20, discard=DiscardPolicy.OLD)
                await js.add_stream(config)
            else:
                await js.delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(stream(True))
    atexit.register(lambda: asyncio.run(stream(False)))
    return f"nats://{HOST}:4222?stream={name}&subject={name}.{{kind}}"


def run_row(
    server: Server, counts: bool, bodies: dict[str, Body], args: argparse.Namespace, loop_factory: Any, report: dict[str, Any]
) -> None:
    """Every (body, concurrency) cell of one server row. The server is started afresh
    for each cell (unless --reuse-servers), so a cell's peak RSS is its own; right
    before each cell, in-process ``ndintake.validate`` is timed again on the body
    (while the server idles), so ``vs validate`` compares figures taken moments apart."""
    mismatches: list[str] = report["mismatches"]
    started = False
    log(f"{server.name}: {' '.join(server.argv[1:])}")
    try:
        for body in bodies.values():
            for concurrency in args.concurrency:
                if not started or not args.reuse_servers:
                    if started:
                        server.stop()
                    if server.jsonl is not None and server.jsonl.exists():
                        os.truncate(server.jsonl, 0)
                    try:
                        server.start()
                    except RuntimeError as exc:
                        raise RuntimeError(f"server {server.name}: {exc}") from None
                    server.seen_pids.add(server.pid)
                    started = True
                elif server.proc is not None and server.proc.poll() is not None:
                    raise RuntimeError(f"{server.name} exited: {server.log_tail()}")
                baseline = (
                    validate_baseline(body, args.cell_baseline_seconds, min_rounds=2)
                    if counts and args.cell_baseline_seconds > 0
                    else None
                )
                log(f"{server.name} {body.name} c={concurrency}: {args.seconds:g} s")
                cell = run_cell(
                    server,
                    body,
                    concurrency,
                    counts,
                    args.seconds,
                    args.drain,
                    args.max_requests,
                    args.request_timeout,
                    loop_factory,
                    args.probe_timeout,
                )
                if baseline is not None:
                    cell["validate_before"] = baseline
                    if not baseline["agrees"]:
                        mismatches.append(f"ndintake.validate did not accept all {body.events} events of {body.name}")
                report["cells"].append(cell)
                if cell["accepted_mismatches"]:
                    mismatches.append(
                        f"{server.name} {body.name} c={concurrency}: {cell['accepted_mismatches']} answers"
                        f" of 202 did not accept {body.events} events"
                    )
                log(
                    f"  {cell['requests_s']:.1f} req/s, statuses {cell['statuses']}, errors {cell['errors']},"
                    f" peak RSS {cell['server_peak_rss_mb']} MB, client {cell['cpu']['client_cores']} cores"
                )
                time.sleep(args.pause)
    except RuntimeError as exc:
        report["skipped"].append(str(exc))
        mismatches.append(str(exc))
        log(str(exc))
    finally:
        server.stop()
        report["server_pids"][server.name] = sorted(server.seen_pids)


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    log(f"machine: {info.get('cpu')}, {info.get('logical_cpus')} CPUs, load average {info['loadavg_start']}")
    if args.client_loop == "uvloop":
        import uvloop

        def loop_factory(coro: Any) -> Any:
            return uvloop.run(coro)

    else:
        loop_factory = asyncio.run

    bodies: dict[str, Body] = {}
    for name, size in args.sizes:
        log(f"building the {name} body")
        bodies[name] = build_body(name, size, args.seed)
    baseline: dict[str, Any] = {}
    mismatches: list[str] = []
    for name, body in bodies.items():
        log(f"in-process ndintake.validate on the {name} body")
        baseline[name] = validate_baseline(body, args.validate_seconds)
        if not baseline[name]["agrees"]:
            mismatches.append(f"ndintake.validate did not accept all {body.events} events of the {name} body")

    options, help_error = serve_options()
    report: dict[str, Any] = {
        "machine": info,
        "config": {
            "seconds": args.seconds,
            "drain": args.drain,
            "max_requests": args.max_requests,
            "request_timeout": args.request_timeout,
            "concurrency": args.concurrency,
            "sizes": [n for n, _ in args.sizes],
            "servers": args.servers,
            "seed": args.seed,
            "client_loop": args.client_loop,
            "reuse_servers": args.reuse_servers,
            "cell_baseline_seconds": args.cell_baseline_seconds,
            "serve_options": sorted(options),
            "server_args": [],
        },
        "bodies": {name: body.info() for name, body in bodies.items()},
        "validate": baseline,
        "skipped": [],
        "cells": [],
        "server_pids": {},
        "mismatches": mismatches,
    }
    if help_error:
        report["skipped"].append(f"ndintake serve --help failed ({help_error}): options unknown")
    with tempfile.TemporaryDirectory(prefix="ndintake-load-") as tmp:
        workdir = Path(tmp)
        rows, skipped, extra = server_rows(args.servers, options, args, workdir, args.servers_explicit)
        report["skipped"] += skipped
        report["config"]["server_args"] = extra
        for note in report["skipped"]:
            log(f"skipped: {note}")
        for server, counts in rows:
            run_row(server, counts, bodies, args, loop_factory, report)
        report["server_logs"] = {}
        for path in sorted(workdir.glob("*.log")):
            text = path.read_text(errors="replace").strip().splitlines()
            if text:
                report["server_logs"][path.stem] = text[-20:]
    finish(report)
    return report


def finish(report: dict[str, Any]) -> None:
    """Ratios, the client's CPU and the noise summary."""
    bare = {(c["server"], c["body"], c["concurrency"]): c for c in report["cells"] if c["server"].startswith("bare")}
    for cell in report["cells"]:
        if cell["server"].startswith("bare"):
            continue
        # against the bare app with as many workers, else the one-worker one
        key = (cell["body"], cell["concurrency"])
        ref = bare.get(("bare-w2", *key)) if cell["server"].endswith("-w2") else None
        ref = ref or bare.get(("bare", *key))
        if ref and ref["requests_s"]:
            cell["vs_bare"] = round(cell["accepted_requests_s"] / ref["requests_s"], 3)
            cell["vs_bare_row"] = ref["server"]
        base = cell.get("validate_before") or report["validate"].get(cell["body"])
        if cell["events_s"] is not None and base and base["events_s"]:
            cell["vs_validate"] = round(cell["events_s"] / base["events_s"], 3)
    cells = report["cells"]
    if cells:
        cores = [c["cpu"]["client_cores"] for c in cells if c["cpu"]["client_cores"] is not None]
        # per request where the server is not the bound: the bare rows, per body
        per_request: dict[str, float] = {}
        for body in report["bodies"]:
            rows = [c for c in cells if c["server"].startswith("bare") and c["body"] == body]
            count = sum(c["requests"] for c in rows)
            if count:
                per_request[body] = round(sum(c["cpu"]["client_cpu_s"] for c in rows) / count * 1e6, 1)
        others = [c["cpu"]["others_cores"] for c in cells if c["cpu"]["others_cores"] is not None]
        report["client_cpu"] = {
            "cores_mean": round(statistics.mean(cores), 3) if cores else None,
            "cores_max": round(max(cores), 3) if cores else None,
            "us_per_request_bare": per_request,
            "note": "CPU of the harness process (load clients, probe thread, RSS sampler) during the cells;"
            " us_per_request_bare: its CPU per request over the bare-app cells, per body",
        }
        report["noise"] = {
            "others_cores_mean": round(statistics.mean(others), 3) if others else None,
            "others_cores_max": round(max(others), 3) if others else None,
        }
    else:
        report["noise"] = {}
    report["noise"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description="Load the intake server (and a bare ASGI app) over loopback HTTP; print a markdown table.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run: 1 s cells, concurrency 1 and 8, bare and null")
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON to PATH")
    parser.add_argument("--seconds", type=float, help="load per cell (default 3; 1 with --quick)")
    parser.add_argument(
        "--drain", type=float, help="time given to requests in flight after a cell (default 35: past the server's 30 s timeout; 10 quick)"
    )
    parser.add_argument(
        "--probe-timeout", type=float, default=10.0, help="the side probe's GET / gives up after this (default 10 s)"
    )
    parser.add_argument("--max-requests", type=int, default=20_000, help="requests per cell at most (default 20000)")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="client timeout per request (default 60 s)")
    parser.add_argument("--concurrency", type=_int_list, help="levels (default 1,8,32,128; 1,8 with --quick)")
    parser.add_argument(
        "--sizes", type=lambda t: [parse_size(x) for x in t.split(",") if x.strip()], help="gzip body sizes (default 1mb,50kb)"
    )
    parser.add_argument(
        "--servers", type=_servers, help=f"rows from {', '.join(SERVERS)} (default {','.join(DEFAULT_SERVERS)}; bare,null quick)"
    )
    parser.add_argument(
        "--max-concurrent-decoders", type=int, metavar="N", help="passed on to ndintake serve when it has the option"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="--OPT[=VALUE]",
        help="extra ndintake serve option, passed on only when `serve --help` lists it; repeatable",
    )
    parser.add_argument("--validate-seconds", type=float, help="in-process baseline time per body (default 2; 0.3 quick)")
    parser.add_argument(
        "--cell-baseline-seconds",
        type=float,
        help="time ndintake.validate again before each cell for vs validate (default 0.5; 0.1 quick; 0: only at start)",
    )
    parser.add_argument(
        "--reuse-servers", action="store_true", help="one server per row for all its cells (default: a fresh one per cell)"
    )
    parser.add_argument("--pause", type=float, default=0.5, help="pause between cells (default 0.5 s)")
    parser.add_argument(
        "--client-loop", choices=("asyncio", "uvloop"), help="the load clients' event loop (default uvloop if installed)"
    )
    parser.add_argument("--seed", type=int, default=corpora.DEFAULT_SEED)
    args = parser.parse_args(argv)
    quick = args.quick
    if args.seconds is None:
        args.seconds = 1.0 if quick else 3.0
    if args.drain is None:
        args.drain = 10.0 if quick else 35.0
    if args.concurrency is None:
        args.concurrency = [1, 8] if quick else [1, 8, 32, 128]
    if args.sizes is None:
        args.sizes = list(SIZES.items())
    args.servers_explicit = args.servers is not None
    if args.servers is None:
        args.servers = ["bare", "null"] if quick else list(DEFAULT_SERVERS)
    if args.client_loop is None:
        try:
            import uvloop  # noqa: F401

            args.client_loop = "uvloop"
        except ImportError:
            args.client_loop = "asyncio"
    if args.cell_baseline_seconds is None:
        args.cell_baseline_seconds = 0.1 if quick else 0.5
    if args.validate_seconds is None:
        args.validate_seconds = 0.3 if quick else 2.0
    if not 0 < args.seconds <= 600 or not 0 <= args.drain <= 600 or args.max_requests < 1:
        parser.error("--seconds must be in (0, 600], --drain in [0, 600], --max-requests at least 1")

    atexit.register(stop_all)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        report = run(args)
    except KeyboardInterrupt:
        log("interrupted: stopping the servers")
        return 130
    finally:
        stop_all()
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        log(f"JSON written to {args.json}")
    print(format_report(report))
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
