"""One CLI grammar (#13): every JSON document a command prints is an object with `version`;
places are `{"file", "line", "col"}` objects beside the strings they were (which stay); every
error the command line prints begins `policyc: error: ` (docs/cli.md)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer

from policyc import doctor
from policyc.audit.schema import dropped_record, suppressed_record
from policyc import codegen
from policyc.cli import build as build_cmd, doctor_cmd, load as load_cmd, status as status_cmd
from policyc.cli import unload as unload_cmd
from policyc.cli.common import guarded
from policyc.cli.explain import run_explain
from policyc.cli.report_cmd import run_report
from policyc.cli.test_cmd import run_test
from policyc.deploy import read_manifest

from _audit_helpers import record, write_log

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
policy app {
    subject exe "/usr/bin/app"
    default deny
    allow file read "/etc/app/**"
    deny exec "/usr/bin/curl"
}
policy other {
    subject exe "/usr/bin/app"
    default allow
}
test app {
    expect allow file read "/etc/app/a"
    expect deny file read "/etc/shadow"
    expect allow exec "/usr/bin/curl"
}
"""


def policyc(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policyc", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def at(path, line, col) -> dict:
    return {"file": str(path), "line": line, "col": col}


@pytest.fixture
def policy(tmp_path):
    p = tmp_path / "app.policy"
    p.write_text(POLICY)
    return p


# --- JSON documents: objects with `version` -----------------------------------------------------
def _explain_json(path, *args) -> dict:
    out, err = io.StringIO(), io.StringIO()
    assert run_explain([str(path)], *args, as_json=True, out=out, err=err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def _test_json(path) -> dict:
    out, err = io.StringIO(), io.StringIO()
    run_test([str(path)], out=out, err=err, fmt="json")
    return json.loads(out.getvalue())


def _report_json(tmp_path) -> dict:
    recs = [record(offset_ns=1_700_000_000_000_000_000)]
    recs.append(dropped_record(policy="web", instance="web", host="h1", now_ns=1_700_000_000_000_000_000,
                               unattributed=2,
                               rules=[{"rule_id": 1, "rule": "p.policy:6:5", "rule_text": "t", "count": 4}]))
    recs.append(suppressed_record(policy="web", instance="web", host="h1", now_ns=1_700_000_000_000_000_000,
                                  rules=[{"rule_id": 2, "rule": "dir:x/p.policy:7:9", "rule_text": "u",
                                          "limit": "5/s", "count": 9}]))
    out, err = io.StringIO(), io.StringIO()
    assert run_report([write_log(tmp_path / "a.jsonl", recs)], None, "json", 10, out, err) == 0, err.getvalue()
    return json.loads(out.getvalue())


STATUS_ROW = {"name": "web", "policy": "web", "mode": "enforce", "default": "deny", "rules": 2,
              "hooks": ["file_open"], "counters": {}, "pin_dir": "/sys/fs/bpf/policyc/web",
              "suppressed": [{"rule_id": 2, "rule": "web.policy:7:5", "rule_text": "u", "count": 9, "limit": "5/s"},
                             {"rule_id": None, "rule": None, "rule_text": None, "count": 1, "limit": None}]}


def _status_json(monkeypatch, *args, **kw) -> dict:
    monkeypatch.setattr(status_cmd, "status", lambda: [STATUS_ROW])
    out, err = io.StringIO(), io.StringIO()
    assert status_cmd.run_status(*args, out, err, **kw) == 0, err.getvalue()
    return json.loads(out.getvalue())


def _doctor_json(monkeypatch) -> dict:
    checks = [doctor.Check("kernel", doctor.OK, "6.1", required=True)]
    monkeypatch.setattr(doctor_cmd.doctor, "examine", lambda host: checks)
    out = io.StringIO()
    assert doctor_cmd.run_doctor(True, True, out, io.StringIO(), host=SimpleNamespace()) == 0
    return json.loads(out.getvalue())


def _load_json(monkeypatch) -> dict:
    monkeypatch.setattr(load_cmd, "manifests_for", lambda paths, names, out, err: (0, [Path("p.manifest.json")]))
    monkeypatch.setattr(load_cmd, "check_kernel", lambda: None)
    monkeypatch.setattr(load_cmd, "load_manifest", lambda m, replace, adopt: SimpleNamespace(
        name="p", links=[1, 2], pin_dir="/sys/fs/bpf/policyc/p", replaced=False))
    monkeypatch.setattr(load_cmd, "read_manifest", lambda m: {"policy": "p", "mode": "enforce", "rules": [{}]})
    out, err = io.StringIO(), io.StringIO()
    assert load_cmd.run_load(["p.manifest.json"], None, False, out, err, adopt=False, as_json=True) == 0, \
        err.getvalue()
    return json.loads(out.getvalue())


def _build_json(policy, tmp_path, monkeypatch) -> dict:
    monkeypatch.setattr(codegen, "compile_c", lambda c, name: b"\x7fELF" + codegen.object_key(c).encode())
    out, err = io.StringIO(), io.StringIO()
    assert build_cmd.run_build([str(policy)], str(tmp_path / "out"), None, False, out, err, fmt="json") == 0, \
        err.getvalue()
    return json.loads(out.getvalue())


def _unload_json(monkeypatch) -> dict:
    monkeypatch.setattr(unload_cmd, "loaded_names", lambda: ["p", "q"])
    monkeypatch.setattr(unload_cmd, "unload", lambda name: None)
    out = io.StringIO()
    assert unload_cmd.run_unload(["q"], False, out, io.StringIO(), fmt="json") == 0
    return json.loads(out.getvalue())


# the commands that print a JSON document, by module: each is held to `version` below
DOCUMENTS = {"explain": 1, "test_cmd": 1, "report_cmd": 2, "status": 1, "doctor_cmd": 1, "load": 1,
             "build": 1, "unload": 1}


def test_every_json_document_is_an_object_with_a_version(policy, tmp_path, monkeypatch):
    docs = {"explain": _explain_json(policy, "/usr/bin/app", "exec", "/usr/bin/curl"),
            "test_cmd": _test_json(policy),
            "report_cmd": _report_json(tmp_path),
            "status": _status_json(monkeypatch, True),
            "doctor_cmd": _doctor_json(monkeypatch),
            "load": _load_json(monkeypatch),
            "build": _build_json(policy, tmp_path, monkeypatch),
            "unload": _unload_json(monkeypatch)}
    assert set(docs) == set(DOCUMENTS)
    for name, doc in docs.items():
        assert isinstance(doc, dict) and doc["version"] == DOCUMENTS[name], (name, doc)
    # the fields that were there stay
    assert docs["status"]["policies"][0]["name"] == "web"
    assert docs["doctor_cmd"]["can_enforce"] is True and docs["doctor_cmd"]["checks"][0]["name"] == "kernel"
    assert docs["load"]["loaded"] == [{"name": "p", "policy": "p", "mode": "enforce", "rules": 1, "hooks": 2,
                                       "pin_dir": "/sys/fs/bpf/policyc/p", "replaced": False, "adopted": None,
                                       "not_adopted": [], "adopt_error": None}]
    out = tmp_path / "out"
    built = docs["build"]["policies"]
    assert docs["build"]["removed"] == [] and {b["status"] for b in built} == {"built"}
    for b in built:
        manifest = read_manifest(out / f"{b['policy']}.manifest.json")
        assert b == {"status": "built", "policy": b["policy"], "object": str(out / f"{b['policy']}.bpf.o"),
                     "manifest": str(out / f"{b['policy']}.manifest.json"), "rules": len(manifest["rules"]),
                     "hooks": manifest["hooks"]}
    assert docs["unload"] == {"version": 1, "unloaded": ["q"]}


def test_every_command_module_that_writes_json_is_held_to_a_version():
    """A command module that writes a JSON document is in DOCUMENTS (test_cmd's document is
    written by policyc/report/testresults.py, check's by policyc/report); audit and exec
    write records a line (their `schema` is the version); inspect writes a build's manifests,
    whose `format` is their version (docs/design.md, "Build output")."""
    writers = {p.stem for p in (ROOT / "policyc" / "cli").glob("*.py") if re.search(r"json\.dumps?\(", p.read_text())}
    assert writers == (set(DOCUMENTS) - {"test_cmd"}) | {"inspect_cmd"}, writers


def test_status_and_doctor_and_load_take_format_json(monkeypatch):
    from typer.testing import CliRunner

    from policyc.cli.main import app

    assert _status_json(monkeypatch, False, fmt="json")["version"] == 1
    _doctor_json(monkeypatch)                      # doctor.examine replaced: nothing of this host is read
    _load_json(monkeypatch)                        # loading replaced: nothing is loaded
    for argv in (["doctor", "--format", "json", "--no-trial"], ["load", "--format", "json", "p.manifest.json"]):
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 0 and json.loads(r.stdout)["version"] == 1, r.output
        assert "--json" in CliRunner().invoke(app, [argv[0], "--help"]).output
    for argv in (["doctor", "--format", "yaml"], ["load", "--format", "yaml", "x"]):
        r = policyc(*argv)
        assert r.returncode == 64 and r.stderr.startswith("policyc: error: unknown format `yaml`"), r.stderr


# --- places as objects, beside the strings ------------------------------------------------------
def test_explain_gives_every_place_as_an_object_too(policy):
    d = _explain_json(policy, "/usr/bin/app", "exec", "/usr/bin/curl")
    assert d["rule"] == f"{policy}:5:5" and d["rule_location"] == at(policy, 5, 5)
    assert d["location"] == at(policy, 5, 5)                    # the rule decided
    assert d["policy_location"] == at(policy, 1, 8)
    assert [(g["policy"], g["rule"], g["rule_location"], g["location"]) for g in d["governing"]] == [
        ("app", f"{policy}:5:5", at(policy, 5, 5), at(policy, 5, 5)),
        ("other", None, None, at(policy, 9, 5))]                # other's `default allow` line
    d = _explain_json(policy, "/usr/bin/app", "file.write", "/etc/x")
    assert (d["by"], d["rule"], d["rule_location"]) == ("default", None, None)
    assert d["default_location"] == f"{policy}:3:5"             # the string stays
    assert d["location"] == at(policy, 3, 5)
    d = _explain_json(policy, "/usr/bin/nobody", "bpf")
    assert (d["governed"], d["location"], d["rule_location"], d["policy_location"]) == (False, None, None, None)


def test_test_json_gives_every_place_as_an_object_too(policy):
    doc = _test_json(policy)
    ok, _, failed = doc["results"]
    assert (ok["file"], ok["line"], ok["col"]) == (str(policy), 12, 5)    # the three keys stay
    assert ok["location"] == at(policy, 12, 5) and ok["test"] == at(policy, 11, 1)
    assert ok["actual"] is None
    assert failed["result"] == "fail"
    assert failed["actual"]["rule"] == f"{policy}:5:5" and failed["actual"]["rule_location"] == at(policy, 5, 5)
    assert failed["actual"]["location"] == at(policy, 5, 5)


def test_report_json_gives_every_rule_place_as_an_object_too(tmp_path):
    doc = _report_json(tmp_path)
    assert doc["top_rules"][0]["location"]["line"] is not None
    dropped = {e["rule"]: e["location"] for e in doc["dropped_by_rule"]}
    assert dropped == {"p.policy:6:5": {"file": "p.policy", "line": 6, "col": 5}, None: None}
    (s,) = doc["suppressed_by_rule"]
    assert s["rule"] == "dir:x/p.policy:7:9" and s["location"] == {"file": "dir:x/p.policy", "line": 7, "col": 9}


def test_status_json_gives_suppressed_rule_places_as_objects_too(monkeypatch):
    (row,) = _status_json(monkeypatch, True)["policies"]
    assert [(s["rule"], s["location"]) for s in row["suppressed"]] == [
        ("web.policy:7:5", {"file": "web.policy", "line": 7, "col": 5}), (None, None)]
    assert STATUS_ROW["suppressed"][0].keys() == {"rule_id", "rule", "rule_text", "count", "limit"}   # not mutated


# --- one error prefix ---------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("check",),                                               # a missing argument
    ("check", "--no-such-option", "x"),                       # an unknown option
    ("no-such-command",),
    ("explain", "x.policy", "--exe", "/a", "--op", "net.connect", "--port", "eighty"),   # a bad value
])
def test_usage_errors_say_policyc_error(args):
    r = policyc(*args)
    assert r.returncode == 64
    lines = r.stderr.splitlines()
    assert lines[0].startswith("Usage: policyc") and lines[-1].startswith("policyc: error: "), r.stderr
    assert not any(ln.startswith("Error") for ln in lines), r.stderr


