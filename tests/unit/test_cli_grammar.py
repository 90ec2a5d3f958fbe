"""One CLI grammar: usage errors exit 64 (EX_USAGE) and "the policy has errors" stays 2;
`check -` with `--stdin-filename`; `explain --fail-on` and "no policy governs this process";
`explain --json` an object with `version`; `exec` never writes events to the child's stdout;
every exit code in README's one table."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policyc.cli import common
from policyc.cli.check import run_check
from policyc.cli.explain import run_explain

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
policy app {
    subject exe "/usr/bin/app"
    default deny
    allow file read "/etc/app/**"
    deny exec "/usr/bin/curl"
}
"""


def policyc(*args: str, cwd=None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policyc", *args], capture_output=True, text=True, cwd=cwd,
                          input=stdin, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


# --- exit codes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("check",),                               # a missing argument
    ("check", "--no-such-option", "x"),       # an unknown option
    ("explain", "x.policy", "--exe", "/a"),   # a missing required option
    ("explain", "x.policy", "--exe", "/a", "--op", "net.connect", "--port", "eighty"),   # a bad value
    ("no-such-command",),
])
def test_usage_errors_exit_64(args):
    r = policyc(*args)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert "Usage:" in r.stderr and r.stdout == ""


def test_policy_errors_stay_2(tmp_path):
    bad = tmp_path / "bad.policy"
    bad.write_text(GOOD.replace("default deny", "default deny\n    allow capability net_bind_servic"))
    r = policyc("check", str(bad))
    assert r.returncode == 2 and "P012" in r.stdout + r.stderr
    r = policyc("test", str(bad))
    assert r.returncode == 2


def test_every_exit_code_is_in_the_readme_table():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Exit codes"):]
    codes = {v for k, v in vars(common).items() if k.startswith("EXIT_")}
    assert codes == {0, 1, 2, 3, 64}
    for code in codes | {130}:
        assert re.search(rf"^\| {code} \|", table, re.M), code


