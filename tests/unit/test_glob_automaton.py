"""One glob automaton (policyc/ir/glob.py): the evaluator's walk of it, the kernel's DFA built
from it (policyc/ir/dfa.py, walked here the way templates/common/policy.h walks the maps)
and the checks' product over it agree with each other and with an oracle kept in this file: a
hand translation of the glob structure into a bytes regex. (hypothesis)

Paths are bytes, valid UTF-8 or not (`?` is a byte that is neither `/` nor 0x80-0xBF, then
any continuation bytes: one character on UTF-8 text)."""

from __future__ import annotations

import re
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policyc.ir.glob as irglob
from policyc.checks._globs import first_branch, includes
from policyc.ir.dfa import Pattern, build_dfa, glob_atoms
from policyc.diagnostics import Diagnostics
from policyc.evaluate import glob_matches
from policyc.ir.glob import Matcher, matcher, parse_glob, path_bytes
from policyc.ir.model import Alt, AnyChar, DoubleStar, Lit, Star
from policyc.span import NO_SPAN

DENY = 2


def g(text):
    glob = parse_glob(text, NO_SPAN, Diagnostics())
    assert glob is not None, text
    return glob


# --- the oracle: glob structure to a bytes regex, by hand -------------------------------------------
_ANY_CHAR = rb"[^/\x80-\xbf][\x80-\xbf]*"


def full_rx(parts) -> bytes:
    out = []
    for p in parts:
        if isinstance(p, Lit):
            out.append(re.escape(p.text.encode()))
        elif isinstance(p, Star):
            out.append(rb"[^/]*")
        elif isinstance(p, DoubleStar):
            out.append(rb".*")
        elif isinstance(p, AnyChar):
            out.append(_ANY_CHAR)
        else:
            out.append(b"(?:" + b"|".join(full_rx(o) for o in p.options) + b")")
    return b"".join(out)


def prefix_rx(parts) -> bytes:
    """Every prefix of every match: prefixes(XY) = prefixes(X) | X prefixes(Y)."""
    if not parts:
        return b""
    p, rest = parts[0], parts[1:]
    if isinstance(p, Lit):
        t = p.text.encode()
        pre = b"(?:" + b"|".join(re.escape(t[:i]) for i in range(len(t))) + b")"
    elif isinstance(p, (Star, DoubleStar)):
        pre = full_rx((p,))
    elif isinstance(p, AnyChar):
        pre = b"(?:" + _ANY_CHAR + b")?"
    else:
        pre = b"(?:" + b"|".join(prefix_rx(o) for o in p.options) + b")"
    return b"(?:" + pre + b"|" + full_rx((p,)) + prefix_rx(rest) + b")"


def oracle_matches(parts, data: bytes) -> bool:
    return re.fullmatch(full_rx(parts), data, re.DOTALL) is not None


def oracle_viable(parts, data: bytes) -> bool:
    return re.fullmatch(prefix_rx(parts), data, re.DOTALL) is not None


# --- the kernel's walk, as templates/common/policy.h does it -----------------------------------------
def bpf_walk(dfa, data: bytes) -> int:
    """dfa_step over the compressed tables (policyc.codegen.tables.comb_tables): stop in an
    absorbing state; the byte's class; the comb slot at base + class if it is the state's,
    else the state's default successor for the byte's base class ('/', (b & 0xC0) == 0x80,
    other)."""
    from policyc.codegen.tables import comb_tables

    t = comb_tables(dfa)
    state = 1
    for b in data:
        if t.absorbing[state]:
            break
        state = t.step(dfa, state, b)
    return state


def one_glob_dfa(parts, rule=7):
    (atoms,) = glob_atoms(parts)
    return build_dfa([Pattern(atoms, 1, rule_id=rule, rank=DENY, protects=True)], n_ops=1, defaults=[(0, 0)])


def nfa_simulate(parts, data: bytes) -> bool:
    """The automaton walked as an NFA, a set of positions at a time (no determinization)."""
    nfa = irglob.Nfa()
    entry, accept = nfa.add(parts)
    cur = set(nfa.closure(entry))
    for b in data:
        nxt: set[int] = set()
        cls = irglob.CLASS_OF[b]
        for p in cur:
            k = nfa.kind[p]
            if k == irglob.BYTE and nfa.arg[p] == b:
                nxt |= nfa.closure(nfa.nxt[p])
            elif (k == irglob.DSTAR or (k == irglob.STAR and cls != irglob.SLASH)
                  or (k == irglob.TAIL and cls == irglob.CONT)):
                nxt |= nfa.closure(p)
            elif k == irglob.ANY and cls == irglob.OTHER:
                nxt |= nfa.closure(nfa.arg[p])
        cur = nxt
    return accept in cur