def test_a_diagnostic_with_no_place_names_policyc(tmp_path, policy):
    r = policyc("check", str(tmp_path / "missing.policy"))
    assert r.returncode == 2
    assert r.stdout.startswith("policyc: error[P006]: cannot read"), r.stdout
    out, err = io.StringIO(), io.StringIO()
    assert run_explain([str(policy)], "/usr/bin/app", "frob", out=out, err=err) == 2
    assert err.getvalue().startswith("policyc: error[P011]: unknown operation `frob`"), err.getvalue()
    # a diagnostic with a place keeps the compiler form
    bad = tmp_path / "bad.policy"
    bad.write_text(POLICY.replace("default deny", "default deny\n    allow capability net_bind_servic"))
    r = policyc("check", str(bad))
    assert r.returncode == 2 and r.stdout.startswith(f"{bad}:4:22: error[P012]: "), r.stdout


def test_an_internal_error_says_policyc_error():
    def boom(out, err):
        raise KeyError("x")

    err = io.StringIO()
    with pytest.raises(typer.Exit) as e:
        guarded(boom, out=io.StringIO(), err=err)
    assert e.value.exit_code == 3
    assert err.getvalue().startswith("policyc: error: internal error: KeyError: 'x' (a policyc bug")


def test_no_cli_message_uses_another_error_prefix():
    """What the command modules write for a person: no bare `error:`/`Error:` and no
    `policyc: internal error` or `policyc: install stopped` (each is `policyc: error: ...`).
    `policyc vm` (vm_cmd.py) is the known exception, said in docs/cli.md."""
    bad = re.compile(r"""(?:write\(|print\()f?["'](?:error:|Error:|policyc: internal error|policyc: install stopped)""")
    found = []
    for p in sorted((ROOT / "policyc" / "cli").glob("*.py")):
        if p.name == "vm_cmd.py":
            continue
        found += [f"{p.name}:{i}" for i, ln in enumerate(p.read_text().splitlines(), 1) if bad.search(ln)]
    assert found == []
    assert "policyc vm" in (ROOT / "docs" / "cli.md").read_text()


