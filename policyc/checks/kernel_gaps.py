"""P054 mount-api-without-hook: a gap the kernel cannot close, reported at the rule.

A warning: the rule is enforced as written; it says what the rule cannot reach on the
kernels policyc supports (templates/mount.bpf.c.j2 says how the rest is decided).

P054, on a `deny mount PATH...` (or `audit mount PATH...`) rule under `default allow`:
Anti-pattern:   default allow   ...   deny mount "/mnt/**"
Best practice:  mount_setattr(2), fspick(2)/fsconfig(2), fsmount(2) and open_tree(2) have no
                LSM hook; policyc decides them at their CAP_SYS_ADMIN check as a mount with no
                path, which no path-scoped rule matches. Add `deny mount` (all paths) or
                `deny capability sys_admin`. Not reported when the policy already has one of
                them (of at least the rule's severity) or is `default deny`.

A rule spliced from a ruleset that several policies use is reported once, with a note at the
`use` that brought it in. The mount rule `protect policyc` adds is not reported: what those
calls can do to bpffs and policyc's directories (a read-only flag, mount options) removes no
pin and hides no file, and docs/language.md ("Self-protection") says so.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, Note
from ..ir.model import Policy, Program, Rule
from ._rules import RANK

# The kernels these gaps were verified on: policyc/kernels/*.json (a unit test keeps them in step).
KERNELS = "Debian 6.1, 6.12 and 7.2 (every kernel policyc supports)"


def _rank_for(policy: Policy, rules) -> int:
    """The rank of the decision the most severe of `rules` gives, else the default's."""
    ranks = [RANK[r.decision] for r in rules]
    return max(ranks) if ranks else RANK[policy.default]


def _mount_api_covered(policy: Policy, rule: Rule) -> bool:
    """Does the policy decide a mount with no path (or CAP_SYS_ADMIN) at least as severely?"""
    need = RANK[rule.decision]
    pathless = [r for r in policy.rules if r.family == "mount" and not r.paths]
    sys_admin = [r for r in policy.rules if r.family == "capability" and "sys_admin" in r.ops]
    return _rank_for(policy, pathless) >= need or _rank_for(policy, sys_admin) >= need


def _use_notes(policy: Policy, r: Rule) -> tuple[Note, ...]:
    if not r.used_from:
        return ()
    return (Note(r.used_from[0], f"brought into policy `{policy.name}` by this `use`"),)


def _mount_api(policy: Policy, r: Rule, seen: set, diags: Diagnostics) -> None:
    if (r.family != "mount" or r.decision not in ("deny", "audit") or not r.paths or r.protect
            or policy.default != "allow" or _mount_api_covered(policy, r)):
        return
    if ("P054", r.span) in seen:
        return
    seen.add(("P054", r.span))
    d = r.decision
    covers = ("a `deny mount` without paths, `default deny`, or `deny capability sys_admin`" if d == "deny" else
              "a `deny mount` or `audit mount` without paths, `default deny`, or a `deny` or `audit` rule "
              "for `capability sys_admin`")
    notes = _use_notes(policy, r)
    if policy.default_span is not None:
        notes += (Note(policy.default_span, f"policy `{policy.name}` allows by default"),)
    diags.warning("P054", r.span,
                  f"mount_setattr(2), fspick(2)/fsconfig(2), fsmount(2) and open_tree(2) have no LSM hook on "
                  f"{KERNELS}; policyc decides them at their CAP_SYS_ADMIN check as a mount with no path, "
                  f"which only {covers} covers: this rule does not",
                  hints=(f"add `{d} mount` (all paths) or `{d} capability sys_admin` to close it",),
                  notes=notes)


def run(program: Program, diags: Diagnostics) -> None:
    seen: set = set()
    for policy in program.policies:
        for r in policy.rules:
            _mount_api(policy, r, seen, diags)
