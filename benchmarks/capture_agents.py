"""Capture what the official Elastic APM agents send: the ``agents`` benchmark corpus.

``python -m benchmarks.capture_agents [--out PATH] [--rounds N] [--no-node]`` starts a
small recording HTTP server on a free port of 127.0.0.1 (``GET /`` answers like APM
Server 8.15.0, ``POST /intake/v2/events`` answers 202, gzip and deflate request
bodies are decoded, chunked ones reassembled), then drives the official agents
through a varied workload against it, on the loopback interface only:

* the **Python agent** (``elastic-apm`` 6.26.2 when captured, CPython 3.11) in a
  child process: a Flask app (the agent's Flask integration) called through Flask's test
  client, with sqlite3, urllib3 and Jinja2 instrumented (db, http and template
  spans, nested in custom spans, with labels and custom, user and request
  context), handled and unhandled exceptions with chained causes (real stack
  traces, source context), log messages (``capture_message`` and the logging
  handler), a background (non-web) transaction type, and a few metrics
  collections (breakdown metrics and system CPU/memory);
* the **Node.js agent** (``elastic-apm-node`` 4.18.0 when captured, Node.js 20.20,
  installed with npm into a temporary folder; skipped when that fails) in a child
  process: an instrumented ``http`` server called by the same script, with
  outgoing http spans to the recorder, db and cache spans with db context and
  service targets, labels, custom and user context, captured errors (the agent
  sends no ``cause``) and log messages, and metrics collections (breakdown, system and runtime).

Cloud metadata is never probed (``cloud_provider="none"``, ``cloudProvider: 'none'``),
and both agents run with a bare environment (``PATH``, ``LANG``, ``NO_PROXY``):
the Python agent sends stack frames' local variables with errors.
The decompressed request bodies are combined into ONE body: the first metadata
line (the Python agent's), then the event lines of every captured body in capture
order (the other bodies' metadata lines left out), written gzip-compressed
(level 9, mtime 0) to ``tests/data/agents.ndjson.gz`` (tests read it there; the
``agents`` corpus of ``benchmarks/corpus.py`` repeats it). Timestamps, ids,
durations and host details differ from one capture to the next, so a re-run
rewrites the file with different bytes; the shape stays the same.

Captured on 2026-12-06 (see ``tests/data/README.md``). Re-run from the repository
root, with the ``test`` extra installed and node/npm on the PATH::

    python -m benchmarks.capture_agents            # writes tests/data/agents.ndjson.gz
    python -m benchmarks.capture_agents --out /tmp/agents.ndjson.gz --no-node
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "data" / "agents.ndjson.gz"
LOOPBACK = "127.0.0.1"
NODE_PACKAGE = "elastic-apm-node@4"
SERVER_INFO = {
    "build_date": "2024-08-01T00:00:00Z",
    "build_sha": "recorder",
    "publish_ready": True,
    "version": "8.15.0",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the recording server ---------------------------------------------------------------------


class Recorder(ThreadingHTTPServer):
    """A tiny stand-in for APM Server that keeps the decoded intake bodies, in order."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


