"""Test blocks: `test POLICY { exe/parent/cgroup ... expect DECISION ... }` to test cases,
each expectation one concrete event (one operation, one path, one address, one port). The
context defaults come from the policy, lowered by then."""

from __future__ import annotations

import ipaddress

from ..diagnostics import did_you_mean
from ..ir import model as M
from ..ir import syntax as S
from ..ir.vocab import FAMILIES
from . import rules
from .context import Context
from .lets import Scope


def lower_test(ctx: Context, block: S.TestBlock, key: str, policies: dict[str, M.Policy]) -> M.TestCase | None:
    diags = ctx.diags
    name = block.policy.value
    pol = policies.get(name)
    if pol is None:
        if name not in ctx.names.policies:
            diags.error("P022", block.policy.span, f"test of unknown policy `{name}`",
                        hints=did_you_mean(name, ctx.names.policies))
        return None
    scope = ctx.vars.file_scope(key)
    exe = None
    parents: list[str] = []
    cgroup = None
    for item in block.items:
        if isinstance(item, S.TestContext):
            text = ctx.vars.interpolate(item.value, scope)
            if text is None:
                continue
            if item.key == "exe":
                exe = text[0]
            elif item.key == "parent":
                parents.append(text[0])
            else:
                cgroup = text[0]
    if exe is None:
        lit = [s.exe.text for s in pol.subjects if s.kind == "exe" and s.exe.is_literal]
        exe = lit[0] if lit else "/usr/bin/true"
        if not lit and not any(s.kind in ("all", "cgroup") for s in pol.subjects):
            diags.error("P023", block.policy.span, f"test of `{name}` needs `exe \"/path\"`",
                        hints=("the policy's subject is a pattern; name the program the test runs as",))
            return None
    if cgroup is None:
        cgs = [s.cgroup for s in pol.subjects if s.kind == "cgroup"]
        cgroup = cgs[0] if cgs and not any(s.kind in ("exe", "all") for s in pol.subjects) else None
    expectations = []
    for item in block.items:
        if isinstance(item, S.Expect):
            ev = event(ctx, item, scope, exe, tuple(parents), cgroup)
            if ev is not None:
                expectations.append(M.Expectation(item.decision.value, ev, item.span,
                                                  ctx.sources.source_text(item.span)))
    return M.TestCase(name, tuple(expectations), block.span)


def event(ctx: Context, ex: S.Expect, scope: Scope, exe, parents, cgroup) -> M.Event | None:
    diags = ctx.diags
    body = ex.body
    fname = body.family.value
    fam = FAMILIES.get(fname)
    if fam is None:
        diags.error("P010", body.family.span, f"unknown rule family `{fname}`", hints=did_you_mean(fname, FAMILIES))
        return None

    def one(items, what, span):
        if len(items) != 1:
            diags.error("P024", span, f"an expectation names exactly one {what}",
                        hints=("write one `expect` line per case",))
            return None
        return items[0]

    kw: dict = {"exe": exe, "ancestors": parents, "cgroup": cgroup}
    if body.owner is not None:
        if not rules.owner_allowed(ctx, body):
            return None
        kw["owner"] = True   # the process owns the file; without `owner` it does not
    op = fname
    if fam.needs_ops:
        o = one(body.ops, fam.ops_kind, body.family.span)
        if o is None:
            return None
        name = fam.op_name(o.value)
        if name not in fam.ops:
            diags.error(fam.unknown_op_code, o.span, f"unknown {fam.ops_kind} `{o.value}`",
                        hints=did_you_mean(name, fam.ops))
            return None
        if fam.op_field is None:
            op = f"{fname}.{name}"
        else:
            kw[fam.op_field] = name
    elif body.ops:
        diags.error("P011", body.ops[0].span, f"`{fname}` takes no operations")
        return None
    if body.paths:
        s = one(body.paths, "path", body.paths[0].span)
        if s is None:
            return None
        text = ctx.vars.interpolate(s, scope)
        if text is None:
            return None
        kw["path"] = text[0]
    elif fam.needs_path:
        diags.error("P024", ex.span, f"a `{fname}` expectation names a path")
        return None
    if body.net is not None:
        n = body.net
        kw["proto"] = n.proto.value if n.proto else "tcp"
        if kw["proto"] == "any":
            kw["proto"] = "tcp"
        if n.addrs:
            a = one(n.addrs, "address", n.addrs[0].span)
            if a is None:
                return None
            try:
                kw["addr"] = str(ipaddress.ip_address(a.value))
            except ValueError:
                diags.error("P019", a.span, f"an expectation needs one address, not `{a.value}`")
                return None
        if n.ports:
            p = one(n.ports, "port", n.ports[0].span)
            if p is None:
                return None
            if "-" in p.value or int(p.value) > 65535:
                diags.error("P020", p.span, f"an expectation needs one port, not `{p.value}`")
                return None
            kw["port"] = int(p.value)
    if body.target is not None:
        t = body.target
        if not fam.target:
            diags.error("P019", t.span, f"`{fname}` rules take no `{t.direction}` target",
                        hints=("targets are for `signal` and `ptrace`",))
            return None
        if t.direction == "from" and t.who == "all":
            # an event has one sender: `from all` is a rule's word, not a process
            diags.error("P024", t.span, "an expectation names its sender: `from exe \"...\"` or "
                        "`from cgroup \"...\"`, not `from all`",
                        hints=('`expect deny signal kill from exe "/usr/bin/bash"`: the test\'s `exe` '
                               "is signalled by bash",))
            return None
        text = ctx.vars.interpolate(t.value, scope)
        if text is None:
            return None
        if t.direction == "from":
            # a received signal or ptrace: the test's process is the one signalled or traced
            kw["received"] = True
            kw["source_exe" if t.who == "exe" else "source_cgroup"] = text[0]
        else:
            kw["target_exe" if t.kind == "exe" else "target_cgroup"] = text[0]
    return M.Event(op=op, **kw)
