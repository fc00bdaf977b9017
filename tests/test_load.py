"""The server under load: admission, time slicing, sinks off the loop, honest
answers, workers, slow and surplus connections.

Time bounds here are generous and about behaviour ("answered within seconds,
not after minutes"), never speed assertions.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import brotli
import pytest
import zstandard

from ndintake import QueueFull, SinkUnavailable
from ndintake.asgi import IntakeASGI

from httpkit import NDJSON, Recorder, asgi_scope, body_messages, call_asgi_async, cut
from servekit import LOOPBACK, ServeProcess, post

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def metadata(service: str) -> bytes:
    return json.dumps({"metadata": {"service": {"name": service, "agent": {"name": "python", "version": "6.0"}}}}).encode()


def span(n: int) -> bytes:
    return json.dumps(
        {
            "span": {
                "id": f"{n:016x}",
                "trace_id": f"{n:032x}",
                "transaction_id": f"{n:016x}",
                "parent_id": f"{n:016x}",
                "name": f"span {n}",
                "type": "db",
                "start": 1.5,
                "duration": 3.25,
            }
        }
    ).encode()


def body(service: str, events: int) -> bytes:
    return b"\n".join([metadata(service), *(span(n) for n in range(events))]) + b"\n"


def junk_bomb(line: bytes, codec: str, lines: int = 20_000_000) -> tuple[bytes, str]:
    """A small compressed body that inflates to ``lines`` junk lines (capped by
    the 64 MiB body limit): minutes of work at a few microseconds a line."""
    raw = metadata("bomb") + b"\n" + line * lines
    if codec == "gzip":
        return gzip.compress(raw, 9), "gzip"
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=19).compress(raw), "zstd"
    return brotli.compress(raw, quality=9), "br"


def services(recorder: Recorder) -> Counter[str]:
    return Counter(batch.metadata["service"]["name"] for batch in recorder.batches for _ in batch)


class LoopWatch:
    """Measures the longest time the event loop was held between two ticks."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.005)
            self._mark(loop.time())

    def _mark(self, now: float) -> None:
        self.longest = max(self.longest, now - self._last)
        self._last = now

    def __enter__(self) -> LoopWatch:
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._task = loop.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self._mark(asyncio.get_running_loop().time())  # a hold that lasted to the end counts too


# -- admission ------------------------------------------------------------------------------------------


