"""Benchmark corpora: a seeded, realistic APM intake v2 body, upstream's heavy.ndjson,
and junk bodies (an error-heavy corpus).

``realistic(size, seed)`` builds one metadata line followed by a mix of all
event kinds the way a busy backend agent sends them: traces (a transaction and
its spans, some with stack traces), errors with exceptions and stack traces,
application and breakdown metricsets, and ECS logs correlated with the traces.
Every event line is between ``MIN_EVENT`` and ``MAX_EVENT`` bytes (mean about
800 B), carries labels, and uses ids of the right shape (32 hex digits for trace
and error ids, 16 for transaction, span and parent ids). Every line is valid
against ``ndintake/schemas/apm/*.json`` (see :func:`check_corpus`), and no metricset is
one that APM Server drops silently, so the accepted count is the event count.

Same seed and size, same bytes: generation uses only a private
``random.Random(seed)`` and ``orjson`` (insertion-ordered, compact output).

``heavy(size)`` is the upstream benchmark payload (apm-server
``testdata/intake-v2/heavy.ndjson``, 1920 events, 399 KB): its metadata line
once, then its event lines repeated until ``size`` bytes.

``agents(size)`` is the same for what the official Python and Node.js agents
sent to a recording server (``tests/data/agents.ndjson.gz``, 518 events, 531 kB;
see :mod:`benchmarks.capture_agents`).

``junk(lines, kind, seed)`` is a realistic metadata line, then ``lines`` lines
of junk (blank lines, ``1``, ``[]``, ``"x"``, ``{}``, unparsable text...) of one
kind or all mixed, with one valid realistic event every ``JUNK_EVENT_EVERY``
lines: what a broken or hostile client may send, judged in lines per second.

Run ``python -m benchmarks.corpus --check`` to validate a corpus line by line
with ``jsonschema`` (Draft 7).
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "ndintake" / "schemas" / "apm"
HEAVY_PATH = ROOT / "tests" / "data" / "apm-server" / "intake-v2" / "heavy.ndjson"
AGENTS_PATH = ROOT / "tests" / "data" / "agents.ndjson.gz"

EVENT_KINDS = ("transaction", "span", "error", "metricset", "log")
#: The corpora :func:`build` knows (``junk`` is built by :func:`junk`).
CORPORA = ("realistic", "heavy", "agents")
MIN_EVENT = 300
MAX_EVENT = 3000
DEFAULT_SEED = 20240611

_dumps = orjson.dumps

# --------------------------------------------------------------------------
# vocabulary

_SERVICE = "checkout-service"
_ENVIRONMENTS = ("production",)
_ROUTES = (
    ("GET", "/api/orders/{id}", "/api/orders/"),
    ("GET", "/api/orders", "/api/orders"),
    ("POST", "/api/orders", "/api/orders"),
    ("GET", "/api/products/{sku}", "/api/products/"),
    ("GET", "/api/cart", "/api/cart"),
    ("PUT", "/api/cart/items/{id}", "/api/cart/items/"),
    ("DELETE", "/api/cart/items/{id}", "/api/cart/items/"),
    ("POST", "/api/checkout", "/api/checkout"),
    ("GET", "/api/users/{id}/addresses", "/api/users/"),
    ("GET", "/healthz", "/healthz"),
)
_TABLES = ("orders", "order_items", "products", "carts", "cart_items", "users", "addresses", "payments", "inventory")
_COLUMNS = ("id", "user_id", "sku", "quantity", "price_cents", "status", "created_at", "updated_at", "currency")
_REDIS = ("GET", "SET", "MGET", "EXPIRE", "HGETALL", "INCR", "DEL")
_DOWNSTREAM = (
    ("payments-api", "payments-api.internal:8443", 8443, "https"),
    ("inventory", "inventory.svc.cluster.local:8080", 8080, "http"),
    ("recommendations", "recs.svc.cluster.local:9000", 9000, "http"),
    ("auth", "auth.internal:443", 443, "https"),
)
_USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
)
_LABEL_KEYS = (
    "tenant",
    "region",
    "plan",
    "feature_flag",
    "cart_size",
    "ab_bucket",
    "cache_hit",
    "retry",
    "shard",
    "canary",
    "priority",
    "customer_tier",
)
_PLANS = ("free", "pro", "enterprise")
_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
_EXCEPTIONS = (
    ("org.postgresql.util.PSQLException", "org.postgresql.util", "ERROR: deadlock detected"),
    ("java.net.SocketTimeoutException", "java.net", "Read timed out after 5000 ms"),
    ("java.lang.IllegalStateException", "java.lang", "Cart {id} is already checked out"),
    ("com.example.checkout.PaymentDeclinedException", "com.example.checkout", "Payment declined: insufficient funds"),
    ("java.lang.NullPointerException", "java.lang", 'Cannot invoke "Address.getZip()" because "address" is null'),
    ("io.lettuce.core.RedisCommandTimeoutException", "io.lettuce.core", "Command timed out after 1 second(s)"),
)
_APP_FRAMES = (
    ("OrderController", "getOrder", "OrderController.java"),
    ("OrderService", "loadOrder", "OrderService.java"),
    ("CheckoutService", "placeOrder", "CheckoutService.java"),
    ("CartRepository", "findByUser", "CartRepository.java"),
    ("PaymentClient", "authorize", "PaymentClient.java"),
    ("InventoryClient", "reserve", "InventoryClient.java"),
    ("PricingEngine", "applyDiscounts", "PricingEngine.java"),
    ("AddressValidator", "validate", "AddressValidator.java"),
)
_LIB_FRAMES = (
    ("org.springframework.web.servlet.FrameworkServlet", "processRequest", "FrameworkServlet.java"),
    ("org.springframework.web.servlet.DispatcherServlet", "doDispatch", "DispatcherServlet.java"),
    ("org.apache.catalina.core.ApplicationFilterChain", "doFilter", "ApplicationFilterChain.java"),
    ("com.zaxxer.hikari.pool.ProxyPreparedStatement", "executeQuery", "ProxyPreparedStatement.java"),
    ("org.postgresql.jdbc.PgPreparedStatement", "executeWithFlags", "PgPreparedStatement.java"),
    ("io.lettuce.core.AbstractRedisAsyncCommands", "dispatch", "AbstractRedisAsyncCommands.java"),
    ("okhttp3.internal.connection.RealCall", "execute", "RealCall.kt"),
    ("java.util.concurrent.ThreadPoolExecutor", "runWorker", "ThreadPoolExecutor.java"),
)
_LOGGERS = (
    "com.example.checkout.CheckoutService",
    "com.example.orders.OrderService",
    "com.example.cart.CartController",
    "org.hibernate.SQL",
    "com.zaxxer.hikari.pool.HikariPool",
)
_LOG_MESSAGES = (
    "Order {id} placed for user {user} with {n} items, total {cents} cents",
    "Cache miss for cart {id}, loading from database",
    "Payment authorization for order {id} took {ms} ms",
    "Reserved {n} units of {sku} for order {id}",
    "Retrying call to inventory service (attempt {n} of 3) for order {id}",
    "User {user} updated shipping address {id}",
    "HikariPool-1 - Pool stats (total={n}, active={ms}, idle=2, waiting=0)",
)
_THREADS = tuple(f"http-nio-8080-exec-{i}" for i in range(1, 9)) + ("scheduling-1", "lettuce-epollEventLoop-4-1")


class _Gen:
    """One corpus stream: all randomness comes from ``self.r``."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.now_us = 1_718_000_000_000_000 + self.r.randrange(10**9)  # a June 2024 epoch, in microseconds

    # -- small helpers -------------------------------------------------

    def hex(self, digits: int) -> str:
        return f"{self.r.getrandbits(digits * 4):0{digits}x}"

    def tick(self) -> int:
        self.now_us += self.r.randrange(200, 20_000)
        return self.now_us

    def labels(self, low: int, high: int) -> dict[str, Any]:
        r = self.r
        out: dict[str, Any] = {}
        for key in r.sample(_LABEL_KEYS, r.randint(low, high)):
            if key in ("cart_size", "shard", "priority", "retry"):
                out[key] = r.randrange(0, 64)
            elif key in ("cache_hit", "canary"):
                out[key] = r.random() < 0.5
            elif key == "region":
                out[key] = r.choice(_REGIONS)
            elif key in ("plan", "customer_tier"):
                out[key] = r.choice(_PLANS)
            else:
                out[key] = f"{key}-{self.hex(6)}"
        return out

    def frame(self, library: bool, context: bool) -> dict[str, Any]:
        r = self.r
        cls, fn, filename = r.choice(_LIB_FRAMES if library else _APP_FRAMES)
        module = cls.rsplit(".", 1)[0] if "." in cls else "com.example.checkout"
        frame: dict[str, Any] = {
            "classname": cls if "." in cls else f"com.example.checkout.{cls}",
            "function": fn,
            "filename": filename,
            "module": module,
            "lineno": r.randrange(20, 900),
            "library_frame": library,
        }
        if context and not library:
            frame["abs_path"] = f"/app/src/main/java/com/example/checkout/{filename}"
            frame["context_line"] = f"        return {fn}(request, ctx);"
            frame["pre_context"] = ["    @Override", f"    public Result {fn}(Request request) {{"]
            frame["post_context"] = ["    }", ""]
        return frame

    def stacktrace(self, low: int, high: int, context: bool) -> list[dict[str, Any]]:
        r = self.r
        count = r.randint(low, high)
        app = max(1, count // 3)
        return [self.frame(library=i >= app, context=context and i < 2) for i in range(count)]

    # -- events --------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        r = self.r
        pod = f"checkout-{self.hex(10)}-{self.hex(5)}"
        return {
            "metadata": {
                "service": {
                    "name": _SERVICE,
                    "version": "2.14.3",
                    "environment": r.choice(_ENVIRONMENTS),
                    "agent": {"name": "java", "version": "1.50.0", "ephemeral_id": self.hex(8) + "-" + self.hex(4)},
                    "language": {"name": "Java", "version": "21.0.3"},
                    "runtime": {"name": "Java", "version": "21.0.3"},
                    "framework": {"name": "Spring Web MVC", "version": "6.1.8"},
                    "node": {"configured_name": pod},
                },
                "process": {
                    "pid": r.randrange(1, 65535),
                    "ppid": 1,
                    "title": "/opt/java/openjdk/bin/java",
                    "argv": ["-jar", "/app/checkout.jar"],
                },
                "system": {
                    "architecture": "amd64",
                    "platform": "Linux",
                    "detected_hostname": pod,
                    "container": {"id": self.hex(64)},
                    "kubernetes": {
                        "namespace": "shop",
                        "pod": {"name": pod, "uid": self.hex(8) + "-" + self.hex(4)},
                        "node": {"name": f"ip-10-0-{r.randrange(256)}-{r.randrange(256)}.ec2.internal"},
                    },
                },
                "cloud": {
                    "provider": "aws",
                    "region": "eu-west-1",
                    "availability_zone": "eu-west-1b",
                    "instance": {"id": "i-" + self.hex(17)},
                    "machine": {"type": "m6i.large"},
                    "account": {"id": str(r.randrange(10**11, 10**12))},
                },
                "labels": {"team": "checkout", "cost_center": "cc-4711", "deployment": "blue"},
            }
        }

    def transaction(self, trace: dict[str, Any]) -> dict[str, Any]:
        r = self.r
        method, route, prefix = trace["route"]
        path = prefix + (str(r.randrange(10**5, 10**7)) if route.endswith("}") or "{" in route else "")
        status = trace["status"]
        tx: dict[str, Any] = {
            "id": trace["transaction_id"],
            "trace_id": trace["trace_id"],
            "name": f"{method} {route}",
            "type": "request",
            "timestamp": trace["timestamp"],
            "duration": round(trace["duration_ms"], 3),
            "result": f"HTTP {status // 100}xx",
            "outcome": "failure" if status >= 500 else "success",
            "sampled": True,
            "sample_rate": 1.0,
            "span_count": {"started": trace["spans"], "dropped": 0},
            "context": {
                "request": {
                    "method": method,
                    "http_version": "1.1",
                    "url": {
                        "full": f"https://shop.example.com{path}?ref={self.hex(6)}",
                        "protocol": "https:",
                        "hostname": "shop.example.com",
                        "pathname": path,
                        "search": f"ref={self.hex(6)}",
                    },
                    "headers": {
                        "User-Agent": r.choice(_USER_AGENTS),
                        "Accept": "application/json",
                        "X-Request-Id": self.hex(32),
                    },
                    "socket": {"remote_address": f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}"},
                },
                "response": {
                    "status_code": status,
                    "finished": True,
                    "headers_sent": True,
                    "headers": {"Content-Type": "application/json"},
                },
                "user": {"id": str(trace["user"]), "email": f"user{trace['user']}@example.com"},
                "tags": self.labels(2, 5),
            },
        }
        if trace["parent_id"]:
            tx["parent_id"] = trace["parent_id"]
        if r.random() < 0.15:
            tx["dropped_spans_stats"] = [
                {
                    "destination_service_resource": "redis",
                    "service_target_type": "redis",
                    "outcome": "success",
                    "duration": {"count": r.randrange(1, 40), "sum": {"us": r.randrange(100, 9000)}},
                }
            ]
        return {"transaction": tx}

    def span(self, trace: dict[str, Any], parent: str) -> dict[str, Any]:
        r = self.r
        start = r.uniform(0, trace["duration_ms"] * 0.8)
        span: dict[str, Any] = {
            "id": self.hex(16),
            "trace_id": trace["trace_id"],
            "parent_id": parent,
            "transaction_id": trace["transaction_id"],
            "timestamp": trace["timestamp"] + int(start * 1000),
            "duration": round(r.uniform(0.05, max(0.1, trace["duration_ms"] - start)), 3),
            "outcome": "success" if r.random() < 0.97 else "failure",
            "sync": True,
        }
        kind = r.random()
        if kind < 0.5:
            table = r.choice(_TABLES)
            cols = ", ".join(r.sample(_COLUMNS, r.randint(2, 6)))
            verb = r.choice(("SELECT", "SELECT", "SELECT", "UPDATE", "INSERT INTO"))
            if verb == "SELECT":
                stmt = f"SELECT {cols} FROM {table} WHERE id = ? AND status = ? ORDER BY created_at DESC LIMIT 50"
            elif verb == "UPDATE":
                stmt = f"UPDATE {table} SET status = ?, updated_at = now() WHERE id = ?"
            else:
                stmt = f"INSERT INTO {table} ({cols}) VALUES (?, ?, ?)"
            span.update(name=f"{verb.split()[0]} {table}", type="db", subtype="postgresql", action="query")
            span["context"] = {
                "db": {
                    "instance": "shop",
                    "statement": stmt,
                    "type": "sql",
                    "user": "checkout",
                    "rows_affected": r.randrange(0, 50),
                },
                "destination": {
                    "address": "orders-db.internal",
                    "port": 5432,
                    "service": {"resource": "postgresql", "name": "postgresql", "type": "db"},
                },
                "service": {"target": {"type": "postgresql", "name": "shop"}},
            }
        elif kind < 0.75:
            cmd = r.choice(_REDIS)
            span.update(name=cmd, type="db", subtype="redis", action="query")
            span["context"] = {
                "db": {"type": "redis", "statement": f"{cmd} cart:{r.randrange(10**6)}"},
                "destination": {
                    "address": "redis-master.shop",
                    "port": 6379,
                    "service": {"resource": "redis", "name": "redis", "type": "db"},
                },
                "service": {"target": {"type": "redis"}},
            }
        else:
            name, host, port, scheme = r.choice(_DOWNSTREAM)
            method = r.choice(("GET", "POST"))
            span.update(name=f"{method} {host.split(':')[0]}", type="external", subtype="http", action=method)
            span["context"] = {
                "http": {
                    "method": method,
                    "url": f"{scheme}://{host}/v1/{name}/{r.randrange(10**6)}",
                    "status_code": r.choice((200, 200, 200, 201, 404, 503)),
                    "response": {"encoded_body_size": r.randrange(100, 9000)},
                },
                "destination": {
                    "address": host.split(":")[0],
                    "port": port,
                    "service": {"resource": host, "name": name, "type": "external"},
                },
                "service": {"target": {"type": "http", "name": host}},
            }
        span["context"]["tags"] = self.labels(1, 3)
        if r.random() < 0.2:  # agents attach stack traces to slow spans
            span["stacktrace"] = self.stacktrace(3, 8, context=False)
        return {"span": span}

    def error(self, trace: dict[str, Any] | None) -> dict[str, Any]:
        r = self.r
        etype, module, message = r.choice(_EXCEPTIONS)
        message = message.replace("{id}", str(r.randrange(10**5, 10**7)))
        err: dict[str, Any] = {"id": self.hex(32), "timestamp": self.tick()}
        if trace is not None:
            err.update(
                trace_id=trace["trace_id"],
                transaction_id=trace["transaction_id"],
                parent_id=trace["transaction_id"],
                transaction={"name": f"{trace['route'][0]} {trace['route'][1]}", "type": "request", "sampled": True},
            )
        top = self.frame(library=False, context=True)
        err["culprit"] = f"{top['classname']} in {top['function']}"
        exception: dict[str, Any] = {
            "message": message,
            "type": etype,
            "module": module,
            "handled": r.random() < 0.7,
            "stacktrace": [top, *self.stacktrace(3, 13, context=True)],
        }
        if r.random() < 0.3:
            cause_type, cause_module, cause_message = r.choice(_EXCEPTIONS)
            exception["cause"] = [{"type": cause_type, "module": cause_module, "message": cause_message}]
        if r.random() < 0.2:
            exception["code"] = r.choice(("40P01", "57014", 503))
        err["exception"] = exception
        err["context"] = {"tags": self.labels(2, 4)}
        if trace is not None:
            err["context"]["request"] = {"method": trace["route"][0], "url": {"pathname": trace["route"][2]}}
            err["context"]["user"] = {"id": str(trace["user"])}
        return {"error": err}

    def metricset(self) -> dict[str, Any]:
        r = self.r
        choice = r.random()
        ms: dict[str, Any] = {"timestamp": self.tick()}
        if choice < 0.4:  # breakdown: kept by APM Server (it has span self-time samples)
            ms["transaction"] = {"name": " ".join(r.choice(_ROUTES)[:2]), "type": "request"}
            ms["span"] = r.choice(
                (
                    {"type": "db", "subtype": "postgresql"},
                    {"type": "db", "subtype": "redis"},
                    {"type": "external", "subtype": "http"},
                    {"type": "app"},
                )
            )
            ms["samples"] = {
                "span.self_time.count": {"value": r.randrange(1, 500)},
                "span.self_time.sum.us": {"value": r.randrange(100, 10**7)},
            }
        elif choice < 0.75:  # JVM and system metrics
            names = (
                "system.cpu.total.norm.pct",
                "system.process.cpu.total.norm.pct",
                "system.memory.total",
                "system.memory.actual.free",
                "system.process.memory.size",
                "jvm.memory.heap.used",
                "jvm.memory.heap.committed",
                "jvm.memory.heap.max",
                "jvm.memory.non_heap.used",
                "jvm.thread.count",
                "jvm.gc.count",
                "jvm.gc.time",
                "jvm.gc.alloc",
                "jvm.fd.used",
            )
            ms["samples"] = {
                name: {"value": round(r.uniform(0, 1), 4) if name.endswith("pct") else r.randrange(10**3, 10**10)}
                for name in r.sample(names, r.randint(4, len(names)))
            }
        else:  # a histogram, as OpenTelemetry metrics bridged by the agent send them
            buckets = r.randint(6, 16)
            values = sorted(round(r.uniform(0.5, 5000), 2) for _ in range(buckets))
            ms["samples"] = {
                "http.server.request.duration": {
                    "type": "histogram",
                    "unit": "ms",
                    "values": values,
                    "counts": [r.randrange(0, 500) for _ in values],
                }
            }
        ms["tags"] = self.labels(1, 3)
        return {"metricset": ms}

    def log(self, trace: dict[str, Any] | None) -> dict[str, Any]:
        r = self.r
        text = r.choice(_LOG_MESSAGES).format(
            id=r.randrange(10**5, 10**7),
            user=r.randrange(10**4, 10**6),
            n=r.randrange(1, 12),
            cents=r.randrange(100, 10**6),
            ms=r.randrange(1, 900),
            sku=f"SKU-{self.hex(8).upper()}",
        )
        level = r.choices(("INFO", "DEBUG", "WARN", "ERROR"), (70, 15, 10, 5))[0]
        log: dict[str, Any] = {
            "@timestamp": self.tick() // 1000,
            "message": text,
            "log.level": level,
            "log.logger": r.choice(_LOGGERS),
            "log.origin.file.name": r.choice(_APP_FRAMES)[2],
            "log.origin.file.line": r.randrange(20, 900),
            "log.origin.function": r.choice(_APP_FRAMES)[1],
            "process.thread.name": r.choice(_THREADS),
            "service.name": _SERVICE,
            "service.version": "2.14.3",
            "service.environment": "production",
            "event.dataset": f"{_SERVICE}.log",
            "labels": self.labels(1, 3),
        }
        if trace is not None:
            log["trace.id"] = trace["trace_id"]
            log["transaction.id"] = trace["transaction_id"]
        if level == "ERROR" and r.random() < 0.5:
            etype, _, emsg = r.choice(_EXCEPTIONS)
            log["error.type"] = etype
            log["error.message"] = emsg
            log["error.stack_trace"] = "\n".join(
                f"\tat {f['classname']}.{f['function']}({f['filename']}:{f['lineno']})"
                for f in self.stacktrace(3, 7, context=False)
            )
        return {"log": log}

    # -- the stream ----------------------------------------------------

    def new_trace(self) -> dict[str, Any]:
        r = self.r
        return {
            "trace_id": self.hex(32),
            "transaction_id": self.hex(16),
            "parent_id": self.hex(16) if r.random() < 0.3 else None,
            "timestamp": self.tick(),
            "duration_ms": r.lognormvariate(3.0, 1.0),
            "route": r.choice(_ROUTES),
            "status": r.choices((200, 201, 204, 400, 404, 500, 503), (70, 8, 5, 6, 6, 3, 2))[0],
            "user": r.randrange(10**4, 10**6),
            "spans": r.randint(1, 7),
        }

    def events(self) -> Iterator[dict[str, Any]]:
        """Endless: traces (spans first, then their transaction, as agents end them),
        with correlated logs and errors, and periodic metricsets."""
        r = self.r
        traces = 0
        while True:
            trace = self.new_trace()
            traces += 1
            for _ in range(trace["spans"]):
                yield self.span(trace, trace["transaction_id"])
                if r.random() < 0.25:
                    yield self.log(trace)
            if trace["status"] >= 500 or r.random() < 0.08:
                yield self.error(trace)
            yield self.transaction(trace)
            if r.random() < 0.3:
                yield self.log(trace)
            if traces % 2 == 0:
                yield self.metricset()
            if r.random() < 0.03:
                yield self.error(None)
            if r.random() < 0.1:
                yield self.log(None)


def _fit(gen: _Gen, event: dict[str, Any]) -> bytes:
    """Serialise one event, keeping it within [MIN_EVENT, MAX_EVENT] bytes."""
    line = _dumps(event)
    kind = next(iter(event))
    inner = event[kind]
    while len(line) > MAX_EVENT:
        frames = (inner.get("exception") or {}).get("stacktrace") or inner.get("stacktrace")
        if frames and len(frames) > 1:
            frames.pop()
        elif "error.stack_trace" in inner:
            inner["error.stack_trace"] = inner["error.stack_trace"][: MAX_EVENT // 2]
        else:  # cannot happen with the generators above
            raise AssertionError(f"{kind} event of {len(line)} bytes cannot be trimmed")
        line = _dumps(event)
    tags_key = "labels" if kind == "log" else "tags"
    holder = inner if kind in ("log", "metricset") else inner.setdefault("context", {})
    while len(line) < MIN_EVENT:
        tags = holder.setdefault(tags_key, {})
        tags[f"extra_{len(tags)}"] = f"value-{gen.hex(12)}"
        line = _dumps(event)
    return line


def realistic_lines(seed: int = DEFAULT_SEED) -> Iterator[bytes]:
    """The realistic corpus as an endless stream of lines (without newlines):
    the metadata line first, then events."""
    gen = _Gen(seed)
    yield _dumps(gen.metadata())
    for event in gen.events():
        yield _fit(gen, event)


def realistic(size: int, seed: int = DEFAULT_SEED) -> bytes:
    """A realistic body of about ``size`` bytes (at most ``size``, but at least
    the metadata line and one event), each line ending in ``\\n``."""
    parts: list[bytes] = []
    total = 0
    for line in realistic_lines(seed):
        if total + len(line) + 1 > size and len(parts) >= 2:
            break
        parts.append(line)
        total += len(line) + 1
    return b"\n".join(parts) + b"\n"


def _repeated(lines: list[bytes], size: int) -> bytes:
    """The first line once, then the other non-blank lines repeated until ``size`` bytes."""
    metadata, events = lines[0], [line for line in lines[1:] if line.strip()]
    parts = [metadata]
    total = len(metadata) + 1
    while True:
        for line in events:
            if total + len(line) + 1 > size and len(parts) >= 2:
                return b"\n".join(parts) + b"\n"
            parts.append(line)
            total += len(line) + 1


def heavy(size: int) -> bytes:
    """Upstream's heavy.ndjson: its metadata line, then its events repeated to ``size`` bytes."""
    return _repeated(HEAVY_PATH.read_bytes().splitlines(), size)


def agents(size: int) -> bytes:
    """The official agents' capture (``tests/data/agents.ndjson.gz``, written by
    ``python -m benchmarks.capture_agents``): its metadata line, then its events
    repeated to ``size`` bytes."""
    return _repeated(gzip.decompress(AGENTS_PATH.read_bytes()).splitlines(), size)


#: The junk corpus's kinds of line: each is refused by APM Server (or skipped, if blank).
JUNK_LINES = {
    "blank": b"",
    "crlf": b"\r",
    "number": b"1",
    "array": b"[]",
    "string": b'"x"',
    "empty-object": b"{}",
    "unparsable": b"not json",
    "cut-object": b'{"transaction": ',
}
#: A junk body has one valid event every this many lines.
JUNK_EVENT_EVERY = 1000


def junk(lines: int, kind: str = "mix", seed: int = DEFAULT_SEED) -> bytes:
    """The realistic metadata line, then ``lines`` lines: junk of one kind of
    :data:`JUNK_LINES` (``"mix"``: all kinds in a seeded random order), every
    ``JUNK_EVENT_EVERY``-th of them a valid realistic event instead."""
    if kind != "mix" and kind not in JUNK_LINES:
        raise ValueError(f"unknown junk kind {kind!r}; known: mix, {', '.join(JUNK_LINES)}")
    source = realistic_lines(seed)
    parts = [next(source)]
    rng = random.Random(seed)
    choices = list(JUNK_LINES.values())
    for number in range(1, lines + 1):
        if number % JUNK_EVENT_EVERY == 0:
            parts.append(next(source))
        else:
            parts.append(rng.choice(choices) if kind == "mix" else JUNK_LINES[kind])
    return b"\n".join(parts) + b"\n"


def junk_expected(body: bytes) -> tuple[int, int]:
    """(events, refused lines) of a :func:`junk` body, by the corpus's own rules:
    a line that parses to an object with one key of ``EVENT_KINDS`` is an event
    (they are all valid); any other non-blank line is refused."""
    events = refused = 0
    for line in body.split(b"\n")[1:-1]:
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in EVENT_KINDS:
            events += 1
        else:
            refused += 1
    return events, refused


def build(name: str, size: int, seed: int = DEFAULT_SEED) -> bytes:
    """The corpus called ``name`` (``realistic``, ``heavy`` or ``agents``) of about ``size`` bytes."""
    if name == "realistic":
        return realistic(size, seed)
    if name == "heavy":
        return heavy(size)
    if name == "agents":
        return agents(size)
    raise ValueError(f"unknown corpus {name!r}")


def event_count(body: bytes) -> int:
    """Number of event lines (every non-blank line after the first)."""
    return sum(1 for line in body.split(b"\n")[1:] if line.strip())


def load_schemas() -> dict[str, dict[str, Any]]:
    """The apm schemas by wrapper key (``metadata`` and the five event kinds)."""
    return {kind: orjson.loads((SCHEMA_DIR / f"{kind}.json").read_bytes()) for kind in ("metadata", *EVENT_KINDS)}


def stats(body: bytes) -> dict[str, Any]:
    """Line counts and sizes per kind."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    kinds: Counter[str] = Counter()
    sizes = [len(line) for line in lines[1:]]
    for line in lines[1:]:
        kinds[next(iter(orjson.loads(line)))] += 1
    return {
        "bytes": len(body),
        "events": len(sizes),
        "kinds": dict(sorted(kinds.items())),
        "event_bytes_min": min(sizes) if sizes else 0,
        "event_bytes_mean": round(sum(sizes) / len(sizes), 1) if sizes else 0,
        "event_bytes_max": max(sizes) if sizes else 0,
    }


_ID_FIELDS = {  # kind -> (field, hex digits)
    "transaction": (("id", 16), ("trace_id", 32), ("parent_id", 16)),
    "span": (("id", 16), ("trace_id", 32), ("parent_id", 16), ("transaction_id", 16)),
    "error": (("id", 32), ("trace_id", 32), ("parent_id", 16), ("transaction_id", 16)),
    "log": (("trace.id", 32), ("transaction.id", 16)),
    "metricset": (),
}


def _is_hex(value: Any, digits: int) -> bool:
    return isinstance(value, str) and len(value) == digits and all(c in "0123456789abcdef" for c in value)


def check_corpus(
    body: bytes | None = None, *, size: int = 512 * 1024, seed: int = DEFAULT_SEED, shape: bool = True
) -> dict[str, Any]:
    """Check a realistic corpus (by default ``realistic(size, seed)``) like a test would.

    Every line must be valid against its schema with ``jsonschema``'s
    Draft7Validator, every event between MIN_EVENT and MAX_EVENT bytes, ids
    lowercase hex of the right length, every kind present, every event labelled,
    no metricset that APM Server would drop silently, and generation must be
    deterministic. With ``shape=False`` (for heavy.ndjson and the agents' capture) only the schemas
    are checked. Raises AssertionError listing the problems; returns
    :func:`stats` otherwise.
    """
    import jsonschema  # only the self-check needs it

    generated = body is None
    if body is None:
        body = realistic(size, seed)
        again = realistic(size, seed)
        assert body == again, "realistic() is not deterministic for a seed"
        assert body != realistic(size, seed + 1), "the seed does not change the corpus"
    validators = {kind: jsonschema.Draft7Validator(schema) for kind, schema in load_schemas().items()}
    problems: list[str] = []
    lines = body.split(b"\n")
    assert lines[-1] == b"", "the body must end with a newline"
    lines = lines[:-1]
    for number, line in enumerate(lines, 1):
        obj = orjson.loads(line)
        kind = next(iter(obj))
        if number == 1:
            if kind != "metadata":
                problems.append("line 1: not metadata")
                continue
        elif kind not in EVENT_KINDS:
            problems.append(f"line {number}: unknown kind {kind!r}")
            continue
        elif shape:
            if not MIN_EVENT <= len(line) <= MAX_EVENT:
                problems.append(f"line {number}: {kind} of {len(line)} bytes")
            inner = obj[kind]
            for field, digits in _ID_FIELDS[kind]:
                if field in inner and not _is_hex(inner[field], digits):
                    problems.append(f"line {number}: {kind}.{field} {inner[field]!r} is not {digits} hex digits")
            tags = (
                inner.get("labels")
                if kind == "log"
                else (inner.get("tags") if kind == "metricset" else (inner.get("context") or {}).get("tags"))
            )
            if not tags:
                problems.append(f"line {number}: {kind} without labels")
            if (
                kind == "metricset"
                and inner.get("transaction") is not None
                and not (inner.get("span") is not None and "span.self_time.count" in inner["samples"])
            ):
                problems.append(f"line {number}: metricset APM Server would drop")
        for error in validators[kind].iter_errors(obj[kind]):
            problems.append(f"line {number}: {kind}: {error.message} at {list(error.absolute_path)}")
        if len(problems) > 20:
            break
    info = stats(body)
    if generated:
        missing = set(EVENT_KINDS) - set(info["kinds"])
        if missing:
            problems.append(f"kinds missing: {sorted(missing)}")
        if size >= 256 * 1024 and not 600 <= info["event_bytes_mean"] <= 1000:
            problems.append(f"mean event size {info['event_bytes_mean']} B is not about 800 B")
    if problems:
        raise AssertionError("corpus check failed:\n  " + "\n  ".join(problems[:20]))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=CORPORA, default="realistic")
    parser.add_argument("--size", type=float, default=1.0, help="MB (10^6 bytes); default 1")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--check", action="store_true", help="validate every line with jsonschema (slow: ~2 MB/s)")
    parser.add_argument("--out", help="write the body to this file")
    args = parser.parse_args(argv)
    size = int(args.size * 1_000_000)
    body = build(args.corpus, size, args.seed)
    if args.out:
        Path(args.out).write_bytes(body)
    if args.check:
        if args.corpus == "realistic":
            info = check_corpus(size=size, seed=args.seed)
        else:
            info = check_corpus(body, shape=False)
        print("ok:", orjson.dumps(info).decode())
    else:
        print(orjson.dumps(stats(body)).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
