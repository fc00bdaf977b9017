"""Datadog's response body."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ...core.result import IntakeResult

# Titles as Datadog words them (HTTPStatus phrases vary between Python versions).
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def datadog_response(result: IntakeResult) -> dict[str, Any]:
    """Datadog's body: ``{}`` on 202, else ``{"errors": [{"status", "title", "detail"}]}``
    with the status as a string."""
    if not result.errors:
        return {}
    errors = []
    for error in result.errors:
        title = _TITLES.get(error.status) or HTTPStatus(error.status).phrase
        errors.append({"status": str(error.status), "title": title, "detail": error.message})
    return {"errors": errors}
