"""AppArmor path patterns (AARE) read into a small structure and written as policyc globs.

What AppArmor's parser does with a pattern (parser/parser_regex.c, `convert_aaregex_to_pcre`),
after its variables are expanded and runs of `/` collapsed (`filter_slashes`):

- `*` is `[^/]*` and `**` is `.*`, except right after a `/` when the run of stars is followed
  by `/` or ends the pattern: then it must match at least one character, not a `/`
  (`/dir/*` and `/dir/**` do not match the directory `/dir/` itself).
- `?` is one byte other than `/`; `[...]` a character class (`[^...]` its complement);
  `{a,b}` alternatives; `\\x` the character `x` (and `\\NNN`, `\\xNN`, `\\dNNN` escapes).
- A directory is looked up with a trailing `/` (`/etc/dnsmasq.d/`), a file without.

policyc globs (docs/language.md, "Paths and globs") have `*`, `**`, `?` and `{a,b}` with the
same meaning on the paths the kernel names, no escapes and no character classes, and name a
directory without a trailing `/`. So `to_policyc` turns one AppArmor pattern into the policyc
globs that match what it matches:

- a positive class `[a-c]` becomes `{a,b,c}` (exact; at most 128 characters, all of them
  plain in a policyc glob), `[^/]` becomes `?` (exact);
- any other negated class, an escaped glob character, a character policyc cannot write in
  a glob: the pattern is refused (`Unconvertible`, with the reason), never widened;
- the trailing `/` of directories: a pattern P stands for the paths it matches and the paths
  `p` for which `p/` matches (`derivative`), minus the ones that only end in `/` (`prune`):
  `/etc/dnsmasq.d/` is `/etc/dnsmasq.d`, `/srv/tftp/{,**}` is `/srv/tftp` and
  `/srv/tftp/**`. (policyc does not tell a directory from a file of the same name; see
  docs/language.md, "From AppArmor".)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..diagnostics import Diagnostics
from ..ir.glob import MAX_ALT_DEPTH, matcher, parse_glob   # MAX_ALT_DEPTH: policyc's `{...}` nesting bound
from ..span import Span

MAX_CLASS = 128          # characters a class may expand to
POLICYC_SPECIAL = set("*?{},")


class Unconvertible(Exception):
    """The pattern has no policyc glob equivalent; `key` names the reason (for counting),
    the message says what it was."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class BadPattern(Exception):
    """The pattern is not a valid AppArmor pattern (an unclosed `{` or `[`)."""


# --- structure -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Star:
    nonempty: bool = False     # AppArmor: right after `/` and before `/` or the end


@dataclass(frozen=True)
class DStar:
    nonempty: bool = False


@dataclass(frozen=True)
class Any:
    pass


@dataclass(frozen=True)
class Cls:
    chars: tuple[str, ...]     # the characters of a positive class, in order
    text: str                  # as written, for messages


@dataclass(frozen=True)
class Alt:
    options: tuple[tuple, ...]


Seq = tuple


# --- AppArmor text to structure ------------------------------------------------------------------
def filter_slashes(path: str) -> str:
    """Runs of `/` collapsed into one, as the AppArmor parser does after variable expansion."""
    out = []
    prev = ""
    for ch in path:
        if ch == "/" and prev == "/":
            continue
        out.append(ch)
        prev = ch
    return "".join(out)


def _escape(text: str, i: int) -> tuple[str, int]:
    """The character of the escape at text[i] (the backslash), and the index after it:
    `\\NNN` octal, `\\xNN` hex, `\\dNNN` decimal, else the character itself."""
    if i + 1 >= len(text):
        raise BadPattern("a trailing `\\`")
    c = text[i + 1]
    oct3, hex2, dec3 = text[i + 1:i + 4], text[i + 2:i + 4], text[i + 2:i + 5]
    if len(oct3) == 3 and all(x in "01234567" for x in oct3):
        return chr(int(oct3, 8)), i + 4
    if c == "x" and len(hex2) == 2 and all(x in "0123456789abcdefABCDEF" for x in hex2):
        return chr(int(hex2, 16)), i + 4
    if c == "d" and len(dec3) == 3 and dec3.isdigit():
        return chr(int(dec3)), i + 5
    return c, i + 2


