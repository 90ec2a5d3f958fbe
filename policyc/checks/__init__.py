"""Checks on a lowered Program: one check per file, each `run(program, diags) -> None`.

They run only on a Program that lowered without errors (lowering already reported syntax,
names, includes, variables, unused `let`s: P001-P024, W104, W105). Checks only add
diagnostics; none changes the Program, and none depends on another's output.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..ir.model import Program
from ..lower import paused_gc
from . import (
    contradictory_rules,
    denies_policyc,
    duplicate_rules,
    host_wide_deny,
    kernel_gaps,
    kernel_limits,
    limit_without_events,
    overridden_rules,
    redundant_allow,
    shadowed_rules,
    subject_everything,
    transitions,
)

PIPELINE = [
    # P030 error first: a host-wide policy that would stop the machine matters most.
    # Also W109 (an acknowledgement that acknowledges nothing).
    host_wide_deny,
    # W108: `subject exe "/**"` is `subject all` in disguise.
    subject_everything,
    # W112: a policy that denies policyc's own loader, or systemd its units' cgroups.
    denies_policyc,
    # W101: exact copies; the coverage checks below skip them so one mistake gets one message.
    duplicate_rules,
    # W106: allow vs deny on the very same objects; W103 skips these pairs.
    contradictory_rules,
    # W103: rules more severe rules always beat (checked before W102: "never takes effect"
    # is the more useful message when both apply; they never report the same span twice).
    overridden_rules,
    # W102: rules a broader rule of the same decision already covers.
    shadowed_rules,
    # W107: `allow` under `default allow`.
    redundant_allow,
    # W110: `limit` on an `allow` rule (allowed operations send no events).
    limit_without_events,
    # W113, W114: `as policy` naming no policy checked; an `as` rule an earlier rule overtakes.
    transitions,
    # P054 (a warning): what a path-scoped mount rule cannot reach on the supported kernels.
    kernel_gaps,
    # P041: more rules of a kind than the kernel object's tables hold (what build refuses).
    kernel_limits,
]


def run_checks(program: Program, diags: Diagnostics) -> None:
    with paused_gc():
        for check in PIPELINE:
            check.run(program, diags)


__all__ = ["PIPELINE", "run_checks"]
