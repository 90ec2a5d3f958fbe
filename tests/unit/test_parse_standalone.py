"""policyc/parse/standalone.py: the standalone LALR parser (Lark's own code and tables,
generated into the user's cache) parses exactly as Lark does, and is never used stale.

Both parsers run over every policy file of the repository (policies/, tests/) and a corpus
of broken ones made from the examples (each truncated at every 7th byte; tokens deleted,
characters inserted, at random with fixed seeds). For each input the two must give the same
parse tree (rule names, tokens with their types, texts and positions), the same sequence of
errors handed to on_error (kind, position, token, expected terminals, message), and through
policyc's parse_text the same syntax tree and the same diagnostics (file:line:col, message,
hints)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policyc import parse as P
from policyc.diagnostics import Diagnostics
from policyc.parse import standalone

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "policies").glob("*.policy"))
POLICY_FILES = sorted({p for d in ("policies", "tests") for pattern in ("*.policy", "*.policy.test")
                       for p in (ROOT / d).rglob(pattern)})
# Tokens for the deletions: strings, words (with the characters of paths, addresses and
# rates), single punctuation.
_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"?|[\w./*?:\-]+|\S')
INSERTED = ['"', "?", "{", "}", ",", "=", "@", "\\", "#", "é", "\t", "\u200b", "allow", "include", "\n"]


@pytest.fixture(scope="module")
def parsers(tmp_path_factory):
    """(Lark, the standalone module) made from the grammar, the standalone generated into a
    cache of its own."""
    import lark

    cache = tmp_path_factory.mktemp("parser-cache")
    grammar = P.GRAMMAR.read_text()
    full = lark.Lark(grammar, **P._LARK_OPTIONS)
    assert standalone.save(cache, grammar, P._LARK_OPTIONS, full) is not None
    module = standalone.load(cache, grammar, P._LARK_OPTIONS)
    assert module is not None
    assert module.Token is not lark.Token   # its own copy of Lark's code, not lark's
    return P._Parser(full, lark.exceptions, "lark"), P._Parser(module.parser, module, "standalone")


def _shape(node):
    """A parse tree as plain values: rule names, tokens (type, text, positions), None."""
    if node is None:
        return None
    if isinstance(node, str):
        return ("token", node.type, str(node), node.line, node.column, node.end_line, node.end_column,
                node.start_pos, node.end_pos)
    return (type(node).__name__, str(node.data), tuple(_shape(c) for c in node.children))


def _error(e) -> tuple:
    return (type(e).__name__, e.line, e.column, getattr(e, "pos_in_stream", None),
            sorted(getattr(e, "expected", None) or ()), sorted(getattr(e, "allowed", None) or ()),
            _shape(getattr(e, "token", None)), str(e))


def _raw(parser: P._Parser, text: str) -> tuple:
    """What Lark's parser does with `text`: each error it hands to on_error (going on after
    each, up to 25 as parse_text does), then its tree or the error it raised."""
    errors = []

    def on_error(e) -> bool:
        errors.append(_error(e))
        return len(errors) < P.MAX_ERRORS_PER_FILE

    try:
        return tuple(errors), _shape(parser.parse(text, on_error=on_error))
    except parser.UnexpectedInput as e:
        return tuple(errors), ("raised", _error(e))
    except RecursionError:
        return tuple(errors), ("raised", "RecursionError")


def _policyc(parser: P._Parser, path: str, text: str, monkeypatch) -> tuple:
    """parse_text's syntax tree and diagnostics with `parser`."""
    monkeypatch.setattr(P, "_parser", lambda: parser)
    diags = Diagnostics()
    tree = P.parse_text(path, text, diags)
    return repr(tree), tree, repr(diags.items)


def _same(parsers, path: str, text: str, monkeypatch) -> None:
    full, fast = parsers
    assert _raw(fast, text) == _raw(full, text), (path, text)
    mine, theirs = _policyc(fast, path, text, monkeypatch), _policyc(full, path, text, monkeypatch)
    assert mine == theirs, (path, text)


