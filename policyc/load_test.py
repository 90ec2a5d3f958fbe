"""Does this kernel's verifier accept a policy's programs? Load each one, attach none.

`policyc check --load-test` builds each policy's object and loads its programs one by one on
the running kernel (root and BPF LSM needed; nothing is attached or pinned), then reports a
refused program at every rule that needs its hook (P051), so a user on a kernel we never
tested learns before enforcement is needed which rules that kernel cannot enforce. libbpf
fails a whole object on the first refusal; loading program by program names all of them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import pipeline
from .codegen import EXEC_COMMIT_HOOKS, HOOKS, template_families
from .diagnostics import Diagnostics, Note
from .ir.model import Policy, Program
from .kernel_facts import RULE_TEMPLATES


@dataclass(frozen=True)
class Refusal:
    policy: str
    program: str
    hook: str
    reason: str


def _hooks_of(families: list[str]) -> set[str]:
    return {h for f in families for h in HOOKS[f]}


def report(policy: Policy, refusals: list[Refusal], diags: Diagnostics) -> None:
    """P051 at each rule (and the subjects, and `default deny`) that needs a refused hook."""
    used = set(template_families(policy))
    by_hook: dict[str, list[Refusal]] = {}
    for r in refusals:
        by_hook.setdefault(r.hook, []).append(r)

    def emit(span, what: str, hooks: set[str]) -> None:
        hit = [r for h in sorted(hooks) for r in by_hook.get(h, ())]
        if not hit:
            return
        names = ", ".join(f"`{r.program}` (lsm/{r.hook})" for r in hit)
        diags.error("P051", span, f"{what} needs {names}, which this kernel's verifier refuses",
                    hints=("the kernel cannot enforce it: remove the rule, or run a kernel policyc "
                           "supports (docs/design.md lists them)",),
                    notes=tuple(Note(None, f"{r.program}: {r.reason}") for r in hit))

    # hooks only the subject machinery attaches (a refusal there breaks the whole policy)
    subject_only = (_hooks_of(["subject"]) | set(EXEC_COMMIT_HOOKS) | {"ptrace_access_check"}) \
        - _hooks_of([f for f in used if f != "subject"])
    emit(policy.subjects[0].span if policy.subjects else policy.span, "the policy's subjects", subject_only)
    # the subject family's commit and ptrace hooks serve subjects, exceptions and transitions:
    # a rule needs them only when it is an `as` rule
    state_hooks = set(EXEC_COMMIT_HOOKS) | {"ptrace_access_check"}
    for rule in policy.rules:
        fams = [f for f in RULE_TEMPLATES[rule.family] if f in used]
        hooks = _hooks_of(fams)
        if rule.transition is None:
            hooks -= state_hooks - _hooks_of([f for f in fams if f != "subject"])
        emit(rule.span, f"this `{rule.family}` rule", hooks)
    if policy.default == "deny" and policy.default_span is not None:
        emit(policy.default_span, "`default deny` (it decides every family)",
             _hooks_of([f for f in used if f != "subject"]))


def load_test_program(front: pipeline.FrontEnd | Program, diags: Diagnostics | None = None,
                      out_dir: Path | None = None) -> list[Refusal]:
    """Build every policy of a checked program (policyc/pipeline.py) and load-test its
    object here; P051 per refused hook. Given a Program lowered into `diags` instead, the
    pipeline's checks run on it first: nothing unchecked is built."""
    from . import runtime

    from . import deploy

    if isinstance(front, Program):
        front = pipeline.check(front, diags)
    diags = front.diags
    refusals: list[Refusal] = []
    with tempfile.TemporaryDirectory(prefix="policyc-load-test-") as tmp:
        base = out_dir or Path(tmp)
        # every policy built before any is loaded: a P051 below is an error, and the
        # pipeline builds nothing from a program with errors
        built = [(policy, pipeline.build(front, policy, base / policy.name))
                 for policy in front.program.policies]
        for policy, res in built:
            manifest = deploy.read_manifest(res.manifest_path)
            fills = deploy.map_fills(manifest, missing_cgroups=[], directory=res.manifest_path.parent)
            mine = [Refusal(policy.name, v.program, v.hook, v.reason)
                    for v in runtime.load_test(str(res.object_path), fills) if not v.ok]
            report(policy, mine, diags)
            refusals += mine
    return refusals