def parse(text: str) -> Seq:
    """One AppArmor pattern (variables expanded) as a structure. Raises BadPattern when
    AppArmor would refuse it, Unconvertible when policyc cannot spell a part of it."""
    p = _Parser(text)
    seq = p.seq(0)
    if p.i != len(text):
        raise BadPattern(f"unexpected `{text[p.i]}`")
    return seq


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.prev = ""          # the last character AppArmor's converter would have emitted

    def seq(self, depth: int) -> Seq:
        text = self.text
        items: list = []
        lit: list[str] = []

        def flush():
            if lit:
                items.append(Lit("".join(lit)))
                lit.clear()

        while self.i < len(text):
            ch = text[self.i]
            if ch == "\\":
                c, self.i = _escape(text, self.i)
                if c in POLICYC_SPECIAL:
                    raise Unconvertible("literal-glob-char",
                                        f"a literal `{c}`: policyc globs have no escapes")
                lit.append(c)
                self.prev = c
                continue
            elif ch == "*":
                flush()
                j = self.i
                while j < len(text) and text[j] == "*":
                    j += 1
                after_slash = self.prev == "/"
                ends = j >= len(text) or text[j] == "/"
                nonempty = after_slash and ends
                run = j - self.i
                # `**` then `*` ... : as AppArmor reads a run of stars, two at a time
                while run > 0:
                    if run >= 2:
                        items.append(DStar(nonempty))
                        run -= 2
                    else:
                        items.append(Star(nonempty))
                        run -= 1
                    nonempty = False
                self.i = j
                self.prev = "*"
                continue
            elif ch == "?":
                flush()
                items.append(Any())
                self.prev = "?"
            elif ch == "[":
                flush()
                items.append(self.cls())
                self.prev = "]"
                continue
            elif ch == "{":
                flush()
                if depth + 1 > MAX_ALT_DEPTH:
                    raise Unconvertible("nesting", f"`{{...}}` nested deeper than {MAX_ALT_DEPTH}")
                start = self.i
                self.i += 1
                self.prev = "("
                options = []
                while True:
                    options.append(self.seq(depth + 1))
                    if self.i >= len(text):
                        raise BadPattern(f"unclosed `{{` at offset {start}")
                    if text[self.i] == ",":
                        self.i += 1
                        self.prev = "|"
                        continue
                    self.i += 1        # `}`
                    self.prev = ")"
                    break
                items.append(Alt(tuple(options)))
                continue
            elif ch in ",}" and depth > 0:
                break
            elif ch == "}":
                raise BadPattern("unmatched `}`")
            else:
                lit.append(ch)
                self.prev = ch
            self.i += 1
        flush()
        return _merge(items)

    def cls(self) -> Cls:
        text = self.text
        start = self.i
        i = self.i + 1
        negated = False
        if i < len(text) and text[i] == "^":
            negated = True
            i += 1
        members: list[str] = []
        first = True
        while True:
            if i >= len(text):
                raise BadPattern(f"unclosed `[` at offset {start}")
            ch = text[i]
            if ch == "]" and not first:
                i += 1
                break
            if ch == "\\":
                ch, i = _escape(text, i)
            else:
                i += 1
            first = False
            if i + 1 < len(text) and text[i] == "-" and text[i + 1] != "]":
                hi = text[i + 1]
                i += 2
                if hi == "\\":
                    hi, i = _escape(text, i - 1)
                if ord(hi) < ord(ch):
                    raise BadPattern(f"character range `{ch}-{hi}` is backwards")
                if ord(hi) - ord(ch) + 1 > MAX_CLASS:
                    raise Unconvertible("class", f"character class `{text[start:i]}` is too large to spell as `{{...}}`")
                members.extend(chr(c) for c in range(ord(ch), ord(hi) + 1))
            else:
                members.append(ch)
        written = text[start:i]
        self.i = i
        uniq = tuple(dict.fromkeys(members))
        if negated:
            if uniq == ("/",):
                return Cls(("?",), written)      # `[^/]` is policyc's `?`: one character, not `/`
            raise Unconvertible("negated-class",
                                f"negated character class `{written}`: policyc globs have no classes")
        bad = [c for c in uniq if c in POLICYC_SPECIAL or ord(c) < 32]
        if bad:
            raise Unconvertible("class", f"character class `{written}` holds `{bad[0]}`, "
                                "which a policyc glob cannot spell")
        if len(uniq) > MAX_CLASS:
            raise Unconvertible("class", f"character class `{written}` is too large")
        return Cls(uniq, written)