# --- strategies ---------------------------------------------------------------------------------------
ATOMS = ["a", "b", "/", "é", "€", "😀", ".", "ab/", "*", "**", "?"]
atom = st.sampled_from(ATOMS)
glob_text = st.recursive(
    st.lists(atom, max_size=4).map("".join),
    lambda inner: st.lists(st.one_of(atom, st.lists(inner, min_size=1, max_size=3).map(
        lambda opts: "{" + ",".join(opts) + "}")), max_size=5).map("".join),
    max_leaves=10,
).map(lambda t: "/" + t)

PATH_PIECES = [b"a", b"b", b"/", "é".encode(), "€".encode(), "😀".encode(), b".", b"\x80", b"\xa9",
               b"\xc3", b"\xe2\x82", b"\xff", b"\x00", b"c"]
FILL = [b"", b"a", b"/", "é".encode(), b"\xa9", b"\xc3", b"x/y", "😀".encode(), b"\xff\x80"]


@st.composite
def instance(draw, parts) -> bytes:
    """Bytes that probably match `parts` (fills are not checked: `*` may get a `/`)."""
    out = []
    for p in parts:
        if isinstance(p, Lit):
            out.append(p.text.encode())
        elif isinstance(p, (Star, DoubleStar)):
            out.append(draw(st.sampled_from(FILL)))
        elif isinstance(p, AnyChar):
            out.append(draw(st.sampled_from([b"a", "é".encode(), b"\xc3", b"\xc3\xa9\xa9", b"\x80", b"/"])))
        else:
            out.append(draw(instance(draw(st.sampled_from(p.options)))))
    return b"".join(out)


@st.composite
def glob_and_path(draw):
    glob = g(draw(glob_text))
    if draw(st.booleans()):
        data = draw(instance(glob.parts))
    else:
        data = b"/" + b"".join(draw(st.lists(st.sampled_from(PATH_PIECES), max_size=8)))
    if draw(st.integers(0, 3)) == 0 and data:   # a small mutation: one byte replaced or cut
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + draw(st.sampled_from([b"", b"a", b"/", b"\x80"])) + data[i + 1:]
    return glob, data