def decode(body: bytes, encoding: str) -> bytes:
    """A request body without its content coding (gzip, deflate with or without zlib header)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise ValueError(f"unknown content coding {encoding!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        self._route(self._read_body())

    def _route(self, raw: bytes) -> None:
        path = self.path.split("?")[0]
        if path == "/intake/v2/events" and self.command == "POST":
            body = decode(raw, self.headers.get("Content-Encoding", ""))
            with self.server.lock:
                self.server.bodies.append(body)
            self._answer(202, {"accepted": sum(1 for line in body.split(b"\n")[1:] if line.strip())})
        elif path == "/":
            self._answer(200, SERVER_INFO)
        elif path == "/config/v1/agents":
            self._answer(200, {})
        elif path.startswith("/downstream/"):  # what the workloads' outgoing http spans call
            status = 503 if path.endswith("/unavailable") else 404 if path.endswith("/missing") else 200
            if "slow" in path:
                time.sleep(0.008)  # long enough for a span stack trace (5 ms threshold)
            self._answer(status, {"path": path, "items": [{"sku": f"SKU-{i:04d}", "stock": i * 3} for i in range(4)]})
        else:
            self._answer(404, {"error": "not found"})


# -- the Python agent ---------------------------------------------------------------------------


def python_agent(url: str, rounds: int) -> str:
    """Drive elastic-apm through a Flask app; returns the agent version."""
    import sqlite3

    import elasticapm
    import urllib3
    from elasticapm.contrib.flask import ElasticAPM
    from elasticapm.handlers.logging import LoggingHandler
    from flask import Flask, jsonify, render_template_string, request

    client = elasticapm.Client(
        service_name="shop-python",
        service_version="3.2.1",
        environment="benchmark",
        server_url=url,
        cloud_provider="none",
        central_config=False,
        metrics_interval="1s",
        api_request_time="2s",
        server_timeout="5s",
        capture_body="all",
        capture_headers=True,
        global_labels="team=shop,deployment=blue",
    )
    app = Flask("shop")
    ElasticAPM(app, client=client)  # instruments sqlite3, urllib3, jinja2, ...
    logger = logging.getLogger("shop.orders")
    logger.propagate = False
    logger.addHandler(LoggingHandler(client=client, level=logging.WARNING))
    http = urllib3.PoolManager()
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.executescript(
        "CREATE TABLE products (sku TEXT PRIMARY KEY, name TEXT, price_cents INTEGER, stock INTEGER);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, sku TEXT, quantity INTEGER, status TEXT);"
    )
    db.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)",
        [(f"SKU-{i:04d}", f"Product {i}", 199 + i * 7, i % 13) for i in range(50)],
    )
    page = (
        "<html><body><h1>{{ product[1] }}</h1><p>{{ product[2] / 100 }} EUR</p>"
        "<ul>{% for item in stock %}<li>{{ item.sku }}: {{ item.stock }}</li>{% endfor %}</ul></body></html>"
    )

    def price_with_discount(price: int, percent: int) -> int:
        return price * 100 // (100 - percent)  # ZeroDivisionError at 100 percent

    @app.route("/products/<sku>")
    def product(sku: str) -> Any:
        elasticapm.label(sku=sku, cache_hit=int(sku[-1]) % 3 == 0, shard=int(sku[-2:]) % 8)
        row = db.execute("SELECT sku, name, price_cents, stock FROM products WHERE sku = ?", (sku,)).fetchone()
        if row is None:
            logger.warning("Unknown product %s requested", sku)
            return jsonify(error="not found"), 404
        slow = "slow/" if int(sku[-1]) % 4 == 0 else ""
        stock = json.loads(http.request("GET", f"{url}/downstream/{slow}inventory/{sku}").data)["items"]
        return render_template_string(page, product=row, stock=stock)

    @app.route("/orders", methods=["POST"])
    def place_order() -> Any:
        order = request.get_json()
        elasticapm.set_user_context(user_id=order["user"], email=f"user{order['user']}@example.com")
        elasticapm.set_custom_context({"cart": {"items": order["quantity"], "coupon": order.get("coupon")}})
        elasticapm.label(plan=order.get("plan", "free"), priority=order["quantity"] > 3)
        with elasticapm.capture_span("reserve-stock", span_type="app", span_subtype="inventory", labels={"n": 1}):
            stock = db.execute("SELECT stock FROM products WHERE sku = ?", (order["sku"],)).fetchone()[0]
            db.execute("UPDATE products SET stock = ? WHERE sku = ?", (stock + 5, order["sku"]))
            with elasticapm.capture_span("audit", span_type="app", span_subtype="audit"):
                for _ in range(3):  # a compressible run of identical exit spans
                    db.execute("SELECT count(*) FROM orders WHERE user_id = ?", (order["user"],)).fetchone()
        cursor = db.execute(
            "INSERT INTO orders (user_id, sku, quantity, status) VALUES (?, ?, ?, 'new')",
            (order["user"], order["sku"], order["quantity"]),
        )
        target = (
            "unavailable" if order["user"] % 7 == 0 else "slow/authorize" if order["user"] % 3 == 0 else "authorize"
        )
        with elasticapm.capture_span("payments", span_type="app", span_subtype="payments"):
            answer = http.request("POST", f"{url}/downstream/payments/{target}", body=json.dumps(order).encode())
        if answer.status >= 500:
            try:
                raise ConnectionError(f"payments answered {answer.status}")
            except ConnectionError:
                client.capture_exception(handled=True, extra={"order": order})
            return jsonify(error="payment failed"), 502
        return jsonify(id=cursor.lastrowid, status="new"), 201

    @app.route("/orders/<int:order_id>")
    def get_order(order_id: int) -> Any:
        row = db.execute("SELECT id, user_id, sku, quantity, status FROM orders WHERE id = ?", (order_id,)).fetchone()
        if order_id % 5 == 0:
            status = {"paid": "complete", "shipped": "on its way"}[row[4] if row else "gone"]  # KeyError: a 500
            return jsonify(status=status)
        return jsonify(order=row)

    @app.route("/report")
    def report() -> Any:
        percent = int(request.args.get("discount", "10"))
        with elasticapm.capture_span("aggregate", span_type="app", span_subtype="report"):
            totals = db.execute(
                "SELECT sku, sum(quantity) FROM orders GROUP BY sku ORDER BY 2 DESC LIMIT 10"
            ).fetchall()
            try:
                try:
                    prices = [price_with_discount(199, percent) for _ in totals]
                except ZeroDivisionError as exc:
                    raise ValueError(f"bad discount {percent}") from exc
            except ValueError:
                client.capture_exception(handled=True)
                prices = []
        return jsonify(totals=totals, prices=prices)

    web = app.test_client()
    agents = ("Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0", "okhttp/4.12.0", "python-requests/2.32.3")

    def call(method: str, path: str, **kwargs: Any) -> None:
        web.open(path, method=method, **kwargs).close()  # the Flask integration ends a transaction on close

    for i in range(rounds):
        headers = {"User-Agent": agents[i % 3], "X-Request-Id": f"req-{i:05d}", "Cookie": f"session=s{i}"}
        call("GET", f"/products/SKU-{i * 7 % 60:04d}", headers=headers)
        order = {
            "user": 1000 + i,
            "sku": f"SKU-{i % 50:04d}",
            "quantity": i % 6 + 1,
            "plan": ("free", "pro", "enterprise")[i % 3],
            "coupon": None if i % 2 else "SPRING",
        }
        call("POST", "/orders", json=order, headers=headers)
        call("GET", f"/orders/{i + 1}", headers=headers)
        if i % 4 == 0:
            call("GET", f"/report?discount={100 if i % 8 == 0 else 15}", headers=headers)
        if i % 6 == 0:  # a background job: a non-web transaction with a nested span tree
            client.begin_transaction("job")
            elasticapm.label(job="reindex", batch=i)
            with elasticapm.capture_span("reindex", span_type="app", span_subtype="search"):
                for sku in range(i % 4 + 2):
                    db.execute("SELECT name FROM products WHERE sku = ?", (f"SKU-{sku:04d}",)).fetchone()
                http.request("GET", f"{url}/downstream/search/refresh")
            client.capture_message(param_message={"message": "reindexed %d products in batch %d", "params": (50, i)})
            client.end_transaction("reindex products", "success")
        if i % 10 == 9:
            time.sleep(0.6)  # let a few metrics collections happen along the way
    time.sleep(1.2)
    client.close()  # flushes, synchronously
    return str(elasticapm.VERSION)


# -- the Node.js agent ------------------------------------------------------------------------

NODE_SCRIPT = r"""
const apm = require('elastic-apm-node').start({
  serviceName: 'shop-node',
  serviceVersion: '5.0.3',
  environment: 'benchmark',
  serverUrl: process.env.APM_SERVER_URL,
  metricsInterval: '1s',
  apiRequestTime: '2s',
  cloudProvider: 'none',
  centralConfig: false,
  captureExceptions: false,
  captureBody: 'all',
  globalLabels: { team: 'shop', deployment: 'green' },
  logLevel: 'warn',
})
const http = require('http')
const upstream = process.env.APM_SERVER_URL
const rounds = Number(process.env.ROUNDS)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function call (url, method = 'GET', body = null) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { 'content-type': 'application/json', 'user-agent': 'shop-node/5' } }, (res) => {
      let data = ''
      res.on('data', (chunk) => { data += chunk })
      res.on('end', () => resolve({ status: res.statusCode, body: data }))
    })
    req.on('error', reject)
    if (body) req.write(body)
    req.end()
  })
}

