"""Receive-side rules (`signal ... from exe|cgroup|all`, `ptrace from ...`): the grammar and its
diagnostics, the lowered target, the evaluator (`from all` after rules naming the sender, no
default), test blocks, the task_rules map and config flags, the checks, fmt, the AppArmor
importer and the audit record's `side`. The maps against the evaluator: test_differential_maps.py."""

from __future__ import annotations

from policyc import abi
from policyc.audit.event import decode
from policyc.audit.schema import event_record
from policyc.codegen.tables import TASK_RULE, config_map, task_maps
from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide
from policyc.fmt import format_text
from policyc.importers import import_apparmor
from policyc.ir.model import Event

from _audit_helpers import MANIFEST, raw
from policyc.audit.schema import ProcCache
from _policyc_helpers import check, found, load

NGINX = """policy nginx {
    subject exe "/usr/sbin/nginx"
    default deny
    allow signal term, hup from exe "/usr/sbin/nginx"
    allow signal from cgroup "/system.slice/nginx.service"
    deny signal from all
    allow ptrace from exe "/usr/bin/gdb"
    deny ptrace from all
    deny signal kill to exe "/usr/bin/sleep"
}
"""


def program(tmp_path, text=NGINX):
    prog, diags = load(tmp_path, text)
    assert prog is not None and not diags.has_errors, [d.message for d in diags.items]
    return prog


def received(op="signal", sig=None, exe="/usr/sbin/nginx", source_exe=None, source_cgroup=None):
    return Event(exe=exe, op=op, signal=sig, received=True, source_exe=source_exe,
                 source_cgroup=source_cgroup, cgroup="/")


# --- grammar and lowering ----------------------------------------------------------------------
def test_from_targets_lower_with_their_direction(tmp_path):
    p = program(tmp_path).policies[0]
    t = {r.id: r.target for r in p.rules}
    assert (t[1].direction, t[1].kind, t[1].exe.text) == ("from", "exe", "/usr/sbin/nginx")
    assert (t[2].direction, t[2].kind, t[2].cgroup) == ("from", "cgroup", "/system.slice/nginx.service")
    assert (t[3].direction, t[3].kind, t[3].exe, t[3].cgroup) == ("from", "all", None, None)
    assert (t[6].direction, t[6].kind) == ("to", "exe")
    assert [r.receive for r in p.rules] == [True, True, True, True, True, False]


def test_from_takes_exe_cgroup_or_all(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    deny signal from anyone\n}\n')
    assert found(diags, {"P019"}) == [("P019", 3, 22)]
    assert "`from` takes" in diags.items[0].message


def test_families_without_targets_take_no_from(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    deny file read from exe "/y"\n}\n')
    (d,) = [d for d in diags.items if d.code == "P019"]
    assert "`file` rules take no `from` target" in d.message


def test_an_expectation_names_one_sender_not_all(tmp_path):
    text = NGINX + 'test nginx {\n    expect deny signal kill from all\n}\n'
    diags = check(tmp_path, text)
    assert found(diags, {"P024"}) == [("P024", 12, 29)]


# --- the evaluator -----------------------------------------------------------------------------
def test_named_senders_decide_before_from_all(tmp_path):
    prog = program(tmp_path)
    d = decide(prog, received(sig="hup", source_exe="/usr/sbin/nginx"))
    assert (d.action, d.rule.id) == ("allow", 1)
    d = decide(prog, received(sig="kill", source_exe="/usr/sbin/nginx"))   # no named rule for kill
    assert (d.action, d.rule.id) == ("deny", 3)
    d = decide(prog, received(sig="kill", source_exe="/usr/bin/bash", source_cgroup="/system.slice/nginx.service/x"))
    assert (d.action, d.rule.id) == ("allow", 2)
    d = decide(prog, received(sig="kill", source_exe=None))                # a sender without executable
    assert (d.action, d.rule.id) == ("deny", 3)
    d = decide(prog, received(op="ptrace", source_exe="/usr/bin/gdb"))
    assert (d.action, d.rule.id) == ("allow", 4)


def test_receive_and_send_rules_speak_for_their_own_side(tmp_path):
    prog = program(tmp_path)
    # nginx sending: `deny signal from all` is not about it; its `default deny` is
    d = decide(prog, Event(exe="/usr/sbin/nginx", op="signal", signal="term", target_exe="/usr/bin/true"))
    assert (d.action, d.rule, d.by) == ("deny", None, "default")
    d = decide(prog, Event(exe="/usr/sbin/nginx", op="signal", signal="kill", target_exe="/usr/bin/sleep"))
    assert d.rule.id == 6