def test_install_stopped_is_an_error(tmp_path, monkeypatch):
    from policyc.cli import install_cmd

    monkeypatch.setattr(install_cmd, "build_sources", lambda layout, kernel, out, err: 2)
    src = tmp_path / "a.policy"
    src.write_text(POLICY)
    root = tmp_path / "root"
    root.mkdir()
    out, err = io.StringIO(), io.StringIO()
    code = install_cmd.run_install([str(src)], str(root), "/usr/bin/policyc", None, False, out, err,
                                   run_systemctl=lambda *a: 0, systemd=lambda: False)
    assert code == 2
    assert "policyc: error: install stopped: the build failed" in err.getvalue(), err.getvalue()


def test_build_and_unload_take_format_json(policy, tmp_path, monkeypatch):
    """`build` and `unload` print results (a line per policy): `--format json` gives them as
    one document; an unchanged rebuild and a removed output are said in it too; an unknown
    format is a usage error."""
    from typer.testing import CliRunner

    from policyc.cli.main import app

    monkeypatch.setattr(codegen, "compile_c", lambda c, name: b"\x7fELF" + codegen.object_key(c).encode())
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["build", str(policy), "-o", str(out), "--format", "json"])
    assert r.exit_code == 0 and {p["status"] for p in json.loads(r.stdout)["policies"]} == {"built"}, r.output
    (out / "gone.manifest.json").write_text(json.dumps(
        {"format": 1, "policy": "gone", "object": "gone.bpf.o", "policyc_version": "0"}))
    r = CliRunner().invoke(app, ["build", str(policy), "-o", str(out), "--format", "json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["policies"] and {p["status"] for p in doc["policies"]} == {"unchanged"}, r.output
    assert doc["removed"] == [str(out / "gone.manifest.json")]
    r = CliRunner().invoke(app, ["build", str(policy), "-o", str(out)])
    assert r.exit_code == 0 and r.stdout.startswith("unchanged "), r.output
    _unload_json(monkeypatch)
    r = CliRunner().invoke(app, ["unload", "p", "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"version": 1, "unloaded": ["p"]}, r.output
    for argv in (["build", str(policy), "-o", str(out), "--format", "yaml"], ["unload", "p", "--format", "yaml"]):
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 64 and "unknown format `yaml`" in r.output
