"""The reference semantics, case by case (docs/semantics.md says the same in words)."""

from __future__ import annotations

import pytest

from policyc.evaluate import decide, governs
from policyc.ir.model import Event

from _policyc_helpers import load

NGINX = '''policy web {
    subject exe "/usr/sbin/nginx"
    default deny
    allow file read "/srv/**"
    deny file read "/srv/secret/**"
    audit file read "/srv/audit/*"
    allow file read "/srv/twice"
    allow exec "/usr/bin/{curl,wget}"
    deny exec "/usr/bin/wget"
    allow net connect tcp 10.0.0.0/8 port 80, 8000-8080
    deny net connect any 10.9.0.0/16
    allow net bind udp port 53
    allow net connect ::1
    allow capability setuid
    allow signal term to exe "/usr/sbin/nginx"
    allow signal kill to cgroup "/system.slice/web.service"
    allow ptrace to exe "/usr/bin/gdb"
    allow module load
}
'''
EXE = "/usr/sbin/nginx"

CASES = [
    # (event, decision, line of the deciding rule or None for the default)
    (Event(EXE, "file.read", path="/srv/www/index.html"), "allow", 4),
    (Event(EXE, "file.read", path="/srv"), "deny", None),                  # dir/** not dir
    (Event(EXE, "file.read", path="/srv/"), "allow", 4),
    (Event(EXE, "file.read", path="/srv/secret/key"), "deny", 5),          # deny beats allow
    (Event(EXE, "file.read", path="/srv/audit/x"), "audit", 6),            # audit beats allow
    (Event(EXE, "file.read", path="/srv/audit/x/y"), "allow", 4),          # `*` stays in a component
    (Event(EXE, "file.read", path="/srv/twice"), "allow", 4),              # first rule of a decision
    (Event(EXE, "file.write", path="/srv/www/index.html"), "deny", None),  # other op: default
    (Event(EXE, "exec", path="/usr/bin/curl"), "allow", 8),
    (Event(EXE, "exec", path="/usr/bin/wget"), "deny", 9),
    (Event(EXE, "exec", path="/usr/bin/curly"), "deny", None),
    (Event(EXE, "net.connect", addr="10.1.2.3", port=80, proto="tcp"), "allow", 10),
    (Event(EXE, "net.connect", addr="10.1.2.3", port=8080, proto="tcp"), "allow", 10),
    (Event(EXE, "net.connect", addr="10.1.2.3", port=8081, proto="tcp"), "deny", None),
    (Event(EXE, "net.connect", addr="10.1.2.3", port=80, proto="udp"), "deny", None),
    (Event(EXE, "net.connect", addr="10.9.1.1", port=80, proto="tcp"), "deny", 11),
    (Event(EXE, "net.connect", addr="::ffff:10.1.2.3", port=80, proto="tcp"), "allow", 10),  # v4-mapped
    (Event(EXE, "net.connect", addr="::1", port=5, proto="udp"), "allow", 13),
    (Event(EXE, "net.bind", addr="0.0.0.0", port=53, proto="udp"), "allow", 12),
    (Event(EXE, "net.bind", port=53, proto="tcp"), "deny", None),
    (Event(EXE, "capability", cap="setuid"), "allow", 14),
    (Event(EXE, "capability", cap="setgid"), "deny", None),
    (Event(EXE, "signal", signal="term", target_exe="/usr/sbin/nginx"), "allow", 15),
    (Event(EXE, "signal", signal="term", target_exe="/usr/bin/x"), "deny", None),
    (Event(EXE, "signal", signal="kill", target_cgroup="/system.slice/web.service/sub"), "allow", 16),
    (Event(EXE, "signal", signal="kill", target_cgroup="/system.slice/web.servicex"), "deny", None),
    (Event(EXE, "ptrace", target_exe="/usr/bin/gdb"), "allow", 17),
    (Event(EXE, "module.load"), "allow", 18),
    (Event(EXE, "bpf"), "deny", None),
    (Event(EXE, "mount", path="/mnt"), "deny", None),
    # Subjects: the process, or an ancestor.
    (Event("/bin/sh", "exec", path="/usr/bin/curl", ancestors=("/usr/sbin/nginx",)), "allow", 8),
    (Event("/bin/sh", "exec", path="/usr/bin/wget", ancestors=("/bin/bash", "/usr/sbin/nginx")), "deny", 9),
]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    prog, diags = load(tmp_path_factory.mktemp("eval"), NGINX)
    assert prog is not None, diags.items
    return prog


@pytest.mark.parametrize("event,decision,line", CASES, ids=[f"{e.op}:{e.path or e.addr or e.cap or e.signal or ''}"
                                                            for e, _, _ in CASES])
def test_table(program, event, decision, line):
    d = decide(program, event)
    assert d.action == decision
    assert (d.rule.span.line if d.rule else None) == line
    assert d.policy is not None and d.policy.name == "web"
    assert d.by == ("rule" if line else "default")


def test_ungoverned_is_allowed_with_no_policy(program):
    d = decide(program, Event("/usr/bin/other", "bpf"))
    assert (d.action, d.policy, d.rule, d.by) == ("allow", None, None, "ungoverned")
    assert d.to_dict()["policy"] is None and d.to_dict()["rule"] is None


def two(tmp_path, a: str, b: str):
    prog, diags = load(tmp_path, a + b)
    assert prog is not None, diags.items
    return prog