// childOf: after an await, the current span may still be the last (ended) exit span, under which
// startSpan() would start nothing
async function query (sql, ms, parent = apm.currentTransaction) {
  const span = apm.startSpan(sql.split(' ').slice(0, 3).join(' '), 'db', 'postgresql', 'query', { exitSpan: true, childOf: parent })
  span.setDbContext({ type: 'sql', instance: 'shop', statement: sql, user: 'shop' })
  span.setServiceTarget('postgresql', 'shop')
  await sleep(ms)
  span.end()
}

async function cache (command, key, parent = apm.currentTransaction) {
  const span = apm.startSpan(`${command}`, 'db', 'redis', 'query', { exitSpan: true, childOf: parent })
  span.setDbContext({ type: 'redis', statement: `${command} ${key}` })
  span.setLabel('key', key)
  await sleep(1)
  span.end()
}

function priceOf (cart) {
  if (!cart.items.length) throw new RangeError(`empty cart ${cart.id}`)
  return cart.items.reduce((sum, item) => sum + item.price, 0)
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost')
  const n = Number(url.searchParams.get('n') || 0)
  apm.setLabel('tenant', `t-${n % 5}`)
  apm.setLabel('canary', n % 4 === 0)
  apm.setUserContext({ id: String(2000 + n), username: `user${n}` })
  apm.setCustomContext({ flags: { newCheckout: n % 2 === 0 }, attempt: n % 3 })
  try {
    if (url.pathname.startsWith('/cart')) {
      apm.setTransactionName('GET /cart/:id')
      await cache('GET', `cart:${n}`)
      await query(`SELECT id, sku, quantity, price FROM cart_items WHERE cart_id = ${n} ORDER BY id`, 2)
      const stock = await call(`${upstream}/downstream/${n % 3 === 0 ? 'slow/' : ''}inventory/${n}`)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(stock.body)
    } else if (url.pathname.startsWith('/checkout')) {
      apm.setTransactionName('POST /checkout')
      const outer = apm.startSpan('checkout', 'app', 'checkout')
      await query(`UPDATE carts SET status = 'locked' WHERE id = ${n}`, 1, outer)
      for (let i = 0; i < 3; i++) await query(`SELECT stock FROM inventory WHERE sku = 'SKU-${n}'`, 0, outer)
      await cache('DEL', `cart:${n}`, outer)
      const paid = await call(`${upstream}/downstream/payments/${n % 7 === 0 ? 'unavailable' : 'authorize'}`, 'POST', JSON.stringify({ cart: n }))
      if (outer) outer.end()
      if (paid.status >= 500) {
        const cause = new Error(`payments answered ${paid.status}`)
        apm.captureError(new Error(`checkout of cart ${n} failed`, { cause }), { labels: { cart: n }, custom: { status: paid.status } })
        res.writeHead(502)
        res.end('payment failed')
        return
      }
      try {
        priceOf({ id: n, items: n % 4 === 1 ? [] : [{ price: 120 }] })
      } catch (err) {
        apm.captureError(err, { handled: true })
      }
      res.writeHead(201, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ cart: n, status: 'paid' }))
    } else {
      apm.captureError({ message: 'no route for %s %s', params: [req.method, url.pathname] })
      res.writeHead(404)
      res.end()
    }
  } catch (err) {
    apm.captureError(err)
    res.writeHead(500)
    res.end()
  }
})