def test_the_corpus_is_there():
    assert len(EXAMPLES) >= 4 and len(POLICY_FILES) >= 15
    assert any(p.name.endswith(".policy.test") for p in POLICY_FILES)


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_policy_file_parses_alike(parsers, path, monkeypatch):
    _same(parsers, str(path), path.read_text(encoding="utf-8"), monkeypatch)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_truncation_of_the_examples_parses_alike(parsers, path, monkeypatch):
    data = path.read_bytes()
    for end in range(0, len(data) + 1, 7):
        _same(parsers, str(path), data[:end].decode("utf-8", "ignore"), monkeypatch)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_token_deletions_and_insertions_parse_alike(parsers, path, monkeypatch):
    text = path.read_text(encoding="utf-8")
    tokens = list(_TOKEN.finditer(text))
    rng = random.Random(f"standalone:{path.name}")
    for _ in range(60):
        cut = sorted(rng.sample(tokens, rng.randint(1, 4)), key=lambda m: m.start(), reverse=True)
        broken = text
        for m in cut:
            broken = broken[:m.start()] + broken[m.end():]
        _same(parsers, str(path), broken, monkeypatch)
    for _ in range(60):
        broken = text
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(broken))
            broken = broken[:at] + rng.choice(INSERTED) + broken[at:]
        _same(parsers, str(path), broken, monkeypatch)


def test_errors_past_the_limit_and_deep_nesting_parse_alike(parsers, monkeypatch):
    many = "".join(f"policy p{i} {{\n    allow file read\n}}\n" for i in range(40))
    _same(parsers, "many.policy", many, monkeypatch)
    _same(parsers, "deep.policy", "policy p {\n" + "{" * 5000 + "\n}\n", monkeypatch)
    _same(parsers, "empty.policy", "", monkeypatch)
    _same(parsers, "junk.policy", "\x01\x02 ?? }}} include? include ?", monkeypatch)


# --- never stale -----------------------------------------------------------------------------
@pytest.fixture
def grammar():
    return P.GRAMMAR.read_text()


def _made(tmp_path, grammar, options=None):
    import lark

    options = options or P._LARK_OPTIONS
    written = standalone.save(tmp_path, grammar, options, lark.Lark(grammar, **options))
    assert written is not None and written.parent == tmp_path
    return written


def test_the_installed_lark_version_is_read_without_importing_lark(monkeypatch):
    import lark

    monkeypatch.delitem(sys.modules, "lark")
    assert standalone.lark_version() == lark.__version__


def test_a_file_is_used_only_for_its_grammar_lark_options_format_and_python(tmp_path, grammar, monkeypatch):
    written = _made(tmp_path, grammar)
    head = written.read_bytes().split(b"\n", 1)[0].decode()
    import hashlib
    import lark

    # what it carries, for whoever looks into the cache
    assert f"grammar sha256 {hashlib.sha256(grammar.encode()).hexdigest()}" in head
    assert f"Lark {lark.__version__}" in head
    assert standalone.load(tmp_path, grammar, P._LARK_OPTIONS) is not None
    # a grammar differing by one character
    changed = grammar.replace("policy", "polisy", 1)
    assert changed != grammar
    assert standalone.load(tmp_path, changed, P._LARK_OPTIONS) is None
    assert standalone.load(tmp_path, grammar + "\n", P._LARK_OPTIONS) is None
    assert standalone.load(tmp_path, grammar, {**P._LARK_OPTIONS, "maybe_placeholders": False}) is None
    monkeypatch.setattr(standalone, "lark_version", lambda: "0.0.1")
    assert standalone.load(tmp_path, grammar, P._LARK_OPTIONS) is None
    monkeypatch.undo()
    monkeypatch.setattr(standalone, "FORMAT", standalone.FORMAT + 1)
    assert standalone.load(tmp_path, grammar, P._LARK_OPTIONS) is None
    monkeypatch.undo()
    monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    assert standalone.load(tmp_path, grammar, P._LARK_OPTIONS) is None
    monkeypatch.undo()
    # another grammar's file under this one's name: the key inside decides, not the name
    assert standalone.path(tmp_path, standalone.key(grammar, P._LARK_OPTIONS, lark.__version__)) == written
    os.replace(_made(tmp_path, changed), written)
    assert standalone.load(tmp_path, grammar, P._LARK_OPTIONS) is None


def test_a_traceback_through_the_parser_shows_its_source(tmp_path, grammar):
    import inspect

    written = _made(tmp_path, grammar)
    module = standalone.load(tmp_path, grammar, P._LARK_OPTIONS)
    assert module.Lark_StandAlone.__code__.co_filename == str(written.with_suffix(".py"))
    assert inspect.getsource(module.Lark_StandAlone).startswith("def Lark_StandAlone(")
    assert "editing it changes nothing" in written.with_suffix(".py").read_text()