def test_most_severe_policy_wins(tmp_path):
    prog = two(tmp_path, 'policy a {\n    subject all\n    deny bpf\n}\n',
               'policy b {\n    subject exe "/x"\n    allow bpf\n}\n')
    d = decide(prog, Event("/x", "bpf"))
    assert (d.action, d.policy.name) == ("deny", "a")


def test_equal_decisions_first_policy_speaks(tmp_path):
    prog = two(tmp_path, 'policy a {\n    subject exe "/x"\n    deny bpf\n}\n',
               'policy b {\n    subject all\n    deny bpf\n}\n')
    assert decide(prog, Event("/x", "bpf")).policy.name == "a"


def test_equal_decisions_a_rule_speaks_before_a_default(tmp_path):
    prog = two(tmp_path, 'policy a {\n    subject all\n    default deny\n}\n',
               'policy b {\n    subject exe "/x"\n    deny bpf\n}\n')
    d = decide(prog, Event("/x", "bpf"))
    assert (d.action, d.policy.name, d.rule.span.line) == ("deny", "b", 7)


def test_audit_mode_turns_deny_into_audit(tmp_path):
    prog = two(tmp_path, 'policy a {\n    subject exe "/x"\n    mode audit\n    default deny\n    deny bpf\n}\n', "")
    assert decide(prog, Event("/x", "bpf")).action == "audit"
    assert decide(prog, Event("/x", "mount")).action == "audit"


def test_default_allow_is_the_implicit_default(tmp_path):
    prog = two(tmp_path, 'policy a {\n    subject exe "/x"\n    deny bpf\n}\n', "")
    d = decide(prog, Event("/x", "mount"))
    assert (d.action, d.by) == ("allow", "default")


def test_cgroup_subject_and_exceptions(tmp_path):
    prog = two(tmp_path, 'policy a {\n    subject cgroup "/system.slice/a.service" except exe "/usr/bin/ok", '
                         'cgroup "/system.slice/a.service/free"\n    deny bpf\n}\n', "")
    p = prog.policies[0]
    assert governs(p, Event("/x", "bpf", cgroup="/system.slice/a.service"))
    assert governs(p, Event("/x", "bpf", cgroup="/system.slice/a.service/child"))
    assert not governs(p, Event("/x", "bpf", cgroup="/system.slice/a.servicex"))
    assert not governs(p, Event("/usr/bin/ok", "bpf", cgroup="/system.slice/a.service"))
    assert not governs(p, Event("/x", "bpf", cgroup="/system.slice/a.service/free/y"))
    assert governs(p, Event("/x", "bpf", cgroup="/system.slice/a.service", ancestors=("/usr/bin/ok",)))


def test_exe_exception_is_not_inherited(tmp_path):
    prog = two(tmp_path, 'policy a {\n    subject all except exe "/usr/bin/policyc"\n    deny bpf\n}\n', "")
    assert decide(prog, Event("/usr/bin/policyc", "bpf")).action == "allow"
    assert decide(prog, Event("/bin/sh", "bpf", ancestors=("/usr/bin/policyc",))).action == "deny"


def test_evaluator_is_total_on_odd_events(program):
    for ev in (Event(EXE, "file.read"), Event(EXE, "net.connect", addr="not-an-ip"), Event(EXE, "nonsense.op"),
               Event(EXE, "signal"), Event(EXE, "capability"), Event(EXE, "exec")):
        assert decide(program, ev).action in ("allow", "deny", "audit")


LOOPBACK = '''policy lo {
    subject exe "/usr/bin/app"
    default allow
    deny net connect any 127.0.0.0/8, ::1
    deny net bind any 0.0.0.0
    deny file write "/run/docker.sock", "@dbus-*"
}
'''


@pytest.mark.parametrize("addr", ["0.0.0.0", "::", "::ffff:0.0.0.0", "127.0.0.2", "::1"])
def test_connect_to_the_unspecified_address_is_loopback(tmp_path, addr):
    # the kernel rewrites the unspecified address to loopback after the LSM hook
    program, diags = load(tmp_path, LOOPBACK)
    d = decide(program, Event("/usr/bin/app", "net.connect", addr=addr, port=80, proto="tcp"))
    assert d.action == "deny" and d.rule.span.line == 4


def test_bind_to_the_unspecified_address_stays_unspecified(tmp_path):
    program, diags = load(tmp_path, LOOPBACK)
    d = decide(program, Event("/usr/bin/app", "net.bind", addr="0.0.0.0", port=0, proto="tcp"))
    assert d.action == "deny" and d.rule.span.line == 5      # listen(2)'s implied bind
    d = decide(program, Event("/usr/bin/app", "net.bind", addr="127.0.0.1", port=0, proto="tcp"))
    assert d.action == "allow"
    d = decide(program, Event("/usr/bin/app", "net.connect", addr="10.0.0.1", port=80, proto="tcp"))
    assert d.action == "allow"


@pytest.mark.parametrize("path, action", [("/run/docker.sock", "deny"), ("@dbus-session", "deny"),
                                          ("@other", "allow"), ("/run/other.sock", "allow")])
def test_sockets_are_file_writes(tmp_path, path, action):
    program, diags = load(tmp_path, LOOPBACK)
    assert not diags.has_errors, diags.items
    assert decide(program, Event("/usr/bin/app", "file.write", path=path)).action == action
