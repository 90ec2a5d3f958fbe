"""`policyc lsp`: the language server, over stdio (pygls, lsprotocol).

- diagnostics as you type: each open buffer (saved or not) through the front end and every
  check, as `policyc check` would on the saved file; includes are resolved relative to the
  buffer's file, from other open buffers when they are open. A diagnostic in an included
  file is shown on the `include` line that brings it in.
- formatting: `policyc fmt` of the buffer, one edit (none when it is already formatted or
  does not parse).
- hover on a rule: its decision, what it matches, its policies, and what the checks say
  about it (which rule shadows, duplicates or overrides it, with where); on an `include?`,
  whether its file is there (included) or absent (skipped).
- go to definition: the file of an `include` (or of an `include?` whose file is there), the
  ruleset of a `use`, the `let` of a `${var}`.
- completion: keywords, families, a family's operations, capabilities, signals, protocols.

policyc/lsp/analysis.py holds the logic; this module only converts to and from LSP.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer

from .. import __version__
from ..diagnostics import Severity
from ..span import Span
from . import analysis as A

_SEVERITY = {Severity.ERROR: T.DiagnosticSeverity.Error, Severity.WARNING: T.DiagnosticSeverity.Warning,
             Severity.NOTE: T.DiagnosticSeverity.Information}
_KIND = {"keyword": T.CompletionItemKind.Keyword, "family": T.CompletionItemKind.Module,
         "operation": T.CompletionItemKind.Function, "capability": T.CompletionItemKind.Constant,
         "signal": T.CompletionItemKind.EnumMember, "protocol": T.CompletionItemKind.Enum,
         "value": T.CompletionItemKind.Value}


def uri_to_path(uri: str) -> str:
    u = urlparse(uri)
    if u.scheme in ("file", ""):
        return os.path.normpath(unquote(u.path))
    # an untitled buffer: a name in the working directory, so includes resolve from there
    return os.path.normpath(os.path.join(os.getcwd(), unquote(u.path).lstrip("/") or "untitled.policy"))


def path_to_uri(path: str) -> str:
    from pathlib import Path

    return Path(os.path.abspath(path)).as_uri()


def _utf16(line: str, col0: int) -> int:
    """Characters to UTF-16 code units, for the first `col0` characters of `line`."""
    head = line[:col0]
    return len(head) + sum(1 for ch in head if ord(ch) > 0xFFFF)


def _chars(line: str, units: int) -> int:
    """UTF-16 code units to characters."""
    n = 0
    for i, ch in enumerate(line):
        if n >= units:
            return i
        n += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


class PolicyServer(LanguageServer):
    def __init__(self):
        super().__init__("policyc", __version__)
        self.analyses: dict[str, A.Analysis] = {}

    def lines_of(self, path: str) -> list[str]:
        a = self.analyses.get(path)
        if a is not None:
            return a.text.split("\n")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read().split("\n")
        except OSError:
            return []

    def to_range(self, span: Span) -> T.Range:
        lines = self.lines_of(span.file)

        def pos(line: int, col: int) -> T.Position:
            text = lines[line - 1] if 0 < line <= len(lines) else ""
            return T.Position(max(line - 1, 0), _utf16(text, max(col - 1, 0)))

        return T.Range(pos(span.line, span.col), pos(span.end_line, span.end_col))

    def from_position(self, path: str, p: T.Position) -> tuple[int, int]:
        lines = self.lines_of(path)
        text = lines[p.line] if p.line < len(lines) else ""
        return p.line + 1, _chars(text, p.character) + 1

    def open_buffers(self) -> dict[str, str]:
        out = {}
        for uri, doc in self.workspace.text_documents.items():
            out[uri_to_path(uri)] = doc.source
        return out

    def refresh(self, uri: str) -> None:
        doc = self.workspace.get_text_document(uri)
        path = uri_to_path(uri)
        try:
            a = A.analyse(path, doc.source, self.open_buffers())
        except Exception as e:  # noqa: BLE001 - a bug must not end the editor's session
            self.window_log_message(T.LogMessageParams(T.MessageType.Error,
                                                       f"policyc: internal error: {type(e).__name__}: {e}"))
            return
        self.analyses[a.path] = a
        self.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=uri, version=doc.version, diagnostics=self.diagnostics(a)))

    def diagnostics(self, a: A.Analysis) -> list[T.Diagnostic]:
        out = []
        includes = {}
        if a.tree is not None:
            from ..ir import syntax as S

            for item in a.tree.items:
                if isinstance(item, S.Include):
                    from ..lower.sources import include_target

                    includes.setdefault(include_target(a.path, item), item.span)
        for d in a.diagnostics:
            message = d.message
            span = d.span
            if span is None:
                rng = T.Range(T.Position(0, 0), T.Position(0, 0))
            elif span.file != a.path:
                at = includes.get(span.file)
                if at is None:
                    continue
                message = f"{span}: {message}"
                rng = self.to_range(at)
            else:
                rng = self.to_range(span)
            if d.hints:
                message += "".join(f"\nhelp: {h}" for h in d.hints)
            related = [T.DiagnosticRelatedInformation(T.Location(path_to_uri(n.span.file), self.to_range(n.span)),
                                                      n.message)
                       for n in d.notes if n.span is not None]
            out.append(T.Diagnostic(range=rng, message=message, severity=_SEVERITY[d.severity], code=d.code,
                                    source="policyc", related_information=related or None))
        return out


server = PolicyServer()


@server.feature(T.TEXT_DOCUMENT_DID_OPEN)
def _did_open(ls: PolicyServer, params: T.DidOpenTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
def _did_change(ls: PolicyServer, params: T.DidChangeTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_SAVE)
def _did_save(ls: PolicyServer, params: T.DidSaveTextDocumentParams) -> None:
    # another buffer may include this file: analyse every open buffer again
    for uri in list(ls.workspace.text_documents):
        ls.refresh(uri)


@server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
def _did_close(ls: PolicyServer, params: T.DidCloseTextDocumentParams) -> None:
    ls.analyses.pop(uri_to_path(params.text_document.uri), None)
    ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(T.TEXT_DOCUMENT_FORMATTING)
def _formatting(ls: PolicyServer, params: T.DocumentFormattingParams) -> list[T.TextEdit] | None:
    from ..diagnostics import Diagnostics
    from ..fmt import format_text

    doc = ls.workspace.get_text_document(params.text_document.uri)
    text = doc.source
    new = format_text(uri_to_path(params.text_document.uri), text, Diagnostics())
    if new is None or new == text:
        return []
    lines = text.split("\n")
    end = T.Position(len(lines) - 1, _utf16(lines[-1], len(lines[-1])))
    return [T.TextEdit(range=T.Range(T.Position(0, 0), end), new_text=new)]


def _analysis(ls: PolicyServer, uri: str) -> A.Analysis:
    path = uri_to_path(uri)
    a = ls.analyses.get(path)
    doc = ls.workspace.get_text_document(uri)
    if a is None or a.text != doc.source:
        a = A.analyse(path, doc.source, ls.open_buffers())
        ls.analyses[a.path] = a
    return a


@server.feature(T.TEXT_DOCUMENT_HOVER)
def _hover(ls: PolicyServer, params: T.HoverParams) -> T.Hover | None:
    a = _analysis(ls, params.text_document.uri)
    line, col = ls.from_position(a.path, params.position)
    found = A.hover(a, line, col)
    if found is None:
        return None
    text, span = found
    return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text), range=ls.to_range(span))


@server.feature(T.TEXT_DOCUMENT_DEFINITION)
def _definition(ls: PolicyServer, params: T.DefinitionParams) -> T.Location | None:
    a = _analysis(ls, params.text_document.uri)
    line, col = ls.from_position(a.path, params.position)
    span = A.definition(a, line, col)
    if span is None:
        return None
    return T.Location(uri=path_to_uri(span.file), range=ls.to_range(span))


@server.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=[" ", ","]))
def _completion(ls: PolicyServer, params: T.CompletionParams) -> T.CompletionList:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    lines = doc.source.split("\n")
    text = lines[params.position.line] if params.position.line < len(lines) else ""
    col = _chars(text, params.position.character) + 1
    items = [T.CompletionItem(label=label, kind=_KIND.get(kind), detail=kind)
             for label, kind in A.completions(text, col)]
    return T.CompletionList(is_incomplete=False, items=items)


def serve() -> None:
    server.start_io()