def test_a_damaged_file_is_not_used(tmp_path, grammar):
    written = _made(tmp_path, grammar)
    data = written.read_bytes()
    for damaged in (b"", b"garbage\n", data[:len(data) // 2], data[:200], data.replace(b"policyc", b"x", 1),
                    data[:-10] + b"\0" * 10):
        written.write_bytes(damaged)
        assert standalone.load(tmp_path, grammar, P._LARK_OPTIONS) is None, damaged[:80]


def test_an_unwritable_cache_costs_no_generating(tmp_path, grammar, monkeypatch):
    import lark

    def generate(parser):
        raise AssertionError("generated for a cache it cannot write")

    monkeypatch.setattr(standalone, "generate", generate)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    parser = lark.Lark(grammar, **P._LARK_OPTIONS)
    assert standalone.save(blocked / "parser", grammar, P._LARK_OPTIONS, parser) is None
    if os.geteuid() != 0:   # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert standalone.save(ro, grammar, P._LARK_OPTIONS, parser) is None
        assert list(ro.iterdir()) == []


def test_generation_that_fails_writes_nothing(tmp_path, grammar, monkeypatch):
    import lark

    parser = lark.Lark(grammar, **P._LARK_OPTIONS)
    monkeypatch.setattr(standalone, "generate", lambda parser: "raise RuntimeError('broken')\n")
    assert standalone.save(tmp_path, grammar, P._LARK_OPTIONS, parser) is None
    monkeypatch.setattr(standalone, "generate", lambda parser: "def f(:\n")
    assert standalone.save(tmp_path, grammar, P._LARK_OPTIONS, parser) is None
    assert list(tmp_path.iterdir()) == []


_RUN = ("import sys\n"
        "from policyc import parse as P\n"
        "from policyc.diagnostics import Diagnostics\n"
        "d = Diagnostics()\n"
        "text = 'policy p {\\n    subject exe \"/x\"\\n    deny file read \"/etc/**\"\\n}\\n'\n"
        "f = P.parse_text('x.policy', text, d)\n"
        "assert f is not None and not d.items\n"
        "print(P._parser().kind, 'lark' in sys.modules)\n")


def _run(cache: Path) -> list[str]:
    env = {**os.environ, "POLICYC_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_lark_writes_the_standalone_parser_and_the_next_run_uses_it_without_lark(tmp_path):
    cache = tmp_path / "cache"
    assert _run(cache) == ["lark", "True"]          # no parser yet: Lark, which keeps its tables
    assert sorted(p.suffix for p in (cache / "parser").iterdir()) == [".cache"]   # a cold run writes no more
    assert _run(cache) == ["lark", "True"]          # the cache lived on: Lark writes the standalone parser
    files = sorted(p.suffix for p in (cache / "parser").iterdir())
    assert files == [".bin", ".cache", ".py"], files   # the standalone parser, Lark's tables, the source
    assert _run(cache) == ["standalone", "False"]   # lark not even imported
    (standalone_file,) = (cache / "parser").glob("standalone-*.bin")
    standalone_file.write_bytes(b"damaged")
    assert _run(cache) == ["lark", "True"]          # damaged: Lark, which writes it anew
    assert _run(cache) == ["standalone", "False"]


def test_a_changed_grammar_is_parsed_by_lark(tmp_path, monkeypatch, grammar):
    """A grammar edited in a checkout: the file made from the old one is passed over."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("POLICYC_CACHE", str(cache))
    P._parser.cache_clear()
    try:
        assert P._parser().kind == "lark"
        P._parser.cache_clear()
        assert P._parser().kind == "lark"         # Lark's tables kept: now it writes the standalone parser
        P._parser.cache_clear()
        assert P._parser().kind == "standalone"
        edited = tmp_path / "policy.lark"
        edited.write_text(grammar + "\n// edited\n")
        monkeypatch.setattr(P, "GRAMMAR", edited)
        P._parser.cache_clear()
        assert P._parser().kind == "lark"
        P._parser.cache_clear()
        assert P._parser().kind == "standalone"   # made from the edited grammar
        assert len(list((cache / "parser").glob("standalone-*.bin"))) == 2
    finally:
        P._parser.cache_clear()
