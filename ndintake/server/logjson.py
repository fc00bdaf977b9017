"""``ndintake serve --log-format json``: one JSON object per log record, per line."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import orjson

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
#: The arguments of uvicorn's access log line, in order.
_ACCESS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "pid", ...}``: the time in UTC (ISO 8601),
    the fields a record was given with ``extra=``, uvicorn's access-log fields
    (``client``, ``method``, ``path``, ``http_version``, ``status``) and the
    traceback as ``exc_info`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == len(_ACCESS):
            out.update(zip(_ACCESS, record.args))
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()
