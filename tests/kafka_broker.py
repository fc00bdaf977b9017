"""A Kafka-protocol broker for the tests: librdkafka's mock cluster, in a child process.

No Apache Kafka can be installed from the registries this project reaches, but
librdkafka, the C client shipped inside the ``confluent-kafka`` wheel, contains
a *mock cluster*: N brokers in one process that speak the Kafka wire protocol
over TCP on 127.0.0.1 (ApiVersions, Metadata, Produce with acks=all and
idempotence, Fetch, consumer groups...). Its C API (``rd_kafka_mock_*``) is
exported by the shared library, so this module drives it with ctypes; any
Kafka client (librdkafka's own, aiokafka, kafka-python) connects to its
bootstrap servers like to a real cluster.

What it proves: the bytes on the wire, the produce path, keys, headers,
partitioning by key, acks=all and idempotent-producer handshakes, and the
client's behaviour when the brokers refuse connections, answer slowly, or
vanish. What it does not: durability (the log lives in memory), real ISR and
leader-election semantics (replication is simulated), broker-side limits
(``message.max.bytes``, quotas, ``min.insync.replicas`` refusals) and
performance figures of a real cluster.

Run it as ``python tests/kafka_broker.py [--brokers N]``: it prints one line
``bootstrap HOST:PORT,...``, then reads commands on stdin, one a line, and
answers each with ``ok`` or ``error ...``::

    topic NAME PARTITIONS   create a topic (replication factor min(3, brokers))
    down                    every broker drops its connections and refuses new ones
    up                      ...and accepts them again, on the same ports
    rtt MS                  every broker delays its responses by MS milliseconds
    quit

:class:`KafkaBroker` starts and drives that child from a test (``freeze`` and
``kill`` send it SIGSTOP and SIGKILL).
"""

from __future__ import annotations

import ctypes
import glob
import os
import signal
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


class MockCluster:
    """librdkafka's mock cluster in this process (its brokers run in C threads)."""

    def __init__(self, brokers: int = 3) -> None:
        import confluent_kafka

        base = os.path.dirname(confluent_kafka.__file__)
        candidates = glob.glob(base + ".libs/librdkafka*") or glob.glob(os.path.join(base, "*librdkafka*"))
        lib = ctypes.CDLL(candidates[0]) if candidates else ctypes.CDLL("librdkafka.so.1")
        vp, cp, i32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
        lib.rd_kafka_conf_new.restype = vp
        lib.rd_kafka_conf_set.argtypes = [vp, cp, cp, cp, ctypes.c_size_t]
        lib.rd_kafka_new.restype = vp
        lib.rd_kafka_new.argtypes = [ctypes.c_int, vp, cp, ctypes.c_size_t]
        lib.rd_kafka_mock_cluster_new.restype = vp
        lib.rd_kafka_mock_cluster_new.argtypes = [vp, ctypes.c_int]
        lib.rd_kafka_mock_cluster_bootstraps.restype = cp
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [vp]
        lib.rd_kafka_mock_topic_create.argtypes = [vp, cp, ctypes.c_int, ctypes.c_int]
        lib.rd_kafka_mock_broker_set_down.argtypes = [vp, i32]
        lib.rd_kafka_mock_broker_set_up.argtypes = [vp, i32]
        lib.rd_kafka_mock_broker_set_rtt.argtypes = [vp, i32, ctypes.c_int]
        lib.rd_kafka_mock_cluster_destroy.argtypes = [vp]
        lib.rd_kafka_destroy.argtypes = [vp]
        self._lib = lib
        self.brokers = brokers
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # A quiet handle that owns the cluster; it never connects anywhere.
        lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, 512)
        self._rk = lib.rd_kafka_new(0, conf, errstr, 512)  # RD_KAFKA_PRODUCER
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new: {errstr.value.decode()}")
        self._cluster = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()

    def create_topic(self, name: str, partitions: int) -> None:
        err = self._lib.rd_kafka_mock_topic_create(self._cluster, name.encode(), partitions, min(3, self.brokers))
        if err:
            raise RuntimeError(f"rd_kafka_mock_topic_create: error {err}")

    def _each(self, function: str, *args: int) -> None:
        for broker_id in range(1, self.brokers + 1):
            err = getattr(self._lib, function)(self._cluster, broker_id, *args)
            if err:
                raise RuntimeError(f"{function}({broker_id}): error {err}")

    def down(self) -> None:
        self._each("rd_kafka_mock_broker_set_down")

    def up(self) -> None:
        self._each("rd_kafka_mock_broker_set_up")

    def rtt(self, ms: int) -> None:
        self._each("rd_kafka_mock_broker_set_rtt", ms)

    def close(self) -> None:
        self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
        self._lib.rd_kafka_destroy(self._rk)


def serve(brokers: int) -> None:
    """The child's loop: print the bootstrap servers, then obey stdin."""
    cluster = MockCluster(brokers)
    print("bootstrap", cluster.bootstrap, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                break
            elif words[0] == "topic":
                cluster.create_topic(words[1], int(words[2]))
            elif words[0] == "down":
                cluster.down()
            elif words[0] == "up":
                cluster.up()
            elif words[0] == "rtt":
                cluster.rtt(int(words[1]))
            else:
                raise ValueError(f"unknown command {words[0]!r}")
        except Exception as exc:  # answer, keep serving
            print("error", exc, flush=True)
        else:
            print("ok", flush=True)
    print("bye", flush=True)
    os._exit(0)  # the C threads need no orderly teardown


class KafkaBroker:
    """A mock cluster in a child process, driven from a test."""

    def __init__(self, brokers: int = 3, start_timeout: float = 30.0) -> None:
        self.brokers = brokers
        self._proc = subprocess.Popen(
            [sys.executable, HERE, "--brokers", str(brokers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        first = self._readline(start_timeout)
        if not first.startswith("bootstrap "):
            self.kill()
            raise RuntimeError(f"the Kafka mock cluster did not start: {first!r}")
        self.bootstrap = first.split()[1]
        self.first = self.bootstrap.split(",")[0]  # HOST:PORT of broker 1

    def _readline(self, timeout: float) -> str:
        import selectors

        assert self._proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"the Kafka mock cluster did not answer within {timeout} s")
        return self._proc.stdout.readline().strip()

    def command(self, text: str, timeout: float = 10.0) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()
        answer = self._readline(timeout)
        if answer != "ok":
            raise RuntimeError(f"mock cluster: {text!r}: {answer!r}")

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.command(f"topic {name} {partitions}")

    def down(self) -> None:
        self.command("down")

    def up(self) -> None:
        self.command("up")

    def rtt(self, ms: int) -> None:
        self.command(f"rtt {ms}")

    def freeze(self) -> None:
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.kill()
        self._proc.wait(10)

    def stop(self) -> None:
        if self._proc.poll() is None:
            try:
                self.command("quit", timeout=5)
            except (OSError, RuntimeError, TimeoutError):
                pass
            deadline = time.monotonic() + 5
            while self._proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        self.kill()

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--brokers", type=int, default=3)
    serve(parser.parse_args().brokers)