# --- check - --stdin-filename -------------------------------------------------------------------
def test_check_stdin_with_a_filename_resolves_includes_relative_to_it(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.policy").write_text('ruleset base {\n    allow file read "/usr/lib/**"\n}\n')
    text = 'include "base.policy"\npolicy p {\n    subject exe "/a"\n    use base\n    allow capability sys_admn\n}\n'
    r = policyc("check", "-", "--stdin-filename", "lib/unsaved.policy", "--format", "json", cwd=tmp_path,
                stdin=text)
    assert r.returncode == 2, r.stderr
    (d,) = json.loads(r.stdout)
    assert d["code"] == "P012" and d["location"]["file"] == "lib/unsaved.policy" and d["location"]["line"] == 5
    assert not (tmp_path / "lib" / "unsaved.policy").exists()
    r = policyc("check", "-", "--stdin-filename", "lib/unsaved.policy", cwd=tmp_path, stdin=text)
    assert "lib/unsaved.policy:5:22: error[P012]" in r.stderr + r.stdout
    assert "allow capability sys_admn" in r.stderr + r.stdout          # the snippet, from the buffer
    # the buffer wins over the file on disk of the same name
    (tmp_path / "lib" / "disk.policy").write_text("this does not parse")
    r = policyc("check", "-", "--stdin-filename", "lib/disk.policy", cwd=tmp_path, stdin=GOOD)
    assert r.returncode == 0, r.stderr


def test_check_stdin_formats_and_errors():
    out, err = io.StringIO(), io.StringIO()
    code = run_check(["-"], "sarif", out, err, stdin=io.BytesIO(GOOD.encode()), stdin_filename="p/app.policy",
                     use_config=False, base_dir=".")
    assert code == 0 and json.loads(out.getvalue())["runs"][0]["results"] == []
    out, err = io.StringIO(), io.StringIO()
    assert run_check(["-"], "text", out, err, stdin=io.BytesIO(b"\xff\xfe"), use_config=False) == 2
    assert "P006" in out.getvalue() + err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert run_check(["a.policy"], "text", out, err, stdin_filename="x.policy", use_config=False) == 64
    assert run_check(["-", "-"], "text", out, err, stdin_filename="x.policy", use_config=False) == 64
    out, err = io.StringIO(), io.StringIO()
    shadowed = GOOD.replace("    deny exec", '    allow file read "/etc/app/x"\n    deny exec')
    assert run_check(["-"], "github", out, err, stdin=io.BytesIO(shadowed.encode()), use_config=False) == 0
    assert out.getvalue().startswith("::warning file=<stdin>,line=5"), out.getvalue()


# --- explain ------------------------------------------------------------------------------------
def _explain(path, *args, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = run_explain([str(path)], *args, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def test_explain_fail_on(tmp_path):
    p = tmp_path / "a.policy"
    p.write_text(GOOD)
    assert _explain(p, "/usr/bin/app", "exec", "/usr/bin/curl", fail_on="deny")[0] == 1
    assert _explain(p, "/usr/bin/app", "exec", "/usr/bin/curl", fail_on="allow")[0] == 0
    assert _explain(p, "/usr/bin/app", "file.read", "/etc/app/x", fail_on="allow")[0] == 1
    code, out, err = _explain(p, "/usr/bin/app", "file.read", "/etc/app/x", fail_on="deny")
    assert code == 0 and out.startswith("decision: allow") and err == ""
    code, _, err = _explain(p, "/usr/bin/app", "exec", "/usr/bin/curl", as_json=True, fail_on="deny")
    assert code == 1 and "--fail-on deny" in err
    assert _explain(p, "/usr/bin/app", "exec", "/usr/bin/curl", fail_on="maybe")[0] == 64
    r = policyc("explain", str(p), "--exe", "/usr/bin/app", "--op", "exec", "--path", "/usr/bin/curl",
                "--fail-on", "deny")
    assert r.returncode == 1


def test_explain_ungoverned_and_json_object(tmp_path):
    p = tmp_path / "a.policy"
    p.write_text(GOOD + 'policy host {\n    subject all except exe "/usr/bin/policyc"\n    deny bpf\n}\n')
    code, out, _ = _explain(p, "/usr/bin/policyc", "bpf")
    assert code == 0 and "no policy governs this process" in out and "host" not in out
    code, out, _ = _explain(p, "/usr/bin/policyc", "bpf", as_json=True)
    d = json.loads(out)
    assert d["version"] == 1 and d["governed"] is False and d["policy"] is None and d["by"] == "ungoverned"
    code, out, _ = _explain(p, "/usr/bin/app", "exec", "/usr/bin/curl", as_json=True)
    d = json.loads(out)
    assert d["governed"] is True and d["rule"] == f"{p}:5:5"          # the string stays
    assert d["rule_location"] == {"file": str(p), "line": 5, "col": 5}
    assert d["governing"][0]["rule_location"] == {"file": str(p), "line": 5, "col": 5}
    r = policyc("explain", str(p), "--exe", "/usr/bin/app", "--op", "bpf", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == 1


# --- exec: events never on the child's stdout --------------------------------------------------
def test_exec_events_go_to_stderr_or_a_file(tmp_path, monkeypatch):
    from policyc.cli import exec_cmd

    record = {"type": "event", "decision": "deny"}

    def fake_run(manifest, argv, err, json_events=False):
        err.write(json.dumps(record) + "\n" if json_events else "policyc: deny ...\n")
        err.write("policyc: note: cgroup `/x` does not exist here\n")
        return 0

    monkeypatch.setattr(exec_cmd, "manifests_for", lambda paths, names, out, err: (0, [tmp_path / "m.json"]))
    monkeypatch.setattr(exec_cmd, "run_command", fake_run)
    out, err = io.StringIO(), io.StringIO()
    assert exec_cmd.run_exec("p.policy", None, ["true"], True, out, err) == 0
    assert out.getvalue() == "" and json.loads(err.getvalue().splitlines()[0]) == record
    events = tmp_path / "events.jsonl"
    out, err = io.StringIO(), io.StringIO()
    assert exec_cmd.run_exec("p.policy", None, ["true"], False, out, err, events=str(events)) == 0
    assert out.getvalue() == "" and "note:" in err.getvalue() and "{" not in err.getvalue()
    assert [json.loads(x) for x in events.read_text().splitlines()] == [record]
    assert exec_cmd.run_exec("p.policy", None, ["true"], False, out, err, events=str(tmp_path / "no/dir/x")) == 2


def test_lsp_without_the_extra_says_how_to_install_it():
    code = """
import sys
class NoPygls:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pygls", "lsprotocol"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, NoPygls())
sys.argv = ["policyc", "lsp"]
from policyc.cli.main import main
main()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "pip install 'policyc[lsp]'" in r.stderr, r.stderr
