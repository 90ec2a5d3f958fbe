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


# --- safe learning (issue #17) -------------------------------------------------------------------
import doctest  # noqa: E402

import policyc.ir.essentials as essentials  # noqa: E402
from policyc.audit.logfile import Record  # noqa: E402
from policyc.audit.suggest import MAX_WIDEN, Options, options, propose  # noqa: E402

UNKNOWN = Options(lister=lambda d: None)   # no directory can be listed: deterministic


def _tree(spec: dict[str, list[str]]):
    """A lister over a fake file system: {dir: [names]}, a name ending in `/` a directory."""
    def lister(d):
        if d not in spec:
            return None
        return sorted((n.rstrip("/"), n.endswith("/")) for n in spec[d])
    return lister


def _learn(tmp_path, recs, opts=UNKNOWN, **kw):
    text = suggest(read_records([write_log(tmp_path / "l.jsonl", recs)]), opts=opts, **kw)
    _checks_clean(tmp_path, text)
    return text


def _rules(text: str) -> list[str]:
    body = text.split("-suggested {", 1)[1]
    return [ln.strip() for ln in body.splitlines() if ln.strip().startswith("allow")]


def _comments_before(text: str, rule: str) -> list[str]:
    lines = [ln.strip() for ln in text.splitlines()]
    i = lines.index(rule)
    out = []
    while i > 0 and lines[i - 1].startswith("#"):
        i -= 1
        out.insert(0, lines[i])
    return out


def test_essentials_doctests_and_overlap():
    res = doctest.testmod(essentials)
    assert res.failed == 0 and res.attempted > 0
    g = essentials.glob_parts
    # a pattern essential against a pattern: the languages intersect (product construction)
    assert essentials.overlap(g("/etc/ssh/*_key"), g("/etc/ssh/ssh_host_*_key"))
    assert not essentials.overlap(g("/etc/ssh/*.pub"), g("/etc/ssh/ssh_host_*_key"))
    assert essentials.overlap(g("/home/*/.ssh/**"), g("/home/{ann,bob}/.ssh/id_ed25519"))
    # the paths seen are left out, exactly
    assert not essentials.overlap(g("/dev/{mem,null}"), g("/dev/mem"), {"/dev/mem"})
    assert essentials.overlap(g("/dev/{mem,kmem}"), g("/dev/*mem"), {"/dev/mem"})
    assert essentials.essential_address("::ffff:169.254.169.254").why.startswith("the cloud metadata")
    assert essentials.essential_address("10.0.0.1") is None and essentials.essential_address(None) is None


def test_etc_reads_never_become_etc_star(tmp_path):
    recs = [_default(p) for p in ("/etc/passwd", "/etc/group", "/etc/hosts")]
    for opts in (UNKNOWN, Options(max_widen=10_000, lister=_tree({"/etc": ["passwd", "group", "hosts"]}))):
        text = _learn(tmp_path, recs, opts)
        assert _rules(text) == ['allow file read "/etc/group", "/etc/hosts", "/etc/passwd"']
        assert '# not collapsed to "/etc/*" (file read): it would also allow /etc/shadow (password hashes)' in text


def test_pattern_essential_blocks_a_glob(tmp_path):
    recs = [_default(f"/etc/ssh/{n}") for n in ("ssh_config", "moduli", "ssh_host_ed25519_key.pub")]
    text = _learn(tmp_path, recs)
    assert not any("/etc/ssh/*" in r for r in _rules(text))
    assert "/etc/ssh/ssh_host_*_key (SSH host private keys)" in text
    # glob characters in a seen path become `?`: when that names an essential too, no rule
    text = _learn(tmp_path, [_default("/etc/shado*"), _default("/srv/a{b}")])
    assert _rules(text) == ['allow file read "/srv/a?b?"']
    assert "not proposed: \"/etc/shado?\"" in text


def test_essentials_seen_are_allowed_with_a_warning(tmp_path):
    # every essential /dev/* could name was seen: the glob may stand, with a warning
    recs = [_default(f"/dev/{n}") for n in ("mem", "kmem", "port", "null")] + [_default("/etc/shadow")]
    text = _learn(tmp_path, recs)
    assert 'allow file read "/dev/*"' in _rules(text) and 'allow file read "/etc/shadow"' in _rules(text)
    warn = _comments_before(text, 'allow file read "/dev/*"')[-1]
    assert warn.startswith("# warning: it allows the host essentials /dev/mem (physical memory)")
    assert "overrides the policy's `default` (p.policy:4:5)" in warn
    assert _comments_before(text, 'allow file read "/etc/shadow"') == [
        '# warning: "/etc/shadow" is a host essential (password hashes), seen in the log: '
        "this allow overrides the policy's `default` (p.policy:4:5)"]
    # one essential not seen (/dev/port): no glob
    text = _learn(tmp_path, recs[:2] + recs[3:])
    assert not any("/dev/*" in r for r in _rules(text)) and "/dev/port (I/O ports)" in text


