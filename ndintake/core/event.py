"""The accepted-event record handed to the caller."""

from __future__ import annotations

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


class Event:
    """One accepted event.

    ``kind`` is the event type (``transaction``, ``span``, ``error``, ``metricset``,
    ``log``); ``data`` the parsed object inside the type key (for
    ``{"span": {...}}`` it is the ``{...}``); ``raw`` the line's bytes as received
    (after decompression); ``line`` its 1-based line number in the body (0 for an
    item of a JSON array). ``abbreviated`` is true for RUM v3 events (short keys;
    :meth:`expanded` gives the long form); ``parent`` is the RUM v3 transaction
    a span or metricset came inside. Treat events as read-only: they are not
    frozen only because a frozen class costs five times more to create.

    An event the byte scanner took (see :mod:`ndintake.core.bytecheck`) parses
    ``data`` from ``raw`` when it is first read, then keeps it: a consumer that
    only forwards ``raw`` never pays for the parse.
    """

    __slots__ = ("kind", "_data", "raw", "line", "abbreviated", "parent", "_parse")

    def __init__(
        self,
        kind: str,
        data: dict[str, Any] | None,
        raw: bytes,
        line: int,
        abbreviated: bool = False,
        parent: dict[str, Any] | None = None,
        parse: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> None:
        """``data`` None with ``parse``: ``data`` is ``parse(raw)``, parsed on first read."""
        self.kind = kind
        self._data = data
        self.raw = raw
        self.line = line
        self.abbreviated = abbreviated
        self.parent = parent
        self._parse = parse

    @property
    def data(self) -> dict[str, Any]:
        """The parsed object inside the type key (parsed from ``raw`` on first read if not given)."""
        data = self._data
        if data is None:
            assert self._parse is not None
            data = self._data = self._parse(self.raw)
        return data

    @property
    def data_parsed(self) -> bool:
        """Whether ``data`` is in memory (given, or read once)."""
        return self._data is not None

    @property
    def raw_is_data(self) -> bool:
        """True when ``raw`` is ``{"<type>": data}`` and nothing else, checked
        (events an accept check took unparsed): the bytes of the value in ``raw`` then
        stand for ``data`` without parsing it (what the sinks write)."""
        return self._parse is not None

    def _fields(self) -> tuple[Any, ...]:
        return (self.kind, self.data, self.raw, self.line, self.abbreviated, self.parent)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Event)
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return (
            f"Event(kind={self.kind!r}, data={self.data!r}, raw={self.raw!r}, line={self.line!r}, "
            f"abbreviated={self.abbreviated!r}, parent={self.parent!r})"
        )

    def expanded(self) -> dict[str, Any]:
        """``data`` in long-key (intake v2) form: RUM v3's abbreviated keys are
        expanded (see the README's key mapping); other events are returned as is."""
        if not self.abbreviated or _expansion is None:  # only a registered protocol abbreviates
            return self.data
        return _expansion(self.kind, self.data, self.parent)

    def facets(self) -> dict[str, object]:
        """``data`` flattened into dotted facet paths (see :func:`ndintake.facets`)."""
        return facets(self.data)
