"""`protect policyc` (docs/language.md, "Self-protection"): the statement lowers into ordinary
deny rules after the written ones, spanned on the statement, with canonical texts; errors;
fmt; the evaluator's decision for each attack, with a control beside each; explain; test
blocks; checks that stay quiet about the added rules; a build whose manifest carries them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policyc import install
from policyc import paths as P
from policyc.cli.main import app
from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide
from policyc.fmt import format_text
from policyc.ir.glob import matcher, parse_glob, path_bytes
from policyc.ir.model import Event
from policyc.span import Span
from policyc.deploy import read_manifest

from _policyc_helpers import ROOT, check, codes, found, load

APP = "/usr/bin/app"
POLICY = f'''policy app {{
    subject exe "{APP}"
    allow file read "/srv/**"
    deny exec "/usr/bin/curl"
    protect policyc
}}
'''
PROTECT_LINE = 5
WRITES = ("write", "append", "create", "delete", "rename", "link", "chmod", "chown")
EXPECTED_TEXTS = [
    'deny file write, append, create, delete, rename, link, chmod, chown "/etc/policyc", "/etc/policyc/**", '
    '"/var/lib/policyc", "/var/lib/policyc/**", "/var/log/policyc", "/var/log/policyc/**", "/run/policyc", '
    '"/run/policyc/**"',
    'deny file write, append, create, delete, rename, link, chmod, chown "/sys/fs/bpf/policyc", "/sys/fs/bpf/policyc/**"',
    'deny file write, append, create, delete, rename, link, chmod, chown "/etc/systemd/system/policyc*.service", '
    '"/etc/systemd/system/policyc*.service.d", "/etc/systemd/system/policyc*.service.d/**", '
    '"/etc/systemd/system/policyc.slice", "/etc/systemd/system/policyc.slice.d", '
    '"/etc/systemd/system/policyc.slice.d/**", '
    '"/run/systemd/system/policyc*.service", "/run/systemd/system/policyc*.service.d", '
    '"/run/systemd/system/policyc*.service.d/**", "/run/systemd/system/policyc.slice", '
    '"/run/systemd/system/policyc.slice.d", "/run/systemd/system/policyc.slice.d/**", '
    '"/etc/systemd/system/*.wants/policyc*.service"',
    'deny file write, append, create, delete, rename, link, chmod, chown '
    '"/sys/fs/cgroup/policyc.slice", "/sys/fs/cgroup/policyc.slice/**", "/sys/fs/cgroup/cgroup.procs", '
    '"/sys/fs/cgroup/**/cgroup.procs", "/sys/fs/cgroup/cgroup.threads", "/sys/fs/cgroup/**/cgroup.threads"',
    'deny file write "/run/systemd/private"',
    'deny bpf',
    'deny module',
    'deny signal to cgroup "/policyc.slice"',
    'deny ptrace to cgroup "/policyc.slice"',
    'deny mount "/sys/fs/bpf", "/sys/fs/bpf/**", "/etc/policyc", "/etc/policyc/**", "/var/lib/policyc", '
    '"/var/lib/policyc/**", "/", "/sys", "/sys/fs", "/etc", "/var", "/var/lib", "/run", "/run/policyc"',
]


@pytest.fixture
def program(tmp_path):
    prog, diags = load(tmp_path, POLICY)
    assert prog is not None, [d.message for d in diags.items]
    return prog


def _decide(program, op, **kw):
    return decide(program, Event(APP, op, **kw))


# --- lowering ------------------------------------------------------------------------------------
def test_rules_come_after_the_written_ones_with_the_statements_span_and_canonical_texts(program):
    (pol,) = program.policies
    written, added = pol.rules[:2], pol.rules[2:]
    assert [r.id for r in written] == [1, 2] and [r.protect for r in written] == [None, None]
    assert [r.id for r in added] == list(range(3, 3 + len(EXPECTED_TEXTS)))
    assert [r.text for r in added] == EXPECTED_TEXTS
    assert {r.protect for r in added} == {"policyc"} and {r.decision for r in added} == {"deny"}
    for r in added:
        assert (r.span.line, r.span.col, r.span.end_line, r.span.end_col) == (PROTECT_LINE, 5, PROTECT_LINE, 20)
        assert all(g.span == r.span for g in r.paths)
    assert pol.protect_span is not None and pol.protect_span.line == PROTECT_LINE


def test_each_added_rule_is_what_its_text_says_when_written(tmp_path, program):
    """The texts are real rules: written out by hand they lower to the same model."""
    body = "\n".join(f"    {t}" for t in EXPECTED_TEXTS)
    by_hand, diags = load(tmp_path, f'policy app {{\n    subject exe "{APP}"\n{body}\n}}\n', name="h.policy")
    assert by_hand is not None, [d.message for d in diags.items]

    def shape(r):
        return (r.decision, r.family, r.ops, tuple(g.text for g in r.paths), r.target and (r.target.kind, r.target.cgroup),
                r.all_ops)
    assert [shape(r) for r in by_hand.policies[0].rules] == [shape(r) for r in program.policies[0].rules[2:]]


def test_paths_come_from_their_constants(monkeypatch, tmp_path):
    monkeypatch.setattr(install, "ETC", "/opt/pc/etc")
    monkeypatch.setattr(P, "DEFAULT_PIN_ROOT", "/sys/fs/bpf/other")
    prog, _ = load(tmp_path, POLICY)
    texts = [r.text for r in prog.policies[0].rules]
    assert any('"/opt/pc/etc", "/opt/pc/etc/**"' in t for t in texts)
    assert any('"/sys/fs/bpf/other", "/sys/fs/bpf/other/**"' in t for t in texts)
    assert not any('"/etc/policyc"' in t for t in texts)


def test_the_unit_glob_covers_every_installed_unit_and_the_paths_are_the_runtimes_and_deploys(monkeypatch):
    g = matcher(parse_glob(P.UNIT_GLOB, Span("x", 1, 1, 1, 1), Diagnostics()).parts)
    assert all(g.matches(path_bytes(u)) for u in install.UNITS)
    assert not g.matches(path_bytes("nginx.service"))
    from policyc import deploy, runtime
    from policyc.runtime import loader
    assert runtime.DEFAULT_PIN_ROOT == P.DEFAULT_PIN_ROOT == "/sys/fs/bpf/policyc"
    assert loader.BPFFS == P.BPFFS
    assert deploy.CGROUP_ROOT == P.CGROUP_ROOT
    monkeypatch.delenv("POLICYC_STATE_DIR", raising=False)
    assert str(deploy.state_dir()) == P.STATE_DIR


def test_a_policy_without_protect_has_only_its_rules(tmp_path):
    prog, _ = load(tmp_path, POLICY.replace("    protect policyc\n", ""))
    assert len(prog.policies[0].rules) == 2 and prog.policies[0].protect_span is None


# --- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, code, line, col", [
    (POLICY.replace("protect policyc", "protect policy"), "P017", PROTECT_LINE, 13),
    (POLICY.replace("protect policyc", "protect policyc\n    protect policyc"), "P015", PROTECT_LINE + 1, 5),
    ('ruleset base {\n    deny bpf\n    protect policyc\n}\n' + POLICY.replace("protect policyc", "use base"),
     "P017", 3, 5),
])
def test_errors_point_at_the_statement(tmp_path, text, code, line, col):
    prog, diags = load(tmp_path, text)
    assert prog is None and found(diags) == [(code, line, col)]


def test_unknown_name_has_a_did_you_mean(tmp_path):
    _, diags = load(tmp_path, POLICY.replace("protect policyc", "protect policy"))
    (d,) = diags.items
    assert "did you mean `policyc`?" in d.hints
    _, diags = load(tmp_path, POLICY.replace("protect policyc", "protect everything"))
    assert any("`protect policyc`" in h for h in diags.items[0].hints)


def test_twice_notes_the_first(tmp_path):
    _, diags = load(tmp_path, POLICY.replace("protect policyc", "protect policyc\n    protect policyc"))
    (d,) = diags.items
    assert d.notes[0].span.line == PROTECT_LINE


@pytest.mark.parametrize("replacement, where", [
    ("protect policy", f":{PROTECT_LINE}:13: error[P017]"),
    ("protect policyc\n    protect policyc", f":{PROTECT_LINE + 1}:5: error[P015]"),
])
def test_cli_check_exits_2_with_file_line_col(tmp_path, replacement, where):
    p = tmp_path / "bad.policy"
    p.write_text(POLICY.replace("protect policyc", replacement))
    r = CliRunner().invoke(app, ["check", str(p)])
    assert r.exit_code == 2, r.output
    assert f"{p}{where}" in r.output


def test_cli_check_of_protect_in_a_ruleset_exits_2(tmp_path):
    p = tmp_path / "rs.policy"
    p.write_text('ruleset base {\n    protect policyc\n}\n' + POLICY.replace("protect policyc", "use base"))
    r = CliRunner().invoke(app, ["check", str(p)])
    assert r.exit_code == 2 and f"{p}:2:5: error[P017]" in r.output, r.output
    assert "belongs in a policy" in r.output


# --- fmt -----------------------------------------------------------------------------------------
def test_fmt_keeps_protect():
    src = 'policy a {\n  subject all\n      protect   policyc   # keep\n}\n'
    out = format_text("a.policy", src, Diagnostics())
    assert out == 'policy a {\n    subject all\n    protect policyc  # keep\n}\n'
    assert format_text("a.policy", out, Diagnostics()) == out


# --- the evaluator: each attack denied, a control beside it allowed -----------------------------
@pytest.mark.parametrize("path", [
    "/etc/policyc/policies.d/web.policy", "/etc/policyc", "/var/lib/policyc/web.bpf.o",
    "/var/lib/policyc/web.manifest.json", "/var/log/policyc/audit.jsonl", "/run/policyc/web.manifest.json",
    "/sys/fs/bpf/policyc/web/links/file_open", "/sys/fs/bpf/policyc/web/maps/subjects",
    "/etc/systemd/system/policyc.service", "/etc/systemd/system/policyc-audit.service",
    "/etc/systemd/system/policyc-audit.service.d/override.conf", "/etc/systemd/system/policyc-.service.d/x.conf",
    "/run/systemd/system/policyc.service", "/run/systemd/system/policyc.service.d/50-x.conf",
    "/etc/systemd/system/sysinit.target.wants/policyc.service",
    "/etc/systemd/system/multi-user.target.wants/policyc-audit.service",
    "/sys/fs/cgroup/policyc.slice/policyc-audit.service/cgroup.kill",
    "/sys/fs/cgroup/policyc.slice/cgroup.kill",
    "/sys/fs/cgroup/policyc.slice/policyc-audit.service/cgroup.freeze",
    "/sys/fs/cgroup/policyc.slice/policyc.service/cgroup.procs",
    "/etc/systemd/system/policyc.slice.d/x.conf",
    # moving a process: the audit reader out of the slice, or anything into it
    "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/system.slice/nginx.service/cgroup.procs",
    "/sys/fs/cgroup/user.slice/cgroup.threads",
])
@pytest.mark.parametrize("op", ["file.write", "file.delete", "file.create"])
def test_changing_policycs_files_is_denied(program, path, op):
    d = _decide(program, op, path=path)
    assert d.action == "deny" and d.rule.protect == "policyc" and d.rule.span.line == PROTECT_LINE


@pytest.mark.parametrize("path", [
    "/tmp/x", "/etc/passwd-policyc", "/etc/policyc-other/x", "/var/lib/other/x", "/sys/fs/bpf/other/pin",
    "/etc/systemd/system/nginx.service", "/etc/systemd/system/multi-user.target.wants/nginx.service",
    "/sys/fs/cgroup/system.slice/nginx.service/cgroup.kill", "/run/systemd/journal/socket",
])
def test_writes_elsewhere_stay_allowed(program, path):
    d = _decide(program, "file.write", path=path)
    assert d.action == "allow" and d.by == "default"


def test_reading_policycs_files_stays_allowed(program):
    assert _decide(program, "file.read", path="/etc/policyc/policies.d/web.policy").action == "allow"
    assert _decide(program, "file.read", path="/sys/fs/bpf/policyc/web/maps/events").action == "allow"


def test_systemctls_private_socket_is_denied(program):
    d = _decide(program, "file.write", path="/run/systemd/private")
    assert d.action == "deny" and d.rule.text == 'deny file write "/run/systemd/private"'


def test_bpf_and_module_loads_are_denied(program):
    for op in ("bpf", "module.load"):
        d = _decide(program, op)
        assert d.action == "deny" and d.rule.protect == "policyc", op


@pytest.mark.parametrize("target", ["/policyc.slice", "/policyc.slice/policyc.service",
                                    "/policyc.slice/policyc-audit.service",
                                    "/policyc.slice/policyc-audit.service/sub"])
def test_signal_and_ptrace_to_policycs_units_are_denied(program, target):
    for sig in ("kill", "term", "stop"):
        d = _decide(program, "signal", signal=sig, target_cgroup=target, target_exe="/usr/bin/python3")
        assert d.action == "deny" and d.rule.family == "signal" and d.rule.span.line == PROTECT_LINE
    d = _decide(program, "ptrace", target_cgroup=target, target_exe="/usr/bin/python3")
    assert d.action == "deny" and d.rule.family == "ptrace"


@pytest.mark.parametrize("target", ["/system.slice/nginx.service", "/policyc.slice-x", "/system.slice/policyc.service",
                                    "/user.slice/user-1000.slice"])
def test_signal_and_ptrace_to_other_cgroups_stay_allowed(program, target):
    assert _decide(program, "signal", signal="kill", target_cgroup=target, target_exe="/usr/bin/sleep").action == "allow"
    assert _decide(program, "ptrace", target_cgroup=target, target_exe="/usr/bin/sleep").action == "allow"


@pytest.mark.parametrize("path", ["/sys/fs/bpf", "/sys/fs/bpf/policyc", "/", "/etc", "/etc/policyc", "/var",
                                  "/var/lib", "/var/lib/policyc/x", "/sys", "/sys/fs", "/run", "/run/policyc"])
def test_mounts_over_policycs_directories_and_their_ancestors_are_denied(program, path):
    d = _decide(program, "mount", path=path)
    assert d.action == "deny" and d.rule.family == "mount"


@pytest.mark.parametrize("path", ["/mnt", "/srv/data", "/var/tmp", "/run/user/1000", "/sys/fs/cgroup"])
def test_other_mounts_stay_allowed(program, path):
    assert _decide(program, "mount", path=path).action == "allow"


def test_an_ungoverned_process_is_trusted(program):
    d = decide(program, Event("/usr/bin/bash", "bpf"))
    assert d.action == "allow" and d.by == "ungoverned"


def test_mode_audit_logs_instead(tmp_path):
    prog, _ = load(tmp_path, POLICY.replace("protect policyc", "protect policyc\n    mode audit"))
    assert decide(prog, Event(APP, "bpf")).action == "audit"


# --- explain, test blocks ------------------------------------------------------------------------
def test_explain_names_the_protect_line(tmp_path):
    p = tmp_path / "app.policy"
    p.write_text(POLICY)
    r = CliRunner().invoke(app, ["explain", str(p), "--exe", APP, "--op", "bpf", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["decision"] == "deny" and out["rule"] == f"{p}:{PROTECT_LINE}:5"
    assert out["rule_text"] == "deny bpf" and out["rule_id"] == 8
    r = CliRunner().invoke(app, ["explain", str(p), "--exe", APP, "--op", "file.delete",
                                 "--path", "/sys/fs/bpf/policyc/web/links/bpf"])
    assert r.exit_code == 0 and f"{p}:{PROTECT_LINE}:5: deny file write" in r.output, r.output


def test_a_test_block_expects_the_denials(tmp_path):
    p = tmp_path / "app.policy"
    p.write_text(POLICY + f'''
test app {{
    exe "{APP}"
    expect deny bpf
    expect deny module load
    expect deny file delete "/sys/fs/bpf/policyc/web/links/file_open"
    expect deny file write "/sys/fs/cgroup/policyc.slice/policyc-audit.service/cgroup.kill"
    expect deny signal kill to cgroup "/policyc.slice/policyc-audit.service"
    expect deny ptrace to cgroup "/policyc.slice/policyc.service"
    expect deny mount "/sys/fs/bpf"
    expect allow file write "/tmp/x"
    expect allow signal kill to cgroup "/system.slice/nginx.service"
}}
''')
    r = CliRunner().invoke(app, ["test", str(p)])
    assert r.exit_code == 0, r.output
    p.write_text(p.read_text().replace("expect allow file write \"/tmp/x\"", "expect allow bpf"))
    r = CliRunner().invoke(app, ["test", str(p)])
    assert r.exit_code == 1, r.output


# --- checks --------------------------------------------------------------------------------------
def _protected_copy(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", d)
    for f in d.glob("*.policy"):
        if "protect policyc" not in f.read_text():   # nginx.policy says it already
            f.write_text(re.sub(r"^(policy [\w-]+ \{)$", r"\1\n    protect policyc", f.read_text(), flags=re.M))
    return d


def test_shipped_policies_protected_get_no_new_diagnostic(tmp_path):
    d = _protected_copy(tmp_path)
    for f in sorted(d.glob("*.policy")):
        assert "protect policyc" in f.read_text()
        before = check(tmp_path, (ROOT / "policies" / f.name).read_text(), name=f"policies/orig-{f.name}")
        after = check(tmp_path, f.read_text(), name=f"policies/{f.name}")
        assert not after.has_errors, (f.name, [d.message for d in after.items])
        # but W112 where a policy governs policyc's own units: `protect policyc` under
        # `subject all` with no exception for /policyc.slice denies the loader its bpf()
        new = [x for x in after.items if x.code == "W112"]
        governs_everything = [p for p in ("host-modules", "host-shadow") if f.name == "host-hardening.policy"]
        assert sorted(x.message.split("`")[1] for x in new) == governs_everything, [x.message for x in new]
        kept = [x for x in after.items if x.code != "W112"]
        assert [x.code for x in kept] == codes(before), (f.name, [(x.code, x.message) for x in kept])


def test_a_written_rule_that_protect_overrides_is_reported_at_the_written_rule(tmp_path):
    text = POLICY.replace("    protect policyc\n", "    protect policyc\n    default deny\n    allow bpf\n"
                          '    allow file write "/etc/policyc/**", "/tmp/**"\n')
    diags = check(tmp_path, text)
    assert found(diags, {"W103", "W106"}) == [("W103", 8, 22), ("W106", 7, 5)]
    for d in diags.items:
        if d.code in ("W103", "W106"):
            assert d.notes[0].span.line == PROTECT_LINE and "protect policyc" in d.notes[0].message


def test_written_rules_beside_protect_are_no_duplicates(tmp_path):
    text = POLICY.replace("    protect policyc\n", "    protect policyc\n    deny bpf\n    deny module load\n"
                          '    deny ptrace\n    deny file write "/etc/**"\n    deny mount "/sys/fs/bpf"\n')
    diags = check(tmp_path, text)
    assert not found(diags, {"W101", "W102", "W103", "W106"}), [(d.code, d.message) for d in diags.items]
    # the written path-scoped mount rule gets its P054; the added one does not
    assert found(diags, {"P054"}) == [("P054", 10, 5)]


def test_the_added_mount_rule_gets_no_p054_and_a_written_one_does(tmp_path):
    assert not found(check(tmp_path, POLICY), {"P054"})
    assert found(check(tmp_path, POLICY.replace("protect policyc", 'deny mount "/sys/fs/bpf"')),
                 {"P054"}) == [("P054", PROTECT_LINE, 5)]


# --- build ---------------------------------------------------------------------------------------
def _has_clang() -> bool:
    from policyc.codegen import find_clang
    try:
        return bool(find_clang())
    except Exception:
        return False


@pytest.mark.skipif(not _has_clang(), reason="clang builds the BPF object")
def test_build_puts_the_rules_in_the_manifest(tmp_path):
    p = tmp_path / "app.policy"
    p.write_text(POLICY)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "policyc", "build", str(p), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    m = read_manifest(out / "app.manifest.json")
    added = [x for x in m["rules"] if x["location"] == f"{p}:{PROTECT_LINE}:5"]
    assert [x["text"] for x in added] == EXPECTED_TEXTS
    assert all(x["enforced"] and x["decision"] == "deny" for x in added)
    # signal and ptrace rules are the `task` family of the kernel side
    assert {"bpf", "module", "mount", "task", "file"} <= set(m["families"])
    for hook in ("bpf", "kernel_read_file", "sb_mount", "sb_umount", "task_kill", "ptrace_access_check",
                 "file_open", "path_unlink", "unix_stream_connect"):
        assert hook in m["hooks"], hook
    assert {f["cgroup"] for f in m["cgroup_fixups"]} == {"/policyc.slice"}
    assert (out / "app.bpf.o").stat().st_size > 0