def test_glob_comment_names_seen_paths_and_siblings(tmp_path):
    recs = [_default(f"/srv/data/{n}.txt") for n in "abcd"]
    fs = {"/srv/data": [f"{n}.txt" for n in "abcdef"]}
    text = _learn(tmp_path, recs, Options(lister=_tree(fs)))
    assert _comments_before(text, 'allow file read "/srv/data/*"') == [
        '# "/srv/data/*" stands for 4 paths seen: /srv/data/a.txt, /srv/data/b.txt, /srv/data/c.txt, /srv/data/d.txt',
        "# it also matches here: e.txt, f.txt (2 unseen)"]
    text = _learn(tmp_path, recs)
    assert "# it also matches here: unknown (/srv/data cannot be listed on this host)" in text
    text = _learn(tmp_path, recs, Options(lister=_tree({"/srv/data": [f"{n}.txt" for n in "abcd"]})))
    assert "# it also matches here: nothing else" in text
    # `**`: the walk goes down; the directories holding seen paths are not counted
    deep = [_default(f"/srv/www/{d}/{f}") for d in "xyz" for f in "123"]
    fs = {"/srv/www": ["x/", "y/", "z/", "w/"], **{f"/srv/www/{d}": ["1", "2", "3"] for d in "xyz"},
          "/srv/www/w": ["secret"]}
    text = _learn(tmp_path, deep, Options(lister=_tree(fs)))
    assert 'allow file read "/srv/www/**"' in _rules(text)
    assert "# it also matches here: w, w/secret (2 unseen)" in text


def test_the_default_lister_reads_this_host(tmp_path):
    d = tmp_path / "site"
    d.mkdir()
    for n in ("a", "b", "c", "d", "e"):
        (d / n).write_text(n)
    recs = [_default(str(d / n)) for n in "abc"]
    text = _learn(tmp_path, recs, Options())
    assert f'allow file read "{d}/*"' in _rules(text) and "# it also matches here: d, e (2 unseen)" in text


def test_max_widen_bounds_unseen_siblings(tmp_path):
    recs = [_default(f"/usr/bin/{n}") for n in ("cat", "ls", "sh")]
    fs = {"/usr/bin": ["cat", "ls", "sh"] + [f"tool{i:02}" for i in range(MAX_WIDEN + 1)]}
    text = _learn(tmp_path, recs, Options(lister=_tree(fs)))
    assert _rules(text) == ['allow file read "/usr/bin/cat", "/usr/bin/ls", "/usr/bin/sh"']
    assert (f'# not collapsed to "/usr/bin/*" (file read): it would also match more than {MAX_WIDEN} entries '
            f"no event named (tool00, tool01, tool02, tool03, tool04, ...; --max-widen {MAX_WIDEN})") in text
    text = _learn(tmp_path, recs, Options(max_widen=MAX_WIDEN + 1, lister=_tree(fs)))
    assert _rules(text) == ['allow file read "/usr/bin/*"']
    # 0: only a directory whose every entry was seen collapses
    assert _rules(_learn(tmp_path, recs, Options(max_widen=0, lister=_tree({"/usr/bin": ["cat", "ls", "sh"]})))) \
        == ['allow file read "/usr/bin/*"']
    assert _rules(_learn(tmp_path, recs, Options(max_widen=0, lister=_tree(fs)))) == [
        'allow file read "/usr/bin/cat", "/usr/bin/ls", "/usr/bin/sh"']
    # a refused `**` falls back to the `*` of each subdirectory
    deep = [_default(f"/srv/www/{d}/{f}") for d in "xyz" for f in "123"]
    fs = {"/srv/www": ["x/", "y/", "z/"] + [f"u{i}" for i in range(5)],
          **{f"/srv/www/{d}": ["1", "2", "3"] for d in "xyz"}}
    assert _rules(_learn(tmp_path, deep, Options(max_widen=4, lister=_tree(fs)))) == [
        'allow file read "/srv/www/x/*"', 'allow file read "/srv/www/y/*"', 'allow file read "/srv/www/z/*"']


