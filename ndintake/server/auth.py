"""The authentication hook: APM Server's secret token and API keys, Datadog's DD-API-KEY."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

_EXPECTED = "expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'"
_FAILED = "authentication failed"
_UNAUTHORIZED = "unauthorized: anonymous access not permitted for {what} {name}"
#: APM Server's ``auth.anonymous.allow_agent`` default: the RUM agents.
DEFAULT_ALLOW_AGENT = ("rum-js", "js-base")
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """What authentication made of a request.

    ``status`` 0: let through; ``anonymous``: without credentials (the rate
    limiter applies). Otherwise ``status`` (401 or 403) and ``message`` refuse it.
    """

    status: int = 0
    message: str = ""
    anonymous: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 0


ANONYMOUS = AuthOutcome(anonymous=True)
AUTHENTICATED = AuthOutcome()


def _wire(text: str) -> bytes:
    """A header value's bytes: ASGI and WSGI give header values as their
    bytes decoded as latin-1, so encoding back gives the bytes as sent (a str
    with characters beyond latin-1 can only have been built by a caller: UTF-8)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _secret(text: str) -> bytes:
    """A configured token or key, as UTF-8 bytes."""
    return text.encode("utf-8", "surrogateescape")


def _go_quote(text: str) -> str:
    """Go's ``%q`` of a string (close enough for names: JSON string quoting)."""
    return json.dumps(text, ensure_ascii=False)


