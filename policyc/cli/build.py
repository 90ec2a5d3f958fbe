"""`policyc build PATH... -o DIR [--emit-c]`: NAME.bpf.o and NAME.manifest.json per policy.

Unprivileged and kernel-free; identical input gives byte-identical output. Refuses (exit 2)
programs with check errors, and rules of families the kernel backend does not enforce yet,
naming each rule's file:line:col (never a silent success).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, TextIO

import typer

from ..codegen import ENFORCED_FAMILIES, BuildError, build_policy, unenforced_rules
from ..diagnostics import Diagnostics
from ..ir.model import Program
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded, load_and_check, print_diagnostics


def select_policies(program: Program, names: list[str] | None, diags: Diagnostics):
    if not names:
        return list(program.policies)
    chosen = []
    for n in names:
        p = program.policy(n)
        if p is None:
            diags.error("P022", None, f"no policy named `{n}` in the given files")
        else:
            chosen.append(p)
    return chosen


def compile_program(paths: list[str], out_dir: Path, names: list[str] | None, emit_c: bool,
                    out: TextIO, err: TextIO, quiet: bool = False, kernel: str | None = None) -> tuple[int, list]:
    """The front end, the checks and the code generator; (exit code, build results)."""
    diags = Diagnostics()
    program, ok = load_and_check(paths, diags, err, kernel)
    if not ok:
        return EXIT_BAD_INPUT, []
    policies = select_policies(program, names, diags) if program is not None else []
    for p in policies:
        for r in unenforced_rules(p):
            diags.error("P040", r.span, f"`{r.family}` rules are not enforced by the kernel backend yet",
                        hints=(f"the kernel enforces {', '.join(ENFORCED_FAMILIES)} rules today; "
                               "`policyc check`/`explain`/`test` still evaluate this rule",))
    print_diagnostics(diags, "text", err, err, program)
    if diags.has_errors:
        return EXIT_BAD_INPUT, []
    results = []
    for p in policies:
        try:
            res = build_policy(program, p, out_dir, emit_c=emit_c)
        except BuildError as e:
            err.write(f"policyc: error: {e.message}\n")
            if e.detail:
                err.write(e.detail + "\n")
            if e.hint:
                err.write(f"  = help: {e.hint}\n")
            return EXIT_BAD_INPUT, results
        results.append(res)
        if not quiet:
            out.write(f"built {res.object_path} and {res.manifest_path.name} ({len(p.rules)} rules, "
                      f"hooks: {', '.join(res.hooks)})\n")
    return EXIT_OK, results


def run_build(paths: list[str], out_dir: str, names: list[str] | None, emit_c: bool, out: TextIO, err: TextIO,
              kernel: str | None = None) -> int:
    code, _ = compile_program(paths, Path(out_dir), names, emit_c, out, err, kernel=kernel)
    return code


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="policy files or directories of them"),
    out_dir: str = typer.Option(..., "-o", "--output", metavar="DIR", help="where NAME.bpf.o and NAME.manifest.json go"),
    policy: Optional[List[str]] = typer.Option(None, "--policy", "-p", metavar="NAME", help="build only these policies"),
    emit_c: bool = typer.Option(False, "--emit-c", help="also keep the generated C as NAME.bpf.c"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="6.1|6.12|PATH",
                                         help="refuse rules this kernel cannot enforce (its hooks and helpers)"),
) -> None:
    """Compile policies to BPF LSM objects and manifests (no kernel, no privileges needed)."""
    guarded(run_build, paths, out_dir, policy, emit_c, out=sys.stdout, err=sys.stderr, kernel=kernel)
