#!/usr/bin/env python3
"""Generate the man pages and the shell completion scripts from the CLI and docs/language.md.

    python scripts/gen_docs.py [-o DIR]      (default DIR: build/docs)
    python scripts/gen_docs.py --package     write them into policyc/share (shipped in the wheel)
    python scripts/gen_docs.py --package --check   exit 1 naming each file there that is stale

writes
    DIR/man/man1/policyc.1                   policyc(1): every command, its usage and options
    DIR/man/man5/policyc.policy.5            policyc.policy(5): the language, docs/language.md
    DIR/completion/policyc.bash              bash  (also: `policyc completion bash`)
    DIR/completion/_policyc                  zsh
    DIR/completion/policyc.fish              fish

policyc/share holds the generated files, checked in, as the wheel's package data
(pyproject.toml): a wheel build runs nothing of policyc. tests/unit/test_wheel_docs.py fails
when they differ from what this script makes now (the `.TH` date aside: rewriting a file whose
only change would be its date leaves it as it is); after changing a command's options or help,
or docs/language.md, run `python scripts/gen_docs.py --package`. The help in the pages is
wrapped at 72 columns whatever the terminal is, so the output does not depend on where it runs.

Install them where the system looks (`/usr/share/man/man1`, `/usr/share/bash-completion/
completions/policyc`, a directory on `$fpath`, `~/.config/fish/completions/`;
policyc/install.py `install_docs` writes the wheel's copies to Debian's paths under a root).
The pages are made from the commands' own help (typer/click), so they say what
`policyc CMD --help` says.
tests/unit/test_completion.py runs this and reads the pages with groff when it is installed.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def roff_escape(text: str) -> str:
    text = text.replace("\\", "\\e")
    text = text.replace("-", "\\-")
    out = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def inline(text: str) -> str:
    """Markdown inline markup to roff: `code` and **bold** in bold, *x* in italics, links as text."""
    text = roff_escape(text)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", text)
    text = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\\fI\1\\fR", text)
    return text


def markdown_to_roff(md: str) -> str:
    """The subset of Markdown docs/language.md uses: headings, paragraphs, lists, code blocks
    and tables."""
    out: list[str] = []
    lines = md.split("\n")
    i = 0
    in_list = False
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            i += 1
            out.append(".PP\n.nf\n.RS 4")
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(roff_escape(lines[i]))
                i += 1
            out.append(".RE\n.fi")
            i += 1
            continue
        if line.startswith("# "):
            i += 1
            continue
        if line.startswith("## "):
            out.append(f".SH {roff_escape(line[3:].upper())}")
            i += 1
            continue
        if line.startswith("### "):
            out.append(f".SS {inline(line[4:])}")
            i += 1
            continue
        if line.startswith("|"):
            out.append(".PP\n.nf\n.RS 4")
            while i < len(lines) and lines[i].startswith("|"):
                row = lines[i]
                if not re.fullmatch(r"\|[\s\-:|]+\|?", row):
                    cells = [c.strip().replace("\\|", "|") for c in row.strip("|").split(" | ")]
                    out.append(inline("  ".join(cells)))
                i += 1
            out.append(".RE\n.fi")
            continue
        if not line.strip():
            in_list = False
            i += 1
            continue
        m = re.match(r"^(\s*)[-*] (.*)$", line) or re.match(r"^(\s*)\d+\. (.*)$", line)
        if m:
            para = [m.group(2)]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip() and \
                    not re.match(r"^\s*[-*] ", lines[i]) and not lines[i].strip().startswith("```"):
                para.append(lines[i].strip())
                i += 1
            out.append(".IP \\(bu 2")
            out.append(inline(" ".join(para)))
            in_list = True
            continue
        para = [line.strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "```")) and \
                not re.match(r"^\s*[-*] ", lines[i]):
            para.append(lines[i].strip())
            i += 1
        out.append(".IP \"\" 2" if in_list and line.startswith("  ") else ".PP")
        out.append(inline(" ".join(para)))
    return "\n".join(out) + "\n"


def _header(name: str, section: int, title: str) -> str:
    from policyc import __version__

    date = _source_date()
    return (f'.\\" Generated by scripts/gen_docs.py; do not edit.\n'
            f'.TH {name.upper()} {section} "{date}" "policyc {__version__}" "{title}"\n')


def _source_date() -> str:
    """The date the pages carry: SOURCE_DATE_EPOCH's when set (reproducible builds), else today."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else \
        datetime.datetime.now(datetime.timezone.utc)
    return when.date().isoformat()


