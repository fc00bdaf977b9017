"""The authentication hook: APM Server's secret token and API keys, Datadog's DD-API-KEY."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Iterable, Mapping

_EXPECTED = "expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'"
_FAILED = "authentication failed"
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


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


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
    (browsers cannot keep secrets; APM Server's anonymous access, on by default
    with RUM); such requests are anonymous and rate limited.
    With neither a token nor keys every request is let through as anonymous.
    """

    def __init__(
        self, *, secret_token: str | None = None, api_keys: Iterable[str] = (), anonymous_rum: bool = True
    ) -> None:
        self.secret_token = secret_token or None
        self.api_keys = tuple(key for key in api_keys if key)
        self.anonymous_rum = anonymous_rum

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
            if self.secret_token is not None and _equal(token, self.secret_token):
                return AUTHENTICATED
            return AuthOutcome(401, _FAILED)
        if kind == "ApiKey":
            return self._api_key(token) if self.api_keys else AuthOutcome(401, _FAILED)
        return AuthOutcome(401, f"{_FAILED}: unknown Authentication header {kind}: {_EXPECTED}")

    def _api_key(self, credential: str) -> AuthOutcome:
        try:
            decoded = base64.b64decode(credential.encode("ascii"), validate=True).decode("utf-8", "surrogateescape")
        except (binascii.Error, UnicodeEncodeError):
            return AuthOutcome(
                401,
                f"{_FAILED}: improperly encoded ApiKey credentials: expected base64(ID:APIKey): "
                f"illegal base64 data at input byte {_bad_base64_at(credential)}",
            )
        if ":" not in decoded:
            return AuthOutcome(401, f"{_FAILED}: improperly formatted ApiKey credentials: expected base64(ID:APIKey)")
        # Every key is compared, so the time taken does not tell which one nearly matched.
        if sum(_equal(decoded, key) | _equal(credential, key) for key in self.api_keys):
            return AUTHENTICATED
        return AuthOutcome(401, _FAILED)

    def check_datadog(self, headers: Mapping[str, str]) -> AuthOutcome:
        """Datadog's check of the ``DD-API-KEY`` header."""
        if not self.enabled:
            return ANONYMOUS
        key = headers.get("dd-api-key", "")
        if not key:
            return AuthOutcome(401, "missing API key: expected header 'DD-API-KEY: <api key>'")
        known = (*self.api_keys, *((self.secret_token,) if self.secret_token else ()))
        if sum(_equal(key, known_key) for known_key in known):
            return AUTHENTICATED
        return AuthOutcome(403, "invalid API key")
