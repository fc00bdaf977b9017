"""``ndintake check``: outputs, exit codes, inputs, options and their validation."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import brotli
import pytest
import zstandard

import ndintake
from ndintake import cli
from ndintake.cli import args as _cliargs
from conftest import errors_body

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "events.ndjson"
BAD_LINE = b'{"tennis-court": {"name": "Centre Court"}}\n'


def check(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, list[dict]]:
    status = cli.main(["check", *argv])
    out = capsysbinary.readouterr().out
    return status, [json.loads(line) for line in out.splitlines()]


def check_err(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict], str]:
    """``check`` with standard error too (text capture: the JSON lines are ASCII)."""
    status = cli.main(["check", *argv])
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def run_cli(*argv: str, input: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The real entry point in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "ndintake", *argv],
        input=input,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def prodlytics_item(size: int) -> bytes:
    """One valid prodlytics item of about ``size`` bytes."""
    item = {"type": "server", "application": {"id": "a"}, "event": {"name": "e"}, "usr": {"id": "u"}}
    item["pad"] = "x" * size
    return json.dumps(item).encode()


def test_one_good_file_exits_0(capsysbinary):
    status, lines = check(capsysbinary, str(EXAMPLE))
    assert (status, lines) == (0, [{"status": 202, "accepted": 4, "errors": []}])


def test_one_bad_file_exits_1_and_names_the_line(tmp_path, capsysbinary):
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(errors_body() + BAD_LINE)
    status, [line] = check(capsysbinary, str(bad))
    assert status == 1
    assert (line["status"], line["accepted"]) == (400, 5)
    assert line["errors"] == [
        {"message": 'did not recognize object type: "tennis-court"', "document": BAD_LINE.decode().strip(), "line": 7}
    ]


def test_several_files_get_a_file_key_and_a_total_line(tmp_path, capsysbinary):
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(errors_body() + BAD_LINE + BAD_LINE)
    status, lines = check(capsysbinary, str(EXAMPLE), str(bad), str(EXAMPLE))
    assert status == 1
    assert [(line["file"], line["status"], line["accepted"]) for line in lines[:3]] == [
        (str(EXAMPLE), 202, 4),
        (str(bad), 400, 5),
        (str(EXAMPLE), 202, 4),
    ]
    assert lines[3] == {"total": {"files": 3, "status": 400, "accepted": 13, "errors": 2}}
    assert len(lines) == 4


def test_several_good_files_exit_0(capsysbinary):
    status, lines = check(capsysbinary, str(EXAMPLE), str(EXAMPLE))
    assert status == 0
    assert lines[-1] == {"total": {"files": 2, "status": 202, "accepted": 8, "errors": 0}}


@pytest.mark.parametrize(
    "suffix, compress",
    [
        (".gz", gzip.compress),
        (".gzip", gzip.compress),
        (".zst", lambda d: zstandard.ZstdCompressor().compress(d)),
        (".br", brotli.compress),
        (".zz", __import__("zlib").compress),
        (".BR", brotli.compress),
    ],
)
def test_the_suffix_names_the_coding(tmp_path, capsysbinary, suffix, compress):
    path = tmp_path / f"body{suffix}"
    path.write_bytes(compress(EXAMPLE.read_bytes()))
    assert check(capsysbinary, str(path)) == (0, [{"status": 202, "accepted": 4, "errors": []}])


def test_a_br_body_without_suffix_is_not_sniffed(tmp_path, capsys):
    # br has no magic bytes: without its suffix or --encoding the body is taken as is
    path = tmp_path / "body.bin"
    path.write_bytes(brotli.compress(EXAMPLE.read_bytes()))
    status, [line], err = check_err(capsys, str(path))
    assert (status, line["status"]) == (1, 400)
    assert "hint: the bytes look like neither JSON nor gzip, zlib or zstd data (br has no magic bytes): " \
        "if the body is br-compressed, use --encoding br" in err
    assert check_err(capsys, "--encoding", "br", str(path))[:2] == (0, [{"status": 202, "accepted": 4, "errors": []}])


def test_encoding_overrides_the_suffix(tmp_path, capsys):
    path = tmp_path / "body.gz"
    path.write_bytes(EXAMPLE.read_bytes())  # not gzip at all
    status, [line], err = check_err(capsys, "--encoding", "gzip", str(path))
    assert (status, line["status"], line["errors"][0]["message"]) == (1, 400, "data decoding error: gzip: invalid header")
    assert f"ndintake check: {path}: hint: expected gzip data, but the bytes look like plain JSON: try --encoding auto" in err
    assert check_err(capsys, "--encoding", "identity", str(path))[0] == 0


def test_encoding_takes_a_comma_list(tmp_path, capsysbinary):
    path = tmp_path / "body"
    path.write_bytes(brotli.compress(gzip.compress(EXAMPLE.read_bytes())))
    assert check(capsysbinary, "--encoding", "gzip, br", str(path))[0] == 0


def test_stdin_is_read_for_dash():
    # a child process: the real entry point, exit status and standard input
    body = gzip.compress(EXAMPLE.read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "ndintake", "check", "-"], input=body, capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, json.loads(done.stdout)) == (0, {"status": 202, "accepted": 4, "errors": []})
    done = subprocess.run(
        [sys.executable, "-m", "ndintake", "check", "-"], input=BAD_LINE, capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, json.loads(done.stdout)["status"]) == (1, 400)


def test_profile_prodlytics_uses_the_profiles_limits(tmp_path, capsysbinary):
    # a 400 KB item is fine for prodlytics (5 MB limit), over APM's 300 KiB line limit;
    # the CLI once built APM's limits whatever the profile
    path = tmp_path / "items.json"
    path.write_bytes(prodlytics_item(400_000))
    assert check(capsysbinary, "--profile", "prodlytics", str(path)) == (0, [{"status": 202, "accepted": 1, "errors": []}])


def test_profile_prodlytics_body_limit_is_5_mb(tmp_path, capsysbinary):
    path = tmp_path / "items.ndjson"
    path.write_bytes(b"\n".join([prodlytics_item(1_000_000)] * 6) + b"\n")
    status, [line] = check(capsysbinary, "--profile", "prodlytics", str(path))
    assert (status, line["status"], line["accepted"]) == (1, 413, 4)


def test_explicit_limits_override_the_profiles(tmp_path, capsysbinary):
    path = tmp_path / "items.json"
    path.write_bytes(prodlytics_item(400_000))
    status, [line] = check(capsysbinary, "--profile", "prodlytics", "--max-body-size", "100000", str(path))
    assert (status, line["status"]) == (1, 413)
    status, [line] = check(capsysbinary, "--max-event-size", "100", str(EXAMPLE))
    assert (status, line["status"], line["accepted"]) == (1, 400, 0)
    assert line["errors"][0]["message"] == "event exceeded the permitted size"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-event-size", "0"], "argument --max-event-size: must be at least 1, got 0"),
        (["--max-event-size", "-5"], "argument --max-event-size: must be at least 1, got -5"),
        (["--max-body-size", "1.5"], "argument --max-body-size: expected a whole number, got '1.5'"),
        (["--max-body-size", "ten"], "argument --max-body-size: expected a whole number, got 'ten'"),
        (["--encoding", "compress"], "argument --encoding: unknown coding 'compress'"),
        (["--encoding", "gzip,,br"], "argument --encoding: unknown coding ''"),
        (["--encoding", ",".join(["gzip"] * 9)], "argument --encoding: at most 8 codings, got 9"),
        (["--profile", "otlp"], "argument --profile: invalid choice: 'otlp'"),
    ],
)
def test_bad_options_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", *argv, str(EXAMPLE)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "ndintake check: error: " + message in err


# -- several files, unreadable files, usage errors, pipes -----------------------


def test_a_missing_file_and_a_directory_get_their_own_lines_and_the_check_goes_on(tmp_path, capsys):
    missing = tmp_path / "nope.ndjson"
    status, lines, err = check_err(capsys, str(missing), str(EXAMPLE), str(tmp_path))
    assert status == 1
    assert lines == [
        {"file": str(missing), "error": f"cannot read {missing}: No such file or directory"},
        {"file": str(EXAMPLE), "status": 202, "accepted": 4, "errors": []},
        {"file": str(tmp_path), "error": f"cannot read {tmp_path}: Is a directory"},
        {"total": {"files": 3, "status": 202, "accepted": 4, "errors": 0, "unreadable": 2}},
    ]
    assert f"ndintake check: cannot read {missing}: No such file or directory" in err
    assert "Traceback" not in err


def test_one_missing_file_exits_1_with_an_error_line(tmp_path, capsys):
    missing = tmp_path / "nope.ndjson"
    status, lines, _ = check_err(capsys, str(missing))
    assert (status, lines) == (1, [{"error": f"cannot read {missing}: No such file or directory"}])


def test_usage_errors_print_checks_usage_and_exit_2(capsys):
    for argv in (["check"], ["check", "-", "-"], ["check", "--encoding", "bogus", str(EXAMPLE)]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: ndintake check ")
        assert "ndintake check: error: " in err


def test_stdin_twice_is_a_usage_error_without_a_traceback():
    done = run_cli("check", "-", "-", input=EXAMPLE.read_bytes())
    assert done.returncode == 2
    assert b"ndintake check: error: standard input (-) can be checked only once" in done.stderr
    assert b"Traceback" not in done.stderr and done.stdout == b""


def test_unknown_encoding_is_a_usage_error_listing_the_codings(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", "--encoding", "bogus", str(EXAMPLE)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --encoding: unknown coding 'bogus'; expected auto or one or more of " in err
    for coding in ndintake.SUPPORTED_ENCODINGS:
        assert coding in err.rsplit("expected", 1)[1]
    assert capsys.readouterr().out == ""


def test_a_closed_pipe_ends_the_check_quietly():
    # ``ndintake check a b c ... | head -1``: far more output than a pipe buffers
    child = subprocess.Popen(
        [sys.executable, "-m", "ndintake", "check", *[str(EXAMPLE)] * 3000],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    first = child.stdout.readline()
    child.stdout.close()
    err = child.stderr.read()
    assert child.wait(timeout=120) == 1
    assert json.loads(first)["status"] == 202
    assert b"Traceback" not in err and b"BrokenPipeError" not in err and b"Exception ignored" not in err


# -- codings: suffixes that lie, identity on compressed bytes, hints ---------------


@pytest.mark.parametrize(
    "name, compress, note",
    [
        ("plain.gz", lambda d: d, "named .gz but the bytes look like plain JSON: read as identity"),
        ("zstd.gz", lambda d: zstandard.ZstdCompressor().compress(d), "named .gz but the bytes look like zstd data: read as zstd"),
        ("gzip.zst", gzip.compress, "named .zst but the bytes look like gzip data: read as gzip"),
        ("zlib.gz", __import__("zlib").compress, "named .gz but the bytes look like zlib (deflate) data: read as deflate"),
        ("gzip.br", gzip.compress, "named .br but the bytes look like gzip data: read as gzip"),
    ],
)
def test_auto_reads_what_the_bytes_are_when_the_suffix_lies(tmp_path, capsys, name, compress, note):
    path = tmp_path / name
    path.write_bytes(compress(EXAMPLE.read_bytes()))
    status, lines, err = check_err(capsys, str(path))
    assert (status, lines) == (0, [{"status": 202, "accepted": 4, "errors": []}])
    assert err == f"ndintake check: {path}: {note}\n"


def test_a_suffix_on_unknown_bytes_is_kept_and_the_error_says_what_they_look_like(tmp_path, capsys):
    path = tmp_path / "junk.gz"
    path.write_bytes(b"\x00\x01binary junk")
    status, [line], err = check_err(capsys, str(path))
    assert (status, line["errors"][0]["message"]) == (1, "data decoding error: gzip: invalid header")
    assert "hint: expected gzip data, but the bytes look like neither JSON nor gzip, zlib or zstd data" in err


@pytest.mark.parametrize(
    "compress, coding",
    [(gzip.compress, "gzip"), (lambda d: zstandard.ZstdCompressor().compress(d), "zstd"), (__import__("zlib").compress, "deflate")],
)
def test_identity_on_compressed_bytes_hints_at_the_coding(tmp_path, capsys, compress, coding):
    path = tmp_path / "body.ndjson"
    path.write_bytes(compress(EXAMPLE.read_bytes()))
    status, [line], err = check_err(capsys, "--encoding", "identity", str(path))
    assert (status, line["status"]) == (1, 400)
    assert f"hint: the bytes look like {'zlib (deflate)' if coding == 'deflate' else coding} data, not plain JSON: " \
        f"try --encoding auto (or --encoding {coding})" in err


def test_explicit_zstd_on_gzip_bytes_hints(tmp_path, capsys):
    path = tmp_path / "body"
    path.write_bytes(gzip.compress(EXAMPLE.read_bytes()))
    status, [line], err = check_err(capsys, "--encoding", "zstd", str(path))
    assert status == 1
    assert "hint: expected zstd data, but the bytes look like gzip data: try --encoding auto" in err


@pytest.mark.parametrize(
    "body",
    [
        prodlytics_item(10),  # one item, no newline: "EOF while reading metadata"
        prodlytics_item(10) + b"\n" + prodlytics_item(10) + b"\n",  # NDJSON items
        b"[" + prodlytics_item(10) + b"," + prodlytics_item(10) + b"]",  # a JSON array
    ],
)
@pytest.mark.parametrize("compress", [lambda d: d, gzip.compress])
def test_a_datadog_body_without_the_profile_gets_a_hint(tmp_path, capsys, body, compress):
    path = tmp_path / "dd.json"
    path.write_bytes(compress(body))
    status, [line], err = check_err(capsys, str(path))
    assert (status, line["status"]) == (1, 400)
    assert "metadata" in line["errors"][-1]["message"]
    assert f"ndintake check: {path}: hint: this looks like a Datadog body (no metadata line): try --profile prodlytics" in err
    status, [line], err = check_err(capsys, "--profile", "prodlytics", str(path))
    assert (status, err) == (0, "")


def test_no_prodlytics_hint_for_an_apm_body_without_metadata(tmp_path, capsys):
    path = tmp_path / "bad.ndjson"
    path.write_bytes(BAD_LINE)
    status, [line], err = check_err(capsys, str(path))
    assert status == 1 and "prodlytics" not in err


# -- limits, --help and progress ------------------------------------------------


def test_help_shows_the_limits_and_profiles():
    done = run_cli("check", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.decode().split())
    for needle in ("67108864 = 64 MiB", "307200", "5000000", "Request limits apply", "413",
                   "prodlytics (Datadog", "NDINTAKE_PROGRESS", "identity"):
        assert needle in text, needle


def test_forced_progress_counts_decoded_bytes_and_events_and_clears_at_the_end(tmp_path):
    body = EXAMPLE.read_bytes()
    path = tmp_path / "many.ndjson.gz"
    events = body.split(b"\n", 1)[1]
    path.write_bytes(gzip.compress(body + events * 2000))  # small file, inflates a lot
    done = run_cli("check", str(path), env={"NDINTAKE_PROGRESS": "1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 4 + 4 * 2000
    err = done.stderr.decode()
    assert "MiB decoded" in err and " events, " in err and "% of the file read" in err
    assert err.endswith("\r\x1b[K")  # the progress line is cleared


def test_progress_is_cleared_when_the_check_stops_at_413():
    body = EXAMPLE.read_bytes()
    done = run_cli("check", "--max-body-size", "100000", "-", input=body * 100, env={"NDINTAKE_PROGRESS": "1"})
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == 413
    err = done.stderr.decode()
    assert "decoded" in err and "Traceback" not in err
    progress, hint = err.rsplit("\r\x1b[K", 1)  # the progress line is cleared before the hint
    assert hint == "ndintake check: -: hint: the body decodes to more than 100000 bytes, the request limit; " \
        "--max-body-size N checks a larger capture\n"


def test_no_progress_without_a_terminal(tmp_path):
    done = run_cli("check", "-", input=EXAMPLE.read_bytes())
    assert (done.returncode, done.stderr) == (0, b"")
    done = run_cli("check", "-", input=EXAMPLE.read_bytes(), env={"NDINTAKE_PROGRESS": "0"})
    assert (done.returncode, done.stderr) == (0, b"")


# -- the argparse type functions (shared with ``serve``) -------------------------


@pytest.mark.parametrize(
    "function, good, bad",
    [
        (_cliargs.positive_int, {"1": 1, "307200": 307200, "1_000": 1000}, ["0", "-1", "1.0", "", "x"]),
        (_cliargs.non_negative_int, {"0": 0, "7": 7}, ["-1", "0.5", "nan"]),
        (_cliargs.port_number, {"0": 0, "8200": 8200, "65535": 65535}, ["-1", "65536", "http"]),
        (_cliargs.positive_float, {"0.5": 0.5, "300": 300.0}, ["0", "-5", "nan", "inf", "-inf", "x"]),
        (_cliargs.non_negative_float, {"0": 0.0, "30": 30.0, "2.5": 2.5}, ["-1", "-0.1", "nan", "inf", ""]),
        (_cliargs.content_encoding, {"auto": "auto", "gzip": "gzip", "GZIP, br": "GZIP, br"}, ["compress", "auto,gzip"]),
    ],
)
def test_argument_types(function, good, bad):
    for text, value in good.items():
        assert function(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            function(text)
