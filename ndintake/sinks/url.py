"""Sink URLs: ``scheme://host:port/path?name=value&...``, read strictly."""

from __future__ import annotations

from typing import Callable, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")


class SinkURL:
    """A parsed sink URL. Options are taken one by one with :meth:`take`;
    :meth:`done` then refuses any option nobody took, so a typo never passes
    silently. Every problem is a ``ValueError`` naming the URL."""

    def __init__(self, spec: str, *, default_port: int) -> None:
        self.spec = spec
        parts = urlsplit(spec)
        self.scheme = parts.scheme
        try:
            self.host = parts.hostname or "127.0.0.1"
            self.port = parts.port or default_port
        except ValueError as exc:
            raise self.error(str(exc)) from None
        self.username = parts.username
        self.password = parts.password
        self.path = parts.path
        self._options: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
            if name in self._options:
                raise self.error(f"option {name!r} given twice")
            self._options[name] = value

    def error(self, message: str) -> ValueError:
        return ValueError(f"bad sink {self.spec!r}: {message}")

    def take(self, name: str, default: T, convert: Callable[[str], T]) -> T:
        """The option ``name`` converted (``default`` when absent)."""
        if name not in self._options:
            return default
        raw = self._options.pop(name)
        try:
            return convert(raw)
        except ValueError as exc:
            raise self.error(f"option {name}={raw!r}: {exc}") from None

    def require(self, name: str) -> str:
        """The option ``name``, which must be given and not empty."""
        value = self.take(name, "", str)
        if not value:
            raise self.error(f"option {name}= is required")
        return value

    def done(self) -> None:
        """Refuse options nobody took."""
        if self._options:
            raise self.error(f"unknown option(s) {', '.join(sorted(self._options))}")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be 1 or 0")
