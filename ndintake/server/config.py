"""``ndintake serve``'s configuration: each option from a flag, an environment
variable (``NDINTAKE_...``) or a TOML file (``--config FILE``), in that order of
precedence, else its default.

Every option is one row of :data:`OPTIONS`: its file key (APM Server's name
where it has one, dotted for tables: ``auth.anonymous.allow_agent`` is
``[auth.anonymous] allow_agent = [...]``), its flag, its type and default. The
environment variable is ``NDINTAKE_`` and the key in upper case with dots as
underscores (``NDINTAKE_AUTH_SECRET_TOKEN``). Bad values and unknown keys are a
:class:`ConfigError` (``ndintake serve`` exits 2 with its message).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .auth import DEFAULT_ALLOW_AGENT
from ..cli.args import non_negative_float, port_number, positive_float, positive_int
from .handler import DEFAULT_ADMISSION_WAIT, DEFAULT_MAX_CONCURRENT_DECODERS, DEFAULT_TIMEOUT
from ..core.limits import DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_EVENT_SIZE
from .ratelimit import DEFAULT_EVENTS_PER_SECOND, DEFAULT_MAX_CLIENTS
from ..sinks import SINK_SPELLINGS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["OPTIONS", "ConfigError", "Option", "add_options", "env_name", "load_file", "render", "resolve"]

#: Seconds a connection may take to send a request's headers.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Open connections per worker, beyond which new ones are closed at once.
DEFAULT_MAX_CONNECTIONS = 1000
#: Seconds to wait for requests in flight on SIGINT/SIGTERM.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENV_PREFIX = "NDINTAKE_"
MASK = "********"
#: The environment variable naming the config file when ``--config`` is not given.
CONFIG_ENV = "NDINTAKE_CONFIG"


class ConfigError(Exception):
    """A bad configuration: an unknown key, a value of the wrong type, an unreadable file."""


def _text(value: str) -> str:
    return value


def _names(value: str) -> list[str]:
    """A comma-separated list (empty: none)."""
    return [name.strip() for name in value.split(",") if name.strip()]


def _header_names(value: str) -> list[str]:
    """A comma-separated list of HTTP header names (empty: none)."""
    names = _names(value)
    for name in names:
        if not _TOKEN.fullmatch(name):
            raise argparse.ArgumentTypeError(f"not an HTTP header name: {name!r}")
    return names


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


_log_level = _one_of(*LOG_LEVELS)


@dataclass(frozen=True)
class Option:
    """One ``serve`` option. ``kind``: ``str``, ``int``, ``float``, ``bool`` or
    ``list`` (of strings); ``parse``: reads the flag's (or environment
    variable's) text; ``dest``: the attribute of the parsed arguments."""

    key: str
    flag: str
    kind: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    secret: bool = False
    append: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return env_name(self.key)


def env_name(key: str) -> str:
    """The environment variable of file key ``key``."""
    return ENV_PREFIX + key.upper().replace(".", "_")


