"""AppArmor profile files (apparmor.d(5), AppArmor 3) read into statements.

The reader checks structure only: blocks, quotes, commas, include targets and profile heads.
What a rule means (or whether policyc can say it) is the converter's business
(policyc/importers/apparmor.py), so a rule of a kind this reader has never heard of (an
AppArmor 4 `userns,`) is a statement the converter lists as not converted, not an error.
A structural error is an `AAParseError` at `file:line:col`.

Statements:

    Include      include [if exists] <magic/path> | "path"      (`#include` too)
    Assign       @{NAME} = value...  /  @{NAME} += value...  /  ${BOOL} = true
    Rule         the tokens of one comma-terminated rule (`abi` and `alias` are rules too)
    Block        a profile, a hat, a qualifier block (`audit { ... }`) or a conditional
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class AAParseError(Exception):
    def __init__(self, loc: Loc, message: str):
        super().__init__(f"{loc}: {message}")
        self.loc = loc
        self.message = message


@dataclass(frozen=True)
class Tok:
    kind: str       # WORD STRING ANGLE LPAREN RPAREN COMMA EQ PLUSEQ ARROW LBRACE RBRACE
    value: str      # a STRING's text between the quotes; an ANGLE's between < and >
    raw: str        # as written
    line: int
    col: int


@dataclass
class Include:
    loc: Loc
    target: str
    magic: bool          # <...>: relative to the base directory
    optional: bool       # `include if exists`
    text: str


@dataclass
class Assign:
    loc: Loc
    name: str            # `@{NAME}` or `${NAME}`
    append: bool
    values: list[str]


@dataclass
class Rule:
    loc: Loc
    toks: list[Tok]

    @property
    def text(self) -> str:
        return join_tokens(self.toks) + ","


@dataclass
class Block:
    loc: Loc
    kind: str                  # "profile", "hat", "qualifiers", "if"
    head: list[Tok]
    name: str | None = None
    attachment: str | None = None
    flags: list[str] = field(default_factory=list)
    xattrs: list[str] = field(default_factory=list)
    qualifiers: list[str] = field(default_factory=list)
    body: list = field(default_factory=list)

    @property
    def text(self) -> str:
        return join_tokens(self.head) + " {"


QUALIFIERS = ("audit", "deny", "allow", "owner", "other")
MAX_BLOCK_DEPTH = 64

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARREF = re.compile(r"[@$]\{[A-Za-z_][A-Za-z0-9_]*\}")
_KEY_BEFORE_EQ = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|[@$]\{[A-Za-z_][A-Za-z0-9_]*\}")
_HASH_INCLUDE = re.compile(r"#include(?![A-Za-z0-9_])")
_ANGLE = re.compile(r"<([^<>\s]*)>")
_BLOCK_FOLLOW = set(" \t\r\n\f\v}#")


def join_tokens(toks: list[Tok]) -> str:
    """Tokens back into one line: `signal (receive) peer=/usr/sbin/x`."""
    out: list[str] = []
    prev: Tok | None = None
    for t in toks:
        if prev is not None and not (t.kind in ("COMMA", "RPAREN", "EQ", "PLUSEQ")
                                     or prev.kind in ("LPAREN", "EQ", "PLUSEQ")):
            out.append(" ")
        out.append(t.raw)
        prev = t
    return "".join(out)


# --- tokens ---------------------------------------------------------------------------------------
def lex(text: str, file: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n, line, lstart = 0, len(text), 1, 0

    def add(kind: str, value: str, raw: str, col: int) -> None:
        toks.append(Tok(kind, value, raw, line, col))

    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            lstart = i + 1
            i += 1
            continue
        if ch in " \t\r\f\v":
            i += 1
            continue
        col = i - lstart + 1
        if ch == "#":
            m = _HASH_INCLUDE.match(text, i)
            if m:
                add("WORD", "include", "#include", col)
                i = m.end()
                continue
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\n":
                    raise AAParseError(Loc(file, line, col), "unterminated quoted string")
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise AAParseError(Loc(file, line, col), "unterminated quoted string")
            add("STRING", text[i + 1:j], text[i:j + 1], col)
            i = j + 1
            continue
        if ch == "<":
            m = _ANGLE.match(text, i)
            if m:
                add("ANGLE", m.group(1), m.group(0), col)
                i = m.end()
                continue
        single = {"(": "LPAREN", ")": "RPAREN", ",": "COMMA", "}": "RBRACE"}
        if ch in single:
            add(single[ch], ch, ch, col)
            i += 1
            continue
        if ch == "{" and (i + 1 >= n or text[i + 1] in _BLOCK_FOLLOW):
            add("LBRACE", ch, ch, col)
            i += 1
            continue
        if text.startswith("->", i):
            add("ARROW", "->", "->", col)
            i += 2
            continue
        if text.startswith("+=", i):
            add("PLUSEQ", "+=", "+=", col)
            i += 2
            continue
        if ch == "=":
            add("EQ", "=", "=", col)
            i += 1
            continue
        j = _word_end(text, i)
        if j == i:      # cannot happen: every other character starts a word
            raise AAParseError(Loc(file, line, col), f"unexpected `{ch}`")
        w = text[i:j]
        add("WORD", w, w, col)
        i = j
    return toks


def _word_end(text: str, i: int) -> int:
    """The end of a word (a path, a name, a permission string) starting at i: braces and
    brackets of globs and `@{...}` are inside it; whitespace, and `,` `(` `)` `->` outside
    braces, end it; so does `=` after a key (`peer=`, `@{VAR}=`)."""
    n = len(text)
    start = i
    depth = 0
    while i < n:
        ch = text[i]
        if ch in " \t\r\n\f\v":
            break
        if ch == "\\" and i + 1 < n:
            i += 2
            continue
        if ch in "@$" and text.startswith("{", i + 1):
            j = text.find("}", i)
            if j < 0 or any(c in text[i:j] for c in " \t\r\n"):
                i += 1
                continue
            i = j + 1
            continue
        if ch == "[":
            j = i + 1
            if j < n and text[j] == "^":
                j += 1
            if j < n and text[j] == "]":
                j += 1
            while j < n and text[j] != "]" and text[j] not in " \t\r\n":
                j += 2 if text[j] == "\\" else 1
            if j < n and text[j] == "]":
                i = j + 1
                continue
            i += 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0:
            if ch in ",()\"":
                break
            if ch == "=" and i > start and _KEY_BEFORE_EQ.fullmatch(text[start:i]):
                break
            if ch == "+" and text.startswith("+=", i) and i > start and _KEY_BEFORE_EQ.fullmatch(text[start:i]):
                break
            if ch == "<" and text.startswith("<=", i) and i > start:
                break
            if text.startswith("->", i) and i > start:
                break
        i += 1
    return i


# --- statements -----------------------------------------------------------------------------------
class Parser:
    """`parse(text, file, top)`: the statements of one file. `top`: a profile file or a
    tunables file (preamble and profiles); otherwise an included body (rules)."""

    def __init__(self, text: str, file: str):
        self.file = file
        self.toks = lex(text, file)
        self.pos = 0
        self.depth = 0

    def loc(self, t: Tok) -> Loc:
        return Loc(self.file, t.line, t.col)

    def peek(self, k: int = 0) -> Tok | None:
        j = self.pos + k
        return self.toks[j] if j < len(self.toks) else None

    def error(self, t: Tok | None, message: str) -> AAParseError:
        if t is None:
            last = self.toks[-1] if self.toks else None
            loc = Loc(self.file, last.line, last.col + len(last.raw)) if last else Loc(self.file, 1, 1)
            return AAParseError(loc, message)
        return AAParseError(self.loc(t), message)

    def parse(self) -> list:
        items = self.body(None)
        return items

    def body(self, opener: Tok | None) -> list:
        items: list = []
        while True:
            t = self.peek()
            if t is None:
                if opener is not None:
                    raise self.error(opener, "this `{` is never closed (missing `}`)")
                return items
            if t.kind == "RBRACE":
                if opener is None:
                    raise self.error(t, "unmatched `}`")
                self.pos += 1
                return items
            if t.kind == "COMMA":
                raise self.error(t, "unexpected `,` (an empty rule)")
            if t.kind == "WORD" and t.value == "include":
                items.append(self.include())
                continue
            nxt = self.peek(1)
            if t.kind == "WORD" and _VARREF.fullmatch(t.value) and nxt is not None \
                    and nxt.kind in ("EQ", "PLUSEQ"):
                items.append(self.assign())
                continue
            items.append(self.statement())

    def include(self) -> Include:
        kw = self.toks[self.pos]
        self.pos += 1
        optional = False
        t = self.peek()
        if t is not None and t.kind == "WORD" and t.value == "if":
            t2 = self.peek(1)
            if t2 is None or t2.kind != "WORD" or t2.value != "exists":
                raise self.error(t2 or t, "expected `exists` after `include if`")
            optional = True
            self.pos += 2
            t = self.peek()
        if t is None or t.kind not in ("ANGLE", "STRING", "WORD") or t.line != kw.line:
            raise self.error(t if t is not None and t.line == kw.line else kw,
                             "`include` needs a file: <abstractions/NAME> or \"/path\"")
        self.pos += 1
        text = f"{kw.raw} {'if exists ' if optional else ''}{t.raw}"
        return Include(self.loc(kw), t.value, t.kind == "ANGLE", optional, text)

    def assign(self) -> Assign:
        name, op = self.toks[self.pos], self.toks[self.pos + 1]
        self.pos += 2
        values: list[str] = []
        while True:
            t = self.peek()
            if t is None or t.line != op.line:
                break
            if t.kind not in ("WORD", "STRING"):
                raise self.error(t, f"unexpected `{t.raw}` in the values of {name.value}")
            values.append(t.value)
            self.pos += 1
        return Assign(self.loc(name), name.value, op.kind == "PLUSEQ", values)

    def statement(self):
        start = self.pos
        opened: list[Tok] = []         # the `(` not closed yet
        j = start
        while j < len(self.toks):
            k = self.toks[j].kind
            if k == "LPAREN":
                opened.append(self.toks[j])
            elif k == "RPAREN":
                if not opened:
                    raise self.error(self.toks[j], "unmatched `)`")
                opened.pop()
            elif not opened and k in ("COMMA", "LBRACE", "RBRACE"):
                break
            elif opened and k in ("LBRACE", "RBRACE"):
                raise self.error(opened[-1], "unclosed `(`")
            j += 1
        toks = self.toks[start:j]
        if j >= len(self.toks) or self.toks[j].kind == "RBRACE":
            where = toks[-1]
            if opened:
                raise self.error(opened[-1], "unclosed `(`")
            raise AAParseError(Loc(self.file, where.line, where.col + len(where.raw)),
                               f"missing `,` at the end of `{_short(join_tokens(toks))}`")
        end = self.toks[j]
        self.pos = j + 1
        if end.kind == "COMMA":
            return Rule(self.loc(toks[0]), toks)
        if not toks:
            raise self.error(end, "a block `{` without a head")
        if self.depth >= MAX_BLOCK_DEPTH:
            raise self.error(end, f"blocks nested deeper than {MAX_BLOCK_DEPTH}")
        block = self.head(toks)
        self.depth += 1
        block.body = self.body(end)
        self.depth -= 1
        return block

    def head(self, toks: list[Tok]) -> Block:
        """What stands before a block's `{`."""
        first = toks[0]
        b = Block(self.loc(first), "profile", toks)
        words = [t for t in toks]
        if all(t.kind == "WORD" and t.value in QUALIFIERS for t in words):
            b.kind = "qualifiers"
            b.qualifiers = [t.value for t in words]
            return b
        if first.kind == "WORD" and first.value in ("if", "else"):
            b.kind = "if"
            return b
        rest = toks
        if first.kind == "WORD" and first.value == "profile":
            rest = toks[1:]
            if not rest or rest[0].kind not in ("WORD", "STRING"):
                raise self.error(rest[0] if rest else first, "`profile` needs a name")
            b.name = rest[0].value
            rest = rest[1:]
            if rest and rest[0].kind in ("WORD", "STRING") and not _is_cond_key(rest, 0):
                b.attachment = rest[0].value
                rest = rest[1:]
        elif first.kind == "WORD" and (first.value == "hat" or first.value.startswith("^")):
            b.kind = "hat"
            if first.value == "hat":
                if len(toks) < 2 or toks[1].kind != "WORD":
                    raise self.error(first, "`hat` needs a name")
                b.name = toks[1].value
                rest = toks[2:]
            else:
                b.name = first.value[1:]
                rest = toks[1:]
            if not b.name:
                raise self.error(first, "a hat needs a name")
        elif first.kind in ("WORD", "STRING"):
            b.name = first.value
            rest = toks[1:]
        else:
            raise self.error(first, f"unexpected `{first.raw}` before `{{`")
        self.conds(b, rest)
        return b

    def conds(self, b: Block, toks: list[Tok]) -> None:
        """`flags=(complain, attach_disconnected)`, `(complain)`, `xattrs=(...)`."""
        i = 0
        while i < len(toks):
            t = toks[i]
            key = "flags"
            if t.kind == "WORD" and i + 1 < len(toks) and toks[i + 1].kind == "EQ":
                key = t.value
                i += 2
            if i < len(toks) and toks[i].kind == "LPAREN":
                j = i + 1
                vals: list[str] = []
                while j < len(toks) and toks[j].kind != "RPAREN":
                    if toks[j].kind in ("WORD", "STRING"):
                        vals.append(toks[j].value)
                    j += 1
                if j >= len(toks):
                    raise self.error(toks[i], "unclosed `(`")
                i = j + 1
            elif i < len(toks) and toks[i].kind in ("WORD", "STRING"):
                vals = [toks[i].value]
                i += 1
            else:
                raise self.error(toks[i] if i < len(toks) else t,
                                 f"unexpected `{(toks[i] if i < len(toks) else t).raw}` in the profile head")
            if key == "flags":
                b.flags.extend(vals)
            elif key == "xattrs":
                b.xattrs.extend(vals)
            else:
                raise self.error(t, f"unknown profile condition `{key}`")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _is_cond_key(toks: list[Tok], i: int) -> bool:
    t = toks[i]
    return t.kind == "WORD" and i + 1 < len(toks) and toks[i + 1].kind == "EQ"


def parse(text: str, file: str) -> list:
    return Parser(text, file).parse()
