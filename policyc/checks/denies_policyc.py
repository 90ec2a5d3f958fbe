"""W112 denies-policyc: a policy that governs policyc's own units or systemd, and denies them
what policyc needs to run.

policyc's loader (`policyc.service`) and audit reader run in /policyc.slice, started by systemd
(docs/language.md, "Self-protection"). A policy whose subjects reach them, with `subject all`,
the root cgroup, or an exe pattern that matches Python or systemd, and whose rules deny them
(`protect policyc`'s `deny bpf` and its cgroup rules, or `default deny`), stops policyc from
loading and reloading policies at the next boot, and systemd from starting its units. The
events are handed to the reference evaluator, so whatever rule or default denies them is found.

Anti-pattern:   policy lockdown { subject all  protect policyc  ... }
Best practice:  subject all except exe "/usr/lib/systemd/systemd", cgroup "/policyc.slice"
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..evaluate import governs
from ..ir.model import Event, Program
from ..paths import CGROUP_ROOT, SLICE_CGROUP
from .host_wide_deny import decide_owned_or_not

SYSTEMD = "/usr/lib/systemd/systemd"
# The loader as the kernel names it: a venv's python is a link to the system's interpreter,
# started by systemd in the slice's unit.
LOADER = Event("/usr/bin/python3.11", "bpf", cgroup=f"{SLICE_CGROUP}/policyc.service", ancestors=(SYSTEMD,))
# systemd moving the audit reader into its unit's cgroup.
SYSTEMD_WRITE = Event(SYSTEMD, "file.write", path=f"{CGROUP_ROOT}{SLICE_CGROUP}/policyc-audit.service/cgroup.procs",
                      cgroup="/init.scope")
WHAT = ((LOADER, "policyc's loader its bpf(2) (loads and reloads of every policy fail)",
         f'cgroup "{SLICE_CGROUP}"'),
        (SYSTEMD_WRITE, "systemd its cgroup writes for policyc's units (they cannot start)",
         f'exe "{SYSTEMD}"'))


def run(program: Program, diags: Diagnostics) -> None:
    for policy in program.policies:
        if policy.mode != "enforce":
            continue
        denied = [(decide_owned_or_not(policy, event), text, exception) for event, text, exception in WHAT
                  if governs(policy, event)]
        denied = [d for d in denied if d[0].action == "deny"]
        if not denied:
            continue
        first = denied[0][0]
        span = first.rule.span if first.rule is not None else policy.default_span or policy.span
        diags.warning("W112", span,
                      f"policy `{policy.name}` governs and denies " + " and ".join(t for _, t, _ in denied),
                      hints=(f"leave them out: `except {', '.join(e for _, _, e in denied)}`",))
