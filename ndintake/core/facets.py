"""Custom attributes as facets: nested objects flattened into dotted paths."""

from __future__ import annotations

from typing import Any, Iterator


def facets(item: dict[str, Any]) -> dict[str, object]:
    """Flatten ``item`` into ``{dotted.path: value}``, as Datadog indexes attributes.

    ``{"customer": {"tier": "premium"}}`` gives ``{"customer.tier": "premium"}``
    (searchable as ``@customer.tier:premium``). Arrays, scalars and ``null`` are
    leaves; an empty object gives no facet. A key that already contains a dot is
    kept as it is, so ``{"a.b": 1}`` and ``{"a": {"b": 2}}`` name the same facet:
    the one that comes later in the item (depth first, in key order) wins.
    Works without recursion, so any nesting depth is fine.
    """
    flat: dict[str, object] = {}
    stack: list[tuple[str, Iterator[tuple[str, Any]]]] = [("", iter(item.items()))]
    while stack:
        prefix, entries = stack[-1]
        for key, value in entries:
            path = prefix + key
            if type(value) is dict:
                stack.append((path + ".", iter(value.items())))
                break
            flat.pop(path, None)  # so the later value also comes later in the order
            flat[path] = value
        else:
            stack.pop()
    return flat
