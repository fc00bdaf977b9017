"""RUM v3: the abbreviated keys of Elastic's browser agent, and how to expand them.

Each table maps a short key to ``(long key, table for its value)``; a table of
None means the value is kept as it is (labels, headers, custom data: free-form
keys that are not abbreviations). Lists are expanded element by element.
"""

from __future__ import annotations

from typing import Any

Table = dict[str, tuple[str, "Table | None"]]

_NAME_VERSION: Table = {"n": ("name", None), "ve": ("version", None)}
_SERVICE: Table = {
    "a": ("agent", _NAME_VERSION),
    "en": ("environment", None),
    "fw": ("framework", _NAME_VERSION),
    "la": ("language", _NAME_VERSION),
    "n": ("name", None),
    "ru": ("runtime", _NAME_VERSION),
    "ve": ("version", None),
}
_USER: Table = {"em": ("email", None), "id": ("id", None), "ud": ("domain", None), "un": ("username", None)}
_SIZES: Table = {
    "dbs": ("decoded_body_size", None),
    "ebs": ("encoded_body_size", None),
    "ts": ("transfer_size", None),
}
_CONTEXT: Table = {
    "cu": ("custom", None),
    "g": ("tags", None),
    "p": ("page", {"rf": ("referer", None), "url": ("url", None)}),
    "q": (
        "request",
        {"en": ("env", None), "he": ("headers", None), "hve": ("http_version", None), "mt": ("method", None)},
    ),
    "r": ("response", {**_SIZES, "he": ("headers", None), "sc": ("status_code", None)}),
    "se": ("service", _SERVICE),
    "u": ("user", _USER),
}
_FRAME: Table = {
    "ap": ("abs_path", None),
    "cli": ("context_line", None),
    "cn": ("classname", None),
    "co": ("colno", None),
    "f": ("filename", None),
    "fn": ("function", None),
    "li": ("lineno", None),
    "mo": ("module", None),
    "poc": ("post_context", None),
    "prc": ("pre_context", None),
}
SPAN: Table = {
    "ac": ("action", None),
    "c": (
        "context",
        {
            "dt": (
                "destination",
                {
                    "ad": ("address", None),
                    "po": ("port", None),
                    "se": ("service", {"n": ("name", None), "rc": ("resource", None), "t": ("type", None)}),
                },
            ),
            "g": ("tags", None),
            "h": (
                "http",
                {"mt": ("method", None), "r": ("response", _SIZES), "sc": ("status_code", None), "url": ("url", None)},
            ),
            "se": ("service", {"a": ("agent", _NAME_VERSION), "n": ("name", None)}),
        },
    ),
    "d": ("duration", None),
    "id": ("id", None),
    "n": ("name", None),
    "o": ("outcome", None),
    "pi": ("parent_idx", None),
    "s": ("start", None),
    "sr": ("sample_rate", None),
    "st": ("stacktrace", _FRAME),
    "su": ("subtype", None),
    "sy": ("sync", None),
    "t": ("type", None),
}
_SAMPLE: Table = {"v": ("value", None)}
METRICSET: Table = {
    "sa": ("samples", {"ysc": ("span.self_time.count", _SAMPLE), "yss": ("span.self_time.sum.us", _SAMPLE)}),
    "y": ("span", {"su": ("subtype", None), "t": ("type", None)}),
}
TRANSACTION: Table = {
    "c": ("context", _CONTEXT),
    "d": ("duration", None),
    "exp": (
        "experience",
        {
            "cls": ("cls", None),
            "fid": ("fid", None),
            "lt": ("longtask", {"count": ("count", None), "max": ("max", None), "sum": ("sum", None)}),
            "tbt": ("tbt", None),
        },
    ),
    "id": ("id", None),
    "k": ("marks", None),
    "me": ("metricsets", METRICSET),
    "n": ("name", None),
    "o": ("outcome", None),
    "pid": ("parent_id", None),
    "rt": ("result", None),
    "ses": ("session", {"id": ("id", None), "seq": ("sequence", None)}),
    "sm": ("sampled", None),
    "sr": ("sample_rate", None),
    "t": ("type", None),
    "tid": ("trace_id", None),
    "y": ("spans", SPAN),
    "yc": ("span_count", {"dd": ("dropped", None), "sd": ("started", None)}),
}
_EXCEPTION: Table = {
    "at": ("attributes", None),
    "cd": ("code", None),
    "hd": ("handled", None),
    "mg": ("message", None),
    "mo": ("module", None),
    "st": ("stacktrace", _FRAME),
    "t": ("type", None),
}
_EXCEPTION["ca"] = ("cause", _EXCEPTION)
ERROR: Table = {
    "c": ("context", _CONTEXT),
    "cl": ("culprit", None),
    "ex": ("exception", _EXCEPTION),
    "id": ("id", None),
    "log": (
        "log",
        {
            "ln": ("logger_name", None),
            "lv": ("level", None),
            "mg": ("message", None),
            "pmg": ("param_message", None),
            "st": ("stacktrace", _FRAME),
        },
    ),
    "pid": ("parent_id", None),
    "tid": ("trace_id", None),
    "timestamp": ("timestamp", None),
    "x": ("transaction", {"n": ("name", None), "sm": ("sampled", None), "t": ("type", None)}),
    "xid": ("transaction_id", None),
}
METADATA: Table = {
    "l": ("labels", None),
    "n": ("network", {"c": ("connection", {"t": ("type", None)})}),
    "se": ("service", _SERVICE),
    "u": ("user", _USER),
}

