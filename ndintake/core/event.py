"""The accepted-event record handed to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .facets import facets

#: ``expand(kind, data, parent) -> data in long keys``, for abbreviated events.
Expansion = Callable[[str, dict[str, Any], "dict[str, Any] | None"], dict[str, Any]]
_expansion: Expansion | None = None


def set_expansion(expand: Expansion) -> None:
    """Install how :meth:`Event.expanded` expands abbreviated events: set by the
    protocol whose readers make them (RUM v3, in :mod:`ndintake.profiles.apm`),
    so that the core knows no protocol's key tables."""
    global _expansion
    _expansion = expand


@dataclass(slots=True)
class Event:
    """One accepted event.

    ``kind`` is the event type (``transaction``, ``span``, ``error``, ``metricset``,
    ``log``); ``data`` the parsed object inside the type key (for
    ``{"span": {...}}`` it is the ``{...}``); ``raw`` the line's bytes as received
    (after decompression); ``line`` its 1-based line number in the body (0 for an
    item of a JSON array). ``abbreviated`` is true for RUM v3 events (short keys;
    :meth:`expanded` gives the long form); ``parent`` is the RUM v3 transaction
    a span or metricset came inside. Treat events as read-only: they are not
    frozen only because a frozen dataclass costs five times more to create.
    """

    kind: str
    data: dict[str, Any]
    raw: bytes
    line: int
    abbreviated: bool = False
    parent: dict[str, Any] | None = None

    def expanded(self) -> dict[str, Any]:
        """``data`` in long-key (intake v2) form: RUM v3's abbreviated keys are
        expanded (see the README's key mapping); other events are returned as is."""
        if not self.abbreviated or _expansion is None:  # only a registered protocol abbreviates
            return self.data
        return _expansion(self.kind, self.data, self.parent)

    def facets(self) -> dict[str, object]:
        """``data`` flattened into dotted facet paths (see :func:`ndintake.facets`)."""
        return facets(self.data)