def policyc_1() -> str:
    import typer

    from policyc.cli.main import COMMANDS, app

    group = typer.main.get_command(app)
    # A fixed width, so the help is wrapped the same in a terminal, under pytest and in CI: 72
    # columns, which man indents by 7, fit an 80-column terminal.
    ctx = typer.Context(group, info_name="policyc", terminal_width=72, max_content_width=72)
    out = [_header("policyc", 1, "policyc manual"),
           ".SH NAME", "policyc \\- a declarative policy compiler for Linux BPF LSM",
           ".SH SYNOPSIS", ".B policyc", "[\\fB\\-\\-version\\fR] [\\fB\\-h\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
           ".SH DESCRIPTION",
           inline("policyc compiles declarative `.policy` files into BPF LSM programs that confine Linux "
                  "processes, and checks, formats, tests and explains them. The language is in "
                  "policyc.policy(5)."),
           ".SH COMMANDS"]
    for name in [*COMMANDS, "vm"]:
        cmd = group.get_command(ctx, name)
        cmd.rich_markup_mode = None      # plain text: rich would print boxes to the terminal
        sub = typer.Context(cmd, info_name=name, parent=ctx)
        out.append(f".SS policyc {roff_escape(name)}")
        out.append(".nf")
        out.append(roff_escape(cmd.get_help(sub)))
        out.append(".fi")
    out += [".SH EXIT STATUS", ".TP", "0", "success (warnings allowed unless \\fB\\-\\-werror\\fR)",
            ".TP", "1", "a test failed, \\fBfmt \\-\\-check\\fR found a file to reformat, "
                        "\\fBexplain \\-\\-fail\\-on\\fR matched, or a host operation failed",
            ".TP", "2", "the input has errors (diagnostics printed)",
            ".TP", "3", "a policyc bug (one line; POLICYC_DEBUG=1 shows the traceback)",
            ".TP", "64", "a usage error: an unknown option, a missing argument (EX_USAGE)",
            ".TP", "130", "interrupted",
            ".SH NOTES",
            inline("A long option means the same in every command: `--policy NAME` selects policies by "
                   "name (`build`, `load`, `exec`, `suggest`), `--policy-file PATH` adds a policy file "
                   "(`build`, `load`, `exec`). The short `-p POLICY` is a policy by name or by file, one of "
                   "the two: a value that cannot be a name (it has a `/` or a `.`) is `--policy-file`; a "
                   "name that is no path here is `--policy`; a name that is also a path is `--policy` "
                   "when the inputs hold a policy of that name (a warning says so), else `--policy-file`."),
            ".SH ENVIRONMENT", ".TP", "NO_COLOR", "no colour in text diagnostics",
            ".TP", "POLICYC_DEBUG", "print the traceback of an internal error",
            ".SH SEE ALSO", "policyc.policy(5)"]
    return "\n".join(out) + "\n"


def policyc_policy_5() -> str:
    md = (ROOT / "docs" / "language.md").read_text()
    return (_header("policyc.policy", 5, "policyc manual") + ".SH NAME\npolicyc.policy \\- the policyc policy language\n"
            + ".SH DESCRIPTION\n" + markdown_to_roff(md) + ".SH SEE ALSO\npolicyc(1)\n")


def completions() -> dict[str, str]:
    from policyc.cli.main import completion_script

    return {"policyc.bash": completion_script("bash"), "_policyc": completion_script("zsh"),
            "policyc.fish": completion_script("fish")}


PACKAGE_DIR = ROOT / "policyc" / "share"
_TH_DATE = re.compile(r'^(\.TH \S+ \d+ )"[^"]*"', re.M)


def generate(out: Path) -> dict[Path, str]:
    """Each file this script makes, under `out`, and its text."""
    return {out / "man" / "man1" / "policyc.1": policyc_1(),
            out / "man" / "man5" / "policyc.policy.5": policyc_policy_5(),
            **{out / "completion" / name: text for name, text in completions().items()}}


def same_but_date(old: str, new: str) -> bool:
    """The two texts are equal once the date of a man page's `.TH` line is set aside."""
    return _TH_DATE.sub(r'\1""', old) == _TH_DATE.sub(r'\1""', new)


def stale(out: Path) -> list[Path]:
    """The files under `out` that are missing or differ from what would be generated now."""
    return [path for path, text in generate(out).items()
            if not path.is_file() or not same_but_date(path.read_text(), text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=None, metavar="DIR",
                    help="where to write (default: build/docs; with --package: policyc/share)")
    ap.add_argument("--package", action="store_true", help="write into policyc/share, the wheel's copy")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is missing or stale")
    a = ap.parse_args(argv)
    out = Path(a.output) if a.output else PACKAGE_DIR if a.package else ROOT / "build" / "docs"
    if a.check:
        bad = stale(out)
        for path in bad:
            print(f"gen_docs: stale: {path} (run: python scripts/gen_docs.py --package)", file=sys.stderr)
        return 1 if bad else 0
    for path, text in generate(out).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.is_file() and same_but_date(path.read_text(), text)):
            path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