async function main () {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${server.address().port}`
  for (let n = 0; n < rounds; n++) {
    await call(`${base}/cart/${n}?n=${n}`)
    await call(`${base}/checkout?n=${n}`, 'POST', JSON.stringify({ cart: n, coupon: n % 2 ? null : 'SPRING' }))
    if (n % 5 === 0) await call(`${base}/nowhere/${n}?n=${n}`)
    if (n % 8 === 0) {
      const t = apm.startTransaction('nightly-cleanup', 'job')
      await query(`DELETE FROM carts WHERE updated_at < now() - interval '30 days' AND id % 8 = ${n % 8}`, 3)
      apm.captureError(`cleanup removed ${n * 3} carts`)
      t.end()
    }
    if (n % 10 === 9) await sleep(600) // metrics collections along the way
  }
  await sleep(1200)
  server.close()
  await apm.flush()
  await apm.destroy()
  console.log(require('elastic-apm-node/package.json').version)
}
main().catch((err) => { console.error(err); process.exit(1) })
"""


def node_agent(url: str, rounds: int) -> str | None:
    """Install elastic-apm-node into a temporary folder and run NODE_SCRIPT; the
    agent version, or None (and why, on stderr) when node or npm is missing or fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        log("node or npm not found: no Node.js agent")
        return None
    with tempfile.TemporaryDirectory(prefix="ndintake-node-agent-") as folder:
        Path(folder, "package.json").write_text('{"name": "ndintake-capture", "version": "0.0.0", "private": true}\n')
        command = [npm, "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", NODE_PACKAGE]
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            log("npm install timed out: no Node.js agent")
            return None
        if done.returncode != 0:
            log(f"npm install failed: no Node.js agent\n{done.stderr[-800:]}")
            return None
        Path(folder, "agent.js").write_text(NODE_SCRIPT)
        env = {**agent_env(), "APM_SERVER_URL": url, "ROUNDS": str(rounds)}
        done = subprocess.run([node, "agent.js"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"the Node.js workload failed:\n{done.stderr[-2000:]}")
        return f"{done.stdout.strip()} (Node.js {subprocess.check_output([node, '--version'], text=True).strip()})"


def agent_env() -> dict[str, str]:
    """The agents' whole environment: no proxies (every request stays on 127.0.0.1)
    and nothing of this machine's environment that an agent could record (the
    Python agent sends the local variables of stack frames with errors)."""
    no_proxy = f"{LOOPBACK},localhost"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


# -- the corpus ---------------------------------------------------------------------------------


def combine(bodies: list[bytes]) -> bytes:
    """One body: the first body's metadata line, then every body's event lines in order."""
    lines: list[bytes] = []
    for body in bodies:
        parts = [line for line in body.split(b"\n") if line.strip()]
        if not parts or not parts[0].startswith(b'{"metadata"'):
            raise ValueError("a captured body does not start with a metadata line")
        lines.extend(parts if not lines else parts[1:])
    return b"\n".join(lines) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_agents", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help=f"gzip file to write (default {DEFAULT_OUT.relative_to(ROOT)})"
    )
    parser.add_argument("--rounds", type=int, default=15, help="workload rounds per agent (default 15)")
    parser.add_argument("--no-node", action="store_true", help="leave the Node.js agent out")
    parser.add_argument("--python-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.python_child:
        print(python_agent(args.python_child, args.rounds))
        return 0
    with Recorder() as recorder:
        log(f"recording on {recorder.url}")
        command = [
            sys.executable,
            "-m",
            "benchmarks.capture_agents",
            "--python-child",
            recorder.url,
            "--rounds",
            str(args.rounds),
        ]
        done = subprocess.run(command, cwd=ROOT, env=agent_env(), capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"the Python workload failed:\n{done.stderr[-2000:]}")
        versions = {"python": done.stdout.strip()}
        log(f"python agent {versions['python']}: {len(recorder.bodies)} bodies")
        if not args.no_node:
            before = len(recorder.bodies)
            node = node_agent(recorder.url, args.rounds)
            if node is not None:
                versions["nodejs"] = node
                log(f"node agent {node}: {len(recorder.bodies) - before} bodies")
        bodies = list(recorder.bodies)
    body = combine(bodies)
    Path(args.out).write_bytes(gzip.compress(body, 9, mtime=0))
    events = body.count(b"\n") - 1
    log(f"wrote {args.out}: {len(body):,} bytes, {events} events from {len(bodies)} bodies; agents {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
