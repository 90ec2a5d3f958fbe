"""`include? "PATH"` (issue 16; AppArmor's `include if exists`): an include that is skipped,
without a word, when PATH is absent, and is `include` in every other way: a file that is there
is read (its rules apply, their spans point into it), a file that is there but is no policy
file, a cycle, a symbolic link to nothing and an absent glob are the errors `include` gives.
`fmt` keeps the `?`; the language server goes to the file and says on hover whether it is
there (docs/language.md, "Variables, includes, rulesets")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide
from policyc.fmt import format_text
from policyc.ir.model import Event
from policyc.lower import load_program
from policyc.parse import parse_text
from policyc.pipeline import front_end

from _policyc_helpers import found, load

MAIN = """\
include? "local/overrides.policy"

policy app {
    subject exe "/usr/bin/app"
    default deny
    allow file read "/etc/app/**"
    use local
}
"""

LOCAL = """\
ruleset local {
    deny file read "/etc/app/secret"
    allow file read "/srv/app/**"
}
"""

P = 'policy p {\n    subject exe "/usr/bin/p"\n    default deny\n}\n'


def test_the_grammar_reads_the_question_mark():
    (inc,) = parse_text("t.policy", 'include? "a.policy"\n', Diagnostics()).items
    assert inc.optional and inc.path.value == "a.policy"
    (inc,) = parse_text("t.policy", 'include "a.policy"\n', Diagnostics()).items
    assert not inc.optional
    diags = Diagnostics()
    assert parse_text("t.policy", 'include ? "a.policy"\n', diags) is None   # one word
    (d,) = diags.items
    assert d.code == "P001" and "`include?`" in d.hints[0]


def test_a_present_file_is_included_and_its_rules_apply(tmp_path):
    program, diags = load(tmp_path, MAIN, extra={"local/overrides.policy": LOCAL})
    assert program is not None and not diags.items, diags.items
    local = str(tmp_path / "local" / "overrides.policy")
    assert list(program.files) == [str(tmp_path / "t.policy"), local]
    secret = decide(program, Event("/usr/bin/app", "file.read", path="/etc/app/secret"))
    assert secret.action == "deny" and secret.rule is not None
    assert (secret.rule.span.file, secret.rule.span.line, secret.rule.span.col) == (local, 2, 5)
    srv = decide(program, Event("/usr/bin/app", "file.read", path="/srv/app/x"))
    assert srv.action == "allow" and srv.rule.span.file == local


def test_a_present_file_is_checked_like_any_other(tmp_path):
    # the checks see its policies: a rule written twice there is W101 there
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "overrides.policy").write_text(
        LOCAL + P.replace("    default deny\n", '    default deny\n    deny bpf\n    deny bpf\n'))
    (tmp_path / "t.policy").write_text(MAIN)
    front = front_end([str(tmp_path / "t.policy")])
    assert front.ok
    assert [(d.code, d.span.file, d.span.line) for d in front.diags.items] == \
        [("W101", str(tmp_path / "local" / "overrides.policy"), 9)]


def test_a_missing_file_is_skipped_with_no_diagnostic(tmp_path):
    program, diags = load(tmp_path, 'include? "local/overrides.policy"\ninclude? "nodir/x.policy"\n' + P)
    assert program is not None and diags.items == []
    assert [p.name for p in program.policies] == ["p"] and list(program.files) == [str(tmp_path / "t.policy")]
    # nor from the checks (`policyc check` says nothing)
    front = front_end([str(tmp_path / "t.policy")])
    assert front.ok and front.diags.items == []


def test_a_missing_file_does_not_define_what_it_would_have(tmp_path):
    program, diags = load(tmp_path, MAIN)
    assert program is None and found(diags) == [("P021", 7, 9)]


def test_mandatory_include_of_a_missing_file_is_still_an_error(tmp_path):
    program, diags = load(tmp_path, 'include "local/overrides.policy"\n' + P)
    assert program is None and found(diags) == [("P004", 1, 9)]


@pytest.mark.parametrize("text,code,line,col", [
    ("policy {\n", "P001", 1, 8),                 # a syntax error in it
    (b"policy p {\xff}\n", "P006", 1, 11),        # not UTF-8
    (b"\x00\x01\x02", "P006", 1, 1),              # binary junk
])
def test_a_present_file_that_is_not_a_policy_is_an_error(tmp_path, text, code, line, col):
    bad = tmp_path / "local" / "overrides.policy"
    bad.parent.mkdir()
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    program, diags = load(tmp_path, 'include? "local/overrides.policy"\n' + P)
    assert program is None
    assert [(d.code, d.span.file, d.span.line, d.span.col) for d in diags.items] == [(code, str(bad), line, col)]


def test_a_directory_is_not_a_policy_file(tmp_path):
    (tmp_path / "local").mkdir()
    program, diags = load(tmp_path, 'include? "local"\n' + P)
    assert program is None and found(diags) == [("P006", 1, 10)]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_not_a_policy_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.policy")
    program, diags = load(tmp_path, 'include? "pipe.policy"\n' + P)
    assert program is None and found(diags) == [("P006", 1, 10)]


def test_a_symbolic_link_to_nothing_is_an_error(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "overrides.policy").symlink_to(tmp_path / "gone.policy")
    program, diags = load(tmp_path, 'include? "local/overrides.policy"\n' + P)
    assert program is None and found(diags) == [("P004", 1, 10)]


def test_a_path_that_cannot_be_looked_up_is_an_error(tmp_path, monkeypatch):
    # a directory without search permission (as root there is none to make: lstat says so)
    real = os.lstat

    def lstat(path, *a, **kw):
        if str(path).endswith("overrides.policy"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "lstat", lstat)
    program, diags = load(tmp_path, 'include? "local/overrides.policy"\n' + P)
    assert program is None and found(diags) == [("P006", 1, 10)]
    assert "Permission denied" in diags.items[0].message


def test_an_absent_glob_is_an_error_not_a_skip(tmp_path):
    # includes take one file, literally (no glob): an absent `*.policy` was meant as a pattern
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.policy").write_text("")
    program, diags = load(tmp_path, 'include? "conf.d/*.policy"\n' + P)
    assert program is None and found(diags) == [("P004", 1, 10)]
    program, diags = load(tmp_path, 'include "conf.d/*.policy"\n' + P)
    assert program is None and found(diags) == [("P004", 1, 9)]


def test_a_cycle_through_an_optional_include_is_an_error(tmp_path):
    program, diags = load(tmp_path, 'include? "b.policy"\n' + P, name="a.policy",
                          extra={"b.policy": 'include? "a.policy"\n'})
    assert program is None
    (d,) = diags.items
    assert d.code == "P005" and len(d.notes) == 2
    program, diags = load(tmp_path, 'include? "t.policy"\n' + P)        # itself
    assert program is None and [d.code for d in diags.items] == ["P005"]


def test_a_file_included_both_ways_is_read_once(tmp_path):
    program, diags = load(tmp_path, 'include "local/overrides.policy"\n' + MAIN,
                          extra={"local/overrides.policy": LOCAL})
    assert program is not None and not diags.items, diags.items
    assert len(program.files) == 2 and len(program.policies[0].rules) == 3


def test_lets_of_a_present_file_are_seen(tmp_path):
    text = 'include? "vars.policy"\n' + P.replace("    default deny\n", '    default deny\n    allow file read "${d}/**"\n')
    program, diags = load(tmp_path, text, extra={"vars.policy": 'let d = "/srv"\n'})
    assert program is not None, diags.items
    assert program.policies[0].rules[0].paths[0].text == "/srv/**"


FMT_IN = """\
include?   "local/overrides.policy"   # site rules
include "base.policy"
include?"x.policy"
"""

FMT_OUT = """\
include? "local/overrides.policy"  # site rules
include "base.policy"
include? "x.policy"
"""


def test_fmt_round_trips_the_optional_include():
    diags = Diagnostics()
    assert format_text("t.policy", FMT_IN, diags) == FMT_OUT, diags.items
    assert format_text("t.policy", FMT_OUT, diags) == FMT_OUT
    assert not diags.items


def test_the_editor_grammars_highlight_it():
    root = Path(__file__).resolve().parents[2]
    tm = (root / "editors" / "textmate" / "policy.tmLanguage.json").read_text()
    assert "include\\\\?" in tm
    assert r"/\%(\<include\)\@<=?/" in (root / "editors" / "vim" / "syntax" / "policy.vim").read_text()


# --- the language server -------------------------------------------------------------------------
def test_lsp_analysis_definition_and_hover(tmp_path):
    from policyc.lsp import analysis as A

    (tmp_path / "local").mkdir()
    local = tmp_path / "local" / "overrides.policy"
    local.write_text(LOCAL)
    path = str(tmp_path / "app.policy")
    text = MAIN.replace("include?", 'include? "local/absent.policy"\ninclude?', 1)
    a = A.analyse(path, text)
    assert a.diagnostics == [] and a.program is not None
    assert A.definition(a, 2, 14) == A.Span(str(local), 1, 1, 1, 1)
    assert A.definition(a, 1, 14) is None                       # absent: nowhere to go
    said, _ = A.hover(a, 2, 3)
    assert "present, included" in said and str(local) in said
    said, _ = A.hover(a, 1, 3)
    assert "absent, skipped" in said
    assert ("include?", "keyword") in A.completions("", 1)


def test_lsp_shows_an_error_of_the_included_file_on_its_line(tmp_path):
    from policyc.lsp import analysis as A

    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "overrides.policy").write_text("ruleset local {\n    allow capabilty x\n}\n")
    a = A.analyse(str(tmp_path / "app.policy"), MAIN)
    assert [d.code for d in a.diagnostics] == ["P010"]
    assert a.diagnostics[0].span.file == str(tmp_path / "local" / "overrides.policy")


# over the protocol, as tests/unit/test_lsp.py drives it (only where pygls and pytest-lsp are)
try:
    import pygls  # noqa: F401
    import pytest_lsp
    from lsprotocol import types as T
    from pytest_lsp import ClientServerConfig, LanguageClient
except ImportError:          # the tests above still run
    pytest_lsp = None


if pytest_lsp is not None:
    @pytest_lsp.fixture(scope="module",
                        config=ClientServerConfig(server_command=[sys.executable, "-m", "policyc", "lsp"]))
    async def client(lsp_client: LanguageClient):
        await lsp_client.initialize_session(T.InitializeParams(capabilities=T.ClientCapabilities(),
                                                               root_uri=None))
        yield
        await lsp_client.shutdown_session()

    async def _open(client: LanguageClient, path: Path, text: str) -> list[T.Diagnostic]:
        import asyncio

        uri = path.as_uri()
        client.diagnostics.pop(uri, None)
        client.text_document_did_open(T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id="policy", version=1, text=text)))

        async def wait():
            while uri not in client.diagnostics:
                await client.wait_for_notification("textDocument/publishDiagnostics")
            return client.diagnostics[uri]

        return await asyncio.wait_for(wait(), 30)

    @pytest.mark.asyncio(loop_scope="module")
    async def test_lsp_definition_diagnostics_and_hover(client: LanguageClient, tmp_path):
        (tmp_path / "local").mkdir()
        local = tmp_path / "local" / "overrides.policy"
        local.write_text(LOCAL.replace("    allow file read \"/srv/app/**\"\n",
                                       "    allow file read \"/srv/app/**\"\n    allow capability net_bind_servic\n"))
        path = tmp_path / "app.policy"
        path.write_text("")
        text = 'include? "local/absent.policy"\n' + MAIN
        diags = await _open(client, path, text)
        # the absent file says nothing; the present one's error is shown on its include line
        assert [(d.code, d.range.start.line) for d in diags] == [("P012", 1)]
        assert diags[0].message.startswith(f"{local}:4:")
        uri = path.as_uri()

        async def where(line, col):
            return await client.text_document_definition_async(T.DefinitionParams(T.TextDocumentIdentifier(uri),
                                                                                   T.Position(line, col)))

        loc = await where(1, 14)
        assert (loc.uri, loc.range.start.line, loc.range.start.character) == (local.as_uri(), 0, 0)
        assert await where(0, 14) is None
        hover = await client.text_document_hover_async(T.HoverParams(T.TextDocumentIdentifier(uri), T.Position(0, 3)))
        assert "absent, skipped" in hover.contents.value
        client.text_document_did_close(T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(uri)))
