"""``ndintake serve``'s configuration: flags > NDINTAKE_* environment > TOML file >
defaults, ``--print-config``, bad configurations (exit 2), TLS, ``--version``."""

from __future__ import annotations

import http.client
import json
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ndintake
from ndintake import cli
from ndintake.server.config import MASK, OPTIONS, env_name

from httpkit import NDJSON, body_of
from servekit import LOOPBACK, ServeProcess, post

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ERRORS = body_of("intake-v2/errors.ndjson")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv("NDINTAKE_CONFIG", raising=False)


def printed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert cli.main(["serve", "--print-config", *argv]) == 0
    return tomllib.loads(capsys.readouterr().out)


def test_environment_names() -> None:
    assert env_name("auth.anonymous.rate_limit.event_limit") == "NDINTAKE_AUTH_ANONYMOUS_RATE_LIMIT_EVENT_LIMIT"
    assert {option.key for option in OPTIONS} >= {
        "host",
        "max_event_size",
        "read_timeout",
        "max_concurrent_decoders",
        "auth.secret_token",
        "auth.api_key",
        "auth.anonymous.enabled",
        "auth.anonymous.allow_agent",
        "auth.anonymous.allow_service",
        "auth.anonymous.rate_limit.event_limit",
        "auth.anonymous.rate_limit.ip_limit",
        "rum.allow_origins",
        "rum.allow_headers",
    }


def test_defaults_print_as_toml(capsys: pytest.CaptureFixture[str]) -> None:
    config = printed(capsys)
    assert config["port"] == 8200 and config["read_timeout"] == 30.0 and config["max_event_size"] == 307200
    assert config["auth"]["anonymous"] == {
        "enabled": True,
        "allow_agent": ["rum-js", "js-base"],
        "allow_service": [],
        "rate_limit": {"ip_limit": 1000},  # no event limit without credentials
    }
    assert config["rum"]["allow_origins"] == ["*"] and config["rum"]["allow_headers"] == []
    assert "secret_token" not in config["auth"]


def test_precedence_flag_over_env_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ndintake.toml"
    path.write_text(
        'read_timeout = 5\nmax_event_size = 1000\nport = 9000\nsink = "null"\n'
        "[auth]\n"
        'secret_token = "from-file"\n'
        'api_key = ["id:one", "id:two"]\n'
        "[auth.anonymous]\n"
        'allow_service = ["shop"]\n'
        "rate_limit.ip_limit = 7\n"
        "[rum]\n"
        'allow_origins = ["https://*.example.com"]\n'
        'allow_headers = ["Authorization"]\n'
    )
    monkeypatch.setenv("NDINTAKE_MAX_EVENT_SIZE", "2000")
    monkeypatch.setenv("NDINTAKE_PORT", "9001")
    monkeypatch.setenv("NDINTAKE_AUTH_ANONYMOUS_ALLOW_AGENT", "rum-js, python")
    monkeypatch.setenv("NDINTAKE_AUTH_ANONYMOUS_ENABLED", "off")
    config = printed(capsys, "--config", str(path), "--port", "9002")
    assert config["port"] == 9002  # flag
    assert config["max_event_size"] == 2000  # env over file
    assert config["read_timeout"] == 5.0 and config["sink"] == "null"  # file
    assert config["max_concurrent_decoders"] == 8  # default
    assert config["auth"]["secret_token"] == MASK
    assert config["auth"]["api_key"] == [MASK, MASK]
    anonymous = config["auth"]["anonymous"]
    assert anonymous["enabled"] is False and anonymous["allow_agent"] == ["rum-js", "python"]
    assert anonymous["allow_service"] == ["shop"] and anonymous["rate_limit"] == {"ip_limit": 7}
    assert config["rum"]["allow_origins"] == ["https://*.example.com"]
    assert config["rum"]["allow_headers"] == ["Authorization"]


