"""`policyc fmt`: one canonical layout, printed from the syntax tree (policyc.ir.syntax).

The layout (docs/language.md, "Formatting"):

- 4-space indent; one statement per line; tokens separated by one space (no column
  alignment of objects: a new rule never re-aligns its neighbours in a diff).
- Lists are `a, b, c`. A rule whose line would pass 100 columns and that names several
  paths puts each path on its own line, indented 4 more, commas at the line ends; so does
  a long `subject` line with its subjects (or, with `except`, its exceptions).
- One blank line between top-level blocks (`policy`, `ruleset`, `test`); between other
  statements, a blank line where the source had one or more (a way to group rules), never
  two, none after `{` or before `}`. An empty block is `{}`.
- Comments are kept, in order: a comment on its own line stays on its own line before the
  statement that follows it (or before the `}` that closes its block); a comment after a
  statement stays at the end of that statement's last line; a comment inside a statement
  that spans lines moves above the statement. Trailing comments on consecutive lines of one
  indent level are aligned two spaces after the longest of those lines. Comment text is
  kept verbatim.
- Strings are printed as written (escapes kept), names as written.

`format_text` re-parses its own output and checks that the syntax tree (spans aside) and
the comments are unchanged, so a formatter bug is reported (P090), never written.
Idempotent: format(format(x)) == format(x).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right

from .diagnostics import Diagnostics
from .ir import syntax as S
from .parse import parse_text
from .span import Span

INDENT = "    "
MAX_WIDTH = 100
_BLOCKS = (S.Policy, S.Ruleset, S.TestBlock)


def format_text(path: str, text: str, diags: Diagnostics) -> str | None:
    """The canonical text of one file, or None (with diagnostics) when it does not parse."""
    tree = parse_text(path, text, diags)
    if tree is None:
        return None
    out = format_tree(tree)
    check = Diagnostics()
    again = parse_text(path, out, check)
    if again is None or shape(again) != shape(tree) or \
            [c.text for c in again.comments] != [c.text for c in tree.comments]:
        diags.error("P090", None, f"`{path}`: the formatter could not keep the file's meaning; "
                    "the file is left as it is", hints=("please report this with the file",))
        return None
    return out


def shape(node):
    """A syntax node without positions: what must survive formatting."""
    if isinstance(node, S.File):
        return tuple(shape(i) for i in node.items)
    if isinstance(node, Span):
        return "at"   # a place only (`owner`'s): whether it is there survives, not where
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(
            shape(getattr(node, f.name)) for f in dataclasses.fields(node) if f.name != "span")
    if isinstance(node, tuple):
        return tuple(shape(x) for x in node)
    return node


def format_tree(tree: S.File) -> str:
    return _Formatter(tree).file()


# --- one line of output ----------------------------------------------------------------------
@dataclasses.dataclass
class _Line:
    indent: int
    code: str                   # "" for a comment line or a blank line
    comment: str | None = None  # a trailing comment, or the text of an own-line comment
    blank: bool = False

    def render(self, col: int | None = None) -> str:
        if self.blank:
            return ""
        pad = INDENT * self.indent
        if not self.code:
            return pad + (self.comment or "")
        text = pad + self.code
        if self.comment is None:
            return text
        return text + " " * max(2, (col or 0) - len(text)) + self.comment


class _Formatter:
    def __init__(self, tree: S.File):
        self.tree = tree
        lines = tree.source.split("\n")
        blank = [0] * (len(lines) + 2)
        for i, ln in enumerate(lines, 1):
            blank[i] = blank[i - 1] + (1 if not ln.strip() else 0)
        blank[len(lines) + 1] = blank[len(lines)]
        self._blank_prefix = blank
        self.out: list[_Line] = []

    # --- blank lines in the source ----------------------------------------------------------
    def blank_between(self, a: int, b: int) -> bool:
        """A blank source line strictly between lines a and b."""
        if b - a < 2:
            return False
        bp = self._blank_prefix
        return bp[min(b - 1, len(bp) - 1)] - bp[min(a, len(bp) - 1)] > 0

    def emit(self, indent: int, code: str = "", comment: str | None = None) -> None:
        self.out.append(_Line(indent, code, comment))

    def emit_blank(self) -> None:
        if self.out and not self.out[-1].blank:
            self.out.append(_Line(0, "", blank=True))

    # --- comments to items ------------------------------------------------------------------
    def distribute(self, items, comments):
        """Give each comment to an item: leading (own-line before it, or from inside a
        statement that spans lines), trailing (after its last line), inner (inside a block),
        or closing (after the last item)."""
        n = len(items)
        leading = [[] for _ in range(n)]
        hoisted = [[] for _ in range(n)]
        inner = [[] for _ in range(n)]
        trailing: list = [None] * n
        closing = []
        starts = [(it.span.line, it.span.col) for it in items]
        for c in comments:
            pos = (c.span.line, c.span.col)
            i = bisect_right(starts, pos) - 1
            if i >= 0 and c.span.line <= items[i].span.end_line:
                it = items[i]
                if c.span.line == it.span.end_line:
                    trailing[i] = c
                elif isinstance(it, _BLOCKS):
                    inner[i].append(c)
                else:
                    hoisted[i].append(c)
            elif i + 1 < n:
                leading[i + 1].append(c)
            else:
                closing.append(c)
        return leading, hoisted, inner, trailing, closing

    # --- item lists -------------------------------------------------------------------------
    def file(self) -> str:
        self.items(self.tree.items, self.tree.comments, 0, top=True, after_line=0)
        while self.out and self.out[-1].blank:
            self.out.pop()
        return self.render_lines()

    def items(self, items, comments, indent: int, top: bool, after_line: int) -> None:
        """Lay out `items` (sorted) with their comments; `after_line` is the line the region
        starts after (the block's `{` line), for blank-line decisions."""
        leading, hoisted, inner, trailing, closing = self.distribute(items, comments)
        prev_end = after_line
        prev_item = None
        for i, it in enumerate(items):
            group_start = leading[i][0].span.line if leading[i] else it.span.line
            if prev_item is not None:
                if top and (isinstance(it, _BLOCKS) or isinstance(prev_item, _BLOCKS)):
                    self.emit_blank()
                elif self.blank_between(prev_end, group_start):
                    self.emit_blank()
            last = None
            for c in leading[i]:
                if last is not None and self.blank_between(last, c.span.line):
                    self.emit_blank()
                self.emit(indent, "", c.text)
                last = c.span.line
            if last is not None and self.blank_between(last, it.span.line):
                self.emit_blank()
            for c in hoisted[i]:
                self.emit(indent, "", c.text)
            self.item(it, indent, inner[i], trailing[i])
            prev_end, prev_item = it.span.end_line, it
        last = prev_end
        for c in closing:
            if self.out and self.blank_between(last, c.span.line):
                self.emit_blank()
            self.emit(indent, "", c.text)
            last = c.span.line

    def item(self, it, indent: int, inner, trailing) -> None:
        if isinstance(it, _BLOCKS):
            self.render_block(it, indent, inner, trailing)
            return
        lines = getattr(self, "render_" + type(it).__name__.lower())(it)
        for k, code in enumerate(lines):
            extra = 1 if k > 0 else 0
            self.emit(indent + extra, code, trailing.text if trailing and k == len(lines) - 1 else None)

    # --- blocks -----------------------------------------------------------------------------
    def render_block(self, it, indent: int, inner, trailing) -> None:
        keyword = {S.Policy: "policy", S.Ruleset: "ruleset", S.TestBlock: "test"}[type(it)]
        name = it.policy.value if isinstance(it, S.TestBlock) else it.name.value
        body = list(it.items)
        first = (body[0].span.line, body[0].span.col) if body else None
        header = None
        rest = []
        for c in inner:
            if header is None and c.span.line == it.span.line and (first is None or (c.span.line, c.span.col) < first):
                header = c
            else:
                rest.append(c)
        if not body and not rest and header is None:
            self.emit(indent, f"{keyword} {name} {{}}", trailing.text if trailing else None)
            return
        self.emit(indent, f"{keyword} {name} {{", header.text if header else None)
        self.items(body, rest, indent + 1, top=False, after_line=it.span.line)
        while self.out and self.out[-1].blank:
            self.out.pop()
        self.emit(indent, "}", trailing.text if trailing else None)

    # --- statements: one render_<kind> each, returning the statement's lines ----------------
    def render_include(self, it: S.Include) -> list[str]:
        return [f"{'include?' if it.optional else 'include'} {it.path.raw}"]

    def render_let(self, it: S.Let) -> list[str]:
        return [f"let {it.name.value} = {it.value.raw}"]

    def render_subject(self, it: S.Subject) -> list[str]:
        specs = [_spec(s) for s in it.specs]
        if it.exceptions:
            head = "subject " + ", ".join(specs) + " except"
            return _wrap(head, [_spec(s) for s in it.exceptions], "", self.current_indent_width())
        return _wrap("subject", specs, "", self.current_indent_width())

    def render_setting(self, it: S.Setting) -> list[str]:
        limit = f" limit {it.limit.text}" if it.limit is not None else ""
        return [f"{it.key} {it.value.value}{limit}"]

    def render_use(self, it: S.Use) -> list[str]:
        return [f"use {it.name.value}"]

    def render_rule(self, it: S.Rule) -> list[str]:
        limit = f" limit {it.limit.text}" if it.limit is not None else ""
        t = it.transition
        if t is not None:
            limit = (f" as policy {t.policy.value}" if t.kind == "policy" else " as unconfined") + limit
        return _body_lines(it.decision.value, it.body, self.current_indent_width(), limit=limit)

    def render_expect(self, it: S.Expect) -> list[str]:
        return [" ".join(_body_lines(f"expect {it.decision.value}", it.body, 0, wrap=False))]

    def render_testcontext(self, it: S.TestContext) -> list[str]:
        return [f"{it.key} {it.value.raw}"]

    def current_indent_width(self) -> int:
        return len(INDENT)   # rules only live one level deep (in a policy or a ruleset)

    # --- output -----------------------------------------------------------------------------
    def render_lines(self) -> str:
        out: list[str] = []
        lines = self.out
        i = 0
        while i < len(lines):
            ln = lines[i]
            if ln.code and ln.comment is not None:
                j = i
                while j < len(lines) and lines[j].code and lines[j].comment is not None \
                        and lines[j].indent == ln.indent:
                    j += 1
                col = max(len(INDENT * x.indent + x.code) for x in lines[i:j]) + 2
                out.extend(x.render(col) for x in lines[i:j])
                i = j
                continue
            out.append(ln.render())
            i += 1
        return "\n".join(out) + "\n" if out else ""


def _spec(s: S.SubjectSpec) -> str:
    return s.kind if s.value is None else f"{s.kind} {s.value.raw}"


def _body_lines(head: str, body: S.RuleBody, indent_width: int, wrap: bool = True,
                limit: str = "") -> list[str]:
    words = [head, body.family.value]
    if body.ops:
        words.append(", ".join(o.value for o in body.ops))
    head_text = " ".join(words)
    tail = ""
    if body.net is not None:
        n = body.net
        parts = []
        if n.proto is not None:
            parts.append(n.proto.value)
        if n.addrs:
            parts.append(", ".join(a.value for a in n.addrs))
        if n.ports:
            parts.append("port " + ", ".join(p.value for p in n.ports))
        head_text += " " + " ".join(parts)
    if body.owner is not None:
        head_text += " owner"
    if body.target is not None:
        t = body.target
        if t.direction == "from" and t.who == "all":
            tail = f" from {t.value.raw}"   # `from all`: the word, no string
        else:
            tail = f" {t.direction} {t.who} {t.value.raw}"
    tail += limit
    paths = [p.raw for p in body.paths]
    if not wrap:
        return [head_text + (" " + ", ".join(paths) if paths else "") + tail]
    return _wrap(head_text, paths, tail, indent_width)


def _wrap(head: str, items: list[str], tail: str, indent_width: int) -> list[str]:
    """`head a, b, c tail` on one line if it fits in MAX_WIDTH (or has one item), else the
    head alone and one item per line."""
    one = head + (" " + ", ".join(items) if items else "") + tail
    if len(items) < 2 or indent_width + len(one) <= MAX_WIDTH:
        return [one]
    return [head] + [x + "," for x in items[:-1]] + [items[-1] + tail]


__all__ = ["format_text", "format_tree", "shape", "MAX_WIDTH"]
