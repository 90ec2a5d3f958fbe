"""`policyc check PATH... [--format text|json|json-v2|sarif|github] [--werror] [--no-config]
[--kernel SPEC] [--load-test] [--base-dir DIR] [--stdin-filename NAME]`: parse, lower and run
every check. `-` among the PATHs is standard input, checked as the file `--stdin-filename`
names (for linters that pipe an editor's buffer).

Silent on success in text format; exit 0 when clean or warnings only, 2 on errors (and, with
`--werror`, on any warning left). In json, json-v2, sarif and github formats the document goes
to stdout (an empty list / an object with no diagnostics / no results / no lines when clean)
and nothing else does. json is a bare list, kept as it is for the scripts that read it;
json-v2 is the same list in a versioned object with the files checked and a summary
(policyc/report/tojson.py).

Warnings named by an inline `# policyc: ignore[CODE] reason` are suppressed
(policyc/report/suppress.py): not printed in text and github, marked in json, json-v2 and
sarif, never counted. `policyc.toml` (or `[tool.policyc]` in pyproject.toml,
policyc/config.py) sets defaults for `--werror` and `--format` and the codes never reported
(`disable`); flags win, `--no-config` ignores the file.

In sarif format paths are relative to `--base-dir` (`%SRCROOT%`; by default the git top-level
of the first PATH, else the working directory), and stdout always gets one SARIF document:
when the check cannot run (a bad configuration or kernel, `--load-test` failing, an internal
error) it is one with `executionSuccessful: false` and the reason (policyc/report/sarif.py).
"""

from __future__ import annotations

import os
from typing import List, Optional, TextIO

import typer

from ..config import Config, ConfigError, load_config
from ..diagnostics import Diagnostic, Diagnostics, Severity
from ..report import FORMATS, Sources, default_base_dir, render, summary
from ..report.suppress import apply_suppressions
from ..parse import decode_source
from .common import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, guarded, load_and_check, overlaid


def run_check(paths: list[str], fmt: str | None, out: TextIO, err: TextIO, kernel: str | None = None, *,
              werror: bool | None = None, use_config: bool = True, load_test: bool = False,
              base_dir: str | None = None, stdin_filename: str | None = None, stdin=None) -> int:
    if "-" in paths or stdin_filename is not None:
        return _check_stdin(paths, fmt, out, err, kernel, werror=werror, use_config=use_config,
                            load_test=load_test, base_dir=base_dir, stdin_filename=stdin_filename, stdin=stdin)
    base = base_dir if base_dir is not None else default_base_dir(paths)
    config = _config(use_config, fmt, out, err, base)
    if config is None:
        return EXIT_BAD_INPUT
    return _run_check(paths, fmt, config, out, err, kernel, werror=werror, load_test=load_test, base=base)


def _config(use_config: bool, fmt: str | None, out: TextIO, err: TextIO, base) -> Config | None:
    """policyc.toml's settings (defaults with `--no-config`), or None when it cannot be read
    (said on `err`, and in sarif format as a failed run on `out`)."""
    if not use_config:
        return Config()
    try:
        return load_config()
    except ConfigError as e:
        err.write(f"policyc: error: {e} (--no-config ignores it)\n")
        if fmt == "sarif":
            render_sarif_failure(out, f"{e} (--no-config ignores it)", base_dir=base)
        return None


def render_sarif_failure(out: TextIO, message: str, **kw) -> None:
    """A SARIF document that says the run failed (policyc/report/sarif.py, imported when needed)."""
    from ..report.sarif import render_sarif_failure as write

    write(out, message, **kw)