def test_widen_served_tree(tmp_path):
    pages = [_default(f"/var/www/html/{p}") for p in ("index.html", "about/team.html")]
    text = _learn(tmp_path, pages + [_default("/etc/nginx/nginx.conf")],
                  options(widen=["/var/www/html/"], lister=_tree({"/var/www/html": ["index.html", "about/", "blog/"],
                                                                 "/var/www/html/about": ["team.html"],
                                                                 "/var/www/html/blog": ["one.html"]})))
    assert _rules(text) == ['allow file read "/etc/nginx/nginx.conf"', 'allow file read "/var/www/html/**"']
    assert _comments_before(text, 'allow file read "/var/www/html/**"') == [
        '# "/var/www/html/**" stands for 2 paths seen: /var/www/html/about/team.html, /var/www/html/index.html',
        "# widened on request (--widen /var/www/html)",
        "# it also matches here: blog, blog/one.html (2 unseen)"]
    # --max-widen does not bound what was asked for
    assert 'allow file read "/var/www/html/**"' in _rules(_learn(tmp_path, pages, options(0, ["/var/www/html"])))
    # never over an essential; a tree without events is said
    text = _learn(tmp_path, [_default("/etc/passwd"), _default("/etc/hosts")], options(widen=["/etc", "/srv"]))
    assert _rules(text) == ['allow file read "/etc/hosts", "/etc/passwd"']
    assert '# not widened to "/etc/**" (file read): it would also allow /etc/shadow' in text
    assert "# --widen /srv: no file events under it, nothing widened" in text


def _connect(addr4: bytes, port: int, **kw):
    addr = bytes(10) + b"\xff\xff" + addr4
    return record(family="net", hook="socket_connect", op=0, port=port, proto=1, addr=addr, path="", **kw)


def test_metadata_address_is_never_a_silent_allow(tmp_path):
    meta = bytes([169, 254, 169, 254])
    recs = [_connect(meta, 80, rule_id=0, reason=1, decision=1, mode=1),
            _connect(bytes([10, 1, 2, 3]), 443, rule_id=0, reason=1, decision=1, mode=1)]
    text = _learn(tmp_path, recs)
    assert _comments_before(text, "allow net connect tcp 169.254.169.254 port 80") == [
        "# warning: 169.254.169.254 is the cloud metadata service (instance credentials), a host essential: "
        "this allow overrides the policy's `default` (p.policy:4:5)"]
    assert _comments_before(text, "allow net connect tcp 10.1.2.3 port 443") == []
    # an address a deny rule of the policy names (its events kept, audit mode): the allow names that rule
    denied = _connect(bytes([10, 1, 2, 3]), 8443, rule_id=2, reason=0, decision=1, mode=1)
    denied["rule_text"] = "deny net connect tcp 10.0.0.0/8 port 8443"
    text = _learn(tmp_path, recs + [denied])
    assert "# kept: 1 events decided by rule p.policy:7:5 (deny net connect tcp 10.0.0.0/8 port 8443)" in text
    assert _comments_before(text, "allow net connect tcp 10.1.2.3 port 443") == [
        "# warning: rule p.policy:7:5 (deny net connect tcp 10.0.0.0/8 port 8443) denies 10.1.2.3; this allow "
        "would override what it stands for (it allows another protocol or port)"]
    assert "port 8443" not in " ".join(_rules(text))
    # the metadata address decided by an explicit deny rule stays a comment
    meta_denied = _connect(meta, 80, rule_id=2, reason=0, decision=1, mode=1)
    meta_denied["rule_text"] = "deny net connect any 169.254.169.254"
    text = _learn(tmp_path, [meta_denied, _default("/x/y")])
    assert "169.254.169.254" not in " ".join(_rules(text)) and "# kept: 1 events" in text


def test_kernel_interfaces_carry_warnings(tmp_path):
    recs = [record(family="module", hook="kernel_module_request", path="", rule_id=0, reason=1),
            record(family="bpf", hook="bpf", path="", rule_id=0, reason=1),
            record(family="capability", hook="capable", aux=16, path="", rule_id=0, reason=1),
            record(family="capability", hook="capable", aux=12, path="", rule_id=0, reason=1)]
    text = _learn(tmp_path, recs)
    assert _rules(text) == ["allow capability net_admin", "allow capability sys_module", "allow module load",
                            "allow bpf"]
    for rule in _rules(text)[1:]:
        assert _comments_before(text, rule)[-1].startswith("# warning: ")


