"""Exec transitions (`allow exec "X" as policy NAME | as unconfined`): the grammar, the
lowering's errors (P029), the checks (W113, W114, and W101/W102/W107 leaving `as` rules
alone), the maps the kernel reads (exec_transitions, the config flag), the evaluator and
explain, and the formatter. The kernel's side: tests/kernel/test_transitions.py."""

from __future__ import annotations

from policyc import abi
from policyc.checks import run_checks
from policyc.codegen import tables
from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide
from policyc.ir.model import Event

from _check_cases import fixture_findings
from _policyc_helpers import load


def program_of(tmp_path, text: str):
    program, diags = load(tmp_path, text)
    assert program is not None, [str(d) for d in diags.items]
    return program, diags


def codes(diags) -> list[tuple[str, int, int]]:
    return sorted((d.code, d.span.line, d.span.col) for d in diags.items)


def test_fixture():
    got, want, _ = fixture_findings("W113", {"W113", "W114", "W101", "W102", "W107"})
    assert got == want


def test_the_rule_carries_its_transition(tmp_path):
    program, _ = program_of(tmp_path, '''policy a {
    subject exe "/usr/bin/a"
    allow exec "/usr/bin/b" as policy b
    allow exec "/usr/bin/c", "/usr/bin/d" as unconfined limit 5/s
}
policy b {
    subject exe "/nonexistent/b"
}
''')
    a = program.policies[0]
    t1, t2 = a.rules[0].transition, a.rules[1].transition
    assert (t1.kind, t1.policy, t1.span.line, t1.span.col) == ("policy", "b", 3, 29)
    assert (t2.kind, t2.policy) == ("unconfined", None)
    assert a.rules[1].limit is not None and len(a.rules[1].paths) == 2


def test_misplaced_transitions_are_p029(tmp_path):
    from _policyc_helpers import load as load_any

    for body, col in (('deny exec "/x" as unconfined', 20), ('allow file read "/x" as policy b', 26),
                      ('allow exec as unconfined', 16), ('audit net connect as policy b', 23),
                      ('allow exec "/x" as policy a', 21)):
        text = f'policy a {{\n    subject exe "/usr/bin/a"\n    {body}\n}}\npolicy b {{\n    subject all\n}}\n'
        program, diags = load_any(tmp_path, text)
        errs = [(d.code, d.span.line, d.span.col) for d in diags.items if d.severity == "error"]
        assert errs == [("P029", 3, col)], (body, [str(d) for d in diags.items])


def test_syntax_errors_name_the_place(tmp_path):
    from _policyc_helpers import load as load_any

    _, diags = load_any(tmp_path, 'policy a {\n    subject all\n    allow exec "/x" as\n}\n')
    assert [(d.code, d.span.line) for d in diags.items if d.severity == "error"] == [("P001", 4)]


def test_as_rules_are_not_redundant_duplicate_or_shadowed(tmp_path):
    program, diags = program_of(tmp_path, '''policy a {
    subject exe "/usr/bin/a"
    default allow
    allow exec "/usr/bin/x" as policy b
    allow exec "/usr/bin/*" as unconfined
    allow exec "/usr/bin/y"
}
policy b {
    subject exe "/nonexistent/b"
}
''')
    run_checks(program, diags)
    found = codes(diags)
    # the plain allow is redundant under default allow; the `as` rules change what runs where
    assert ("W107", 6, 5) in found and not [c for c in found if c[0] == "W107" and c[1] in (4, 5)], found
    # the broader `as unconfined` comes after the specific rule: nothing is overtaken; the
    # plain rule below it is shadowed (the `as unconfined` rule decides /usr/bin/y), truly
    assert not [c for c in found if c[0] in ("W101", "W114")], found
    assert [c for c in found if c[0] == "W102"] == [("W102", 6, 5)], found


def test_maps_and_config(tmp_path):
    program, _ = program_of(tmp_path, '''policy a {
    subject exe "/usr/bin/a"
    allow exec "/usr/bin/b" as policy b
    allow exec "/usr/bin/c" as unconfined
    allow exec "/usr/bin/d"
}
policy b {
    subject exe "/nonexistent/b"
}
''')
    a, b = program.policies
    got = tables.transition_map(a)["exec_transitions"]
    entries = {abi.U32.unpack(k)[0]: abi.EXEC_TRANSITION.unpack_fields(v) for k, v in got.entries}
    assert entries[1]["kind"] == abi.TRANSITION_POLICY and entries[1]["policy_id"] == abi.policy_id("b")
    assert entries[2]["kind"] == abi.TRANSITION_UNCONFINED and entries[2]["policy_id"] == 0
    assert set(entries) == {1, 2}
    cfg = abi.POLICYC_CONFIG.unpack_fields(tables.config_map(a).entries[0][1])
    assert cfg["flags"] & abi.CFG_TRANSITIONS and cfg["policy_id"] == 0   # the loader fills it
    assert not abi.POLICYC_CONFIG.unpack_fields(tables.config_map(b).entries[0][1])["flags"] & abi.CFG_TRANSITIONS
    # the exec verdict names the `as` rule, whose id the kernel looks the transition up by
    v = tables.policy_dfa(a)
    assert v is not None


