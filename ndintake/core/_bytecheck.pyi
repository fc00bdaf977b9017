"""Type stubs of the compiled scanner (``_bytecheck.c``)."""

from typing import Any

MAX_DEPTH: int
MAX_PROPS: int

class Checker:
    """``Checker(nodes, keys, whole=False)``: ``check(line)`` is the line's key if its value is valid, else None."""

    def __init__(
        self, nodes: tuple[tuple[Any, ...], ...], keys: tuple[tuple[str, bytes, int], ...], whole: bool = False
    ) -> None: ...
    def __call__(self, line: bytes) -> str | None: ...