OPTIONS: tuple[Option, ...] = (
    Option("host", "--host", "str", _text, "127.0.0.1", "address to listen on (default 127.0.0.1)", "ADDR"),
    Option("port", "--port", "int", port_number, 8200, "port (default 8200, APM Server's; 0: any free port)", "N"),
    Option(
        "sink",
        "--sink",
        "str",
        _text,
        "jsonl:events.jsonl",
        f"where accepted events go: {SINK_SPELLINGS} (default jsonl:events.jsonl, appended to)",
        "SINK",
    ),
    Option(
        "auth.secret_token",
        "--secret-token",
        "str",
        _text,
        None,
        "require 'Authorization: Bearer T'",
        "T",
        secret=True,
    ),
    Option(
        "auth.api_key",
        "--api-key",
        "list",
        _text,
        [],
        "accept 'Authorization: ApiKey base64(K)' (K as given, e.g. id:key) and, for prodlytics, "
        "'DD-API-KEY: K'; repeatable (environment: comma-separated)",
        "K",
        secret=True,
        append=True,
    ),
    Option(
        "auth.anonymous.enabled",
        "--anonymous",
        "bool",
        _boolean,
        True,
        "with a token or key set, let RUM routes take requests without credentials from the allowed "
        "agents and services, rate limited (default on; --no-anonymous: off, 401)",
    ),
    Option(
        "auth.anonymous.allow_agent",
        "--anonymous-allow-agent",
        "list",
        _names,
        list(DEFAULT_ALLOW_AGENT),
        "agent names anonymous requests may come from, comma-separated "
        f"(default {','.join(DEFAULT_ALLOW_AGENT)}; empty: any); others get 403",
        "NAMES",
    ),
    Option(
        "auth.anonymous.allow_service",
        "--anonymous-allow-service",
        "list",
        _names,
        [],
        "service names anonymous requests may come from, comma-separated (default: any); others get 403",
        "NAMES",
    ),
    Option(
        "auth.anonymous.rate_limit.event_limit",
        "--rate-limit",
        "float",
        positive_float,
        None,
        "events per second per client IP for anonymous requests (burst 3N); default "
        f"{DEFAULT_EVENTS_PER_SECOND} with a token or key set (APM Server's), else no limit",
        "N",
    ),
    Option(
        "auth.anonymous.rate_limit.ip_limit",
        "--rate-limit-ips",
        "int",
        positive_int,
        DEFAULT_MAX_CLIENTS,
        f"client IPs with a rate limit of their own; more share them (default {DEFAULT_MAX_CLIENTS})",
        "N",
    ),
    Option(
        "rum.allow_origins",
        "--allow-origin",
        "list",
        _names,
        ["*"],
        "origins RUM routes answer, comma-separated, * matches any run of characters (default *: all); others get 403",
        "ORIGINS",
    ),
    Option(
        "rum.allow_headers",
        "--allow-header",
        "list",
        _header_names,
        [],
        "request headers RUM preflights allow besides Content-Type, Content-Encoding and Accept, comma-separated",
        "HEADERS",
    ),
    Option(
        "profiles",
        "--profile",
        "list",
        _text,
        [],
        "serve a profile of your own JSON Schemas at PATH: DIR holds one <kind>.json per event kind; "
        "options after ';': classify=key (default, envelope keys) or classify=field:NAME (a discriminator "
        "field), metadata=FILE (the schema of a required first item), response=apm (default) or datadog "
        "(Datadog's answers: JSON bodies, API keys, 408 on timeouts); repeatable (environment: comma-separated)",
        "PATH=DIR[;OPTION=VALUE...]",
        append=True,
    ),
    Option(
        "max_event_size",
        "--max-event-size",
        "int",
        positive_int,
        DEFAULT_MAX_EVENT_SIZE,
        f"APM and RUM: refuse lines of N bytes or more (default {DEFAULT_MAX_EVENT_SIZE})",
        "N",
    ),
    Option(
        "max_body_size",
        "--max-body-size",
        "int",
        positive_int,
        DEFAULT_MAX_BODY_SIZE,
        f"APM and RUM: stop a request past N decompressed bytes with 413 (default {DEFAULT_MAX_BODY_SIZE}, 64 MiB)",
        "N",
    ),
    Option(
        "read_timeout",
        "--timeout",
        "float",
        non_negative_float,
        DEFAULT_TIMEOUT,
        f"per-request timeout (default {DEFAULT_TIMEOUT:g} s; 0: none)",
        "S",
    ),
    Option("workers", "--workers", "int", positive_int, 1, "worker processes sharing the port (default 1)", "N"),
    Option(
        "max_concurrent_decoders",
        "--max-concurrent-decoders",
        "int",
        positive_int,
        DEFAULT_MAX_CONCURRENT_DECODERS,
        f"intake requests reading their body at once, per worker (default {DEFAULT_MAX_CONCURRENT_DECODERS})",
        "N",
    ),
    Option(
        "admission_wait",
        "--admission-wait",
        "float",
        non_negative_float,
        DEFAULT_ADMISSION_WAIT,
        f"how long a request waits for a decoder before 503 (default {DEFAULT_ADMISSION_WAIT:g} s)",
        "S",
    ),
    Option(
        "header_timeout",
        "--header-timeout",
        "float",
        positive_float,
        DEFAULT_HEADER_TIMEOUT,
        f"close connections that take longer to send request headers (default {DEFAULT_HEADER_TIMEOUT:g} s)",
        "S",
    ),
    Option(
        "max_connections",
        "--max-connections",
        "int",
        positive_int,
        DEFAULT_MAX_CONNECTIONS,
        f"open connections per worker; more are closed at once (default {DEFAULT_MAX_CONNECTIONS}, "
        "lowered to fit the descriptor limit)",
        "N",
    ),
    Option(
        "shutdown_timeout",
        "--grace",
        "float",
        non_negative_float,
        DEFAULT_SHUTDOWN_TIMEOUT,
        f"on SIGINT/SIGTERM, wait this long for requests in flight (default {DEFAULT_SHUTDOWN_TIMEOUT:g} s)",
        "S",
    ),
    Option(
        "ssl.certificate",
        "--ssl-certfile",
        "str",
        _text,
        None,
        "serve HTTPS with this PEM certificate (chain); needs --ssl-keyfile unless the file holds the key",
        "FILE",
    ),
    Option("ssl.key", "--ssl-keyfile", "str", _text, None, "the certificate's PEM private key", "FILE"),
    Option(
        "log_level",
        "--log-level",
        "str",
        _log_level,
        "info",
        f"one of {', '.join(LOG_LEVELS)} (default info)",
        "LEVEL",
    ),
    Option(
        "log_format",
        "--log-format",
        "str",
        _one_of("text", "json"),
        "text",
        "text (default) or json: one JSON object per line, on stderr",
        "FORMAT",
    ),
    Option(
        "metrics",
        "--metrics",
        "bool",
        _boolean,
        True,
        "answer GET /metrics (Prometheus text format; on by default, --no-metrics turns it off)",
    ),
    Option(
        "loop",
        "--loop",
        "str",
        _one_of("asyncio", "uvloop"),
        "asyncio",
        "event loop: asyncio (default) or uvloop (under overload uvloop left connections waiting in the "
        "accept queue for seconds; see README)",
        "LOOP",
    ),
)