class HeldBody:
    """An ASGI ``receive`` that sends the first chunk, then holds until released."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.release = asyncio.Event()
        self.sent = False

    async def __call__(self) -> dict[str, Any]:
        if not self.sent:
            self.sent = True
            half = len(self.data) // 2
            return {"type": "http.request", "body": self.data[:half], "more_body": True}
        await self.release.wait()
        return {"type": "http.request", "body": self.data[len(self.data) // 2 :], "more_body": False}


async def held_request(app: IntakeASGI, receive: HeldBody) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(asgi_scope(headers=NDJSON, query="verbose"), receive, send)
    return {"status": sent[0]["status"], "json": json.loads(sent[1]["body"])}


def test_a_request_over_the_admission_limit_is_refused_before_its_body_is_read() -> None:
    recorder = Recorder()
    app = IntakeASGI(sink=recorder, max_concurrent_decoders=1, admission_wait=0.2)

    async def main() -> tuple[Any, ...]:
        first = HeldBody(body("first", 25))
        holding = asyncio.create_task(held_request(app, first))
        await asyncio.sleep(0.05)  # the first request holds the only slot, half read
        started = asyncio.get_running_loop().time()
        refused = await call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages([body("second", 25)]))
        waited = asyncio.get_running_loop().time() - started
        first.release.set()
        done = await holding
        later = await call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages([body("third", 25)]))
        return refused, waited, done, later

    refused, waited, done, later = asyncio.run(asyncio.wait_for(main(), 10))
    assert refused is not None and refused.status == 503
    assert refused.json["accepted"] == 0
    assert refused.json["errors"][0]["message"].startswith("unable to service request: no decoder slot freed within")
    assert refused.header("connection") == "Close"
    assert 0.15 < waited < 5  # it waited for the slot about admission_wait, not the request timeout
    assert done == {"status": 202, "json": {"accepted": 25}}
    assert later is not None and later.status == 202  # the slot was freed
    assert services(recorder) == Counter({"first": 25, "third": 25})  # nothing of the refused one


def test_a_waiting_request_takes_the_slot_when_it_frees_in_time() -> None:
    app = IntakeASGI(max_concurrent_decoders=1, admission_wait=5)

    async def main() -> tuple[Any, Any]:
        first = HeldBody(body("first", 5))
        holding = asyncio.create_task(held_request(app, first))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages([body("b", 5)])))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        first.release.set()
        return await holding, await waiting

    done, second = asyncio.run(asyncio.wait_for(main(), 10))
    assert done["status"] == 202 and second is not None and second.status == 202


OVERLOAD_EVENTS = 8000


def test_overload_leaves_no_event_of_a_refused_request_in_the_sink() -> None:
    recorder = Recorder()
    app = IntakeASGI(sink=recorder, max_concurrent_decoders=2, admission_wait=0.05)
    # big enough that 12 requests through 2 slots outlast the admission wait however fast a request is read
    bodies = {f"client-{i}": body(f"client-{i}", OVERLOAD_EVENTS) for i in range(12)}

    async def main() -> dict[str, Any]:
        calls = {
            name: call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages(cut(data, 65536)))
            for name, data in bodies.items()
        }
        replies = await asyncio.gather(*calls.values())
        return dict(zip(calls, replies))

    replies = asyncio.run(asyncio.wait_for(main(), 60))
    written = services(recorder)
    statuses = Counter(reply.status for reply in replies.values())
    assert statuses[202] >= 2 and statuses[503] >= 1, statuses  # some served, some refused early
    for name, reply in replies.items():
        if reply.status == 202:
            assert written[name] == OVERLOAD_EVENTS
        else:
            assert reply.status == 503 and reply.json["accepted"] == 0
            assert written[name] == 0


# -- time slicing and timeouts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "codec"),
    [(b"1\n", "gzip"), (b"{}\n", "gzip"), (b"\n", "gzip"), (b"\r\n", "zstd"), (b"1\n", "zstd"), (b"[]\n", "br")],
)
def test_a_junk_bomb_neither_holds_the_loop_nor_outlives_its_timeout(line: bytes, codec: str) -> None:
    """Before time slicing, such a body held the event loop for 8-120 s and the
    timeout fired only after it."""
    data, encoding = junk_bomb(line, codec)
    app = IntakeASGI(timeout=1.5)

    async def main() -> tuple[Any, float, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with LoopWatch() as watch:
            reply = await call_asgi_async(
                app, asgi_scope(headers={**NDJSON, "content-encoding": encoding}), body_messages([data])
            )
        return reply, loop.time() - started, watch.longest

    reply, took, longest = asyncio.run(main())
    assert reply is not None
    assert longest < 1.0, f"the loop was held for {longest:.3f} s"  # it was 8-120 s before time slicing
    if reply.status == 503:  # cut off by its timeout while the body was being processed
        assert reply.json["errors"][-1]["message"] == "request timed out"
        assert took < 6
    else:  # fast enough to finish (blank lines): judged as usual
        assert reply.status in (202, 400, 413)


def test_a_blocking_sink_runs_off_the_event_loop() -> None:
    def slow(batch: Any) -> None:
        time.sleep(0.3)

    app = IntakeASGI(sink=slow)

    async def main() -> tuple[Any, float, Any]:
        loop = asyncio.get_running_loop()
        with LoopWatch() as watch:
            intake = asyncio.create_task(
                call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages([body("slow", 30)]))
            )
            await asyncio.sleep(0.1)
            started = loop.time()
            probe = await call_asgi_async(app, asgi_scope("GET", "/"), [{"type": "http.request", "body": b""}])
            probe_took = loop.time() - started
            reply = await intake
        assert probe is not None and probe.status == 200
        return reply, probe_took, watch.longest

    reply, probe_took, longest = asyncio.run(asyncio.wait_for(main(), 10))
    assert reply is not None and reply.status == 202
    assert probe_took < 0.2 and longest < 0.2


@pytest.mark.parametrize("error", [QueueFull("full"), SinkUnavailable("connection refused")])
def test_an_async_sink_that_refuses_ends_the_request_with_503_and_the_count_it_took(error: Exception) -> None:
    taken: list[int] = []

    async def sink(batch: Any) -> None:
        if len(taken) >= 2:
            raise error
        await asyncio.sleep(0)
        taken.append(len(batch))

    app = IntakeASGI(sink=sink)
    reply = asyncio.run(call_asgi_async(app, asgi_scope(headers=NDJSON), body_messages(cut(body("s", 100), 700))))
    assert reply is not None and reply.status == 503
    assert reply.json["errors"][-1]["message"] == "cannot handle stream: cannot process batch: queue is full"
    assert reply.json["accepted"] == sum(taken) == 20


# -- ndintake serve -----------------------------------------------------------------------------------


def get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


def test_serve_answers_a_probe_while_a_junk_bomb_is_processed() -> None:
    data, _ = junk_bomb(b"1\n", "gzip")
    server = ServeProcess("--sink", "null", "--timeout", "4")
    answers: list[tuple[int, bytes]] = []
    try:
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        sender = threading.Thread(target=lambda: answers.append(post(server.port, "/intake/v2/events", data, headers)))
        started = time.monotonic()
        sender.start()
        time.sleep(0.3)
        probes = []
        for _ in range(5):
            probes.append(get(server.port))
            time.sleep(0.2)
        sender.join(30)
        took = time.monotonic() - started
    finally:
        server.kill()
    assert all(status == 200 for status, _ in probes)
    assert max(latency for _, latency in probes) < 1.0, probes
    assert answers, "the bomb got no answer"
    status, answer = answers[0]
    if status == 503:  # the timeout fired while the body was being processed
        assert json.loads(answer)["errors"][-1]["message"] == "request timed out"
    else:  # judged before its timeout (the junk fast path counts these lines at millions a second)
        assert status in (400, 413), (status, answer)
    assert took < 15


def test_two_workers_both_serve_and_their_sink_output_adds_up(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    server = ServeProcess("--sink", f"jsonl:{events}", "--workers", "2", log_level="info")
    accepted = 0
    try:
        headers = {"Content-Type": "application/x-ndjson"}
        results: list[tuple[int, bytes]] = []

        def client(i: int) -> None:
            for j in range(3):
                results.append(post(server.port, "/intake/v2/events?verbose", body(f"c{i}-{j}", 3000), headers))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [status for status, _ in results] == [202] * 18
        accepted = sum(json.loads(answer)["accepted"] for _, answer in results)
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    written = [int(line.split("(", 1)[1].split()[0]) for line in server.lines if "events written" in line]
    assert len(written) == 2 and all(n > 0 for n in written), "".join(server.lines)  # both workers served
    assert sum(written) == accepted == 18 * 3000
    records = [json.loads(line) for line in events.read_bytes().splitlines()]  # no torn or interleaved line
    assert len(records) == accepted
    assert Counter(r["metadata"]["service"]["name"] for r in records) == Counter(
        {f"c{i}-{j}": 3000 for i in range(6) for j in range(3)}
    )


def test_serve_cuts_off_slow_headers_and_surplus_connections() -> None:
    server = ServeProcess("--sink", "null", "--header-timeout", "1", "--max-connections", "4")
    try:
        slow = socket.create_connection((LOOPBACK, server.port))
        slow.settimeout(10)
        started = time.monotonic()
        closed_after = None
        for byte in b"POST /intake/v2/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n":
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
        if closed_after is None:
            slow.settimeout(5)
            assert slow.recv(1024) == b""
            closed_after = time.monotonic() - started
        slow.close()
        assert closed_after < 6

        idle = [socket.create_connection((LOOPBACK, server.port)) for _ in range(4)]
        time.sleep(0.2)
        extra = socket.create_connection((LOOPBACK, server.port))
        extra.settimeout(5)
        try:
            assert extra.recv(1024) == b""  # closed at once: over the cap
        except ConnectionResetError:
            pass
        extra.close()
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert get(server.port)[0] == 200
    finally:
        server.kill()


def test_sigterm_during_a_junk_bomb_stops_within_the_grace() -> None:
    data, _ = junk_bomb(b"{}\n", "gzip")
    server = ServeProcess("--sink", "null", "--timeout", "60", "--grace", "2")
    try:
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        threading.Thread(target=lambda: _quietly(post, server.port, "/intake/v2/events", data, headers), daemon=True).start()
        time.sleep(0.5)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=30) == 0
        assert time.monotonic() - started < 10  # was 15.9 s with --grace 10 when the loop was held
    finally:
        server.kill()


def _quietly(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except OSError:
        pass