def _merge(items) -> Seq:
    out: list = []
    for it in items:
        if out and isinstance(it, Lit) and isinstance(out[-1], Lit):
            out[-1] = Lit(out[-1].text + it.text)
        else:
            out.append(it)
    return tuple(out)


# --- directories: the trailing `/` ----------------------------------------------------------------
def nullable(seq: Seq) -> bool:
    return all(_nullable(it) for it in seq)


def _nullable(it) -> bool:
    if isinstance(it, Lit):
        return it.text == ""
    if isinstance(it, (Star, DStar)):
        return not it.nonempty
    if isinstance(it, Alt):
        return any(nullable(o) for o in it.options)
    return False


def derivative(seq: Seq) -> list[Seq]:
    """Patterns for the strings `p` such that `p + "/"` matches `seq` (where they are not
    already matched by `seq` itself: a trailing `**` or `*` adds nothing new)."""
    if not seq:
        return []
    head, last = seq[:-1], seq[-1]
    out: list[Seq] = []
    if isinstance(last, Lit):
        if last.text.endswith("/"):
            t = last.text[:-1]
            out.append(_merge(head + ((Lit(t),) if t else ())))
    elif isinstance(last, Cls):
        if "/" in last.chars:
            out.append(head)
    elif isinstance(last, Alt):
        ds: list[Seq] = []
        for o in last.options:
            ds.extend(derivative(o))
        if ds:
            out.append(_merge(head + ((Alt(tuple(ds)),) if len(ds) > 1 else ds[0])))
    # Star, DStar, Any: a `*` or `?` never ends in `/`; a `**` that does gives strings the
    # pattern itself matches
    if _nullable(last):
        out.extend(derivative(head))
    return out


def _surely_slash(seq: Seq) -> bool:
    """Every string `seq` matches ends with `/`."""
    if not seq:
        return False
    last = seq[-1]
    if isinstance(last, Lit) and last.text:
        return last.text.endswith("/")
    if isinstance(last, Lit):
        return _surely_slash(seq[:-1])
    if isinstance(last, Alt):
        return all(_surely_slash(seq[:-1] + o) for o in last.options)
    return False


def prune(seq: Seq) -> Seq | None:
    """`seq` without what can only name a directory with its trailing `/` (never a path the
    kernel gives policyc), or None when that is all it matches."""
    if seq == (Lit("/"),):
        return seq                      # the root directory is `/` in both languages
    if _surely_slash(seq):
        return None
    if seq and isinstance(seq[-1], Alt):
        head = seq[:-1]
        kept = tuple(o for o in seq[-1].options if not _surely_slash(head + o))
        if not kept:
            return None
        if len(kept) == 1:
            return _merge(head + kept[0])
        return head + (Alt(kept),)
    return seq


