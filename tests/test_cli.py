"""``ndintake check``: outputs, exit codes, inputs, options and their validation."""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

import brotli
import pytest
import zstandard

from ndintake import _cliargs, cli
from conftest import errors_body

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "events.ndjson"
BAD_LINE = b'{"tennis-court": {"name": "Centre Court"}}\n'


def check(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, list[dict]]:
    status = cli.main(["check", *argv])
    out = capsysbinary.readouterr().out
    return status, [json.loads(line) for line in out.splitlines()]


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


def test_a_br_body_without_suffix_is_not_sniffed(tmp_path, capsysbinary):
    # br has no magic bytes: without its suffix or --encoding the body is taken as is
    path = tmp_path / "body.bin"
    path.write_bytes(brotli.compress(EXAMPLE.read_bytes()))
    status, [line] = check(capsysbinary, str(path))
    assert (status, line["status"]) == (1, 400)
    assert check(capsysbinary, "--encoding", "br", str(path)) == (0, [{"status": 202, "accepted": 4, "errors": []}])


def test_encoding_overrides_the_suffix(tmp_path, capsysbinary):
    path = tmp_path / "body.gz"
    path.write_bytes(EXAMPLE.read_bytes())  # not gzip at all
    status, [line] = check(capsysbinary, str(path))
    assert (status, line["status"], line["errors"][0]["message"]) == (1, 400, "data decoding error: gzip: invalid header")
    assert check(capsysbinary, "--encoding", "identity", str(path))[0] == 0


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


def test_no_file_and_a_missing_file_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", str(tmp_path / "nope.ndjson")])
    assert exit_.value.code == 2
    assert "cannot read " in capsys.readouterr().err


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
