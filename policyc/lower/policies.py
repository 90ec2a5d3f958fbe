"""Policy blocks: settings (`mode`, `default`, `acknowledge`, `protect`), subjects and
exceptions, and the rules, written and spliced in by `use`, numbered in order (ids from 1; a
rule in error takes none), then those `protect policyc` adds (policyc/lower/protect.py).
The block's lets are resolved first, all of them: the order of statements in a policy does
not matter, except that rules keep theirs."""

from __future__ import annotations

from ..diagnostics import Note, did_you_mean
from ..ir import model as M
from ..ir import syntax as S
from . import protect as PROTECT
from . import rules as R
from . import subjects as SUB
from .context import Context
from .rulesets import Rulesets


def policy(ctx: Context, rulesets: Rulesets, pol: S.Policy, key: str) -> M.Policy:
    diags = ctx.diags
    scope = ctx.vars.block_scope(key, pol.items)
    subjects: list[M.Subject] = []
    exceptions: list[M.Subject] = []
    acknowledge_span = protect_span = None
    mode = default = None
    mode_span = default_span = None
    default_limit = None
    acknowledged: set[str] = set()
    raw_rules = []   # (rule, the `use`s that brought it, its scope), in order
    for item in pol.items:
        if isinstance(item, S.Subject):
            subs, excs = SUB.subjects(ctx, item, scope)
            subjects += subs
            exceptions += excs
        elif isinstance(item, S.Setting):
            if item.key == "acknowledge":
                if item.value.value != "host-wide-deny":
                    diags.error("P017", item.value.span, f"unknown acknowledgement `{item.value.value}`",
                                hints=did_you_mean(item.value.value, ["host-wide-deny"]) or
                                ("the only one is `host-wide-deny`",))
                acknowledged.add(item.value.value)
                acknowledge_span = acknowledge_span or item.span
                continue
            if item.key == "protect":
                if item.value.value not in PROTECT.TARGETS:
                    diags.error("P017", item.value.span, f"`protect` names what to protect: unknown `{item.value.value}`",
                                hints=did_you_mean(item.value.value, PROTECT.TARGETS) or
                                ("the only one is `policyc`: `protect policyc`",))
                elif protect_span is not None:
                    diags.error("P015", item.span, "`protect policyc` is written twice",
                                notes=(Note(protect_span, "first written here"),))
                else:
                    protect_span = item.span
                continue
            allowed = ("enforce", "audit") if item.key == "mode" else ("allow", "deny")
            if item.value.value not in allowed:
                diags.error("P017", item.value.span,
                            f"`{item.key}` is `{allowed[0]}` or `{allowed[1]}`, not `{item.value.value}`",
                            hints=did_you_mean(item.value.value, allowed))
                continue
            prev_span = mode_span if item.key == "mode" else default_span
            if prev_span is not None:
                diags.error("P015", item.span, f"`{item.key}` is set twice",
                            notes=(Note(prev_span, "first set here"),))
                continue
            if item.key == "mode":
                mode, mode_span = item.value.value, item.span
            else:
                default, default_span = item.value.value, item.span
                if item.limit is not None:
                    default_limit = R.limit(ctx, item.limit)
        elif isinstance(item, S.Rule):
            raw_rules.append((item, (), scope))
        elif isinstance(item, S.Use):
            raw_rules.extend(rulesets.splice(item))
    if not subjects and not any(isinstance(i, S.Subject) for i in pol.items):
        diags.error("P016", pol.name.span, f"policy `{pol.name.value}` has no `subject`",
                    hints=('add `subject exe "/path/to/program"`, `subject cgroup "/path"` or `subject all`',))
    rules = []
    for rule, used_from, rule_scope in raw_rules if not rulesets.exhausted else ():
        lowered = R.rule(ctx, rule, rule_scope, len(rules) + 1, used_from)
        if lowered is not None and lowered.transition is not None and lowered.transition.policy == pol.name.value:
            diags.error("P029", lowered.transition.span,
                        f"`as policy {pol.name.value}` names the rule's own policy: the program runs under it already",
                        hints=("drop `as policy ...`, or name the policy the program should run under",))
            continue
        if lowered is not None:
            rules.append(lowered)
    if protect_span is not None and not rulesets.exhausted:
        for rule, text in PROTECT.syntax_rules(protect_span):
            lowered = R.rule(ctx, rule, scope, len(rules) + 1, (), text=text, protect="policyc")
            if lowered is not None:
                rules.append(lowered)
    return M.Policy(
        name=pol.name.value,
        subjects=tuple(subjects),
        mode=mode or "enforce",
        default=default or "allow",
        rules=tuple(rules),
        span=pol.name.span,
        mode_span=mode_span,
        default_span=default_span,
        acknowledged=frozenset(acknowledged),
        exceptions=tuple(exceptions),
        acknowledge_span=acknowledge_span,
        default_limit=default_limit,
        protect_span=protect_span,
    )