SETTINGS = dict(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- agreement ------------------------------------------------------------------------------------------
@settings(**SETTINGS)
@given(glob_and_path())
def test_matching_agrees_everywhere(case):
    glob, data = case
    want = oracle_matches(glob.parts, data)
    assert Matcher(glob.parts).matches(data) == want, (glob.text, data)
    assert matcher(glob.parts).matches(data) == want, (glob.text, data)
    assert nfa_simulate(glob.parts, data) == want, (glob.text, data)
    dfa = one_glob_dfa(glob.parts)
    assert (dfa.verdicts[dfa.states[bpf_walk(dfa, data)][3]][0] == (DENY, 7)) == want, (glob.text, data)
    # the evaluator, on the path as Python holds it (surrogateescape for bytes not UTF-8)
    assert glob_matches(glob, data.decode("utf-8", "surrogateescape")) == want, (glob.text, data)


@settings(**SETTINGS)
@given(glob_and_path())
def test_protection_agrees_everywhere(case):
    """A rename of `data` is refused when the glob covers it or something below `data/`."""
    glob, data = case
    below = data + b"/"
    want_viable = oracle_viable(glob.parts, below)
    assert matcher(glob.parts).viable(below) == want_viable, (glob.text, below)
    want = 7 if (oracle_matches(glob.parts, data) or want_viable) else 0
    dfa = one_glob_dfa(glob.parts)
    assert dfa.states[bpf_walk(dfa, data)][4] == want, (glob.text, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(glob_text, min_size=2, max_size=4), st.data())
def test_one_dfa_for_many_globs(texts, data):
    """Several globs share one automaton and one DFA: each operation's verdict is its own glob's."""
    globs = [g(t) for t in texts]
    pats = [Pattern(glob_atoms(gl.parts)[0], 1 << i, rule_id=i + 1, rank=DENY) for i, gl in enumerate(globs)]
    dfa = build_dfa(pats, n_ops=len(globs), defaults=[(0, 0)] * len(globs))
    for _ in range(6):
        path = data.draw(instance(data.draw(st.sampled_from(globs)).parts))
        vec = dfa.verdicts[dfa.states[bpf_walk(dfa, path)][3]]
        for i, gl in enumerate(globs):
            assert (vec[i] == (DENY, i + 1)) == oracle_matches(gl.parts, path), (gl.text, path)


@settings(max_examples=300, deadline=None)
@given(glob_text, st.lists(st.sampled_from(["a", "b", "/", "é", "€", "😀", "."]), max_size=8).map("".join))
def test_on_utf8_text_a_question_mark_is_one_character(text, path):
    """On valid UTF-8, the byte meaning is the character meaning (`?` = `[^/]`)."""
    glob = g(text)

    def char_rx(parts) -> str:
        out = []
        for p in parts:
            if isinstance(p, Lit):
                out.append(re.escape(p.text))
            elif isinstance(p, Star):
                out.append("[^/]*")
            elif isinstance(p, DoubleStar):
                out.append(".*")
            elif isinstance(p, AnyChar):
                out.append("[^/]")
            else:
                out.append("(?:" + "|".join(char_rx(o) for o in p.options) + ")")
        return "".join(out)

    want = re.fullmatch(char_rx(glob.parts), "/" + path, re.DOTALL) is not None
    assert glob_matches(glob, "/" + path) == want


def test_not_utf8_the_kernel_meaning():
    # what the old regex evaluator said differently from the kernel's DFA
    for text, data, want in [("/a/?", b"/a/\x80", False), ("/a/?", b"/a/a\x80", True),
                             ("/a/??", b"/a/a\x80", False), ("/a/?", b"/a/\xe2\x82", True),
                             ("/a/?", b"/a/\xc3", True), ("/a/*", b"/a/\xff\x80", True),
                             ("/a/*", b"/a/\x80", True), ("/a/?b", b"/a/\xa9b", False)]:
        glob = g(text)
        assert glob_matches(glob, data.decode("utf-8", "surrogateescape")) is want, (text, data)
        assert oracle_matches(glob.parts, data) is want, (text, data)
        dfa = one_glob_dfa(glob.parts)
        assert (dfa.match(data)[0] == (DENY, 7)) is want, (text, data)


def test_any_str_is_a_path():
    # a lone surrogate that no byte decodes to still has bytes (the evaluator is total)
    assert path_bytes("/a/\ud800") == b"/a/\xed\xa0\x80"
    assert path_bytes("/a/\udcff") == b"/a/\xff"
    assert glob_matches(g("/a/*"), "/a/\ud800\udc80")
    assert not glob_matches(g("/a/?"), "/a/\udc80")


def test_a_matcher_forgets_past_its_bound(monkeypatch):
    # a `**` before a run of `?` needs exponentially many DFA states; a long-lived matcher
    # starts anew past its bound and still answers right
    monkeypatch.setattr(irglob, "MAX_LAZY_STATES", 4)
    parts = g("/**a?????").parts
    m = Matcher(parts)
    paths = [b"/xaxxxxx", b"/aaaaaa", b"/abcdef", b"/a/bcde", b"/aaaaaaaaaa", b"/\xc3a\xa9bcdef"]
    for _ in range(3):
        for p in paths:
            assert m.matches(p) == oracle_matches(parts, p), p
            assert m.viable(p) == oracle_viable(parts, p), p
    assert len(m._sets) < 4 + 12


# --- inclusion over bytes -------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(glob_text, glob_text, st.data())
def test_inclusion_is_never_claimed_falsely(big, small, data):
    b, s = g(big), g(small)
    if includes(b, s):
        for _ in range(12):
            path = data.draw(instance(s.parts))
            if oracle_matches(s.parts, path):
                assert oracle_matches(b.parts, path), (big, small, path)


def test_inclusion_examples_over_bytes():
    assert includes(g("/a/*"), g("/a/{é,€}?"))
    assert includes(g("/**"), g("/a/?/é*"))
    assert not includes(g("/a/{?*,}"), g("/a/*"))       # `/a/\x80`
    assert not includes(g("/a/{?*,}"), g("/a/{?,}*"))     # the same
    assert includes(g("/a/{?*,}"), g("/a/?{*,x}"))
    assert not includes(g("/a/?"), g("/a/??"))
    assert not includes(g("/a/é"), g("/a/?"))
    assert includes(g("/a/?"), g("/a/{é,😀}"))


def test_first_branch():
    assert first_branch(g("/a/{b,c}/{x{y,z},w}*").parts) == (Lit("/a/b/xy"), Star())
    assert first_branch(g("{/tmp,/var}/**").parts) == (Lit("/tmp/"), DoubleStar())


# --- the evaluator needs no parser ---------------------------------------------------------------------
def test_the_evaluator_imports_no_parser():
    code = ("import policyc.evaluate, sys; bad = [m for m in ('lark', 'policyc.parse', 'policyc.lower') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