# --- structure to policyc text ---------------------------------------------------------------------
def render(seq: Seq, in_alt: bool = False) -> str:
    out: list[str] = []
    for it in seq:
        if isinstance(it, Lit):
            if "${" in it.text:
                raise Unconvertible("literal-glob-char", "`${` would be read as a policyc variable")
            for c in it.text:
                if c in "*?{}" or (c == "," and in_alt):
                    raise Unconvertible("literal-glob-char",
                                        f"a literal `{c}`: policyc globs have no escapes")
                if c == "\x00":
                    raise Unconvertible("literal-glob-char", "a NUL character")
            out.append(it.text)
        elif isinstance(it, (Star, DStar)):
            if out and out[-1] in ("*", "**"):
                out[-1] = "**"      # a run of stars with a `**` in it (`***` is `**` in policyc)
            else:
                out.append("**" if isinstance(it, DStar) else "*")
        elif isinstance(it, Any):
            out.append("?")
        elif isinstance(it, Cls):
            if it.chars == ("?",):
                out.append("?")
            elif len(it.chars) == 1:
                out.append(it.chars[0])
            else:
                out.append("{" + ",".join(it.chars) + "}")
        else:
            out.append("{" + ",".join(render(o, True) for o in it.options) + "}")
    text = "".join(out)
    if "${" in text:
        raise Unconvertible("literal-glob-char", "`${` would be read as a policyc variable")
    return text


def _regex(seq: Seq) -> str:
    """AppArmor's reading of a structure as a Python regex (parser_regex.c)."""
    out = []
    for it in seq:
        if isinstance(it, Lit):
            out.append(re.escape(it.text))
        elif isinstance(it, Star):
            out.append("[^/][^/]*" if it.nonempty else "[^/]*")
        elif isinstance(it, DStar):
            out.append("[^/].*" if it.nonempty else ".*")
        elif isinstance(it, Any):
            out.append("[^/]")
        elif isinstance(it, Cls):
            out.append("[^/]" if it.chars == ("?",) else "(?:" + "|".join(map(re.escape, it.chars)) + ")")
        else:
            out.append("(?:" + "|".join(_regex(o) for o in it.options) + ")")
    return "".join(out)


def _matches_root(glob: str) -> bool:
    g = parse_glob(glob, Span("<import>", 1, 1, 1, 1), Diagnostics())
    return g is not None and matcher(g.parts).matches(b"/")


def _may_match_root(pattern: str) -> bool:
    """False when the pattern surely does not match `/` (it starts with `/` and a character
    that must be there): the quick test before the exact one."""
    return pattern == "/" or pattern[:1] == "{" or pattern[1:2] in ("*", "{", "?", "[", "\\")


def to_policyc(text: str, directories: bool = True) -> list[str]:
    """The policyc globs for one AppArmor pattern (variables already expanded), in order and
    without repeats. With `directories` (file rules), the trailing-`/` convention is turned
    into policyc's (see the module docstring); attachments and peers are matched against
    executables, never directories, and take the pattern as it is."""
    text = filter_slashes(text)
    seq = parse(text)
    if not directories:
        return [render(seq)]
    pats: list[Seq] = []
    kept = prune(seq)
    if kept is not None:
        pats.append(kept)
    pats.extend(d for d in derivative(seq) if d)
    out: list[str] = []
    for p in pats:
        t = render(p)
        if len(p) == 2 and p[0] == Lit("/") and isinstance(p[1], (Star, DStar)) and p[1].nonempty:
            t = "/?" + t[1:]      # `/*`, `/**`: not the root directory itself (`?` is not `/`)
        if t and t not in out:
            out.append(t)
    # The root directory is `/` in both languages, never `//`: a `p` with `p/` matched stands
    # for a directory other than the root.
    if not _may_match_root(text):
        return out
    aa_root = re.fullmatch(_regex(seq), "/", re.S) is not None
    pc_root = any(_may_match_root(t) and _matches_root(t) for t in out)
    if aa_root and not pc_root:
        out.append("/")
    elif pc_root and not aa_root:
        raise Unconvertible("root", f"`{text}` would match the root directory in policyc, not in AppArmor")
    return out
