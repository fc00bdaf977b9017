"""argparse ``type=`` functions for the command line: each parses one option value
or raises :class:`argparse.ArgumentTypeError`, which argparse reports as
``ndintake <command>: error: argument --name: <message>`` with exit status 2.

Shared by ``ndintake check`` and ``ndintake serve``.
"""

from __future__ import annotations

import argparse
import math

from ..core.decode import MAX_CODINGS, SUPPORTED_ENCODINGS

__all__ = [
    "content_encoding",
    "non_negative_float",
    "non_negative_int",
    "port_number",
    "positive_float",
    "positive_int",
]


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (sizes, counts)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of at least 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a rate)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of 0 or more (a duration where 0 may mean "off")."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def content_encoding(text: str) -> str:
    """``auto``, or a ``Content-Encoding`` value ndintake decodes: one coding or a
    comma list of at most ``MAX_CODINGS``, each in ``SUPPORTED_ENCODINGS``."""
    if text == "auto":
        return text
    codings = [c.strip().lower() for c in text.split(",")]
    known = ", ".join(SUPPORTED_ENCODINGS)
    for coding in codings:
        if coding not in SUPPORTED_ENCODINGS:
            raise argparse.ArgumentTypeError(f"unknown coding {coding!r}; expected auto or one or more of {known}")
    if len(codings) > MAX_CODINGS:
        raise argparse.ArgumentTypeError(f"at most {MAX_CODINGS} codings, got {len(codings)}")
    return text
