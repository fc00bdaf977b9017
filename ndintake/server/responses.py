"""Response bodies and headers, written as APM Server and Datadog's intake write them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from ..core.profile import Profile
from ..core.result import IntakeResult
from ..core.stream import IntakeStream

#: The APM Server version ``GET /`` reports: recent enough for every official
#: agent to use all of its features, old enough for none to refuse it.
SERVER_VERSION = "8.15.0"
BUILD_DATE = "2024-08-01T00:00:00Z"

# Go's encoding/json escapes these inside strings (HTML safety, JavaScript line breaks).
_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


@dataclass(frozen=True, slots=True)
class Response:
    """What to answer: status, headers (in order) and the whole body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)


def go_json(obj: Any, *, pretty: bool) -> bytes:
    """JSON as Go's ``json.Encoder`` writes it (APM Server): compact or with a
    2-space indent, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, then a newline."""
    out = orjson.dumps(obj, option=orjson.OPT_INDENT_2 if pretty else 0)
    for raw, escaped in _GO_ESCAPES:
        if raw in out:
            out = out.replace(raw, escaped)
    return out + b"\n"


def accepts_json(headers: Mapping[str, str]) -> bool:
    """APM Server answers pretty JSON when ``Accept`` contains ``application/json`` or ``*/*``."""
    accept = headers.get("accept", "")
    return "application/json" in accept or "*/*" in accept


def _finish(status: int, headers: list[tuple[str, str]], body: bytes) -> Response:
    headers.append(("X-Content-Type-Options", "nosniff"))
    if status >= 400:
        headers.append(("Connection", "Close"))
    headers.append(("Content-Length", str(len(body))))
    return Response(status, headers, body)


def apm(
    status: int, body: Any, request_headers: Mapping[str, str], extra: list[tuple[str, str]] | None = None
) -> Response:
    """An APM Server answer: no body when ``body`` is None; else pretty JSON as
    ``application/json`` if the client accepts it, compact as ``text/plain``."""
    headers = list(extra or ())
    if body is None:
        return _finish(status, headers, b"")
    pretty = accepts_json(request_headers)
    headers.append(("Content-Type", "application/json" if pretty else "text/plain; charset=utf-8"))
    return _finish(status, headers, go_json(body, pretty=pretty))


def apm_error(
    status: int, message: str, request_headers: Mapping[str, str], extra: list[tuple[str, str]] | None = None
) -> Response:
    """APM Server's middleware-level answer: ``{"error": "<message>"}``."""
    return apm(status, {"error": message}, request_headers, extra)


def datadog(status: int, body: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    """A Datadog intake answer: compact ``application/json`` (``{}`` on 202)."""
    headers = [*(extra or ()), ("Content-Type", "application/json")]
    return _finish(status, headers, orjson.dumps(body))


def failed(profile: str | Profile, status: int, message: str) -> IntakeResult:
    """The result of a request refused before its body was read, in ``profile``'s
    shape (APM ``{"accepted": 0, "errors": [...]}``, Datadog ``{"errors": [...]}``)."""
    stream = IntakeStream(profile=profile)
    stream.fail(status, message)
    return stream.close()


def server_info(version: str) -> dict[str, Any]:
    """APM Server's ``GET /`` body for authenticated clients."""
    from .. import __version__

    return {"build_date": BUILD_DATE, "build_sha": f"ndintake-{__version__}", "publish_ready": True, "version": version}