def test_suggest_reads_only_the_contracted_fields(tmp_path):
    allowed = {"policy", "type", "decision", "mode", "family", "op", "reason", "rule_id", "rule", "rule_text",
               "object", "failed_closed"}

    class Strict(dict):
        def __getitem__(self, k):
            assert k in allowed, k
            return super().__getitem__(k)

        def get(self, k, default=None):
            assert k in allowed, k
            return super().get(k, default)

    recs = [_default(f"/srv/d/{n}") for n in "abc"] + [record(path="/etc/shadow", decision=1, mode=1),
                                                        _connect(bytes([169, 254, 169, 254]), 80, rule_id=0, reason=1),
                                                        _default("pipe:[1]"), record(rule_id=0, reason=2, path="")]
    strict = [Record("l.jsonl", i, Strict({k: v for k, v in r.items() if k not in ("subject", "host")}))
              for i, r in enumerate(recs, 1)]
    text = suggest(strict, opts=UNKNOWN)
    assert 'allow file read "/srv/d/*"' in text
    _checks_clean(tmp_path, text)


def _interactive(tmp_path, recs, answers: str, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = run_suggest([write_log(tmp_path / "i.jsonl", recs)], None, out, err, interactive=True,
                       stdin=io.StringIO(answers), lister=lambda d: None, **kw)
    assert code == 0, err.getvalue()
    _checks_clean(tmp_path, out.getvalue())
    return out.getvalue(), err.getvalue()


INTERACTIVE_RECS = ([_default("/etc/app.conf")] + [_default(f"/srv/data/{n}") for n in "abc"]
                    + [_default(f"/srv/logs/{n}", op=1) for n in "xyz"]
                    + [record(family="capability", hook="capable", aux=21, path="", rule_id=0, reason=1)])


def test_interactive_accept_narrow_skip(tmp_path):
    # items: exact /etc/app.conf, glob /srv/data/*, glob /srv/logs/*, capability
    text, err = _interactive(tmp_path, INTERACTIVE_RECS, "a\nn\nwhat\ns\nn\ns\n")
    assert _rules(text) == ['allow file read "/etc/app.conf"',
                            'allow file read "/srv/data/a", "/srv/data/b", "/srv/data/c"']
    assert '# narrowed in review: allow file read "/srv/data/*"' in text
    assert '# skipped in review: allow file write "/srv/logs/*"' in text
    assert "# skipped in review: allow capability sys_admin" in text
    assert "[2/4]" in err and '"/srv/data/*" stands for 3 paths seen' in err
    assert "answer a, n or s (not `what`)" in err
    assert "nothing to narrow" in err   # `n` on the capability: asked again
    assert "(a)ccept, (n)arrow to the paths seen, (s)kip?" in err and "(a)ccept, (s)kip?" in err


def test_interactive_end_of_input_skips_the_rest(tmp_path):
    text, err = _interactive(tmp_path, INTERACTIVE_RECS, "a\naccept\n")
    assert _rules(text) == ['allow file read "/etc/app.conf"', 'allow file read "/srv/data/*"']
    assert '# not reviewed (the answers ended): allow file write "/srv/logs/*"' in text
    assert "# the answers ended: 2 rules were not reviewed and are left out" in text
    assert "the 2 rules not reviewed are left out" in err


def test_option_errors_exit_2(tmp_path):
    log = write_log(tmp_path / "a.jsonl", [_default("/x/y")])
    for kw, msg in (({"max_widen": -1}, "--max-widen must be 0 or more"),
                    ({"widen": ["var/www"]}, "--widen `var/www`: name an absolute directory"),
                    ({"widen": ["/var/www/*"]}, "name a directory, not a glob"),
                    ({"interactive": True}, "give the log as a file, not `-`")):
        err = io.StringIO()
        paths = ["-"] if kw.get("interactive") else [log]
        assert run_suggest(paths, None, io.StringIO(), err, **kw) == 2
        assert msg in err.getvalue() and err.getvalue().startswith("policyc: error: ")


def test_cli_options(tmp_path):
    from typer.testing import CliRunner

    from policyc.cli.main import app

    log = write_log(tmp_path / "a.jsonl", [_default(f"/var/www/html/{p}") for p in ("a.html", "b.html")]
                    + [_connect(bytes([169, 254, 169, 254]), 80, rule_id=0, reason=1)])
    res = CliRunner().invoke(app, ["suggest", log, "--widen", "/var/www/html", "--max-widen", "3"])
    assert res.exit_code == 0, res.output
    assert 'allow file read "/var/www/html/**"' in res.output
    assert "1 suggested rules allow a host essential" in res.output
    res = CliRunner().invoke(app, ["suggest", log, "--max-widen", "-1"])
    assert res.exit_code == 2 and "--max-widen must be 0 or more" in res.output
    res = CliRunner().invoke(app, ["suggest", log, "-i"], input="s\n")
    assert res.exit_code == 0 and _rules(res.stdout) == []
    assert "[2/2]" in res.stderr and "the 1 rules not reviewed are left out" in res.stderr
    assert "# skipped in review: allow file read" in res.stdout
    _checks_clean(tmp_path, res.stdout)
