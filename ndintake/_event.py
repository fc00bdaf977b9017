"""The accepted-event record handed to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._facets import facets


@dataclass(slots=True)
class Event:
    """One accepted event.

    ``kind`` is the event type (``transaction``, ``span``, ``error``, ``metricset``,
    ``log``); ``data`` the parsed object inside the type key (for
    ``{"span": {...}}`` it is the ``{...}``); ``raw`` the line's bytes as received
    (after decompression); ``line`` its 1-based line number in the body.
    """

    kind: str
    data: dict[str, Any]
    raw: bytes
    line: int

    def facets(self) -> dict[str, object]:
        """``data`` flattened into dotted facet paths (see :func:`ndintake.facets`)."""
        return facets(self.data)
