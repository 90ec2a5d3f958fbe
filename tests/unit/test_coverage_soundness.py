"""W101/W102/W103/W106 never claim falsely: removing every rule (or path) they report, all at
once, changes no decision (checked by brute force over many events). (hypothesis)"""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyc.checks import run_checks
from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide_policy
from policyc.ir.model import Event
from policyc.lower import load_program

PIECES = ["a", "b", "/", "*", "**", "?", "{a,b}", "{a/,}"]
GLOB = st.lists(st.sampled_from(PIECES), min_size=0, max_size=4).map(lambda ps: '"/' + "".join(ps) + '"')
PATHS = ["/" + "".join(t) for n in range(0, 5) for t in itertools.product("ab/c", repeat=n)]


@st.composite
def file_rule(draw):
    decision = draw(st.sampled_from(["allow", "deny", "audit"]))
    ops = ", ".join(draw(st.lists(st.sampled_from(["read", "write"]), min_size=1, max_size=2, unique=True)))
    paths = ", ".join(draw(st.lists(GLOB, min_size=1, max_size=2)))
    return f"{decision} file {ops} {paths}"


@st.composite
def net_rule(draw):
    decision = draw(st.sampled_from(["allow", "deny", "audit"]))
    proto = draw(st.sampled_from(["", "tcp ", "udp ", "any "]))
    nets = draw(st.sampled_from(["", "10.0.0.0/8 ", "10.1.0.0/16 ", "10.1.2.3 ", "10.0.0.0/8, 10.1.2.3 "]))
    ports = draw(st.sampled_from(["", "port 80", "port 1-100", "port 80, 90", "port 50-60, 70"]))
    return f"{decision} net connect {proto}{nets}{ports}"


NET_EVENTS = [Event("/x", "net.connect", addr=a, port=p, proto=pr)
              for a in ("10.1.2.3", "10.1.9.9", "10.2.0.1", "192.168.0.1")
              for p in (1, 55, 70, 80, 90, 99, 100, 101) for pr in ("tcp", "udp")]
FILE_EVENTS = [Event("/x", f"file.{op}", path=p) for op in ("read", "write") for p in PATHS]


def without_reported(policy, diags):
    """The policy minus every rule and path W101-W103 report, and minus the operations a
    W106 loser shares with its winner."""
    rule_spans = {d.span for d in diags.items if d.code in ("W101", "W102", "W103")}
    by_span = {r.span: r for r in policy.rules}
    lost_ops: dict = {}
    for d in diags.items:
        if d.code == "W106":
            winner = by_span[d.notes[0].span]
            lost_ops.setdefault(d.span, set()).update(winner.ops)
    rules = []
    for r in policy.rules:
        if r.span in rule_spans:
            continue
        kept = tuple(g for g in r.paths if g.span not in rule_spans)
        if r.paths and not kept:
            continue
        ops = tuple(o for o in r.ops if o not in lost_ops.get(r.span, ()))
        if r.ops and not ops:
            continue
        rules.append(dataclasses.replace(r, paths=kept, ops=ops))
    return dataclasses.replace(policy, rules=tuple(rules))


def check_sound(tmp_path, rules, events):
    text = 'policy p {\n    subject exe "/x"\n    default deny\n' + "".join(f"    {r}\n" for r in rules) + "}\n"
    path = tmp_path / "p.policy"
    path.write_text(text)
    diags = Diagnostics()
    program = load_program([str(path)], diags)
    assert program is not None, [d.message for d in diags.items]
    run_checks(program, diags)
    before = program.policies[0]
    after = without_reported(before, diags)
    for ev in events:
        assert decide_policy(before, ev).action == decide_policy(after, ev).action, (text, ev)


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=300, **SETTINGS)
@given(st.lists(file_rule(), min_size=1, max_size=6))
def test_file_rules(tmp_path, rules):
    check_sound(tmp_path, rules, FILE_EVENTS)


@settings(max_examples=300, **SETTINGS)
@given(st.lists(net_rule(), min_size=1, max_size=6))
def test_net_rules(tmp_path, rules):
    check_sound(tmp_path, rules, NET_EVENTS)


@st.composite
def other_rule(draw):
    decision = draw(st.sampled_from(["allow", "deny", "audit"]))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        caps = ", ".join(draw(st.lists(st.sampled_from(["setuid", "setgid", "kill"]), min_size=1, max_size=3,
                                       unique=True)))
        return f"{decision} capability {caps}"
    if kind == 1:
        sigs = draw(st.sampled_from(["", "kill ", "kill, term ", "term "]))
        target = draw(st.sampled_from(["", 'to exe "/a*"', 'to exe "/ab"', 'to exe "/**"', 'to cgroup "/s"']))
        return f"{decision} signal {sigs}{target}"
    return f"{decision} exec {draw(GLOB)}"


OTHER_EVENTS = (
    [Event("/x", "capability", cap=c) for c in ("setuid", "setgid", "kill")]
    + [Event("/x", "signal", signal=s, target_exe=t, target_cgroup=c)
       for s in ("kill", "term", "hup") for t in ("/ab", "/ac", "/b", None) for c in ("/s", "/s/t", None)]
    + [Event("/x", "exec", path=p) for p in PATHS]
)


@settings(max_examples=300, **SETTINGS)
@given(st.lists(other_rule(), min_size=1, max_size=6))
def test_other_families(tmp_path, rules):
    check_sound(tmp_path, rules, OTHER_EVENTS)
