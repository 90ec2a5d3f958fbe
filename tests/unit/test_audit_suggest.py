"""`policyc suggest`: the smallest set of allow rules, globs for many siblings, explicit deny
rules kept, and text that passes `policyc check`."""

from __future__ import annotations

import io

from policyc.audit.logfile import read_records
from policyc.audit.suggest import collapse_paths, literal, quote, suggest
from policyc.checks import run_checks
from policyc.cli.suggest_cmd import run_suggest
from policyc.diagnostics import Diagnostics
from policyc.lower import load_program

from _audit_helpers import record, write_log

EXEC_MAP = 9


def _default(path, op=0, family="file", hook="file_open", **kw):
    return record(path=path, op=op, family=family, hook=hook, rule_id=0, reason=1, decision=1, mode=1, **kw)


def _checks_clean(tmp_path, text: str) -> None:
    p = tmp_path / "s.policy"
    p.write_text(text)
    diags = Diagnostics()
    program = load_program([str(p)], diags)
    assert program is not None
    run_checks(program, diags)
    assert not diags.has_errors, [str(d) for d in diags.items]


def test_collapse_siblings_and_deep():
    assert collapse_paths({"/a/b/1", "/a/b/2"}) == ["/a/b/1", "/a/b/2"]
    assert collapse_paths({"/a/b/1", "/a/b/2", "/a/b/3", "/a/c"}) == ["/a/b/*", "/a/c"]
    deep = {f"/srv/www/{d}/{f}" for d in "xyz" for f in "123"}
    assert collapse_paths(deep) == ["/srv/www/**"]
    # never in the first two levels
    top = {f"/usr/{d}/{f}" for d in "xyz" for f in "123"}
    assert collapse_paths(top) == ["/usr/x/*", "/usr/y/*", "/usr/z/*"]
    assert collapse_paths({"/a", "/b", "/c"}) == ["/a", "/b", "/c"]  # never `/*`


def test_quote_neutralizes_glob_characters():
    assert literal("/a/b*c?{d}$[e]") == "/a/b?c??d???e?"
    assert collapse_paths({"/a/{x}"}) == ["/a/?x?"]
    assert quote('/a"b\\c') == '"/a\\"b\\\\c"'


def test_suggest_groups_ops_and_keeps_explicit_denies(tmp_path):
    recs = [_default(f"/srv/data/{n}.txt") for n in "abcd"]
    recs += [_default("/etc/app.conf"), _default("/etc/app.conf", op=1)]
    recs += [_default("/usr/lib/libc.so.6", op=EXEC_MAP), _default("/usr/lib/libc.so.6")]
    recs += [_default("/usr/bin/cat", family="exec", hook="bprm_check_security", op=10)]
    recs += [record(path="/etc/shadow", decision=1, mode=1)]  # decided by rule 1: kept
    recs += [_default("pipe:[123]")]
    log = write_log(tmp_path / "a.jsonl", recs)
    text = suggest(read_records([log]))
    body = text.split("ruleset web-suggested {", 1)[1]
    assert 'allow file read "/srv/data/*"' in body
    assert 'allow file read, write "/etc/app.conf"' in body
    assert 'allow file exec-map, read "/usr/lib/libc.so.6"' in body
    assert 'allow exec "/usr/bin/cat"' in body
    assert "shadow" not in body and "pipe" not in body
    assert "# kept: 1 events decided by rule p.policy:6:5" in text
    assert "not a path" in text
    _checks_clean(tmp_path, text)


def test_suggest_net_caps_signals(tmp_path):
    addr = bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    recs = [record(family="net", hook="socket_connect", op=0, port=443, proto=1, addr=addr, path="",
                   rule_id=0, reason=1),
            record(family="net", hook="socket_bind", op=1, port=8080, proto=1, path="", rule_id=0, reason=1),
            record(family="net", hook="socket_create", op=2, proto=32, path="", rule_id=0, reason=1),
            record(family="capability", hook="capable", aux=21, path="", rule_id=0, reason=1),
            record(family="signal", hook="task_kill", aux=15, target_pid=5, path="/usr/sbin/x", rule_id=0, reason=1),
            record(family="ptrace", hook="ptrace_access_check", target_pid=5, path="", rule_id=0, reason=1),
            record(family="module", hook="kernel_module_request", path="", rule_id=0, reason=1),
            record(family="bpf", hook="bpf", path="", rule_id=0, reason=1),
            record(rule_id=0, reason=2, path="")]
    text = suggest(read_records([write_log(tmp_path / "n.jsonl", recs)]))
    for line in ("allow net connect tcp 10.1.2.3 port 443", "allow net bind tcp port 8080", "allow net create any",
                 "allow capability sys_admin", 'allow signal term to exe "/usr/sbin/x"', "allow ptrace",
                 "allow module load", "allow bpf"):
        assert line in text
    assert "failed closed: path-too-long" in text
    _checks_clean(tmp_path, text)


def test_policy_filter_and_errors(tmp_path):
    log = write_log(tmp_path / "a.jsonl", [_default("/x/y")])
    out, err = io.StringIO(), io.StringIO()
    assert run_suggest([log], "web", out, err) == 0 and "ruleset web-suggested" in out.getvalue()
    err = io.StringIO()
    assert run_suggest([log], "other", io.StringIO(), err) == 2
    assert "no events of policy `other`" in err.getvalue() and "web" in err.getvalue()
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    err = io.StringIO()
    assert run_suggest([str(empty)], None, io.StringIO(), err) == 2 and "no events" in err.getvalue()
