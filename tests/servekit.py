"""``ndintake serve`` as a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import http.client
import queue
import subprocess
import sys
import threading

LOOPBACK = "127.0.0.1"


class ServeProcess:
    """``python -m ndintake serve`` on a free loopback port."""

    def __init__(self, *args: str, log_level: str = "warning") -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ndintake",
                "serve",
                "--host",
                LOOPBACK,
                "--port",
                "0",
                "--log-level",
                log_level,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()
        line = self._next_line(15)
        assert "listening on http://" in line or "listening on https://" in line, line
        self.url = line.split("listening on ", 1)[1].split(" ", 1)[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.put(line)

    def _next_line(self, timeout: float) -> str:
        try:
            line = self.stderr.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("ndintake serve printed nothing") from None
        self.lines.append(line)
        return line

    def stop(self, signum: int, timeout: float = 15) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._pumping.join(10)  # the last lines (worker processes may write after the supervisor exits)
            while not self.stderr.empty():
                self.lines.append(self.stderr.get_nowait())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def request(method: str, port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request on a connection of its own: (status, body)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    return request("POST", port, path, body, headers)


def get(port: int, path: str) -> tuple[int, bytes]:
    return request("GET", port, path)