def test_policy_ids_are_stable_and_distinct():
    assert abi.policy_id("nginx") == abi.policy_id("nginx") != abi.policy_id("nginx2")
    assert abi.policy_id("") != 0
    import hashlib

    assert abi.policy_id("b") == int.from_bytes(hashlib.sha256(b"b").digest()[:8], "little")


def test_the_loader_fills_the_policy_id():
    from policyc import deploy, runtime

    value = abi.POLICYC_CONFIG.pack_fields(flags=1, default_decision=2)
    fills = {"config": runtime.MapFill(1, [(abi.U32.pack(0), value)])}
    deploy._set_policy_id(fills, "web-2")
    got = abi.POLICYC_CONFIG.unpack_fields(fills["config"].entries[0][1])
    assert got["policy_id"] == abi.policy_id("web-2") and got["flags"] == 1 and got["default_decision"] == 2


def test_evaluator_and_explain_say_the_transition(tmp_path):
    from policyc.cli.explain import render_text

    program, _ = program_of(tmp_path, '''policy a {
    subject exe "/usr/bin/a"
    allow exec "/usr/bin/b" as policy b
    deny exec "/usr/bin/c"
    allow exec "/usr/bin/c" as unconfined
}
policy b {
    subject exe "/nonexistent/b"
}
''')
    ev = Event("/usr/bin/a", "exec", path="/usr/bin/b")
    d = decide(program, ev)
    assert d.action == "allow" and d.to_dict()["transition"] == {"kind": "policy", "policy": "b"}
    assert "runs under policy `b`" in render_text(d, program, ev)
    d = decide(program, Event("/usr/bin/a", "exec", path="/usr/bin/c"))
    assert d.action == "deny" and d.to_dict()["transition"] is None   # denied: nothing to hand over


def test_fmt_keeps_transitions(tmp_path):
    from policyc.fmt import format_text

    src = 'policy a {\n    subject all\n    allow exec "/usr/bin/b" as policy b limit 1/s\n    allow exec "/c" as unconfined\n}\n'
    diags = Diagnostics()
    out = format_text("t.policy", src, diags)
    assert out is not None, [str(d) for d in diags.items]
    assert 'allow exec "/usr/bin/b" as policy b limit 1/s' in out and 'allow exec "/c" as unconfined' in out


def test_explain_takes_owner_and_the_sender(tmp_path):
    """`explain --owner` (owner rules) and `--source-exe` (receive-side rules) reach the
    evaluator; each is refused where it means nothing (exit 2, a diagnostic)."""
    import io

    from policyc.cli.explain import run_explain

    pol = tmp_path / "r.policy"
    pol.write_text('policy web {\n    subject exe "/usr/sbin/nginx"\n    default deny\n'
                   '    allow file read owner "/home/*/**"\n'
                   '    allow signal term from exe "/usr/lib/systemd/systemd"\n'
                   '    deny signal from all\n}\n')

    def explain(*args, **kw):
        out, err = io.StringIO(), io.StringIO()
        code = run_explain([str(pol)], "/usr/sbin/nginx", *args, out=out, err=err, **kw)
        return code, out.getvalue(), err.getvalue()

    assert explain("file.read", "/home/a/x", owner=True)[1].startswith("decision: allow")
    assert explain("file.read", "/home/a/x")[1].startswith("decision: deny")
    code, out, _ = explain("signal", signal="term", source_exe="/usr/lib/systemd/systemd")
    assert code == 0 and out.startswith("decision: allow") and "from exe" in out
    code, out, _ = explain("signal", signal="term", source_exe="/usr/bin/bash")
    assert code == 0 and out.startswith("decision: deny") and "from all" in out
    code, _, err = explain("exec", "/usr/bin/x", owner=True)
    assert code == 2 and "P026" in err
    code, _, err = explain("file.read", "/x", source_exe="/usr/bin/bash")
    assert code == 2 and "P024" in err
