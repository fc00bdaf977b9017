"""Real brokers for the sink tests.

- ``shared_redis`` / ``shared_nats``: the machine's Redis (127.0.0.1:6379) and
  NATS with JetStream (127.0.0.1:4222), started by ``.ci/services.d``. Checked
  when a test uses them; a test **fails** (never skips) when one does not
  answer. Each test gets a unique stream name, deleted afterwards.
- ``own_redis`` / ``own_nats``: a private ``redis-server`` / ``nats-server -js``
  on a free port in a temporary directory, for tests that kill (SIGKILL),
  freeze (SIGSTOP/SIGCONT), fill or restart it (same port, same directory);
  always stopped at teardown.

Test modules import the fixtures they use: ``from brokers import shared_redis``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Coroutine, Iterator, TypeVar

import pytest

import ndintake
from ndintake.server import Batch

T = TypeVar("T")

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
SHARED_REDIS = ("127.0.0.1", 6379)
SHARED_NATS = ("127.0.0.1", 4222)
DATA = Path(__file__).resolve().parent / "data" / "apm-server"


def run(coroutine: Coroutine[Any, Any, T], limit: float = 60) -> T:
    """Run a test coroutine in a fresh event loop, failing after ``limit`` seconds."""
    return asyncio.run(asyncio.wait_for(coroutine, limit))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- batches -------------------------------------------------------------------


def batches(name: str = "intake-v2/events.ndjson", *, profile: str = "apm", path: str = "/intake/v2/events", size: int = 10) -> list[Batch]:
    """The accepted events of a test body, in batches of ``size`` events."""
    stream = ndintake.IntakeStream(profile=profile)
    body = (DATA / name).read_bytes()
    events = stream.feed(body)
    events += stream.close().final_events
    assert events, name
    return [
        Batch(events[i : i + size], profile=profile, metadata=stream.metadata, path=path)
        for i in range(0, len(events), size)
    ]


def copies(batch: Batch, n: int) -> list[Batch]:
    """``n`` copies of a batch under distinct routes (so distinct deduplication keys)."""
    return [Batch(batch, profile=batch.profile, metadata=batch.metadata, path=f"{batch.path}/{i}") for i in range(n)]


# -- probes --------------------------------------------------------------------


def answers(host: str, port: int, hello: bytes, expect: bytes, timeout: float = 2.0) -> bytes | None:
    """Send ``hello`` (if any) and return what the server says when it contains ``expect``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if hello:
                sock.sendall(hello)
            sock.settimeout(timeout)
            data = b""
            while expect not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data if expect in data else None
    except OSError:
        return None


def redis_answers(host: str, port: int) -> bool:
    return answers(host, port, b"PING\r\n", b"+PONG") is not None


def nats_answers(host: str, port: int) -> bool:
    info = answers(host, port, b"", b"\r\n")
    return info is not None and b'"jetstream":true' in info


def wait_until(check: Any, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up within {limit:g} s")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the shared services ---------------------------------------------------------


@pytest.fixture
def shared_redis() -> Iterator[tuple[str, str]]:
    """``(url, stream)``: a unique stream on the shared Redis, deleted afterwards."""
    host, port = SHARED_REDIS
    if not redis_answers(host, port):
        pytest.fail(f"Redis does not answer on {host}:{port}: start it (.ci/services.d/redis.sh)")
    stream = unique("ndintake-test")
    yield f"redis://{host}:{port}/0?stream={stream}", stream
    import redis

    with redis.Redis(host=host, port=port, socket_timeout=5) as client:
        client.delete(stream)


@pytest.fixture
def shared_nats() -> Iterator[tuple[str, str]]:
    """``(server, stream)``: a unique stream name on the shared NATS, deleted afterwards."""
    host, port = SHARED_NATS
    if not nats_answers(host, port):
        pytest.fail(f"NATS with JetStream does not answer on {host}:{port}: start it (.ci/services.d/nats.sh)")
    stream = unique("NDTEST").replace("-", "_")
    server = f"nats://{host}:{port}"
    yield server, stream

    async def delete() -> None:
        import nats
        import nats.js.errors

        nc = await nats.connect(server, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    run(delete(), 10)


# -- private instances -----------------------------------------------------------


class Broker:
    """A broker process of our own: started on a free port, killed, frozen, restarted."""

    name = "broker"

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        binary = self.command()[0]
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is not installed: apt-get install -y redis-server nats-server")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self.ready, f"{self.name} on port {self.port} (log: {self.log})")
        except AssertionError:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL (a frozen process dies too, without running again first)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP, and wait until the process is stopped (the signal lands asynchronously)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: self.state() == "T", f"{self.name} to stop", 5)

    def state(self) -> str:
        """The process state letter from /proc (R, S, T...)."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0]

    def cont(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.cont()
            self.proc.kill()
            self.proc.wait(10)


class RedisServer(Broker):
    name = "redis"

    def __init__(self, tmp: Path, *extra: str) -> None:
        super().__init__(tmp)
        self.extra = list(extra)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        # AOF with a fsync per write: what was acknowledged survives SIGKILL, as it should in production
        return [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--dir", str(self.dir), *self.extra]  # fmt: skip

    def ready(self) -> bool:
        return redis_answers("127.0.0.1", self.port)


class NatsServer(Broker):
    name = "nats"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.url = f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.dir / "js")]

    def ready(self) -> bool:
        return nats_answers("127.0.0.1", self.port)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis (AOF, ``appendfsync always``; fill it with ``CONFIG SET maxmemory``)."""
    server = RedisServer(tmp_path, "--maxmemory-policy", "noeviction")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A private NATS server with JetStream (file store in the test's tmp dir)."""
    server = NatsServer(tmp_path)
    server.start()
    yield server
    server.stop()
