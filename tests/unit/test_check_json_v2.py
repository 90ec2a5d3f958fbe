"""`policyc check --format json-v2`: the diagnostics of `--format json` (a bare list, kept as it
is) in a versioned object with the files checked and a summary. Through the command line on
temporary files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import policyc
from policyc.cli.main import app

runner = CliRunner()

HEAD = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n'
CLEAN = HEAD + '    allow exec "/usr/bin/y"\n}\n'
WARN = HEAD + '    let unused = "/z"\n}\n'                                   # W104 at 4:9
OVERRIDDEN = HEAD + '    deny file write "/etc/**"\n    allow file write "/etc/motd"MARKER\n}\n'   # W103 at 5:5
ERROR = 'policy q {\n    subject exe "/usr/bin/x"\n    allow capability net_bind_servic\n}\n'   # P012 at 3:22
KEYS = ["version", "policyc_version", "files", "diagnostics", "summary"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no policyc.toml from elsewhere applies
    return tmp_path


def put(name: str, text: str) -> str:
    from pathlib import Path

    p = Path(name)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return name


def check(*args, fmt="json-v2", input=None):
    r = runner.invoke(app, ["check", "--format", fmt, *map(str, args)], input=input)
    return r, json.loads(r.stdout)


def test_clean_input_is_an_object_with_version_files_and_zero_counts():
    p = put("clean.policy", CLEAN)
    r, doc = check(p)
    assert r.exit_code == 0 and r.stderr == ""
    assert list(doc) == KEYS
    assert doc["version"] == 2 and doc["policyc_version"] == policyc.__version__
    assert doc == {**doc, "files": ["clean.policy"], "diagnostics": [],
                   "summary": {"errors": 0, "warnings": 0, "notes": 0, "suppressed": 0}}


def test_diagnostics_are_exactly_the_json_list_and_the_list_is_unchanged():
    a, b = put("a.policy", WARN), put("b.policy", ERROR)
    r2, doc = check(a, b)
    r1, listed = check(a, b, fmt="json")
    assert r1.exit_code == r2.exit_code == 2
    assert isinstance(listed, list) and doc["diagnostics"] == listed   # --format json: still the bare list
    assert [(d["code"], d["location"]["line"], d["location"]["col"]) for d in listed] == \
        [("W104", 4, 9), ("P012", 3, 22)]
    assert doc["files"] == ["a.policy", "b.policy"]
    assert doc["summary"] == {"errors": 1, "warnings": 1, "notes": 0, "suppressed": 0}


def test_werror_decides_the_exit_code_not_the_document():
    p = put("w.policy", WARN)
    r, doc = check(p)
    rw, docw = check("--werror", p)
    assert (r.exit_code, rw.exit_code) == (0, 2) and doc == docw
    assert doc["summary"]["warnings"] == 1


def test_a_suppressed_warning_is_kept_marked_and_counted_apart():
    p = put("s.policy", OVERRIDDEN.replace("MARKER", "   # policyc: ignore[W103] motd is managed"))
    r, doc = check("--werror", p)
    assert r.exit_code == 0
    (d,) = doc["diagnostics"]
    assert d["code"] == "W103" and d["suppressed"] == {"reason": "motd is managed"}
    assert doc["summary"] == {"errors": 0, "warnings": 0, "notes": 0, "suppressed": 1}


def test_files_are_every_file_read_includes_too():
    put("lib/base.policy", 'ruleset base {\n    allow file read "/etc/hosts"\n}\n')
    main = put("main.policy", 'include "lib/base.policy"\n' + HEAD + "    use base\n}\n")
    r, doc = check(main)
    assert r.exit_code == 0, doc
    assert doc["files"] == ["lib/base.policy", "main.policy"]


def test_files_when_the_input_does_not_parse_are_the_policy_files_given():
    put("dir/x.policy", ERROR)
    put("dir/notes.txt", "not a policy")
    r, doc = check("dir")
    assert r.exit_code == 2 and doc["files"] == ["dir/x.policy"]
    assert doc["summary"]["errors"] == 1


def test_stdin_is_named_by_stdin_filename():
    r, doc = check("-", "--stdin-filename", "buf.policy", input=WARN)
    assert r.exit_code == 0 and doc["files"] == ["buf.policy"]
    assert doc["diagnostics"][0]["location"]["file"] == "buf.policy"


def test_json_v2_is_a_check_format_and_a_config_default():
    from policyc.config import CHECK_FORMATS

    assert "json-v2" in CHECK_FORMATS and "json" in CHECK_FORMATS
    put("policyc.toml", 'format = "json-v2"\n')
    p = put("w.policy", WARN)
    r = runner.invoke(app, ["check", p])
    assert json.loads(r.stdout)["version"] == 2
