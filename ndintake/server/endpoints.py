"""Endpoints: how each intake protocol is served over HTTP.

An :class:`Endpoint` joins a :class:`~ndintake.core.profile.Profile` with the
HTTP conventions of its protocol (a :class:`Style`: request checks, credentials,
answers, the timeout status). The request handling asks its route's endpoint and
never a profile's name, so a profile of one's own is served by giving it an
endpoint (``Intake(endpoints={path: Endpoint(...)})``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..core.profile import Profile, get_profile
from ..core.result import IntakeResult
from .auth import Authenticator, AuthOutcome
from .responses import Response, apm, apm_error, datadog, failed

Headers = list[tuple[str, str]]


class Style:
    """APM Server's HTTP conventions (the base; :class:`DatadogStyle` differs).

    ``media_types``: the ``Content-Type`` values taken (a request without one
    is taken too); others get 400, as does a method other than POST. Answers:
    no body on 202 (unless ``?verbose``), else the result's body, pretty JSON
    for clients that accept ``application/json``; refusals before the body are
    ``{"error": ...}``; a timeout is 503.
    """

    timeout_status = 503

    def __init__(self, media_types: tuple[str, ...] = ("application/x-ndjson",)) -> None:
        self.media_types = media_types

    def check(self, method: str, content_type: str) -> tuple[int, str, Headers] | None:
        """A refusal of the request line and headers, or None."""
        if method != "POST":
            return 400, "only POST requests are supported", []
        if content_type and not any(media in content_type for media in self.media_types):
            return 400, f"invalid content type: '{content_type}'", []
        return None

    def authenticate(self, authenticator: Authenticator, headers: Mapping[str, str], rum: bool) -> AuthOutcome:
        return authenticator.check_apm(headers, rum=rum)

    def answer(self, result: IntakeResult, headers: Mapping[str, str], verbose: bool, extra: Headers) -> Response:
        """The answer to a request whose body was read (or refused in the result's shape)."""
        body = result.to_json() if result.status != 202 or verbose else None
        return apm(result.status, body, headers, extra)

    def refuse(
        self, profile: Profile, status: int, message: str, headers: Mapping[str, str], extra: Headers
    ) -> Response:
        """A refusal outside the event stream (auth, rate limit, shutdown, timeout)."""
        return apm_error(status, message, headers, extra)


class DatadogStyle(Style):
    """Datadog's intake conventions: POST only (405), ``application/json`` only
    (415), API-key credentials, compact JSON answers in the result's shape
    (refusals too), 408 on a timeout."""

    timeout_status = 408

    def __init__(self) -> None:
        super().__init__(("application/json",))

    def check(self, method: str, content_type: str) -> tuple[int, str, Headers] | None:
        if method != "POST":
            return 405, "only POST requests are supported", [("Allow", "POST")]
        if content_type.split(";", 1)[0].strip().lower() not in self.media_types:
            return 415, f"invalid content type: '{content_type}'", []
        return None

    def authenticate(self, authenticator: Authenticator, headers: Mapping[str, str], rum: bool) -> AuthOutcome:
        return authenticator.check_datadog(headers)

    def answer(self, result: IntakeResult, headers: Mapping[str, str], verbose: bool, extra: Headers) -> Response:
        return datadog(result.status, result.to_json(), extra)

    def refuse(
        self, profile: Profile, status: int, message: str, headers: Mapping[str, str], extra: Headers
    ) -> Response:
        return datadog(status, failed(profile, status, message).to_json())


APM_STYLE = Style()
DATADOG_STYLE = DatadogStyle()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One intake protocol as served: its ``profile``, its HTTP ``style``.

    ``rum``: browser routes (origin checks, CORS, anonymous RUM credentials);
    ``batch_by_line``: batches are the events of ten lines, as APM Server reads
    its envelopes (else ten events at a time, as for items of JSON arrays);
    ``limits_keys``: the keys of ``Intake(limits=...)`` that apply, first found
    wins (RUM takes APM's), else the profile's own limits.
    """

    profile: Profile
    style: Style = APM_STYLE
    rum: bool = False
    batch_by_line: bool = False
    limits_keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, profile: Profile | str, style: Style | None = None) -> Endpoint:
        """An endpoint for a profile of one's own: APM's style unless ``style``
        says otherwise, with the media types of the body forms it reads."""
        profile = get_profile(profile)
        if style is None:
            media: tuple[str, ...] = ("application/x-ndjson",) if "ndjson" in profile.forms else ()
            if profile.forms - {"ndjson"}:
                media += ("application/json",)
            style = Style(media)
        return cls(profile, style, limits_keys=(profile.name,))


def builtin_endpoints() -> dict[str, Endpoint]:
    """The intake paths of APM Server and Datadog, with their endpoints."""
    apm_endpoint = Endpoint(get_profile("apm"), batch_by_line=True, limits_keys=("apm",))
    rum = Endpoint(get_profile("rum"), rum=True, batch_by_line=True, limits_keys=("rum", "apm"))
    return {
        "/intake/v2/events": apm_endpoint,
        "/intake/v2/rum/events": rum,
        "/intake/v3/rum/events": rum,
        "/api/v2/prodlytics": Endpoint(get_profile("prodlytics"), DATADOG_STYLE, limits_keys=("prodlytics",)),
    }