_BY_KEY = {option.key: option for option in OPTIONS}


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add every option's flag to ``parser``, each defaulting to None (not given);
    :func:`resolve` fills in the environment, the file and the defaults."""
    for option in OPTIONS:
        where = f" [{option.key}; ${option.env}]"
        if option.kind == "bool":
            parser.add_argument(
                option.flag, action=argparse.BooleanOptionalAction, default=None, help=option.help + where
            )
        elif option.append:
            parser.add_argument(
                option.flag, action="append", default=None, metavar=option.metavar, help=option.help + where
            )
        else:
            parser.add_argument(
                option.flag, type=option.parse, default=None, metavar=option.metavar, help=option.help + where
            )


def load_file(path: str) -> dict[str, Any]:
    """The options set in TOML file ``path``, by dotted key, checked and converted."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    stack: list[tuple[str, dict[str, Any]]] = [("", document)]
    while stack:
        prefix, table = stack.pop()
        for name, value in table.items():
            key = prefix + name
            option = _BY_KEY.get(key)
            if option is None:
                if isinstance(value, dict) and any(known.startswith(key + ".") for known in _BY_KEY):
                    stack.append((key + ".", value))
                    continue
                raise ConfigError(f"{path}: unknown key {key!r}")
            try:
                values[key] = _from_file(option, value)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ConfigError(f"{path}: {key}: {exc}") from None
    return values


def _from_file(option: Option, value: Any) -> Any:
    """A TOML value as the option's type (strings are parsed as on the command line)."""
    kind = option.kind
    if kind == "list":
        if isinstance(value, str):
            value = _names(value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            if option.append:  # one parsed value per item
                return [option.parse(item) for item in value]
            return [name for item in value for name in option.parse(item)]  # each item checked like a flag
        raise ValueError(f"expected a list of strings, got {_shown(value)}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {_shown(value)}")
    if isinstance(value, bool):
        raise ValueError(f"expected {_KIND_NAMES[kind]}, got {_shown(value)}")
    if kind == "str":
        if isinstance(value, str):
            return option.parse(value)
    elif kind == "int":
        if isinstance(value, int):
            return option.parse(str(value))
    elif isinstance(value, (int, float)):
        return option.parse(repr(value))
    raise ValueError(f"expected {_KIND_NAMES[kind]}, got {_shown(value)}")


_KIND_NAMES = {"str": "a string", "int": "a whole number", "float": "a number"}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return f"a {'table' if isinstance(value, dict) else 'list'}"
    return repr(value)


def _from_env(option: Option, text: str) -> Any:
    if option.kind == "list":
        return [option.parse(item) for item in _names(text)] if option.append else option.parse(text)
    return option.parse(text)


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """Fill each option of ``args`` from, in order, its flag, its environment
    variable, the ``--config`` file (else ``$NDINTAKE_CONFIG``), its default; return where each came from
    (``flag``, ``env``, ``file``, ``default``) by key. Raises :class:`ConfigError`."""
    path = getattr(args, "config", None) or environ.get(CONFIG_ENV)
    file = load_file(path) if path else {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        value = getattr(args, option.dest, None)
        source = "flag"
        if value is None and option.env in environ:
            try:
                value = _from_env(option, environ[option.env])
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ConfigError(f"${option.env}: {exc}") from None
            source = "env"
        if value is None and option.key in file:
            value, source = file[option.key], "file"
        if value is None:
            value, source = (list(option.default) if option.kind == "list" else option.default), "default"
        setattr(args, option.dest, value)
        sources[option.key] = source
    if args.rate_limit is None and (args.secret_token or args.api_key) and args.anonymous:
        args.rate_limit = float(DEFAULT_EVENTS_PER_SECOND)  # APM Server's anonymous rate limit
        sources["auth.anonymous.rate_limit.event_limit"] = "default"
    if args.ssl_keyfile and not args.ssl_certfile:
        raise ConfigError("ssl.key (--ssl-keyfile) needs ssl.certificate (--ssl-certfile)")
    return sources


def render(args: argparse.Namespace, sources: Mapping[str, str] | None = None) -> str:
    """The effective configuration of ``args`` as a TOML document, secrets
    masked; unset options are shown as comments. ``sources``: a comment on
    each value saying where it came from."""
    tables: dict[str, list[str]] = {}
    for option in OPTIONS:
        table, _, name = option.key.rpartition(".")
        value = getattr(args, option.dest, None)
        where = f"  # {sources[option.key]}" if sources and option.key in sources else ""
        if value is None:
            line = f"# {name} = (not set){where}"
        else:
            if option.secret:
                value = [MASK] * len(value) if isinstance(value, list) else MASK
            line = f"{name} = {_toml(value)}{where}"
        tables.setdefault(table, []).append(line)
    out: list[str] = []
    for table, lines in tables.items():
        if table:
            out.append(f"\n[{table}]")
        out.extend(lines)
    return "\n".join(out).lstrip("\n") + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