def test_the_file_can_be_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.toml").write_text("workers = 3\n")
    (tmp_path / "b.toml").write_text("workers = 4\n")
    monkeypatch.setenv("NDINTAKE_CONFIG", str(tmp_path / "a.toml"))
    assert printed(capsys)["workers"] == 3
    assert printed(capsys, "--config", str(tmp_path / "b.toml"))["workers"] == 4  # the flag wins


def test_print_config_says_where_values_came_from_and_hides_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[auth]\nsecret_token = "hunter2"\n')
    monkeypatch.setenv("NDINTAKE_AUTH_API_KEY", "id:k1,id:k2")
    assert cli.main(["serve", "--print-config", "--config", str(path), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "hunter2" not in text and "id:k1" not in text
    assert 'secret_token = "********"  # file' in text
    assert 'api_key = ["********", "********"]  # env' in text
    assert "workers = 2  # flag" in text
    assert "event_limit = 300.0  # default" in text  # APM Server's anonymous limit, on with credentials
    assert tomllib.loads(text)["auth"]["anonymous"]["rate_limit"]["event_limit"] == 300.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prot = 8200\n", "unknown key 'prot'"),
        ("[auth]\nsecret = 'x'\n", "unknown key 'auth.secret'"),
        ("[auth.anonymous.rate_limit]\nburst = 3\n", "unknown key 'auth.anonymous.rate_limit.burst'"),
        ("port = 'abc'\n", "port: expected a whole number, got 'abc'"),
        ("port = 70000\n", "port: must be a port from 0 to 65535, got 70000"),
        ("read_timeout = -1\n", "read_timeout: must be 0 or more, got -1"),
        ("max_event_size = 1.5\n", "max_event_size: expected a whole number, got 1.5"),
        ("workers = true\n", "workers: expected a whole number, got true"),
        ("[auth.anonymous]\nenabled = 'yes'\n", "auth.anonymous.enabled: expected true or false, got 'yes'"),
        ("[rum]\nallow_origins = [1]\n", "rum.allow_origins: expected a list of strings, got a list"),
        ("[rum]\nallow_headers = ['X-Ok', 'bad header']\n", "rum.allow_headers: not an HTTP header name: 'bad header'"),
        ("log_level = 'loud'\n", "log_level: expected one of critical, error, warning, info, debug, got 'loud'"),
        ("host = \n", "not valid TOML"),
        ("[ssl]\nkey = 'k.pem'\n", "ssl.key (--ssl-keyfile) needs ssl.certificate (--ssl-certfile)"),
    ],
)
def test_bad_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    assert cli.main(["serve", "--print-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ndintake serve: ") and message in err, err


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NDINTAKE_PORT", "eighty", "$NDINTAKE_PORT: expected a whole number, got 'eighty'"),
        ("NDINTAKE_AUTH_ANONYMOUS_ENABLED", "maybe", "$NDINTAKE_AUTH_ANONYMOUS_ENABLED: expected true or false"),
        ("NDINTAKE_AUTH_ANONYMOUS_RATE_LIMIT_EVENT_LIMIT", "0", "must be more than 0"),
    ],
)
def test_bad_environment_values_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    assert cli.main(["serve", "--print-config"]) == 2
    assert message in capsys.readouterr().err


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ndintake", *argv], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.slow
def test_configuration_errors_have_no_traceback(tmp_path: Path) -> None:
    missing = run("serve", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "cannot read config file" in missing.stderr and "No such file" in missing.stderr
    (tmp_path / "bad.toml").write_text("[auth]\nsecret_tokn = 'x'\n")
    unknown = run("serve", "--config", str(tmp_path / "bad.toml"))
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "unknown key 'auth.secret_tokn'" in unknown.stderr
    flag = run("serve", "--max-event-size", "0")
    assert flag.returncode == 2 and "argument --max-event-size: must be at least 1, got 0" in flag.stderr


@pytest.mark.slow
def test_version_everywhere() -> None:
    for argv in (["--version"], ["serve", "--version"], ["check", "--version"]):
        done = run(*argv)
        assert (done.returncode, done.stdout.strip()) == (0, f"ndintake {ndintake.__version__}"), argv


def line_of(size: int) -> bytes:
    """An error event line of exactly ``size`` bytes."""
    head = b'{"error":{"id":"0123456789abcdef","exception":{"message":"'
    tail = b'"}}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_takes_its_options_from_file_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The running server, not only --print-config: max_event_size from the file
    is overridden by the environment, the secret token from the environment by a
    flag, and the file's allow_origins applies."""
    path = tmp_path / "ndintake.toml"
    path.write_text(
        'max_event_size = 500\n[auth]\nsecret_token = "file-token"\n[rum]\nallow_origins = ["https://ok.test"]\n'
    )
    monkeypatch.setenv("NDINTAKE_MAX_EVENT_SIZE", "1000")
    monkeypatch.setenv("NDINTAKE_AUTH_SECRET_TOKEN", "env-token")
    metadata = body_of("intake-v2/minimal-service.ndjson").split(b"\n")[0] + b"\n"
    server = ServeProcess("--config", str(path), "--sink", "null", "--secret-token", "flag-token")
    try:
        auth = {**NDJSON, "Authorization": "Bearer flag-token"}
        assert post(server.port, "/intake/v2/events", metadata + line_of(800) + b"\n", auth)[0] == 202  # 1000, not 500
        status, body = post(server.port, "/intake/v2/events", metadata + line_of(1000) + b"\n", auth)
        assert status == 400 and b"event exceeded the permitted size" in body
        for token in ("env-token", "file-token"):
            assert (
                post(server.port, "/intake/v2/events", ERRORS, {**NDJSON, "Authorization": f"Bearer {token}"})[0] == 401
            )
        rum = (
            b'{"metadata":{"service":{"name":"shop","agent":{"name":"rum-js","version":"5.0.0"}}}}\n'
            b'{"transaction":{"trace_id":"x","id":"y","type":"z","duration":0,"span_count":{"started":1}}}\n'
        )
        assert post(server.port, "/intake/v2/rum/events", rum, {**NDJSON, "Origin": "https://ok.test"})[0] == 202
        status, body = post(server.port, "/intake/v2/rum/events", rum, {**NDJSON, "Origin": "https://no.test"})
        assert (status, json.loads(body)) == (403, {"error": "origin: 'https://no.test' is not allowed"})
    finally:
        assert server.stop(signal.SIGTERM) == 0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_over_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = ServeProcess("--sink", "null", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    try:
        assert server.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection(LOOPBACK, server.port, context=context, timeout=30)
        try:
            conn.request("POST", "/intake/v2/events", body=ERRORS, headers=NDJSON)
            response = conn.getresponse()
            assert (response.status, response.read()) == (202, b"")
        finally:
            conn.close()
        # plain HTTP on the TLS port gets no intake answer
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            post(server.port, "/intake/v2/events", ERRORS, NDJSON)
    finally:
        assert server.stop(signal.SIGTERM) == 0


@pytest.mark.slow
def test_serve_refuses_an_unreadable_certificate(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    done = run("serve", "--port", "0", "--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "none.pem"))
    assert done.returncode == 2 and "cannot load the TLS certificate or key" in done.stderr
    assert "Traceback" not in done.stderr


README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_is_in_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's table lists every option with its variable and flag, and its
    TOML example is a valid configuration."""
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_.]+)`(?: \(list\))? \| `(NDINTAKE_[A-Z_]+)` \| `(--[a-z-]+)`", text, re.M)
    assert sorted(rows) == sorted((option.key, option.env, option.flag) for option in OPTIONS)
    (example,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    path = tmp_path / "ndintake.toml"
    path.write_text(example)
    config = printed(capsys, "--config", str(path))
    assert config["auth"]["anonymous"]["rate_limit"]["event_limit"] == 100.0
    assert config["rum"]["allow_origins"] == ["https://*.example.com"]
