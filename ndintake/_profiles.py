"""Profiles: what differs between intake protocols (keys, schemas, limits, body shape)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ._errors import NdintakeError
from ._limits import Limits
from ._result import IntakeResult, apm_response
from ._schemas import Validator


@dataclass(frozen=True, slots=True)
class Profile:
    """One intake protocol.

    ``metadata``: the keys a first (metadata) line may have, with their schema;
    ``events``: event-line keys with theirs; ``keep``: per kind, a predicate that
    is False for a valid event the protocol discards without an error;
    ``render``: the response body.
    """

    name: str
    metadata: dict[str, Validator]
    events: dict[str, Validator]
    limits: Limits = field(default_factory=Limits)
    keep: dict[str, Callable[[dict[str, Any]], bool]] = field(default_factory=dict)
    render: Callable[[IntakeResult], dict[str, Any]] = apm_response

    @property
    def metadata_required(self) -> str:
        """The message for a first line that is not metadata."""
        return " or ".join(f'"{key}"' for key in self.metadata) + " required"


def _keep_metricset(data: dict[str, Any]) -> bool:
    """APM Server drops a metricset with transaction fields unless it carries span
    self-time samples (breakdown metrics it computes itself), without an error."""
    if data.get("transaction") is None:
        return True
    samples = data.get("samples") or {}
    return data.get("span") is not None and (
        "span.self_time.count" in samples or "span.self_time.sum.us" in samples
    )


_APM = Profile(
    name="apm",
    metadata={
        "metadata": Validator("metadata", "apm/metadata"),
        "m": Validator("m", "rumv3/metadata"),
    },
    events={kind: Validator(kind, f"apm/{kind}") for kind in ("transaction", "span", "error", "metricset", "log")},
    keep={"metricset": _keep_metricset},
)

PROFILES: dict[str, Profile] = {_APM.name: _APM}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; raises :class:`NdintakeError` for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise NdintakeError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
