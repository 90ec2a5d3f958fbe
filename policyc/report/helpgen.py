"""Generates policyc/report/diagnostic_help.py from docs/diagnostics.md.

    python -m policyc.report.helpgen --write    # rewrite diagnostic_help.py from the doc
    python -m policyc.report.helpgen --check    # exit 1 when it is out of date

The doc is not in the wheel; the SARIF renderer (sarif.py) needs each code's section of it
(the rule help code scanning shows), so the sections are shipped as a generated module and a
unit test (tests/unit/test_sarif.py) keeps it in step with the doc.

A code's section is its `### CODE \\`name\\`` heading up to the next heading: the text before
the line starting `Anti-pattern:`, the anti-pattern, and from the line starting
`Best practice:` to the end. Headings inside fenced code blocks are text.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "diagnostics.md"
MODULE = Path(__file__).resolve().with_name("diagnostic_help.py")
DOC_URL = "https://github.com/policyc/policyc/blob/main/docs/diagnostics.md"

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_CODE_HEADING = re.compile(r"^([PW]\d{3}) `([a-z0-9-]+)`$")
_FENCE = re.compile(r"^\s*(```|~~~)")
ANTI = "Anti-pattern:"
BEST = "Best practice:"


@dataclass(frozen=True)
class Section:
    code: str
    name: str
    anchor: str
    text: str            # markdown, as in the doc
    anti_pattern: str    # markdown, after `Anti-pattern:`
    best_practice: str   # markdown, after `Best practice:`


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading (github-slugger): the rendered text lower-cased,
    everything but letters, marks, numbers, connectors (`_`), `-` and spaces dropped, spaces made `-`.
    `P005 \\`cycle\\`` -> `p005-cycle`; `Suppressing warnings, \\`--werror\\`` ->
    `suppressing-warnings---werror`."""
    out = []
    for ch in heading.lower():
        if ch == " ":
            out.append("-")
        elif ch == "-" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc":
            out.append(ch)
    return "".join(out)


def headings(markdown: str) -> list[tuple[int, int, str, str]]:
    """(line index, level, text, anchor) of each heading outside fenced code, anchors made
    unique the way GitHub does (a repeat gets `-1`, `-2`, ...)."""
    seen: dict[str, int] = {}
    out = []
    fenced = False
    for i, line in enumerate(markdown.split("\n")):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = _HEADING.match(line) if not fenced else None
        if m is None:
            continue
        base = anchor = slug(m.group(2))
        while anchor in seen:
            seen[base] += 1
            anchor = f"{base}-{seen[base]}"
        seen[anchor] = 0
        out.append((i, len(m.group(1)), m.group(2), anchor))
    return out


def anchors(markdown: str) -> set[str]:
    return {a for _, _, _, a in headings(markdown)}


def parse(markdown: str) -> dict[str, Section]:
    """Every `### CODE \\`name\\`` section of the doc, by code."""
    lines = markdown.split("\n")
    hs = headings(markdown)
    out: dict[str, Section] = {}
    for k, (i, level, text, anchor) in enumerate(hs):
        m = _CODE_HEADING.match(text)
        if level != 3 or m is None:
            continue
        end = hs[k + 1][0] if k + 1 < len(hs) else len(lines)
        body = lines[i + 1:end]
        code = m.group(1)
        if code in out:
            raise ValueError(f"{code} has two sections")
        a = _label_line(body, ANTI, 0)
        b = _label_line(body, BEST, a + 1 if a is not None else 0)
        if a is None or b is None:
            raise ValueError(f"{code}: its section needs `{ANTI}` and then `{BEST}` lines")
        out[code] = Section(
            code=code, name=m.group(2), anchor=anchor,
            text=_block(body[:a]),
            anti_pattern=_block([body[a][len(ANTI):], *body[a + 1:b]]),
            best_practice=_block([body[b][len(BEST):], *body[b + 1:]]),
        )
    return out


def _label_line(body: list[str], label: str, start: int) -> int | None:
    fenced = False
    for j, line in enumerate(body):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and j >= start and line.startswith(label):
            return j
    return None


def _block(lines: list[str]) -> str:
    """The lines as one markdown block: outer blank lines and trailing spaces dropped."""
    lines = [ln.rstrip() for ln in lines]
    if lines:
        lines[0] = lines[0].strip()
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def render_module(sections: dict[str, Section]) -> str:
    out = [
        '"""Each diagnostic code\'s section of docs/diagnostics.md: what SARIF rule help shows.',
        "",
        "GENERATED from docs/diagnostics.md by policyc/report/helpgen.py: do not edit. After",
        "changing the doc, run `python -m policyc.report.helpgen --write`; a unit test",
        "fails while this file is out of date.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import NamedTuple",
        "",
        f"DOC_URL = {DOC_URL!r}",
        "",
        "",
        "class Help(NamedTuple):",
        "    name: str",
        "    anchor: str          # GitHub's anchor of the code's heading in the doc",
        "    text: str            # markdown: what the code means",
        "    anti_pattern: str    # markdown",
        "    best_practice: str   # markdown",
        "",
        "    @property",
        "    def uri(self) -> str:",
        '        return f"{DOC_URL}#{self.anchor}"',
        "",
        "",
        "HELP: dict[str, Help] = {",
    ]
    for code in sorted(sections):
        s = sections[code]
        out.append(f"    {code!r}: Help(")
        out.append(f"        name={s.name!r},")
        out.append(f"        anchor={s.anchor!r},")
        for field in ("text", "anti_pattern", "best_practice"):
            out.append(f"        {field}=" + _literal(getattr(s, field), 12) + ",")
        out.append("    ),")
    out += [
        "}",
        "",
    ]
    return "\n".join(out)


def _literal(text: str, indent: int) -> str:
    """A string literal of `text`, one source line per line of text."""
    lines = text.split("\n")
    if len(lines) == 1:
        return repr(text)
    pad = " " * indent
    parts = [repr(ln + "\n") for ln in lines[:-1]] + [repr(lines[-1])]
    return "(\n" + "\n".join(pad + p for p in parts) + "\n" + " " * (indent - 4) + ")"


def generate(doc: Path = DOC) -> str:
    return render_module(parse(doc.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["--write"], ["--check"]):
        sys.stderr.write("usage: python -m policyc.report.helpgen --write|--check\n")
        return 2
    new = generate()
    old = MODULE.read_text(encoding="utf-8") if MODULE.exists() else ""
    if args == ["--check"]:
        if new != old:
            sys.stderr.write(f"{MODULE} is out of date: run python -m policyc.report.helpgen --write\n")
            return 1
        return 0
    if new != old:
        MODULE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