def test_no_receive_rule_allows_whatever_the_default(tmp_path):
    prog = program(tmp_path, 'policy p {\n    subject exe "/x"\n    default deny\n'
                             '    deny signal kill from exe "/usr/bin/pkill"\n}\n')
    d = decide(prog, received(exe="/x", sig="term", source_exe="/usr/bin/pkill"))
    assert (d.action, d.rule, d.by) == ("allow", None, "no-receive-rule")
    assert decide(prog, received(exe="/x", sig="kill", source_exe="/usr/bin/pkill")).action == "deny"
    # an ungoverned receiver: no policy speaks
    assert decide(prog, received(exe="/y", sig="kill", source_exe="/usr/bin/pkill")).by == "ungoverned"


def test_ptrace_without_receive_rules_keeps_outsiders_off_by_the_ptrace_rules(tmp_path):
    prog = program(tmp_path, 'policy p {\n    subject exe "/x"\n    default allow\n    deny ptrace\n}\n')
    d = decide(prog, received(op="ptrace", exe="/x", source_exe="/usr/bin/gdb"))
    assert (d.action, d.rule.id) == ("deny", 1)


def test_mode_audit_turns_a_receive_denial_into_audit(tmp_path):
    prog = program(tmp_path, NGINX.replace("default deny", "mode audit\n    default deny"))
    assert decide(prog, received(sig="kill", source_exe="/usr/bin/bash")).action == "audit"


def test_test_blocks_express_received_events(tmp_path):
    text = NGINX + ('test nginx {\n    expect deny signal kill from exe "/usr/bin/bash"\n'
                    '    expect allow signal hup from exe "/usr/sbin/nginx"\n'
                    '    expect allow ptrace from exe "/usr/bin/gdb"\n'
                    '    expect allow signal kill from cgroup "/system.slice/nginx.service"\n}\n')
    prog = program(tmp_path, text)
    (case,) = prog.tests
    for ex in case.expectations:
        assert ex.event.received and ex.event.exe == "/usr/sbin/nginx"
        assert decide(prog, ex.event).action == ex.decision, ex.text


# --- the kernel's tables -----------------------------------------------------------------------
def test_task_rules_carry_the_side_and_put_from_all_last(tmp_path):
    p = program(tmp_path).policies[0]
    maps, fixups = task_maps(p)
    rows = [TASK_RULE.unpack_fields(v) for _, v in maps["task_rules"].entries]
    order = [(r["rule_id"], r["receive"], r["target_kind"]) for r in rows]
    assert order == [(6, 0, abi.TARGET_EXE),                     # deny, send
                     (1, 1, abi.TARGET_EXE), (2, 1, abi.TARGET_CGROUP), (4, 1, abi.TARGET_EXE),
                     (3, 1, abi.TARGET_ANY), (5, 1, abi.TARGET_ANY)]   # `from all`: last
    assert [f["cgroup"] for f in fixups] == ["/system.slice/nginx.service"]
    # `from exe` rules share the target bits with `to exe` ones
    assert sorted(r["target_bit"] for r in rows if r["target_kind"] == abi.TARGET_EXE) == [0, 1, 2]


def test_config_says_which_families_have_receive_rules(tmp_path):
    flags = abi.POLICYC_CONFIG.unpack_fields(config_map(program(tmp_path).policies[0]).entries[0][1])["flags"]
    assert flags & abi.CFG_RECEIVE_SIGNAL and flags & abi.CFG_RECEIVE_PTRACE
    only_send = program(tmp_path, 'policy p {\n    subject exe "/x"\n    deny signal kill to exe "/y"\n}\n')
    flags = abi.POLICYC_CONFIG.unpack_fields(config_map(only_send.policies[0]).entries[0][1])["flags"]
    assert not flags & (abi.CFG_RECEIVE_SIGNAL | abi.CFG_RECEIVE_PTRACE)


# --- checks ------------------------------------------------------------------------------------
def test_send_and_receive_rules_are_not_compared(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default allow\n'
                            '    deny signal kill to exe "/usr/bin/y"\n    audit signal kill from exe "/usr/bin/y"\n'
                            '    deny signal from all\n}\n')
    assert found(diags, {"W101", "W102", "W103", "W106"}) == []