#: The expansion table of each kind.
TABLES: dict[str, Table] = {
    "metadata": METADATA,
    "transaction": TRANSACTION,
    "span": SPAN,
    "error": ERROR,
    "metricset": METRICSET,
}


def expand(value: Any, table: Table) -> Any:
    """``value`` with its abbreviated keys replaced by the long ones (a new object).

    Keys a table does not know are kept as they are; a list's elements are
    expanded with the list's table. Nesting is followed with an explicit stack,
    so depth costs no recursion.
    """
    if not isinstance(value, (dict, list)):
        return value
    result: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Table, Any]] = [(value, table, result)]
    while stack:
        source, mapping, target = stack.pop()
        entries: list[tuple[str | None, Table | None, Any]]
        if isinstance(source, list):
            entries = [(None, mapping, item) for item in source]
        else:
            entries = []
            for key, item in source.items():
                name, sub = mapping.get(key, (key, None))
                entries.append((name, sub, item))
        for name, sub, item in entries:
            if sub is not None and isinstance(item, (dict, list)):
                child: Any = {} if isinstance(item, dict) else []
                stack.append((item, sub, child))
                item = child
            if name is None:
                target.append(item)
            else:
                target[name] = item
    return result


def expand_event(kind: str, data: dict[str, Any], parent: dict[str, Any] | None) -> dict[str, Any]:
    """A RUM v3 event in the long-key form of its intake v2 counterpart.

    A transaction loses its ``spans`` and ``metricsets`` (they are events of
    their own); a span or metricset from a transaction's ``y`` / ``me`` gains
    what v2 would carry: the trace, transaction and parent ids, or the
    transaction's name and type.
    """
    out: dict[str, Any] = expand(data, TABLES[kind])
    if kind == "transaction":
        out.pop("spans", None)
        out.pop("metricsets", None)
    elif parent is not None and kind == "span":
        spans = parent.get("y") or []
        index = data.get("pi")
        parent_span = spans[index] if type(index) is int and 0 <= index < len(spans) else None
        out["trace_id"] = parent.get("tid")
        out["transaction_id"] = parent.get("id")
        out["parent_id"] = parent_span.get("id") if isinstance(parent_span, dict) else parent.get("id")
    elif parent is not None and kind == "metricset":
        out["transaction"] = {"name": parent.get("n"), "type": parent.get("t")}
    return out


def _set(value: Any, fields: tuple[str, ...]) -> bool:
    """An object with one of ``fields`` not null: upstream's ``IsSet()`` of a
    small struct (metricset ``transaction`` and ``span`` references)."""
    return type(value) is dict and any(value.get(name) is not None for name in fields)


def is_internal_metricset(metricset: dict[str, Any]) -> bool:
    """A v2 metricset with ``transaction`` set (its name or type not null): APM
    Server computes transaction breakdowns itself and keeps it only with span
    self-time samples (apm-data v2 decoder.go, ``mapToMetricsetModel``)."""
    return _set(metricset.get("transaction"), ("name", "type"))


def keeps_metricset(metricset: dict[str, Any], short: bool = True) -> bool:
    """Whether APM Server keeps an internal metricset (a v2 one for which
    :func:`is_internal_metricset` holds, or one of a v3 transaction's ``me``):
    only with ``span`` set (its type or subtype not null) and a span self-time
    sample (apm-data ``SetInternalMetrics``; v3: the sample's value not null,
    rumv3 decoder.go ``mapToTransactionMetricsetModel``). The others are dropped
    without an error."""
    if short:
        samples = metricset.get("sa")
        return (
            _set(metricset.get("y"), ("t", "su"))
            and type(samples) is dict
            and (_set(samples.get("ysc"), ("v",)) or _set(samples.get("yss"), ("v",)))
        )
    samples = metricset.get("samples") or {}
    return _set(metricset.get("span"), ("type", "subtype")) and (
        "span.self_time.count" in samples or "span.self_time.sum.us" in samples
    )
