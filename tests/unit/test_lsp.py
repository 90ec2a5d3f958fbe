"""`policyc lsp`, driven over stdio by a real LSP client (pytest-lsp): diagnostics as you type
on unsaved buffers with includes resolved relative to the file, formatting, hover on a rule
(what it matches, which rule shadows it), go-to-definition of `include`, `use` and `${var}`,
completion of families, operations, capabilities and signals."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types as T  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(scope="module",
                    config=ClientServerConfig(server_command=[sys.executable, "-m", "policyc", "lsp"]))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(T.InitializeParams(capabilities=T.ClientCapabilities(),
                                                           root_uri=None))
    yield
    await lsp_client.shutdown_session()


BASE = """\
let logs = "/var/log/app"

ruleset base {
    allow file read "/usr/lib/**"
}
"""

POLICY = """\
include "lib/base.policy"

policy app {
    subject exe "/usr/bin/app"
    default deny
    let data = "/srv/app"
    use base
    allow file read "${data}/**"
    allow file read "/srv/app/index.html"
    allow file write "${logs}/*.log"
}
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "lib" / "base.policy").write_text(BASE)
    path = tmp_path / "app.policy"
    path.write_text("")          # on disk: empty; the buffer holds the text (unsaved)
    return path, tmp_path / "lib" / "base.policy"


async def _open(client: LanguageClient, path: Path, text: str, version: int = 1) -> list[T.Diagnostic]:
    uri = path.as_uri()
    client.diagnostics.pop(uri, None)
    client.text_document_did_open(T.DidOpenTextDocumentParams(
        T.TextDocumentItem(uri=uri, language_id="policy", version=version, text=text)))
    return await _published(client, uri)


async def _published(client: LanguageClient, uri: str) -> list[T.Diagnostic]:
    """The diagnostics the server publishes next for `uri` (others' may come first)."""
    async def wait():
        while uri not in client.diagnostics:
            await client.wait_for_notification("textDocument/publishDiagnostics")
        return client.diagnostics[uri]

    return await asyncio.wait_for(wait(), 30)


async def _change(client: LanguageClient, path: Path, text: str, version: int) -> list[T.Diagnostic]:
    uri = path.as_uri()
    client.diagnostics.pop(uri, None)
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [T.TextDocumentContentChangeWholeDocument(text=text)]))
    return await _published(client, uri)


def _close(client: LanguageClient, path: Path) -> None:
    client.text_document_did_close(T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(path.as_uri())))


async def test_diagnostics_of_an_unsaved_buffer_with_an_include(client: LanguageClient, tmp_path):
    path, _ = _files(tmp_path)
    diags = await _open(client, path, POLICY)
    # the include resolved relative to the file (`${logs}` comes from it); only W102 remains
    assert [d.code for d in diags] == ["W102"], diags
    (d,) = diags
    assert d.range.start == T.Position(8, 4) and d.severity == T.DiagnosticSeverity.Warning
    assert d.related_information and d.related_information[0].message.startswith("covered by")
    # as you type: a misspelt capability is an error at once, with its place
    diags = await _change(client, path, POLICY.replace("    default deny\n",
                                                       "    default deny\n    allow capability net_bind_servic\n"), 2)
    codes = {d.code: d for d in diags}
    assert "P012" in codes and codes["P012"].range.start == T.Position(5, 21)
    assert codes["P012"].severity == T.DiagnosticSeverity.Error
    assert "did you mean `net_bind_service`" in codes["P012"].message
    # a syntax error
    diags = await _change(client, path, "policy x {\n    subject exe \"/a\"\n", 3)
    assert [d.code for d in diags] == ["P001"]
    _close(client, path)


async def test_an_include_that_is_missing_is_reported_on_its_line(client: LanguageClient, tmp_path):
    path = tmp_path / "lone.policy"
    diags = await _open(client, path, 'include "nope.policy"\npolicy p {\n    subject exe "/a"\n}\n')
    assert [(d.code, d.range.start.line) for d in diags] == [("P004", 0)]
    _close(client, path)