def test_receive_rules_are_compared_with_each_other(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default allow\n'
                            '    deny signal from exe "/usr/bin/*"\n    allow signal kill from exe "/usr/bin/y"\n'
                            '    deny signal from all\n}\n')
    assert found(diags, {"W103"}) == [("W103", 5, 5)]     # the named deny wins over the named allow
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default allow\n'
                            '    deny signal kill from all\n    deny signal kill from all\n}\n')
    assert found(diags, {"W101"}) == [("W101", 5, 5)]


def test_a_receive_allow_without_from_all_changes_nothing(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default deny\n'
                            '    allow signal term from exe "/usr/bin/systemctl"\n}\n')
    (d,) = [d for d in diags.items if d.code == "W107"]
    assert (d.span.line, "from all" in d.message) == (4, True)
    # closed by a `from all` deny of the same signal: not reported, even under default allow
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default allow\n'
                            '    allow signal term from exe "/usr/bin/systemctl"\n    deny signal term from all\n}\n')
    assert found(diags, {"W107"}) == []


# --- fmt ---------------------------------------------------------------------------------------
def test_fmt_prints_from_targets_back():
    text = ('policy p {\n    subject exe "/x"\n    allow signal term   from exe "/y"\n    deny signal from\n'
            '      all\n    deny ptrace from cgroup "/c"\n}\n')
    diags = Diagnostics()
    out = format_text("t.policy", text, diags)
    assert out == ('policy p {\n    subject exe "/x"\n    allow signal term from exe "/y"\n    deny signal from all\n'
                   '    deny ptrace from cgroup "/c"\n}\n'), out


# --- the AppArmor importer ---------------------------------------------------------------------
def test_receive_rules_with_a_path_peer_convert(tmp_path):
    prof = tmp_path / "usr.sbin.app"
    prof.write_text("/usr/sbin/app {\n  signal (receive) set=(term, hup) peer=/usr/lib/systemd/systemd,\n"
                    "  signal (receive) peer=unconfined,\n  ptrace (tracedby) peer=/usr/bin/gdb,\n"
                    "  ptrace (readby),\n}\n")
    r = import_apparmor([str(prof)], tmp_path)
    (p,) = r.files[0].profiles
    by_line = {e.loc.line: e for e in p.entries}
    assert by_line[2].lines == ['allow signal term, hup from exe "/usr/lib/systemd/systemd"']
    assert by_line[3].lines == [] and by_line[3].reasons[0][0] == "signal-receive"
    assert by_line[4].lines == ['allow ptrace from exe "/usr/bin/gdb"']
    assert by_line[5].reasons[0][0] == "ptrace-read"


# --- the audit record --------------------------------------------------------------------------
def _record(flags: int) -> dict:
    data = bytearray(raw(family="signal", hook="task_kill", aux=15, target_pid=7, path="/usr/sbin/nginx",
                         rule_id=1, exe="/usr/bin/bash"))
    data[abi.EVENT_HEADER.offset("flags")] = flags
    ev = decode(bytes(data))
    assert ev.flags == flags
    return event_record(ev, MANIFEST, instance="web", host="h1", offset_ns=0, procs=ProcCache("/nonexistent-proc"))


def test_a_receive_side_event_says_so_and_send_side_records_are_unchanged():
    rec = _record(abi.EVENT_RECEIVE)
    assert rec["object"] == {"signal": "term", "target_pid": 7, "target_exe": "/usr/sbin/nginx", "side": "receive"}
    assert rec["process"]["exe"] == "/usr/bin/bash" and rec["errno"] == "EPERM"
    assert _record(0)["object"] == {"signal": "term", "target_pid": 7, "target_exe": "/usr/sbin/nginx"}


def test_a_host_wide_deny_of_signals_from_all_is_p030(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject all\n    deny signal from all\n}\n')
    (d,) = [d for d in diags.items if d.code == "P030"]
    assert d.span.line == 3 and "from exe \"/usr/lib/systemd/systemd\"" in d.message
    # a `subject all` policy that names its senders and lets systemd through is fine
    diags = check(tmp_path, 'policy p {\n    subject all\n    deny signal kill from exe "/usr/bin/pkill"\n}\n')
    assert found(diags, {"P030"}) == []


def test_an_expectation_of_a_family_without_targets_takes_no_from(tmp_path):
    text = 'policy p {\n    subject exe "/x"\n}\ntest p {\n    expect deny file read "/y" from exe "/z"\n}\n'
    diags = check(tmp_path, text)
    assert found(diags, {"P019"}) == [("P019", 5, 32)]
