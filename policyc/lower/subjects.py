"""Subjects and exceptions: `subject exe|cgroup|all ... except exe|cgroup ...` to the model.
Called by the policy pass, with the policy's scope (its lets are all resolved first, so a
subject may use a let written below it)."""

from __future__ import annotations

from ..ir import model as M
from ..ir import syntax as S
from . import patterns
from .context import Context
from .lets import Scope


def subject(ctx: Context, spec: S.SubjectSpec, scope: Scope) -> M.Subject | None:
    """One `exe`, `cgroup` or `all` (of a `subject` line or its `except` list)."""
    if spec.kind == "all":
        return M.Subject("all", None, None, spec.span)
    if spec.kind == "exe":
        g = patterns.glob(ctx, spec.value, scope, "executable")
        return M.Subject("exe", g, None, spec.span) if g else None
    cg = patterns.cgroup(ctx, spec.value, scope)
    return M.Subject("cgroup", None, cg, spec.span) if cg is not None else None


def subjects(ctx: Context, item: S.Subject, scope: Scope) -> tuple[list[M.Subject], list[M.Subject]]:
    """A `subject` line: (its subjects, its exceptions), each without the ones in error."""
    subs = [s for s in (subject(ctx, spec, scope) for spec in item.specs) if s is not None]
    excs = [s for s in (subject(ctx, spec, scope) for spec in item.exceptions) if s is not None]
    return subs, excs
