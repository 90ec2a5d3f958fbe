"""Glob meaning and glob inclusion, against independent oracles (hypothesis)."""

from __future__ import annotations

import doctest
import fnmatch
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

import policyc.checks._globs as inclusion
import policyc.ir.dfa as dfa
import policyc.ir.glob as globs
from policyc.checks._globs import includes
from policyc.diagnostics import Diagnostics
from policyc.evaluate import glob_matches
from policyc.ir.glob import parse_glob
from policyc.span import NO_SPAN


def g(text):
    glob = parse_glob(text, NO_SPAN, Diagnostics())
    assert glob is not None, text
    return glob


def test_doctests():
    for mod in (globs, inclusion, dfa):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


# --- matching: an fnmatch oracle for brace-free globs without `**` ------------------------------
component = st.lists(st.sampled_from(["a", "b", "c", "*", "?", ".", "-"]), max_size=4).map("".join)
simple_glob = st.lists(component, min_size=1, max_size=4).map(lambda cs: "/" + "/".join(cs)).filter(
    lambda p: "**" not in p)
path = st.lists(st.lists(st.sampled_from(["a", "b", "c", ".", "-"]), max_size=4).map("".join),
                min_size=1, max_size=4).map(lambda cs: "/" + "/".join(cs))


def fnmatch_oracle(pattern: str, text: str) -> bool:
    """`*` and `?` stay within a component: match component by component."""
    pc, tc = pattern.split("/"), text.split("/")
    return len(pc) == len(tc) and all(fnmatch.fnmatchcase(t, p) for p, t in zip(pc, tc))


@settings(max_examples=500, deadline=None)
@given(simple_glob, path)
def test_matching_agrees_with_fnmatch(pattern, text):
    assert glob_matches(g(pattern), text) == fnmatch_oracle(pattern, text)


# --- matching with `**` and braces: a backtracking oracle ---------------------------------------
piece = st.sampled_from(["a", "b", "/", "*", "**", "?", "{a,b}", "{a/,}", "{*,b/**}"])
glob_text = st.lists(piece, min_size=1, max_size=6).map(lambda ps: "".join(ps))
text_st = st.lists(st.sampled_from(["a", "b", "/", "c"]), max_size=7).map("".join)


def expand_braces(p: str) -> list[str]:
    depth, start = 0, None
    for i, ch in enumerate(p):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                inner, opts, d, last = p[start + 1:i], [], 0, 0
                for j, c in enumerate(inner):
                    d += c == "{"
                    d -= c == "}"
                    if c == "," and d == 0:
                        opts.append(inner[last:j])
                        last = j + 1
                opts.append(inner[last:])
                # \x01 keeps pieces apart: `{*,a}{*,a}` gives `*` `*`, two stars, not `**`
                return [x for o in opts for x in expand_braces(p[:start] + "\x01" + o + "\x01" + p[i + 1:])]
    return [p]


def backtrack(p: str, t: str) -> bool:
    if not p:
        return not t
    if p[0] == "\x01":
        return backtrack(p[1:], t)
    if p.startswith("**"):
        rest = p[2:].lstrip("*")
        return any(backtrack(rest, t[i:]) for i in range(len(t) + 1))
    if p[0] == "*":
        i = 0
        while True:
            if backtrack(p[1:], t[i:]):
                return True
            if i >= len(t) or t[i] == "/":
                return False
            i += 1
    if p[0] == "?":
        return bool(t) and t[0] != "/" and backtrack(p[1:], t[1:])
    return bool(t) and t[0] == p[0] and backtrack(p[1:], t[1:])


@settings(max_examples=500, deadline=None)
@given(glob_text, text_st)
def test_matching_agrees_with_backtracking(pattern, text):
    assert glob_matches(g(pattern), text) == any(backtrack(e, text) for e in expand_braces(pattern))


# --- inclusion: never claimed falsely, and found when a short counterexample does not exist ----
# `c` stands for every character the globs below do not name.
ALL_TEXTS = ["".join(t) for n in range(0, 6) for t in itertools.product("ab/c", repeat=n)]
# "\udc80" is the lone byte 0x80 (path_bytes' escape): a `?` is one UTF-8 character, so `?*`
# does not include `*a` ("\x80a" is a path too)
LONGER = (["".join(t) for n in range(0, 7) for t in itertools.product("ab/c", repeat=n)]
          + ["".join(t) for n in range(1, 5) for t in itertools.product("ab/\udc80", repeat=n) if "\udc80" in t])


@settings(max_examples=400, deadline=None)
@given(glob_text, glob_text)
def test_inclusion_against_brute_force(big, small):
    b, s = g(big), g(small)
    claimed = includes(b, s)
    counterexample = next((t for t in ALL_TEXTS if glob_matches(s, t) and not glob_matches(b, t)), None)
    if claimed:
        assert counterexample is None, (big, small, counterexample)
    # Conversely: no counterexample among short strings means included for globs this small
    # (their automata have few states, so a shortest counterexample is short).
    elif counterexample is None and len(big) + len(small) <= 8:
        assert any(glob_matches(s, t) and not glob_matches(b, t) for t in LONGER), (big, small)


def test_inclusion_examples():
    assert includes(g("/srv/**"), g("/srv/www/index.html"))
    assert includes(g("/srv/**"), g("/srv/*/x/**"))
    assert includes(g("/usr/{bin,sbin}/*"), g("/usr/bin/{a,b*}"))
    assert includes(g("/a/**"), g("/a/{b,c/**}"))
    assert not includes(g("/srv/**"), g("/srv"))
    assert not includes(g("/srv/*"), g("/srv/**"))
    assert not includes(g("/a/?"), g("/a/??"))
    assert includes(g("/**"), g("/{a,b}/**"))
    assert inclusion.matches_everything(g("/**"))
    assert not inclusion.matches_everything(g("/*/**"))
