"""No input, however broken, gives a traceback or a hang: only diagnostics and exit 2.
And formatting never changes what a policy means. (hypothesis)"""

from __future__ import annotations

import contextlib
import io
import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyc.cli.check import run_check
from policyc.cli.fmt_cmd import run_fmt
from policyc.cli.test_cmd import run_test
from policyc.diagnostics import Diagnostics
from policyc.fmt import format_text
from policyc.lower import load_program

from _policyc_helpers import POLICIES, shape

EXAMPLES = sorted(p for p in [*POLICIES.rglob("*.policy"), *POLICIES.rglob("*.policy.test")])
TEXTS = [p.read_text() for p in EXAMPLES]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail (instead of hanging) when the block runs longer than `seconds`."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_file(path, limit: float = 20.0) -> int:
    """`policyc check` on one file: the exit code; any exception fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with time_limit(limit):
        code = run_check([str(path)], "text", out, err)
    assert code in (0, 2), out.getvalue()
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return code


def front_end(path) -> None:
    """Lowering, checks, fmt and test on one file: total, and consistent with each other."""
    diags = Diagnostics()
    program = load_program([str(path)], diags)
    assert (program is None) == diags.has_errors
    code = check_file(path)
    assert code == (2 if diags.has_errors or code == 2 else 0)
    out, err = io.StringIO(), io.StringIO()
    with time_limit(20):
        assert run_fmt([str(path)], out=out, err=err) in (0, 2)
        assert run_test([str(path)], out=io.StringIO(), err=io.StringIO()) in (0, 1, 2)


# --- random input --------------------------------------------------------------------------------
@settings(max_examples=150, **SETTINGS)
@given(st.binary(max_size=2000))
def test_random_bytes(tmp_path, data):
    p = tmp_path / "junk.policy"
    p.write_bytes(data)
    front_end(p)


TOKENS = ["policy", "ruleset", "test", "include", "let", "use", "subject", "exe", "cgroup", "all", "except",
          "mode", "default", "acknowledge", "allow", "deny", "audit", "file", "read", "write", "exec", "net",
          "connect", "bind", "tcp", "udp", "any", "port", "capability", "signal", "to", "expect", "parent",
          "{", "}", ",", "=", '"', '"/a/**"', '"${x}"', '"/{a,b}"', "#", "\n", " ", "10.0.0.0/8", "::1", "80",
          "1-2", "99999", "x", "setuid", "kill", "host-wide-deny", "\\", "${", "*", "@"]


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.sampled_from(TOKENS), max_size=80).map(" ".join))
def test_random_token_soup(tmp_path, text):
    p = tmp_path / "soup.policy"
    p.write_text(text)
    front_end(p)


# --- mutations of the example policies --------------------------------------------------------
@st.composite
def mutated(draw):
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "token", "cut", "dup"]))
        if kind == "insert":
            text = text[:pos] + draw(st.characters(codec="utf-8")) + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + 1:]
        elif kind == "replace":
            text = text[:pos] + draw(st.sampled_from('{}",#\n$*?/\\ ')) + text[pos + 1:]
        elif kind == "token":
            text = text[:pos] + " " + draw(st.sampled_from(TOKENS)) + " " + text[pos:]
        elif kind == "cut":
            text = text[:pos] + text[pos + draw(st.integers(1, 200)):]
        else:
            end = pos + draw(st.integers(1, 300))
            text = text[:end] + text[pos:end] + text[end:]
    return text


@settings(max_examples=300, **SETTINGS)
@given(mutated())
def test_mutated_examples(tmp_path, text):
    # Beside the real files, so includes of abstractions/ resolve (or are cut into cycles).
    (tmp_path / "abstractions").mkdir(exist_ok=True)
    (tmp_path / "abstractions" / "base.policy").write_text((POLICIES / "abstractions" / "base.policy").read_text())
    p = tmp_path / "mutant.policy"
    p.write_text(text)
    front_end(p)
    diags = Diagnostics()
    out = format_text(str(p), text, diags)
    if out is not None:
        assert format_text(str(p), out, Diagnostics()) == out
    else:
        assert diags.has_errors


# --- pathological shapes ------------------------------------------------------------------------
PATHOLOGICAL = [
    "policy p {" * 20000,
    "{" * 100000,
    "}" * 100000,
    'policy p {\n    subject all\n    deny file read "/' + "{" * 5000 + '"\n}\n',
    'policy p {\n    subject all\n    deny file read "/' + "{a," * 3000 + "}" * 3000 + '"\n}\n',
    'policy p {\n    subject all\n    deny file read "/' + "{a,b}" * 40 + '"\n}\n',
    'policy p {\n    subject all\n    deny file read "/' + "*" * 100000 + '"\n}\n',
    'let a = "${' * 5000 + '"\npolicy p {\n    subject all\n}\n',
    '"' + "\\" * 100001 + '"',
    "#" * 1000000,
    "policy p {\n" + "    deny bpf\n" * 30000,
    "\ufeffpolicy p {}\n",
    "policy p {\n    subject all\n}\r\n" * 3,
]


@pytest.mark.parametrize("text", PATHOLOGICAL, ids=[f"case{i}" for i in range(len(PATHOLOGICAL))])
def test_pathological(tmp_path, text):
    p = tmp_path / "odd.policy"
    p.write_text(text)
    front_end(p)


def test_ten_megabytes_of_junk(tmp_path):
    p = tmp_path / "big.policy"
    chunk = bytes(range(32, 127)) * 40 + b"\n"
    p.write_bytes(chunk * (10 * 1024 * 1024 // len(chunk) + 1))
    assert os.path.getsize(p) >= 10 * 1024 * 1024
    assert check_file(p, limit=60) == 2


def test_ten_megabytes_on_one_line(tmp_path):
    p = tmp_path / "line.policy"
    p.write_text('policy p { subject all deny file read "' + "/a" * (5 * 1024 * 1024) + '" }')
    out = io.StringIO()
    with time_limit(60):
        code = run_check([str(p)], "text", out, io.StringIO())
    assert code in (0, 2)
    assert max(len(line) for line in out.getvalue().splitlines() or [""]) < 1000


def test_ten_megabytes_of_comments(tmp_path):
    p = tmp_path / "comments.policy"
    p.write_text(("# " + "x" * 98 + "\n") * (10 * 1024 * 1024 // 100 + 1))
    assert check_file(p, limit=60) == 0


# --- includes ---------------------------------------------------------------------------------
def test_include_cycle_of_three(tmp_path):
    for a, b in (("a", "b"), ("b", "c"), ("c", "a")):
        (tmp_path / f"{a}.policy").write_text(f'include "{b}.policy"\n')
    assert check_file(tmp_path / "a.policy") == 2


@pytest.mark.parametrize("target", ["missing.policy", ".", "/dev/null", "../../../../../../../../etc/shadow-nope",
                                    "bin.policy", "", "sub/"], ids=lambda t: repr(t))
def test_bad_includes(tmp_path, target):
    (tmp_path / "sub").mkdir()
    (tmp_path / "bin.policy").write_bytes(b"\x00\xff\xfe")
    p = tmp_path / "a.policy"
    p.write_text(f'include "{target}"\npolicy p {{\n    subject all\n}}\n')
    assert check_file(p) == 2


def test_deep_include_chain(tmp_path):
    for i in range(100):
        (tmp_path / f"f{i}.policy").write_text(f'include "f{i + 1}.policy"\n')
    (tmp_path / "f100.policy").write_text("ruleset r {\n}\n")
    assert check_file(tmp_path / "f0.policy") == 2


def test_ruleset_cycle(tmp_path):
    p = tmp_path / "a.policy"
    p.write_text("ruleset a {\n    use b\n}\nruleset b {\n    use a\n}\npolicy p {\n    subject all\n    use a\n}\n")
    assert check_file(p) == 2


# --- parse(fmt(x)) == x at the model level -----------------------------------------------------
PATH_PART = st.sampled_from(["etc", "srv", "a-b", "x.conf", "*", "**", "?", "{a,b}", "{x,y/**}", "${v}"])
GLOB = st.lists(PATH_PART, min_size=1, max_size=4).map(lambda ps: '"/' + "/".join(ps) + '"')
FILE_OPS = ["read", "write", "append", "create", "delete", "rename", "link", "chmod", "chown", "exec-map"]


@st.composite
def rule(draw):
    decision = draw(st.sampled_from(["allow", "deny", "audit"]))
    kind = draw(st.integers(0, 7))
    if kind == 0:
        ops = ", ".join(draw(st.lists(st.sampled_from(FILE_OPS), min_size=1, max_size=3, unique=True)))
        return f"{decision} file {ops} " + ", ".join(draw(st.lists(GLOB, min_size=1, max_size=3)))
    if kind == 1:
        return f"{decision} exec " + ", ".join(draw(st.lists(GLOB, min_size=1, max_size=2)))
    if kind == 2:
        net = draw(st.sampled_from(["tcp", "udp", "any", "tcp 10.0.0.0/8", "192.168.1.1, ::1 port 1-1024",
                                    "port 80, 443", "udp fd00::/8 port 53"]))
        return f"{decision} net {draw(st.sampled_from(['connect', 'bind', 'create']))} {net}"
    if kind == 3:
        return f"{decision} capability " + ", ".join(draw(st.lists(st.sampled_from(
            ["setuid", "sys_admin", "net_raw", "bpf", "audit_write"]), min_size=1, max_size=3, unique=True)))
    if kind == 4:
        return f'{decision} signal kill, term to exe "/usr/bin/{draw(st.sampled_from(["a", "b*"]))}"'
    if kind == 5:
        return f"{decision} {draw(st.sampled_from(['ptrace', 'mount', 'bpf', 'module load']))}"
    if kind == 6:
        return f'{decision} file read "/x"  # note'
    return "use common"


SPACE = st.sampled_from([" ", "  ", "\n", "\n\n", " # c\n", "\t"])


@st.composite
def program_text(draw):
    rules = draw(st.lists(rule(), max_size=12))
    sep = draw(SPACE)
    body = "".join(f"{draw(SPACE)}{r}\n" for r in rules)
    return (f'ruleset common {{{sep}allow file read "/usr/lib/**"\n}}\n'
            f'let v = "srv"\n'
            f'policy p {{{sep}subject exe "/usr/bin/app"{draw(SPACE)}mode {draw(st.sampled_from(["enforce", "audit"]))}\n'
            f'default {draw(st.sampled_from(["allow", "deny"]))}\n{body}}}\n'
            f'test p {{\n    expect deny bpf{draw(SPACE)}}}\n')


@settings(max_examples=200, **SETTINGS)
@given(program_text())
def test_fmt_keeps_the_model(tmp_path, text):
    a = tmp_path / "a.policy"
    a.write_text(text)
    da = Diagnostics()
    pa = load_program([str(a)], da)
    out = format_text(str(a), text, Diagnostics())
    assert out is not None
    assert format_text(str(a), out, Diagnostics()) == out
    b = tmp_path / "b.policy"
    b.write_text(out)
    db = Diagnostics()
    pb = load_program([str(b)], db)
    assert sorted(d.code for d in da.items) == sorted(d.code for d in db.items)
    if pa is not None:
        assert shape(pa.policies) == shape(pb.policies)
        assert shape(pa.tests) == shape(pb.tests)
