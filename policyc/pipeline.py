"""The compiler's stages, chained in one place. Every entry point calls this module: the
commands (policyc/cli), `policyc test --kernel` in its VM (policyc/kernel_test.py),
`check --load-test` (policyc/load_test.py), the kernel suite (tests/kernel) and the
benchmarks (bench/). No other module runs one stage after another.

    front_end(paths)      read and lower the files (policyc/lower), run the checks
                          (policyc/checks) and, given a kernel, hold every rule against
                          that kernel's facts (policyc/kernel_facts)
    select(front, names)  the policies to build, in program order
    build(front, policy)  one policy to NAME.bpf.o and NAME.manifest.json (policyc/codegen)

A stage runs only on what the stage before accepted: the checks on a program that lowered
without errors, the kernel's facts on one the checks passed. `build` refuses (`Refused`) a
front end that has errors or that did not run the checks: nothing reaches the kernel
without them. `explain` and `test` need the lowered program only (the reference evaluator
is total on any lowered program): they ask for `checks=False`, and never build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .abi import DEFAULT_RINGBUF_BYTES   # what policyc.codegen's is
from .build_error import BuildError       # policyc.codegen's, defined apart so as not to import it
from .diagnostics import Diagnostics
from .ir.model import Policy, Program

if TYPE_CHECKING:
    from .codegen import BuildResult

# The code generator (policyc/codegen, and jinja2 with it) is imported by `select` and `build`
# only: `check`, `explain` and `test` run the front end and never build.


@dataclass
class FrontEnd:
    """What the front end made of some files: the program (None when it did not lower) and
    every diagnostic, and how far it got."""

    program: Program | None
    diags: Diagnostics
    checked: bool = False             # the checks ran on the program
    kernel: str | None = None         # the kernel whose facts the rules were held against
    facts_error: str | None = None    # why that kernel's facts could not be read

    @property
    def ok(self) -> bool:
        """A checked program without errors: what `build` accepts."""
        return (self.program is not None and self.checked and self.facts_error is None
                and not self.diags.has_errors)


class Refused(BuildError):
    """`build` was given a program with errors, or one the checks never saw."""


def __getattr__(name: str):
    """The code generator's names this module once imported at its top, imported when first
    asked for: the front end (`check`, `explain`, `test`) does not import the code generator."""
    if name in ("BuildResult", "ENFORCED_FAMILIES", "unenforced_rules"):
        from . import codegen

        return getattr(codegen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def front_end(paths: list[str], diags: Diagnostics | None = None, *, checks: bool = True,
              kernel: str | None = None) -> FrontEnd:
    """Files to a lowered program, then (with `checks`) every check, then (with `kernel`,
    when the checks found no error) that kernel's facts. Total: any input gives a FrontEnd,
    its problems in `diags`, never an exception."""
    from .lower import load_program

    diags = Diagnostics() if diags is None else diags
    try:
        program = load_program(list(paths), diags)
    except RecursionError:
        diags.error("P001", None, "input nests too deeply")
        program = None
    if program is None or not checks:
        return FrontEnd(program, diags)
    return check(program, diags, kernel=kernel)


def check(program: Program, diags: Diagnostics, *, kernel: str | None = None) -> FrontEnd:
    """The checks (and a kernel's facts) on a program already lowered into `diags`: the
    second half of `front_end`, for callers that were handed a lowered program."""
    from .checks import run_checks

    run_checks(program, diags)
    front = FrontEnd(program, diags, checked=True, kernel=kernel)
    if kernel is not None and not diags.has_errors:
        from .kernel_facts import FactsError, check_program

        try:
            check_program(program, kernel, diags)
        except FactsError as e:
            front.facts_error = str(e)
    return front


def select(front: FrontEnd, names: list[str] | None = None) -> list[Policy]:
    """The policies named (all without names), in program order whatever the order of
    `names`: the order they are built in is the order `policyc load` loads them, and the
    kernel's first loaded policy must be the evaluator's first (docs/semantics.md). P022 for
    a name no policy has; P040 for a rule of a family the kernel backend does not enforce."""
    from .codegen import ENFORCED_FAMILIES, unenforced_rules

    program, diags = front.program, front.diags
    if program is None:
        return []
    wanted = set(names or ())
    for n in dict.fromkeys(names or ()):
        if program.policy(n) is None:
            diags.error("P022", None, f"no policy named `{n}` in the given files")
    chosen = [p for p in program.policies if not names or p.name in wanted]
    for p in chosen:
        for r in unenforced_rules(p):
            diags.error("P040", r.span, f"`{r.family}` rules are not enforced by the kernel backend yet",
                        hints=(f"the kernel enforces {', '.join(ENFORCED_FAMILIES)} rules today; "
                               "`policyc check`/`explain`/`test` still evaluate this rule",))
    return chosen


def build(front: FrontEnd, policy: Policy, out_dir: Path, *, emit_c: bool = False,
          ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES, build_record: dict | None = None) -> BuildResult:
    """NAME.bpf.o and NAME.manifest.json for one policy of a checked, error-free program.
    Raises Refused (a BuildError) otherwise, and BuildError when the output cannot be
    written or the code generator says no. `build_record` goes into the manifest as its
    `build` field (`policyc build`'s note for its unchanged-input short cut)."""
    from .codegen import build_policy, unenforced_rules

    program = front.program
    if program is None or not front.checked:
        raise Refused("the program was not checked; only a checked program is built",
                      hint="build through policyc.pipeline.front_end (the checks run there)")
    if front.diags.has_errors or front.facts_error is not None:
        raise Refused("the program has errors; nothing is built from it",
                      hint="`policyc check` lists them")
    if not any(p is policy for p in program.policies):
        raise Refused(f"policy `{policy.name}` is not one of the program's")
    if unenforced_rules(policy):
        r = unenforced_rules(policy)[0]
        raise Refused(f"{r.span}: `{r.family}` rules are not enforced by the kernel backend yet")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BuildError(f"cannot write to `{out_dir}`: it exists and is not a directory",
                         hint="-o names the directory NAME.bpf.o and NAME.manifest.json go to") from None
    except OSError as e:
        raise BuildError(f"cannot create the output directory `{out_dir}`: {e.strerror or e}") from None
    try:
        return build_policy(program, policy, out_dir, emit_c=emit_c, ringbuf_bytes=ringbuf_bytes,
                            build_record=build_record)
    except OSError as e:   # the disk, not the policy: said as such, not as a policyc bug
        where = f" (`{e.filename}`)" if e.filename else ""
        raise BuildError(f"cannot build `{policy.name}`: {e.strerror or e}{where}") from None
