"""Text to syntax tree (policyc.ir.syntax), with Lark's LALR parser.

The parser collects errors and goes on (one per line at most, 25 per file); it never raises
on bad input. Binary junk, bad UTF-8 and oversize files become diagnostics.

The parser is Lark's, loaded as a standalone module from the user's cache when one made
from this grammar by the installed Lark is there (policyc/parse/standalone.py: no `import
lark` at start-up), else Lark itself (which then writes that module for the next run).
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ..resources import resource_dir
from ..diagnostics import Diagnostics
from ..ir import syntax as S
from ..span import Span
from . import standalone

if TYPE_CHECKING:
    from lark import Lark, Token, Tree

GRAMMAR = resource_dir("grammar") / "policy.lark"
MAX_ERRORS_PER_FILE = 25
MAX_FILE_BYTES = 64 * 1024 * 1024

# How terminals are named in messages.
_TERMINAL_NAMES = {
    "COMMA": "`,`", "LBRACE": "`{`", "RBRACE": "`}`", "EQUAL": "`=`", "DECISION": "`allow`, `deny` or `audit`",
    "STRING": "a string", "NAME": "a name", "ADDR": "an address", "PORT": "a port",
    "PROTO": "a protocol", "RATE": "a rate such as `100/s`", "$END": "end of file",
    "OPTIONAL_INCLUDE": "`include?`", "OWNER": "`owner`",
    # Keywords Lark could not name after themselves (PORT, the number, took the name): by the
    # analysed grammar's name; tests/unit/test_parse_errors.py holds every anonymous one here.
    "__ANON_0": "`port`",
}


_LARK_OPTIONS = dict(
    parser="lalr",
    propagate_positions=False,
    keep_all_tokens=True,
    maybe_placeholders=True,
    lexer="contextual",
)


def _cache_dir() -> Path:
    """POLICYC_CACHE (or ~/.cache/policyc)/parser: the analysed grammar and the standalone
    parser, beside the object cache, never a shared temporary directory (Lark's own
    default): the files are a pickle and code, and only the user's own cache is trusted with
    them, as it is with objects."""
    base = os.environ.get("POLICYC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "policyc")
    return Path(base) / "parser"


def _parser_cache() -> Path | None:
    """Where Lark keeps the analysed grammar (its `cache`)."""
    import lark

    return _cache_dir() / f"lark-{lark.__version__}.cache"


class _Parser:
    """A Lark LALR parser and the exceptions of the Lark code it runs (Lark's own, or the
    standalone module's copies of them)."""

    def __init__(self, parser, exceptions, kind: str):
        self.parse = parser.parse
        self.UnexpectedInput = exceptions.UnexpectedInput
        self.UnexpectedCharacters = exceptions.UnexpectedCharacters
        self.kind = kind   # "standalone" or "lark"


@functools.cache
def _parser() -> _Parser:
    grammar = GRAMMAR.read_text()
    module = standalone.load(_cache_dir(), grammar, _LARK_OPTIONS)
    if module is not None:
        return _Parser(module.parser, module, "standalone")
    import lark

    parser, cached = _lark_parser(grammar)
    # The standalone module saves about 12 ms a run and costs 0.2 s to write (Lark's tool,
    # then compiled and loaded once to check it): written by the first run that finds Lark's
    # tables from an earlier one, so a cache that lives for one run (a CI job's, a cold
    # build: #12's "10 rules cold under 0.3 s") never pays for it, and a kept one from its
    # second run on uses it.
    if cached:
        standalone.save(_cache_dir(), grammar, _LARK_OPTIONS, parser)
    return _Parser(parser, lark.exceptions, "lark")


def _lark_parser(grammar: str) -> tuple[Lark, bool]:
    """The Lark parser of `grammar`, and whether its tables came from the cache."""
    from lark import Lark

    # Positions come from the tokens (see _Builder.span): all tokens are kept so a node's
    # span runs from its first keyword to its closing `}`, and Lark's propagate_positions
    # (a third of the parse time on 10,000 rules) is not needed.
    #
    # The LALR tables are cached (Lark's `cache`): analysing the grammar costs 30-40 ms of
    # every run, loading them 5 ms. Lark checks the file's hash of the grammar, the options
    # and its own version before using it, and builds anew on any mismatch or damage; a new
    # file is written under a private name and renamed into place, so a concurrent build
    # never reads half of one. A cache that cannot be written (a read-only guest) only
    # costs the time.
    cache = _parser_cache()
    if cache is not None and cache.is_file():
        return Lark(grammar, cache=str(cache), **_LARK_OPTIONS), True
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        parser = Lark(grammar, cache=str(tmp), **_LARK_OPTIONS)
        if tmp.is_file():
            os.replace(tmp, cache)
        return parser, False
    except OSError:
        return Lark(grammar, **_LARK_OPTIONS), False


# Terminals that carry meaning; the others (keywords, punctuation) only delimit.
_VALUE_TOKENS = frozenset({"NAME", "STRING", "DECISION", "PROTO", "ADDR", "PORT", "RATE"})


def _describe_expected(expected) -> str:
    names = []
    for t in sorted(expected):
        if t in _TERMINAL_NAMES:
            names.append(_TERMINAL_NAMES[t])
        elif t.isupper() and len(t) > 1:
            names.append(f"`{t.lower()}`")
        else:
            names.append(t)
    names = sorted(set(names))
    if len(names) > 6:
        names = names[:6] + ["..."]
    return ", ".join(names)


def _token_text(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    text = str(tok)
    return f"`{text[:40]}`"


def read_source(path: str, diags: Diagnostics) -> str | None:
    """Read a policy file as UTF-8 text; a diagnostic (no traceback) when it can't be.

    Only regular files are read, and at most MAX_FILE_BYTES of them: `/dev/zero` never ends
    and a FIFO blocks until a writer comes. The file is opened without blocking (a FIFO opens
    at once that way) and checked on the open descriptor, so what is read is what was
    checked; the read itself is bounded, since a file may grow after its size was seen."""
    try:
        if os.path.isdir(path):
            diags.error("P006", None, f"`{path}` is a directory, not a policy file")
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                # no span: whoever shows the diagnostic must not try to read it for a snippet
                diags.error("P006", None, f"`{path}` is {_file_kind(mode)}, not a policy file",
                            hints=("policy files are regular files",))
                return None
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        diags.error("P006", None, f"cannot read `{path}`: {e.strerror or e}")
        return None
    if len(data) > MAX_FILE_BYTES:
        diags.error("P006", Span(path, 1, 1, 1, 1), f"`{path}` is larger than {MAX_FILE_BYTES >> 20} MiB")
        return None
    return decode_source(path, data, diags)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def decode_source(path: str, data: bytes, diags: Diagnostics) -> str | None:
    if data.startswith(b"\xef\xbb\xbf"):   # a UTF-8 byte order mark: not part of the text
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        diags.error("P006", Span(path, line, col, line, col + 1), "file is not UTF-8 text",
                    hints=("policy files are UTF-8 text",))
        return None
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        col = nul - (text.rfind("\n", 0, nul) + 1) + 1
        diags.error("P006", Span(path, line, col, line, col + 1), "file contains a NUL byte: not a policy file")
        return None
    return text


def parse_text(path: str, text: str, diags: Diagnostics) -> S.File | None:
    """Parse one file. Returns None when it had syntax errors (they are in `diags`)."""
    comments: list[S.Comment] = []
    errors_before = len(diags.items)
    error_lines: set[int] = set()

    parser = _parser()

    def on_error(e) -> bool:   # e: the parser's UnexpectedInput
        line, col = e.line, e.column
        if line in error_lines:
            return len(error_lines) < MAX_ERRORS_PER_FILE
        error_lines.add(line)
        if isinstance(e, parser.UnexpectedCharacters):
            ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
            if ch == '"':
                msg, hints = "unterminated string", ("a string ends with `\"` on the same line",)
            else:
                msg, hints = f"unexpected character `{ch!s}`" if ch.isprintable() else \
                    f"unexpected character U+{ord(ch):04X}", ()
            if ch == "?" and text[:e.pos_in_stream].rstrip().endswith("include"):
                hints = ("an optional include is `include?`, without a space",)
            diags.error("P001", Span(path, line, col, line, col + 1), msg, hints=hints)
        else:
            tok = e.token
            width = max(len(str(tok)), 1)
            if tok.type == "$END":   # point just past the last character of the file
                body = text.rstrip()
                line = body.count("\n") + 1
                col = len(body) - (body.rfind("\n") + 1) + 1
                if line != e.line and line in error_lines:
                    return False   # that line already has its error
                error_lines.add(line)
            diags.error(
                "P001",
                Span(path, line, col, line, col + width),
                f"unexpected {_token_text(tok)}",
                hints=(f"expected {_describe_expected(e.expected)}",) if e.expected else (),
            )
        return len(error_lines) < MAX_ERRORS_PER_FILE

    try:
        tree = parser.parse(text, on_error=on_error)
    except parser.UnexpectedInput as e:
        if not diags.has_errors or len(diags.items) == errors_before:
            on_error(e)
        elif e.line not in error_lines:
            on_error(e)
        return None
    except RecursionError:
        diags.error("P001", Span(path, 1, 1, 1, 1), "input nests too deeply")
        return None
    if len(diags.items) > errors_before:
        return None
    for c in _comments(text):
        line, col = c[0], c[1]
        comments.append(S.Comment(c[2], Span(path, line, col, line, col + len(c[2]))))
    return _Builder(path).file(tree, tuple(comments), text)


def _comments(text: str):
    """Comments with their positions: a `#` outside a string, to the end of the line."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if "#" not in line:
            continue
        in_str = False
        i = 0
        while i < len(line):
            ch = line[i]
            if in_str:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "#":
                yield (lineno, i + 1, line[i:].rstrip())
                break
            i += 1


def parse_file(path: str, diags: Diagnostics) -> S.File | None:
    text = read_source(path, diags)
    if text is None:
        return None
    return parse_text(path, text, diags)


# --- tree to syntax nodes --------------------------------------------------------------------
def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1)


def unescape(raw: str) -> str:
    """The value of a string literal: `\\x` stands for `x` (so `\\"` and `\\\\`), `\\n` a newline."""
    if "\\" not in raw:   # most strings: no escape to read, the text between the quotes
        return raw[1:-1]
    out = []
    i = 1
    body_end = len(raw) - 1
    while i < body_end:
        ch = raw[i]
        if ch == "\\" and i + 1 < body_end:
            nxt = raw[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# A tree's children are Trees, Tokens and None (an absent optional part). A Token is a str
# (Lark's and the standalone module's alike): `isinstance(c, str)` tells them apart whichever
# parser made the tree.
def _children(t: Tree) -> list:
    """A node's children without keywords and punctuation (kept only for positions)."""
    return [c for c in t.children if not (isinstance(c, str) and c.type not in _VALUE_TOKENS)]


def _first_token(node) -> Token | None:
    while node is not None and not isinstance(node, str):
        node = next((c for c in node.children if c is not None), None)
    return node


def _last_token(node) -> Token | None:
    while node is not None and not isinstance(node, str):
        node = next((c for c in reversed(node.children) if c is not None), None)
    return node


class _Builder:
    def __init__(self, path: str):
        self.path = path

    def span(self, node) -> Span:
        if isinstance(node, str):
            return _tok_span(self.path, node)
        first, last = _first_token(node), _last_token(node)
        if first is None:
            return Span(self.path, 1, 1, 1, 1)
        return Span(self.path, first.line, first.column, last.end_line or last.line,
                    last.end_column or last.column + len(last))

    def name(self, tok: Token) -> S.Name:
        return S.Name(str(tok), self.span(tok))

    def string(self, tok: Token) -> S.Str:
        return S.Str(unescape(str(tok)), str(tok), self.span(tok))

    def file(self, tree: Tree, comments, text) -> S.File:
        items = tuple(self.item(c) for c in _children(tree))
        return S.File(self.path, items, comments, text)

    def item(self, t: Tree):
        return getattr(self, "build_" + t.data)(t)

    def build_include(self, t):
        return S.Include(self.string(_children(t)[0]), self.span(t))

    def build_include_optional(self, t):
        return S.Include(self.string(_children(t)[0]), self.span(t), optional=True)

    def build_let_stmt(self, t):
        return S.Let(self.name(_children(t)[0]), self.string(_children(t)[1]), self.span(t))

    def build_policy(self, t):
        return S.Policy(self.name(_children(t)[0]), tuple(self.item(c) for c in _children(t)[1:]), self.span(t))

    def build_ruleset(self, t):
        return S.Ruleset(self.name(_children(t)[0]), tuple(self.item(c) for c in _children(t)[1:]), self.span(t))

    def build_use(self, t):
        return S.Use(self.name(_children(t)[0]), self.span(t))

    def build_subject(self, t):
        specs = []
        exceptions = []
        for c in _children(t):
            if c is None:
                continue
            if c.data == "subject_except":
                exceptions.extend(self.subject_spec(e) for e in _children(c))
            else:
                specs.append(self.subject_spec(c))
        return S.Subject(tuple(specs), self.span(t), tuple(exceptions))

    def subject_spec(self, c) -> S.SubjectSpec:
        kind = c.data.removeprefix("subject_")
        value = self.string(_children(c)[0]) if _children(c) else None
        return S.SubjectSpec(kind, value, self.span(c))

    def build_mode(self, t):
        return S.Setting("mode", self.name(_children(t)[0]), self.span(t))

    def build_default(self, t):
        value, limit = _children(t)
        return S.Setting("default", self.name(value), self.span(t), self.limit(limit))

    def limit(self, limit) -> S.Limit | None:
        return S.Limit(str(_children(limit)[0]), self.span(_children(limit)[0])) if limit is not None else None

    def build_acknowledge(self, t):
        return S.Setting("acknowledge", self.name(_children(t)[0]), self.span(t))

    def build_protect(self, t):
        return S.Setting("protect", self.name(_children(t)[0]), self.span(t))

    def body(self, children) -> S.RuleBody:
        family, ops, objects, target = children
        paths: tuple = ()
        net = None
        owner = None
        if objects is not None:
            if objects.data == "paths":
                # `[OWNER]` leaves None in its place when absent; the keyword is a token
                # _children drops (it only delimits), so the strings are picked by type
                paths = tuple(self.string(s) for s in objects.children
                              if isinstance(s, str) and s.type == "STRING")
                owner = next((self.span(s) for s in objects.children
                              if isinstance(s, str) and s.type == "OWNER"), None)
            else:
                net = self.net(_children(objects)[0])
        tgt = None
        if target is not None:
            tgt = S.Target(target.data.removeprefix("target_"), self.string(_children(target)[0]), self.span(target))
        return S.RuleBody(
            self.name(family),
            tuple(self.name(o) for o in _children(ops)) if ops is not None else (),
            paths,
            net,
            tgt,
            owner,
        )

    def net(self, t: Tree) -> S.NetSpec:
        proto = addrs = ports = None
        children = list(_children(t))
        if len(children) == 3:
            proto, addrs, ports = children
        elif len(children) == 2:
            addrs, ports = children
        else:
            (ports,) = children
        return S.NetSpec(
            self.name(proto) if proto is not None else None,
            tuple(self.name(a) for a in _children(addrs)) if addrs is not None else (),
            tuple(self.name(p) for p in _children(ports)) if ports is not None else (),
            self.span(t),
        )

    def build_rule(self, t):
        children = _children(t)
        *body, transition, limit = children[1:]
        return S.Rule(self.name(children[0]), self.body(body), self.span(t), self.limit(limit),
                      self.transition(transition))

    def transition(self, t) -> S.Transition | None:
        if t is None:
            return None
        kind = t.data.removeprefix("transition_")
        args = _children(t)
        return S.Transition(kind, self.name(args[0]) if args else None, self.span(t))

    def build_test_block(self, t):
        return S.TestBlock(self.name(_children(t)[0]), tuple(self.item(c) for c in _children(t)[1:]), self.span(t))

    def build_test_exe(self, t):
        return S.TestContext("exe", self.string(_children(t)[0]), self.span(t))

    def build_test_parent(self, t):
        return S.TestContext("parent", self.string(_children(t)[0]), self.span(t))

    def build_test_cgroup(self, t):
        return S.TestContext("cgroup", self.string(_children(t)[0]), self.span(t))

    def build_expect(self, t):
        return S.Expect(self.name(_children(t)[0]), self.body(_children(t)[1:]), self.span(t))
