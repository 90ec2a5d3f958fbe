"""What every command shares: loading with diagnostics, printing them, exit codes, and the
guard that turns any unexpected exception into one line and exit code 3."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

import typer

from ..diagnostics import Diagnostics

if TYPE_CHECKING:   # imported when used: `policyc --help` and `lsp` need none of them
    from ..ir.model import Program
    from ..pipeline import FrontEnd

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3
EXIT_USAGE = 64     # EX_USAGE (sysexits.h): an unknown option, a missing argument


def load(paths: list[str], diags: Diagnostics, *, checks: bool = False, kernel: str | None = None) -> FrontEnd:
    """Every command's front end: policyc/pipeline.py's, made total (any input gives a
    FrontEnd, its problems in `diags`). `checks` for the commands that judge or build a
    program; `explain` and `test` evaluate it as lowered."""
    from ..pipeline import front_end

    return front_end(list(paths), diags, checks=checks, kernel=kernel)


def load_and_check(paths: list[str], diags: Diagnostics, err: TextIO,
                   kernel: str | None = None) -> tuple[FrontEnd, bool]:
    """The front end with every check and, with `kernel`, that kernel's facts (P050), for
    the commands that judge or build a program. (front, ok): ok is False when the kernel's
    facts could not be read (said on `err`)."""
    front = load(paths, diags, checks=True, kernel=kernel)
    if front.facts_error is not None:
        err.write(f"policyc: error: {front.facts_error}\n")
        return front, False
    return front, True


# ---- `-p POLICY`: a policy, by name or by file (docs/cli.md, "`-p`") ---------------------------

POLICY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")   # grammar/policy.lark's NAME


def resolve_dash_p(values: list[str], inputs: list[str], err: TextIO,
                   names_in: Callable[[list[str]], set[str]] | None = None) -> tuple[list[str], list[str]]:
    """`-p` values split into (names, files): what `--policy NAME` and `--policy-file PATH` would
    have been given. The rule, the same in every command that has `-p` (build, load, exec):

    - a value that cannot be a policy's name (it has a `/`, a `.`, ...) is a file;
    - a name-like value that is no path here is a name;
    - a name-like value that is also a path here is the name when a policy of that name is in
      the command's inputs (`inputs`: its PATH arguments and `--policy-file`s, and the
      `-p` values that are files), else the file. Taken as the name, a warning says how to
      mean the file (`./NAME` or `--policy-file NAME`).

    `names_in(paths)` gives the policy names those inputs hold; it is asked only for a value
    that is both (rare), so the common cases read nothing more."""
    names: list[str] = []
    files: list[str] = []
    both: list[str] = []
    for v in values:
        if not POLICY_NAME.fullmatch(v):
            files.append(v)
        elif not os.path.exists(v):
            names.append(v)
        else:
            both.append(v)
    if both:
        others = [*inputs, *files]
        known = (names_in or policy_names_in)(others) if others else set()
        for v in both:
            if v in known:
                err.write(f"policyc: warning: -p {v}: the policy named `{v}`, not the path `{v}` here "
                          f"(for the path write -p ./{v} or --policy-file {v}; for the name, --policy {v})\n")
                names.append(v)
            else:
                files.append(v)
    return names, files


def select_policies(paths: list[str], policy: list[str] | None, dash_p: list[str] | None,
                    policy_files: list[str] | None, err: TextIO) -> tuple[list[str], list[str] | None]:
    """A command's inputs and the names it selects, from its PATH arguments, `--policy NAME`s,
    `-p POLICY`s and `--policy-file PATH`s: (paths, names or None for every policy). Files
    are inputs (read as a PATH argument is, after them); names select among all inputs."""
    files = list(policy_files or [])
    names, p_files = resolve_dash_p(list(dash_p or []), [*paths, *files], err)
    chosen = [*(policy or []), *names]
    return [*paths, *files, *p_files], chosen or None


DASH_P_HELP = ("a policy: its name (as --policy) or its file (as --policy-file); a name "
               "the inputs hold is the name (policyc(1), NOTES)")
NO_INPUT = "name the policies: PATH..., -p FILE or --policy-file FILE"


def policy_names_in(paths: list[str]) -> set[str]:
    """The names of the policies `paths` hold: a build directory's or manifest's by their file
    names, `.policy` files' (and directories of them) by the front end (lowered, not checked).
    What cannot be read holds none (the command itself then says why)."""
    ready, sources = [], []
    for p in paths:
        pp = Path(p)
        if p.endswith(".manifest.json"):
            ready.append(pp)
        elif pp.is_dir() and any(pp.glob("*.manifest.json")):
            ready.extend(pp.glob("*.manifest.json"))
        else:
            sources.append(p)
    names = {m.name.removesuffix(".manifest.json") for m in ready}
    if sources:
        front = load(sources, Diagnostics())
        if front.program is not None:
            names.update(pol.name for pol in front.program.policies)
    return names


def print_diagnostics(diags: Diagnostics, fmt: str, out: TextIO, err: TextIO,
                      program: Program | None = None) -> None:
    from ..report import Sources, render, summary

    items = diags.sorted()
    render(items, fmt, out, Sources(program.sources if program is not None else {}))
    if fmt == "text" and items:
        err.write(f"policyc: {summary(items)}\n")


def guarded(fn: Callable[..., int], *args, on_bug: Callable[[Exception], None] | None = None,
            **kwargs) -> None:
    """Run a command; exit with its code. An exception is a policyc bug: one line, code 3.
    `on_bug(exception)` then runs too: `check --format sarif` writes a SARIF document that
    says the run failed, so what reads stdout still gets one."""
    err = kwargs.get("err", sys.stderr)
    try:
        code = fn(*args, **kwargs)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - the one place that catches everything
        if os.environ.get("POLICYC_DEBUG"):
            traceback.print_exc(file=err)
        err.write(f"policyc: error: internal error: {type(e).__name__}: {e} "
                  "(a policyc bug; POLICYC_DEBUG=1 shows where)\n")
        if on_bug is not None:
            try:
                on_bug(e)
            except Exception:  # noqa: BLE001 - reporting the bug must not hide it
                if os.environ.get("POLICYC_DEBUG"):
                    traceback.print_exc(file=err)
        code = EXIT_BUG
    raise typer.Exit(code)


_OVERLAY_LOCK = threading.RLock()


@contextlib.contextmanager
def overlaid(texts: dict[str, str]):
    """Files read from `texts` (path -> text) instead of from disk while the block runs: an
    editor's unsaved buffer (`policyc lsp`) or standard input (`check - --stdin-filename
    NAME`). Includes are resolved as for the file on disk, relative to its path; a path in
    `texts` need not exist. The front end reads files through the parse_file that
    policyc/lower/sources.py imported, so that is the one replaced (tests/unit/test_lsp.py
    holds it to that)."""
    from ..lower import sources as _sources
    from ..parse import parse_file, parse_text

    by_key = {os.path.normpath(p): t for p, t in texts.items()}

    def read(path: str, diags: Diagnostics):
        text = by_key.get(os.path.normpath(path))
        if text is None:
            return parse_file(path, diags)
        return parse_text(path, text, diags)

    with _OVERLAY_LOCK:
        before = _sources.parse_file
        _sources.parse_file = read
        try:
            yield
        finally:
            _sources.parse_file = before
