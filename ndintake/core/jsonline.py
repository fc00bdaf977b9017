"""JSON lines: parse one line (with APM Server's leniency for trailing bytes), its
first key, and its text as an error's ``document``. Used by every reader."""

from __future__ import annotations

import re
from typing import Any

import orjson

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_QUOTE = re.compile(rb"[\"']")
_TRAILING = ("unexpected content after document", "trailing characters")  # orjson's wordings
_BAD_UTF8 = ("str is not valid UTF-8",)


def text(line: bytes) -> str:
    """A line as the ``document`` of an error."""
    return line.decode("utf-8", "replace")


def first_key(line: bytes) -> str:
    """The first quoted string of a line: how APM Server tells a line's type."""
    match = _QUOTE.search(line)
    if match is None:
        return ""
    start = match.end()
    end = line.find(match.group(), start)
    return line[start : end if end >= 0 else len(line)].decode("utf-8", "replace")


#: A JSON string escape that is an escaped backslash, a surrogate pair, or (group 1)
#: a lone surrogate. Matching from the left keeps escapes aligned: ``\\ud800``
#: is a backslash and the text "ud800".
_ESCAPE = re.compile(
    rb"\\(?:\\|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2}))"
)
_STRING_ERRORS = ("str is not valid UTF-8", "no low surrogate", "invalid high surrogate", "invalid low surrogate")


def _lone_surrogate(match: re.Match[bytes]) -> bytes:
    return b"\\ufffd" if match.group(1) else match.group(0)


def repair_strings(line: bytes) -> bytes:
    """The line with what APM Server's decoder reads as U+FFFD written as such:
    bytes that are not UTF-8 (json-iterator keeps them, and Go's encoder writes
    U+FFFD for them) and lone surrogate escapes (json-iterator's string reader)."""
    fixed = line.decode("utf-8", "replace").encode("utf-8")
    return _ESCAPE.sub(_lone_surrogate, fixed) if b"\\" in fixed else fixed


def only_value(line: bytes) -> Any:
    """The value under the only key of a one-key object line known to be valid
    JSON (one the byte scanner took): parsed, no repair needed."""
    return _loads(line).popitem()[1]


def parse_line(line: bytes, strict: bool, repair: bool = False) -> Any:
    """Parse a line; unless ``strict``, a complete value followed by junk (any
    bytes, invalid UTF-8 included) counts, as APM Server ignores what follows.
    With ``repair`` (the APM profiles), invalid UTF-8 and lone surrogate escapes
    become U+FFFD (:func:`repair_strings`). Raises orjson.JSONDecodeError."""
    try:
        return _loads(line)
    except _JSONDecodeError as exc:
        if repair and exc.msg.startswith(_STRING_ERRORS):
            line = repair_strings(line)
            try:
                return _loads(line)
            except _JSONDecodeError as again:
                exc = again
        if strict or not exc.msg.startswith(_TRAILING + _BAD_UTF8):
            raise exc from None
        # orjson counts characters; find where the value ends in the decoded text
        text = line.decode("utf-8", "replace")
        try:
            _loads(text)
        except _JSONDecodeError as inner:
            if inner.msg.startswith(_TRAILING):
                value = text[: inner.pos].encode("utf-8")
                if line.startswith(value):  # no bad byte inside the value itself
                    return _loads(value)
        raise exc from None
