"""APM Server's response body."""

from __future__ import annotations

from typing import Any

from ...core.result import IntakeResult


def apm_response(result: IntakeResult) -> dict[str, Any]:
    """APM Server's body: ``{"accepted": N, "errors": [{"message", "document"}]}``."""
    body: dict[str, Any] = {"accepted": result.accepted}
    if result.errors:
        body["errors"] = [error.to_json() for error in result.errors]
    return body
