"""The NATS JetStream sink: each accepted event published with an ack (nats-py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import string
from typing import Any, Callable

from ..core.errors import QueueFull, SinkUnavailable
from ._broker import BrokerSink, Message
from .records import Format
from .url import SinkURL

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.js.api import Header, StorageType, StreamConfig
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"the NATS sink needs nats-py: pip install 'ndintake[nats]' ({exc})") from exc

#: Seconds a connection attempt may take; the client then retries every second, forever.
CONNECT_TIMEOUT = 2
RECONNECT_WAIT = 1
#: A connection whose server does not answer two pings 5 s apart is dropped (a frozen server).
PING_INTERVAL = 5

#: JetStream's refusals of a full stream with ``discard: new``.
_FULL = ("maximum bytes exceeded", "maximum messages exceeded", "maximum messages per subject exceeded")


def subject_template(template: str) -> tuple[Callable[[str, str], str], str]:
    """Check a subject template; return ``(render(profile, kind), wildcard)``.

    ``{profile}`` and ``{kind}`` may each stand for a whole token
    (``apm.{profile}.{kind}``); the wildcard replaces them with ``*``
    (``apm.*.*``), the stream's subjects when the sink creates it. Raises
    ValueError for anything else (unknown placeholders, ``{kind}x``, empty
    tokens, wildcards, whitespace)."""
    wild = []
    for token in template.split("."):
        parsed = list(string.Formatter().parse(token))  # ValueError on a lone brace
        if len(parsed) == 1 and parsed[0][0] == "" and parsed[0][1] is not None:
            _, field, spec, conversion = parsed[0]
            if field not in ("profile", "kind") or spec or conversion:
                raise ValueError(f"unknown placeholder {{{field}}}: use {{profile}} and {{kind}}")
            wild.append("*")
        elif not token or any(field is not None for _, field, _, _ in parsed):
            raise ValueError(f"subject token {token!r}: a placeholder must be a whole token (a.{{kind}}.b)")
        elif any(c in token for c in " \t\r\n*>"):
            raise ValueError(f"subject token {token!r} has whitespace or a wildcard")
        else:
            wild.append(token)

    def render(profile: str, kind: str) -> str:
        return template.format(profile=profile, kind=kind)

    return render, ".".join(wild)


class JetStreamSink(BrokerSink):
    """Publishes each accepted event to JetStream and waits for its ack.

    The subject is ``subject`` with ``{profile}`` and ``{kind}`` filled in
    (``kind`` is ``batch`` with ``format="batch"``, one message per batch).
    Headers: ``Nats-Msg-Id`` (the deduplication key: JetStream drops a message
    whose id it saw within the stream's duplicate window, 2 minutes by
    default, so a retried request is stored once; ``duplicates`` counts them),
    ``Ndintake-Kind``, ``Ndintake-Profile``, ``Ndintake-Route``. A batch's
    messages are published back to back with one reply inbox, then all
    acks awaited.

    The stream ``stream`` is used as it is when it exists; otherwise it is
    created (file storage, subjects: the template with ``*`` for each
    placeholder).

    Errors: a full stream (``discard: new`` and its ``max_bytes`` or
    ``max_msgs`` reached) and no ack within ``timeout`` raise
    :class:`~ndintake.QueueFull`. While the connection is down, batches raise
    :class:`~ndintake.SinkUnavailable` at once (nothing is buffered in the
    client), and batches in flight when it drops raise it too; the client
    reconnects in the background every second, forever.
    """

    def __init__(
        self,
        stream: str,
        subject: str,
        *,
        server: str = "nats://127.0.0.1:4222",
        format: Format = "event",
        timeout: float = 5.0,
        max_in_flight: int = 64,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(format=format, timeout=timeout, max_in_flight=max_in_flight)
        if not stream or any(c in stream for c in " \t\r\n.*>"):
            raise ValueError(f"bad stream name {stream!r}")
        self.stream = stream
        self.subject, self.wildcard = subject_template(subject)
        self.server = server
        self.target = f"{server} stream {stream}"
        self.duplicates = 0  # messages JetStream recognised as already stored
        self._connect_options = connect_options or {}
        self._nc: Any = None
        self._js: Any = None
        self._ready = False  # connected and the stream checked
        self._lost: asyncio.Future[None] | None = None  # fails when the connection drops
        self._connecting: asyncio.Task[None] | None = None  # connects, retrying forever
        self._starting: asyncio.Task[None] | None = None  # waits a while for the first connection
        self._last_error = "not connected yet"
        self._ack_inbox = ""
        self._acks: dict[str, asyncio.Future[bool]] = {}  # reply token -> ack (True: a duplicate)
        self._tokens = itertools.count()

    @property
    def healthy(self) -> bool:
        """Also False while the client is disconnected (it reconnects by itself)."""
        connected = self._nc is not None and bool(self._nc.is_connected)
        return super().healthy and (connected or self._starting is None)

    @classmethod
    def from_url(cls, spec: str) -> JetStreamSink:
        """From ``nats://[USER:PASSWORD@]HOST:PORT?stream=NAME&subject=TEMPLATE
        [&format=batch][&timeout=S][&max_in_flight=N]``."""
        url = SinkURL(spec, default_port=4222)
        if url.path.strip("/"):
            raise url.error("no path expected")
        stream = url.require("stream")
        subject = url.require("subject")
        common = BrokerSink.common_options(url)
        url.done()
        auth = {"user": url.username, "password": url.password} if url.username else {}
        try:
            return cls(stream, subject, server=f"nats://{url.host}:{url.port}", connect_options=auth, **common)  # type: ignore[arg-type]
        except ValueError as exc:
            raise url.error(str(exc)) from None

    async def start(self, wait: float = CONNECT_TIMEOUT) -> None:
        """Connect in the background and wait up to ``wait`` seconds for it.
        Never raises: an unreachable server is logged, the intake server starts
        anyway and answers 503 until the connection is made. (A sink used
        without ``start()`` starts at its first batch.)"""
        if self._starting is None:
            self._connecting = asyncio.create_task(self._connect())
            self._starting = asyncio.create_task(self._first_wait(self._connecting, wait))
        await asyncio.shield(self._starting)

    async def _first_wait(self, connecting: asyncio.Task[None], wait: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(connecting), wait)
        except asyncio.TimeoutError:
            self.went_down(self._last_error)
        except Exception as exc:  # the client gave up (bad credentials...): every batch gets 503
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.went_down(self._last_error)

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            self.server,
            connect_timeout=CONNECT_TIMEOUT,
            reconnect_time_wait=RECONNECT_WAIT,
            max_reconnect_attempts=-1,  # the first connection too: retried until it succeeds
            ping_interval=PING_INTERVAL,
            max_outstanding_pings=2,
            pending_size=0,  # no buffering while disconnected: publishing then fails at once
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_connected,
            **self._connect_options,
        )
        self._js = self._nc.jetstream(timeout=self.timeout)
        # acks come to one inbox subscription (kept across reconnects), not a request each
        self._ack_inbox = self._nc.new_inbox()
        await self._nc.subscribe(f"{self._ack_inbox}.*", cb=self._on_ack)
        await self._on_connected()

    async def _on_connected(self) -> None:
        self._lost = asyncio.get_running_loop().create_future()
        self._ready = False
        try:
            await self._ensure_stream()
        except Exception as exc:  # the next batch retries
            self._last_error = f"stream {self.stream}: {exc!r}"
            self.went_down(self._last_error)
        else:  # healthy again at once, not only when a batch gets through
            self.came_back()

    async def _on_disconnected(self) -> None:
        self._ready = False
        if self._lost is not None and not self._lost.done():
            self._lost.set_exception(SinkUnavailable(f"{self.target}: connection lost ({self._last_error})"))
            self._lost.exception()  # retrieved: no "never retrieved" warning when no batch waits

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)

    async def _ensure_stream(self) -> None:
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            config = StreamConfig(name=self.stream, subjects=[self.wildcard], storage=StorageType.FILE)
            try:
                await self._js.add_stream(config)
            except nats.js.errors.BadRequestError:  # another process created it meanwhile
                await self._js.stream_info(self.stream)
        self._ready = True

    async def _probe(self) -> bool:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        if not self._ready:
            await self._ensure_stream()
        return True

    async def _send(self, messages: list[Message]) -> None:
        if self._starting is None or not self._starting.done():  # the first batches wait for the first connection
            await self.start()
        nc = self._nc
        if nc is None or not nc.is_connected or self._lost is None or self._lost.done():
            raise SinkUnavailable(f"{self.target}: not connected ({self._last_error})")
        if not self._ready:
            try:
                await self._ensure_stream()
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                raise SinkUnavailable(f"{self.target}: cannot find or create the stream: {exc!r}") from exc
        lost = self._lost
        loop = asyncio.get_running_loop()
        tokens = [str(next(self._tokens)) for _ in messages]
        acks = [loop.create_future() for _ in messages]
        self._acks.update(zip(tokens, acks))
        try:
            for m, token in zip(messages, tokens):
                await nc.publish(
                    self.subject(m.profile, m.kind),
                    m.record,
                    reply=f"{self._ack_inbox}.{token}",
                    headers={
                        "Nats-Msg-Id": m.key,
                        "Ndintake-Kind": m.kind,
                        "Ndintake-Profile": m.profile,
                        "Ndintake-Route": m.route,
                    },
                )
            done: asyncio.Future[list[bool]] = asyncio.gather(*acks)
            await asyncio.wait([done, lost], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
            if not done.done():  # (left pending: its acks are forgotten below)
                lost.result()  # raises SinkUnavailable
            duplicates = done.result()  # raises the first refusal (QueueFull, SinkUnavailable)
        except (nats.errors.Error, OSError) as exc:  # closed, disconnected, too large...
            raise SinkUnavailable(f"{self.target}: {exc!r}") from exc
        finally:
            for token in tokens:
                self._acks.pop(token, None)
        self.duplicates += sum(duplicates)

    async def _on_ack(self, msg: Any) -> None:
        """JetStream's answer to one publish: a PubAck, an error, or "no responders"."""
        ack = self._acks.pop(msg.subject.rpartition(".")[2], None)
        if ack is None or ack.done():
            return
        if msg.headers and msg.headers.get(Header.STATUS) == "503":
            self._ready = False  # the stream went missing: look for it (or create it) next time
            ack.set_exception(SinkUnavailable(f"{self.target}: no stream takes subject {msg.subject}"))
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            answer = {"error": {"description": f"unreadable ack {msg.data[:200]!r}"}}
        error = answer.get("error")
        if error is None:
            ack.set_result(bool(answer.get("duplicate")))
            return
        text = str(error.get("description", error))
        if any(full in text for full in _FULL):
            ack.set_exception(QueueFull(f"queue is full: {self.target}: {text}"))
        else:
            code = error.get("err_code")
            ack.set_exception(SinkUnavailable(f"{self.target}: JetStream refused the message: {text} ({code})"))
        ack.exception()  # retrieved: the batch may already have failed on another ack

    async def aclose(self) -> None:
        """Wait (bounded) for the batches in flight, then disconnect."""
        await self.drain()
        for task in (self._starting, self._connecting):
            if task is not None and not task.done():
                task.cancel()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.close(), CONNECT_TIMEOUT)
            except (asyncio.TimeoutError, nats.errors.Error, OSError) as exc:  # a frozen server: give up on it
                self.went_down(f"close: {exc!r}")