def _run_check(paths: list[str], fmt: str | None, config: Config, out: TextIO, err: TextIO,
               kernel: str | None, *, werror: bool | None, load_test: bool, base,
               texts: dict[str, str] | None = None) -> int:
    fmt = fmt or config.format or "text"
    if fmt not in FORMATS:
        err.write(f"policyc: error: unknown format `{fmt}` (one of {', '.join(FORMATS)})\n")
        return EXIT_BAD_INPUT
    werror = config.werror if werror is None else werror
    diags = Diagnostics()
    with overlaid(texts or {}):
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
    for name, text in (texts or {}).items():
        if program is None or name not in program.sources:
            sources.add(name, text)
    items = apply_suppressions(diags.sorted(), program, sources)
    items = [d for d in items if d.code not in config.disable]
    render(items, fmt, out, sources, base_dir=base, inputs=paths, files=_files_checked(program, paths, items))
    shown = [d for d in items if d.suppressed is None]
    errors = any(d.severity is Severity.ERROR for d in shown)
    warnings = any(d.severity is Severity.WARNING for d in shown)
    if fmt == "text" and shown:
        _summary(items, bool(werror) and warnings and not errors, out, err)
    return EXIT_BAD_INPUT if errors or (werror and warnings) else EXIT_OK


def _files_checked(program, paths: list[str], items: list[Diagnostic]) -> list[str]:
    """json-v2's `files`: every file read when the input lowered (what the PATHs give and what
    they include); when it did not, the policy files the PATHs give and every file a
    diagnostic names."""
    if program is not None:
        return list(program.sources)
    from ..lower.sources import expand_paths

    return [*expand_paths(paths, Diagnostics()), *(d.span.file for d in items if d.span is not None)]


def _check_stdin(paths: list[str], fmt: str | None, out: TextIO, err: TextIO, kernel: str | None, *,
                 werror: bool | None, use_config: bool, load_test: bool, base_dir: str | None,
                 stdin_filename: str | None, stdin=None) -> int:
    """`check -` (`--stdin-filename NAME`): the policy text on standard input, checked as if it
    were the file NAME (its includes relative to NAME, its diagnostics naming NAME; NAME need
    not exist). For linters that pipe an editor's buffer. Without NAME it is `<stdin>`, its
    includes relative to the working directory."""
    import sys

    if paths.count("-") != 1:
        err.write("policyc: error: `--stdin-filename` names what `-` (standard input) stands for: "
                  "give `-` once among the paths\n")
        return EXIT_USAGE
    name = stdin_filename or "<stdin>"
    data = (stdin or sys.stdin.buffer).read()
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogateescape")
    read_diags = Diagnostics()
    text = decode_source(name, data, read_diags)
    paths = [name if p == "-" else p for p in paths]
    base = base_dir if base_dir is not None else default_base_dir(
        [p if os.path.exists(p) else (os.path.dirname(p) or ".") for p in paths])
    config = _config(use_config, fmt, out, err, base)
    if config is None:
        return EXIT_BAD_INPUT
    if text is None:
        fmt = fmt or config.format or "text"
        render(read_diags.sorted(), fmt if fmt in FORMATS else "text", out, Sources(), base_dir=base, inputs=paths)
        return EXIT_BAD_INPUT
    return _run_check(paths, fmt, config, out, err, kernel, werror=werror, load_test=load_test, base=base,
                      texts={name: text})


def _load_test(front, err: TextIO) -> bool:
    """`--load-test`: each policy's programs loaded alone on this kernel (P051 per refusal)."""
    from .. import runtime

    from ..build_error import BuildError
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
    paths: List[str] = typer.Argument(..., metavar="PATH...",
                                      help="policy files or directories of them; - reads standard input"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f",
                                      help="text, json (a list), json-v2 (a versioned object: files, diagnostics, summary), "
                                           "sarif or github (default: policyc.toml's, else text)"),
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
    stdin_filename: Optional[str] = typer.Option(None, "--stdin-filename", metavar="NAME",
                                                 help="with `-`: the file standard input stands for "
                                                      "(its includes are relative to it; it need not exist)"),
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
            use_config=not no_config, load_test=load_test, base_dir=base_dir,
            stdin_filename=stdin_filename, on_bug=bug)
