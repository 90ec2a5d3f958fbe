"""`policyc check PATH... [--format text|json|sarif|github] [--werror] [--no-config]
[--kernel SPEC] [--load-test] [--base-dir DIR]`: parse, lower and run every check.

Silent on success in text format; exit 0 when clean or warnings only, 2 on errors (and, with
`--werror`, on any warning left). In json, sarif and github formats the document goes to
stdout (an empty list / no results / no lines when clean) and nothing else does.

Warnings named by an inline `# policyc: ignore[CODE] reason` are suppressed
(policyc/report/suppress.py): not printed in text and github, marked in json and sarif, never
counted. `policyc.toml` (or `[tool.policyc]` in pyproject.toml, policyc/config.py) sets
defaults for `--werror` and `--format` and the codes never reported (`disable`); flags win,
`--no-config` ignores the file.

In sarif format paths are relative to `--base-dir` (`%SRCROOT%`; by default the git top-level
of the first PATH, else the working directory), and stdout always gets one SARIF document:
when the check cannot run (a bad configuration or kernel, `--load-test` failing, an internal
error) it is one with `executionSuccessful: false` and the reason (policyc/report/sarif.py).
"""

from __future__ import annotations

from typing import List, Optional, TextIO

import typer

from ..config import Config, ConfigError, load_config
from ..diagnostics import Diagnostic, Diagnostics, Severity
from ..report import (FORMATS, Sources, apply_suppressions, default_base_dir, render, render_sarif_failure,
                      summary)
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded, load_and_check


def run_check(paths: list[str], fmt: str | None, out: TextIO, err: TextIO, kernel: str | None = None, *,
              werror: bool | None = None, use_config: bool = True, load_test: bool = False,
              base_dir: str | None = None) -> int:
    base = base_dir if base_dir is not None else default_base_dir(paths)
    config = Config()
    if use_config:
        try:
            config = load_config()
        except ConfigError as e:
            err.write(f"policyc: error: {e} (--no-config ignores it)\n")
            if fmt == "sarif":
                render_sarif_failure(out, f"{e} (--no-config ignores it)", base_dir=base)
            return EXIT_BAD_INPUT
    fmt = fmt or config.format or "text"
    if fmt not in FORMATS:
        err.write(f"policyc: unknown format `{fmt}` (one of {', '.join(FORMATS)})\n")
        return EXIT_BAD_INPUT
    werror = config.werror if werror is None else werror
    diags = Diagnostics()
    front, ok = load_and_check(paths, diags, err, kernel)
    if not ok:
        if fmt == "sarif":
            render_sarif_failure(out, str(front.facts_error), base_dir=base)
        return EXIT_BAD_INPUT
    program = front.program
    if load_test and front.ok:
        said = _Said(err)
        if not _load_test(front, said):
            if fmt == "sarif":
                render_sarif_failure(out, said.text().strip().removeprefix("policyc: error: "), base_dir=base)
            return EXIT_BAD_INPUT
    sources = Sources(program.sources if program is not None else {})
    items = apply_suppressions(diags.sorted(), program, sources)
    items = [d for d in items if d.code not in config.disable]
    render(items, fmt, out, sources, base_dir=base, inputs=paths)
    shown = [d for d in items if d.suppressed is None]
    errors = any(d.severity is Severity.ERROR for d in shown)
    warnings = any(d.severity is Severity.WARNING for d in shown)
    if fmt == "text" and shown:
        _summary(items, bool(werror) and warnings and not errors, out, err)
    return EXIT_BAD_INPUT if errors or (werror and warnings) else EXIT_OK


def _load_test(front, err: TextIO) -> bool:
    """`--load-test`: each policy's programs loaded alone on this kernel (P051 per refusal)."""
    from .. import runtime

    from ..codegen import BuildError
    from ..load_test import load_test_program

    try:
        load_test_program(front)
    except BuildError as e:
        err.write(f"policyc: error: --load-test builds each policy first: {e.message}\n")
        return False
    except runtime.BpfError as e:
        err.write(f"policyc: error: --load-test could not load on this kernel: {e.message} (it needs "
                  "root and a kernel with BPF LSM; nothing was attached)\n")
        return False
    return True


def _summary(items: list[Diagnostic], failed_by_werror: bool, out: TextIO, err: TextIO) -> None:
    try:
        out.flush()
    except (OSError, ValueError):
        pass
    tail = " (--werror: warnings are errors)" if failed_by_werror else ""
    err.write(f"policyc: {summary(items)}{tail}\n")


class _Said:
    """A stream that writes through to `to` and keeps what was written (the reason a step
    failed, for the SARIF document that says so)."""

    def __init__(self, to: TextIO):
        self.to = to
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        self.parts.append(s)
        return self.to.write(s)

    def flush(self) -> None:
        self.to.flush()

    def text(self) -> str:
        return "".join(self.parts)


class _Watched:
    """stdout, noting whether anything was written to it (an internal error's SARIF document
    is written only on an empty stdout, never after another)."""

    def __init__(self, to: TextIO):
        self.to = to
        self.written = False

    def write(self, s: str) -> int:
        self.written = self.written or bool(s)
        return self.to.write(s)

    def __getattr__(self, name: str):
        return getattr(self.to, name)


def _format_for_failure(fmt: str | None, use_config: bool) -> str:
    """The format a run that failed unexpectedly was asked for: the flag, else the
    configuration's when it can be read."""
    if fmt is None and use_config:
        try:
            fmt = load_config().format
        except Exception:  # noqa: BLE001 - this runs after an internal error; text then
            fmt = None
    return fmt or "text"


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="policy files or directories of them"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f",
                                      help="text, json, sarif or github (default: policyc.toml's, else text)"),
    werror: Optional[bool] = typer.Option(None, "--werror/--no-werror",
                                          help="warnings count as errors: exit 2 when any is left"),
    no_config: bool = typer.Option(False, "--no-config",
                                   help="ignore policyc.toml and the tool.policyc table of pyproject.toml"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="6.1|6.12|7.2|PATH",
                                         help="also check every rule against this kernel's hooks and helpers (its BTF)"),
    load_test: bool = typer.Option(False, "--load-test",
                                   help="build each policy and load every program on the running kernel, "
                                        "attaching nothing: what its verifier refuses is reported per rule "
                                        "(P051; root and BPF LSM)"),
    base_dir: Optional[str] = typer.Option(None, "--base-dir", metavar="DIR",
                                           help="sarif: paths relative to DIR, the %SRCROOT% of code scanning "
                                                "(default: the git top-level of the first PATH, else the "
                                                "working directory)"),
) -> None:
    """Check policies: syntax, names, includes, and the checks in docs/diagnostics.md."""
    import sys

    out = _Watched(sys.stdout)

    def bug(e: Exception) -> None:
        if not out.written and _format_for_failure(fmt, not no_config) == "sarif":
            render_sarif_failure(out, f"internal error: {type(e).__name__}: {e} (a policyc bug)", exception=e,
                                 base_dir=base_dir if base_dir is not None else default_base_dir(paths))

    guarded(run_check, paths, fmt, out=out, err=sys.stderr, kernel=kernel, werror=werror,
            use_config=not no_config, load_test=load_test, base_dir=base_dir, on_bug=bug)
