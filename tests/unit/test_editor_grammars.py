"""The editor grammars (editors/textmate, editors/vim) are generated from grammar/policy.lark
and the vocabulary by editors/generate.py, and cannot drift: the committed files are what the
generator writes, and every keyword terminal of the grammar is highlighted by both."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lark import Lark

from policyc.ir.vocab import CAPABILITIES, FAMILIES, SIGNALS
from policyc.parse import GRAMMAR

ROOT = Path(__file__).resolve().parents[2]
TEXTMATE = ROOT / "editors" / "textmate" / "policy.tmLanguage.json"
VIM = ROOT / "editors" / "vim" / "syntax" / "policy.vim"
FTDETECT = ROOT / "editors" / "vim" / "ftdetect" / "policy.vim"


def grammar_keywords() -> set[str]:
    """Every keyword terminal of the grammar, read by Lark itself (not by the generator): the
    literal words, and the words of the DECISION and PROTO terminals."""
    lark = Lark(GRAMMAR.read_text(), parser="lalr", keep_all_tokens=True)
    words = set()
    for t in lark.terminals:
        if t.pattern.type == "str" and re.fullmatch(r"[a-z][a-z_\-]*", t.pattern.value):
            words.add(t.pattern.value)
        elif t.name in ("DECISION", "PROTO"):
            words |= set(re.match(r"\(([^)]*)\)", t.pattern.value).group(1).split("|"))
    assert {"include", "policy", "allow", "tcp", "expect", "acknowledge", "port"} <= words
    return words


def test_generated_files_are_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "editors" / "generate.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _textmate_matches(word: str, doc: dict) -> bool:
    for p in [*doc["patterns"], *doc["repository"].values()]:
        m = p.get("match")
        if m and re.fullmatch(m.replace("(?i)", ""), word, re.I if m.startswith("(?i)") else 0):
            return True
    return False


def test_textmate_highlights_every_keyword_and_name():
    doc = json.loads(TEXTMATE.read_text())
    assert doc["scopeName"] == "source.policy" and "policy" in doc["fileTypes"]
    for p in doc["patterns"]:
        if "match" in p:
            re.compile(p["match"].replace("(?i)", ""))
    words = grammar_keywords() | set(FAMILIES) | set(CAPABILITIES) | set(SIGNALS) | {"exec-map", "read", "connect"}
    missing = sorted(w for w in words if not _textmate_matches(w, doc))
    assert not missing, missing
    assert not _textmate_matches("audit_write_x", doc)   # whole words only


def _vim_keywords() -> set[str]:
    words = set()
    for line in VIM.read_text().splitlines():
        if line.startswith("syntax keyword "):
            words |= set(line.split()[3:])
    return words


def test_vim_syntax_has_every_keyword_and_name():
    words = _vim_keywords()
    expected = grammar_keywords() | set(FAMILIES) | set(CAPABILITIES) | set(SIGNALS) | {"exec-map"}
    assert expected <= words, sorted(expected - words)
    assert "*.policy" in FTDETECT.read_text() and "setfiletype policy" in FTDETECT.read_text()


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_vim_loads_the_syntax_and_highlights_a_policy(tmp_path):
    sample = tmp_path / "x.policy"
    sample.write_text('policy p {\n    allow file read "/srv/${d}/**"   # a comment\n}\n')
    out = tmp_path / "out.txt"
    script = tmp_path / "probe.vim"
    script.write_text("\n".join([
        f"set runtimepath^={ROOT / 'editors' / 'vim'}",
        "filetype on",
        "syntax on",
        f"edit {sample}",
        "let r = [&filetype]",
        "for [l, c] in [[1, 1], [2, 5], [2, 11], [2, 16], [2, 21], [2, 38]]",
        "  call add(r, synIDattr(synID(l, c, 1), 'name'))",
        "endfor",
        f"call writefile(r, '{out}')",
        "qall!",
    ]))
    r = subprocess.run(["vim", "-Nu", "NONE", "-i", "NONE", "-es", "-S", str(script)], capture_output=True,
                       text=True, timeout=60)
    assert out.exists(), r.stdout + r.stderr
    assert out.read_text().split("\n")[:7] == ["policy", "policyKeyword", "policyDecision", "policyFamily",
                                               "policyOperation", "policyString", "policyComment"]