def _name(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _bad_base64_at(text: str) -> int:
    """Where Go's base64 decoder would report the input as corrupt (best effort)."""
    raw = text.encode("latin-1", "replace")
    body = raw.rstrip(b"=")
    for i, byte in enumerate(body):
        if byte not in _B64:
            return i
    return len(body) if len(raw) % 4 else max(len(body) - 1, 0)


class Authenticator:
    """Checks credentials like APM Server (APM routes) and Datadog (prodlytics).

    ``secret_token``: accepted as ``Authorization: Bearer <token>``.
    ``api_keys``: each accepted as ``Authorization: ApiKey <credential>``, where
    the credential is the key itself or base64 of it (so an Elastic key given
    as ``id:key`` is sent as ``ApiKey base64(id:key)``, and one given already
    encoded is sent as is), and, on the prodlytics route, as ``DD-API-KEY: <key>``
    (the secret token is accepted there too).

    APM routes answer as APM Server does: 401 ``{"error": "authentication failed:
    ..."}``, for a missing header as for a wrong token or key (APM Server never
    answers 403 for credentials). The prodlytics route answers as Datadog
    documents: 401 for a missing ``DD-API-KEY``, 403 for a wrong one.
    ``anonymous_rum``: RUM routes take requests without an Authorization header
    (browsers cannot keep secrets; APM Server's anonymous access,
    ``auth.anonymous.enabled``, on by default with RUM); such requests are
    anonymous and rate limited, and each batch of their events must come from
    an agent in ``allow_agent`` (default ``rum-js``, ``js-base``; empty: any)
    and a service in ``allow_service`` (default empty: any), else the request
    ends with 403 (see :meth:`authorize_anonymous`).
    With neither a token nor keys every request is let through as anonymous,
    from any agent.

    Tokens and keys are compared as bytes: the configured ones as UTF-8, the
    header values as the bytes received (header strings are taken to be
    latin-1 decoded, as ASGI and WSGI servers give them).
    """

    def __init__(
        self,
        *,
        secret_token: str | None = None,
        api_keys: Iterable[str] = (),
        anonymous_rum: bool = True,
        allow_agent: Iterable[str] = DEFAULT_ALLOW_AGENT,
        allow_service: Iterable[str] = (),
    ) -> None:
        self.secret_token = secret_token or None
        self.api_keys = tuple(key for key in api_keys if key)
        self.anonymous_rum = anonymous_rum
        self.allow_agent = frozenset(allow_agent)
        self.allow_service = frozenset(allow_service)
        self._token = _secret(self.secret_token) if self.secret_token is not None else None
        self._keys = tuple(_secret(key) for key in self.api_keys)

    @property
    def enabled(self) -> bool:
        """True when a secret token or an API key is configured."""
        return self.secret_token is not None or bool(self.api_keys)

    def check_apm(self, headers: Mapping[str, str], *, rum: bool = False) -> AuthOutcome:
        """APM Server's check of the ``Authorization`` header."""
        if not self.enabled:
            return ANONYMOUS
        header = headers.get("authorization", "")
        space = header.find(" ")
        kind, token = (header[:space], header[space + 1 :]) if space > 0 else ("", "")
        if kind == "":
            if rum and self.anonymous_rum:
                return ANONYMOUS
            return AuthOutcome(401, f"{_FAILED}: missing or improperly formatted Authorization header: {_EXPECTED}")
        if kind == "Bearer":
            if self._token is not None and hmac.compare_digest(_wire(token), self._token):
                return AUTHENTICATED
            return AuthOutcome(401, _FAILED)
        if kind == "ApiKey":
            return self._api_key(token) if self.api_keys else AuthOutcome(401, _FAILED)
        return AuthOutcome(401, f"{_FAILED}: unknown Authentication header {kind}: {_EXPECTED}")

    def _api_key(self, credential: str) -> AuthOutcome:
        try:
            decoded = base64.b64decode(credential.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return AuthOutcome(
                401,
                f"{_FAILED}: improperly encoded ApiKey credentials: expected base64(ID:APIKey): "
                f"illegal base64 data at input byte {_bad_base64_at(credential)}",
            )
        if b":" not in decoded:
            return AuthOutcome(401, f"{_FAILED}: improperly formatted ApiKey credentials: expected base64(ID:APIKey)")
        raw = _wire(credential)
        # Every key is compared, so the time taken does not tell which one nearly matched.
        if sum(hmac.compare_digest(decoded, key) | hmac.compare_digest(raw, key) for key in self._keys):
            return AUTHENTICATED
        return AuthOutcome(401, _FAILED)

    def check_datadog(self, headers: Mapping[str, str]) -> AuthOutcome:
        """Datadog's check of the ``DD-API-KEY`` header."""
        if not self.enabled:
            return ANONYMOUS
        key = headers.get("dd-api-key", "")
        if not key:
            return AuthOutcome(401, "missing API key: expected header 'DD-API-KEY: <api key>'")
        known = (*self._keys, *((self._token,) if self._token is not None else ()))
        sent = _wire(key)
        if sum(hmac.compare_digest(sent, known_key) for known_key in known):
            return AUTHENTICATED
        return AuthOutcome(403, "invalid API key")

    @property
    def restricts_anonymous(self) -> bool:
        """True when anonymous requests are checked per batch (credentials are
        configured and an allow list is not empty)."""
        return self.enabled and bool(self.allow_agent or self.allow_service)

    def authorize_anonymous(self, agent: str, service: str) -> str | None:
        """APM Server's check of an anonymous event (``auth.anonymous``): None if
        ``agent`` and ``service`` are allowed, else the refusal, service first:
        ``unauthorized: anonymous access not permitted for service "name"``
        (or ``for agent "name"``)."""
        if self.allow_service and service not in self.allow_service:
            return _UNAUTHORIZED.format(what="service", name=_go_quote(service))
        if self.allow_agent and agent not in self.allow_agent:
            return _UNAUTHORIZED.format(what="agent", name=_go_quote(agent))
        return None


def event_origin(event: Any, metadata: Mapping[str, Any] | None) -> tuple[str, str]:
    """The agent and service names APM Server checks an event's anonymous access
    by: the event's own ``context.service`` (RUM v3: ``c.se``) where it names
    them, else the metadata's ``service`` (metadata is in long form)."""
    if event.abbreviated:
        service = _get(event.data, "c", "se")
        name_key, agent_key = "n", "a"
    else:
        service = _get(event.data, "context", "service")
        name_key, agent_key = "name", "agent"
    base = _get(metadata, "service")
    agent = _get(service, agent_key, name_key)
    if agent is None:
        agent = _get(base, "agent", "name")
    name = _get(service, name_key)
    if name is None:
        name = _get(base, "name")
    return _name(agent), _name(name)