async def test_formatting_goes_through_fmt(client: LanguageClient, tmp_path):
    path = tmp_path / "messy.policy"
    text = 'policy p {\nsubject exe "/a"\n      allow   file read "/x"\n}\n'
    await _open(client, path, text)
    edits = await client.text_document_formatting_async(T.DocumentFormattingParams(
        T.TextDocumentIdentifier(path.as_uri()), T.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert len(edits) == 1
    assert edits[0].new_text == 'policy p {\n    subject exe "/a"\n    allow file read "/x"\n}\n'
    assert edits[0].range.start == T.Position(0, 0)
    _close(client, path)


async def test_hover_on_a_rule_says_what_it_matches_and_what_shadows_it(client: LanguageClient, tmp_path):
    path, _ = _files(tmp_path)
    await _open(client, path, POLICY)
    hover = await client.text_document_hover_async(T.HoverParams(T.TextDocumentIdentifier(path.as_uri()),
                                                                 T.Position(8, 8)))
    text = hover.contents.value
    assert "**allow**" in text and "`/srv/app/index.html`" in text and "`read`" in text
    assert "W102" in text and "covered by `allow file read \"${data}/**\"`" in text
    assert f"{path}:8:5" in text          # where the shadowing rule is
    hover = await client.text_document_hover_async(T.HoverParams(T.TextDocumentIdentifier(path.as_uri()),
                                                                 T.Position(7, 8)))
    assert "`/srv/app/**`" in hover.contents.value and "No other rule shadows" in hover.contents.value
    _close(client, path)


async def test_definition_of_include_use_and_var(client: LanguageClient, tmp_path):
    path, base = _files(tmp_path)
    await _open(client, path, POLICY)
    uri = path.as_uri()

    async def where(line, col):
        loc = await client.text_document_definition_async(T.DefinitionParams(T.TextDocumentIdentifier(uri),
                                                                             T.Position(line, col)))
        return loc.uri, loc.range.start.line, loc.range.start.character

    assert await where(0, 12) == (base.as_uri(), 0, 0)            # include "lib/base.policy"
    assert await where(6, 9) == (base.as_uri(), 2, 8)             # use base -> ruleset base
    assert await where(7, 22) == (uri, 5, 8)                      # ${data} -> the policy's let
    assert await where(9, 23) == (base.as_uri(), 0, 4)            # ${logs} -> the included file's let
    _close(client, path)


async def test_completion(client: LanguageClient, tmp_path):
    path = tmp_path / "c.policy"
    text = "policy p {\n    allow \n    deny capability \n    deny signal \n    allow net \n}\n"
    await _open(client, path, text)
    uri = path.as_uri()

    async def labels(line, col):
        r = await client.text_document_completion_async(T.CompletionParams(T.TextDocumentIdentifier(uri),
                                                                           T.Position(line, col)))
        items = r.items if isinstance(r, T.CompletionList) else r
        return {i.label for i in items}

    assert {"file", "exec", "net", "capability", "signal", "ptrace", "mount", "module", "bpf"} <= await labels(1, 10)
    assert {"sys_admin", "net_bind_service", "audit_write"} <= await labels(2, 20)
    assert {"kill", "term", "hup", "to"} <= await labels(3, 16)
    assert {"connect", "bind", "tcp", "udp", "port"} <= await labels(4, 14)
    assert {"policy", "ruleset", "include"} <= await labels(0, 0)
    _close(client, path)


async def test_the_overlay_replaces_what_the_front_end_reads():
    """policyc/cli/common.py `overlaid` swaps the parse_file policyc/lower/sources.py reads
    through; if the front end read files another way, buffers would silently be read from disk."""
    from policyc.lower import sources

    assert sources.parse_file.__module__ == "policyc.parse"
    assert "parse_file(key, self.diags)" in Path(sources.__file__).read_text()


async def test_an_error_in_an_included_file_is_shown_on_the_include(client: LanguageClient, tmp_path):
    (tmp_path / "broken.policy").write_text("ruleset r {\n    allow capability sys_admn\n}\n")
    path = tmp_path / "main.policy"
    diags = await _open(client, path, 'include "broken.policy"\npolicy p {\n    subject exe "/a"\n    use r\n}\n')
    (d,) = [d for d in diags if d.code == "P012"]
    assert d.range.start.line == 0 and "broken.policy:2:" in d.message
    _close(client, path)


async def test_an_open_buffer_is_what_another_includes(client: LanguageClient, tmp_path):
    """An included file open in the editor is read from its buffer, saved or not."""
    lib = tmp_path / "lib.policy"
    lib.write_text("ruleset r {\n}\n")
    await _open(client, lib, 'ruleset r {\n    allow file read "/x/**"\n}\n')
    path = tmp_path / "uses.policy"
    diags = await _open(client, path, 'include "lib.policy"\npolicy p {\n    subject exe "/a"\n    default deny\n    use r\n'
                                      '    allow file read "/x/y"\n}\n')
    assert [d.code for d in diags] == ["W102"], diags
    _close(client, path)
    _close(client, lib)


async def test_codes_disabled_in_policyc_toml_are_not_shown(client: LanguageClient, tmp_path):
    (tmp_path / "policyc.toml").write_text('disable = ["W102"]\n')
    path, _ = _files(tmp_path)
    assert list(await _open(client, path, POLICY)) == []
    _close(client, path)
