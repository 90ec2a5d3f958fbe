"""Malformed or truncated logs given to `report` and `suggest`: a clear error naming the file
and line, exit 2, never a traceback."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from policyc.cli.main import app

from _audit_helpers import record

GOOD = json.dumps(record())


def _cases(tmp_path):
    bad_schema = dict(record(), schema=99)
    no_subject = {k: v for k, v in record().items() if k != "process"}
    return {
        "not-json": (GOOD + "\n" + "hello world\n", 2, "not a JSON record"),
        "truncated": (GOOD + "\n" + GOOD[:40], 2, "truncated record"),
        "schema": (json.dumps(bad_schema) + "\n", 1, "unknown audit log schema 99"),
        "type": (json.dumps(dict(record(), type="nope")) + "\n", 1, "unknown record type 'nope'"),
        "missing": (GOOD + "\n\n" + json.dumps(no_subject) + "\n", 3, "lacks `process`"),
        "array": ("[1, 2]\n", 1, "expected a JSON object"),
        "text-format": ("2024-01-01T00:00:00Z DENY policy=x ...\n", 1, "not a JSON record"),
        "time": (json.dumps(dict(record(), time_ns="x")) + "\n", 1, "`time_ns` is not an integer"),
    }


@pytest.mark.parametrize("cmd", ["report", "suggest"])
@pytest.mark.parametrize("case", ["not-json", "truncated", "schema", "type", "missing", "array", "text-format", "time"])
def test_malformed_line_is_named(tmp_path, cmd, case):
    text, line, msg = _cases(tmp_path)[case]
    p = tmp_path / "audit.jsonl"
    p.write_text(text)
    res = CliRunner().invoke(app, [cmd, str(p)])
    assert res.exit_code == 2, res.output
    assert f"{p}:{line}: " in res.output and msg in res.output
    assert "Traceback" not in res.output and "internal error" not in res.output


@pytest.mark.parametrize("cmd", ["report", "suggest"])
def test_binary_and_missing_files(tmp_path, cmd):
    b = tmp_path / "bin.jsonl"
    b.write_bytes(GOOD.encode() + b"\n\xff\xfe\x00garbage\n")
    res = CliRunner().invoke(app, [cmd, str(b)])
    assert res.exit_code == 2 and "not UTF-8" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, [cmd, str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 2 and "cannot read" in res.output


def test_truncated_gzip(tmp_path):
    data = gzip.compress(((GOOD + "\n") * 200).encode())
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(data[: len(data) // 2])
    res = CliRunner().invoke(app, ["report", str(p)])
    assert res.exit_code == 2 and f"{p}:" in res.output and "Traceback" not in res.output


def test_good_gzip_and_rotated(tmp_path):
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(gzip.compress((GOOD + "\n").encode() * 3))
    q = tmp_path / "a.jsonl.1"
    q.write_text(GOOD + "\n")
    res = CliRunner().invoke(app, ["report", "--format", "json", str(p), str(q)])
    assert res.exit_code == 0 and json.loads(res.output)["events"] == 4
