"""Rules: `DECISION FAMILY [OPS] [OBJECTS] [to TARGET | from SENDER] [limit N/UNIT]` to a numbered model
rule: the family and its operations checked and expanded, paths read as globs, network
specs as IPv6 networks and port ranges, the target, the limit. Called by the policy pass
for each rule, in order, with the scope the rule was written in (a ruleset's own for a
rule a `use` spliced in)."""

from __future__ import annotations

import ipaddress

from ..diagnostics import did_you_mean
from ..ir import model as M
from ..ir import syntax as S
from ..ir.vocab import FAMILIES, PROTOCOLS
from ..span import Span
from . import patterns
from .context import Context
from .lets import Scope

# `limit N/UNIT`: the window of each unit in seconds, and the largest N (a rule that may log a
# million events a second is not limited in any way that matters)
LIMIT_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
MAX_LIMIT = 1_000_000


def rule(ctx: Context, r: S.Rule, scope: Scope, rule_id: int, used_from: tuple[Span, ...],
         text: str | None = None, protect: str | None = None) -> M.Rule | None:
    """TEXT and PROTECT: a rule `protect` made (policyc/lower/protect.py), which has no source
    text of its own (its span is the `protect` statement)."""
    lowered = body(ctx, r.body, scope)
    if lowered is None:
        return None
    family, ops, all_ops, paths, net, target = lowered
    if not owner_allowed(ctx, r.body):
        return None
    lim = None
    if r.limit is not None:
        lim = limit(ctx, r.limit)
        if lim is None:
            return None
    moved = None
    if r.transition is not None:
        moved = transition(ctx, r, family, paths)
        if moved is None:
            return None
    return M.Rule(
        id=rule_id,
        decision=r.decision.value,
        family=family,
        ops=ops,
        paths=paths,
        net=net,
        target=target,
        span=r.span,
        text=text if text is not None else ctx.sources.source_text(r.span),
        all_ops=all_ops,
        used_from=used_from,
        limit=lim,
        protect=protect,
        transition=moved,
        owner=r.body.owner is not None,
    )


def transition(ctx: Context, r: S.Rule, family: str, paths) -> M.Transition | None:
    """`as policy NAME` / `as unconfined`: only on an exec rule that allows (or audits) named
    programs; the policy it names is checked against the program by W113 (it may be loaded
    from another build)."""
    t = r.transition
    what = "`as policy`" if t.kind == "policy" else "`as unconfined`"
    if family != "exec":
        ctx.diags.error("P029", t.span, f"{what} belongs to an `exec` rule, not a `{family}` rule",
                        hints=('write it as `allow exec "/usr/bin/x" as policy NAME`',))
        return None
    if r.decision.value == "deny":
        ctx.diags.error("P029", t.span, f"a `deny exec` rule cannot say {what}: the program never runs",
                        hints=("use `allow` (or `audit`) for the exec that changes policy",))
        return None
    if not paths:
        ctx.diags.error("P029", t.span, f"{what} needs the programs it applies to",
                        hints=('name them: `allow exec "/usr/bin/x" ' + ("as policy NAME`" if t.kind == "policy"
                                                                          else "as unconfined`"),))
        return None
    return M.Transition(t.kind, t.policy.value if t.policy is not None else None, t.span)


def owner_allowed(ctx: Context, b: S.RuleBody) -> bool:
    """`owner` speaks of a file's owner: `file` rules (and expectations) only. P026 elsewhere:
    an exec, a mount, a signal have no file whose owner the kernel compares."""
    if b.owner is None or b.family.value == "file":
        return True
    ctx.diags.error("P026", b.owner, f"`owner` is for `file` rules, not `{b.family.value}`",
                    hints=("`owner` narrows a file rule to the files the process owns: "
                           "`allow file read,write owner \"/home/*/**\"`",))
    return False


def limit(ctx: Context, lim: S.Limit) -> M.RateLimit | None:
    count_text, unit = lim.text.split("/", 1)
    window = LIMIT_UNITS.get(unit.lower())
    count = int(count_text)
    if window is None or not 1 <= count <= MAX_LIMIT:
        problem = (f"unknown unit `{unit}`" if window is None
                   else f"the count must be 1 to {MAX_LIMIT:,}")
        ctx.diags.error("P025", lim.span, f"bad limit `{lim.text}`: {problem}",
                        hints=("write it as `limit 100/s`, `limit 10/min` or `limit 5/h`",))
        return None
    return M.RateLimit(count, window, lim.text, lim.span)


def body(ctx: Context, b: S.RuleBody, scope: Scope):
    """(family, ops, all_ops, paths, net, target), or None after an error."""
    diags = ctx.diags
    fname = b.family.value
    fam = FAMILIES.get(fname)
    if fam is None:
        diags.error("P010", b.family.span, f"unknown rule family `{fname}`",
                    hints=did_you_mean(fname, FAMILIES) or (f"families: {', '.join(FAMILIES)}",))
        return None
    ok = True
    ops: list[str] = []
    for op in b.ops:
        name = fam.op_name(op.value)
        if not fam.ops:
            diags.error("P011", op.span, f"`{fname}` takes no operations, found `{op.value}`",
                        hints=(f'write `{fname}` alone' + (' or with a path' if fam.objects == "paths?" else ''),)
                        if fname != "exec" else ('write the program as a string: `exec "/usr/bin/x"`',))
            ok = False
        elif name not in fam.ops:
            diags.error(fam.unknown_op_code, op.span, f"unknown {fam.ops_kind} `{op.value}`",
                        hints=did_you_mean(name, fam.ops))
            ok = False
        elif name in ops:
            diags.warning("W105", op.span, f"`{op.value}` is listed twice")
        else:
            ops.append(name)
    all_ops = not b.ops and bool(fam.ops)
    if all_ops:
        ops = list(fam.ops)
    paths: list[M.Glob] = []
    net = None
    if b.paths:
        if fam.objects not in ("paths", "paths?"):
            diags.error("P019", b.paths[0].span, f"`{fname}` rules take no paths", hints=_object_hint(fname))
            ok = False
        else:
            for s in b.paths:
                # `@name`: an abstract AF_UNIX socket (file rules only; docs/language.md)
                g = patterns.glob(ctx, s, scope, "path", abstract_socket=fname == "file")
                if g is None:
                    ok = False
                else:
                    paths.append(g)
    if b.net is not None:
        if fam.objects != "net":
            diags.error("P019", b.net.span, f"`{fname}` rules take no network address or port",
                        hints=_object_hint(fname))
            ok = False
        elif "create" in ops and not all_ops and (b.net.addrs or b.net.ports):
            # socket(2) has no address or port yet: such a rule could never match a create
            # (written out: a family without ops means connect and bind by their addresses)
            what = b.net.addrs[0] if b.net.addrs else b.net.ports[0]
            diags.error("P019", what.span, "`net create` takes no address or port: a socket has none "
                        "when it is created",
                        hints=("`create` takes a protocol only (`deny net create raw`); put addresses "
                               "and ports in a `connect` or `bind` rule",))
            ok = False
        else:
            net = _net(ctx, b.net)
            ok = ok and net is not None
    if fam.objects == "net" and b.net is None:
        net = M.NetSpec("any", (), (), b.family.span)
    target = None
    if b.target is not None:
        if not fam.target:
            diags.error("P019", b.target.span, f"`{fname}` rules take no `{b.target.direction}` target",
                        hints=("targets are for `signal` and `ptrace`",))
            ok = False
        else:
            target = _target(ctx, b.target, scope)
            ok = ok and target is not None
    if not ok:
        return None
    return fname, tuple(ops), all_ops, tuple(paths), net, target


def _target(ctx: Context, t: S.Target, scope: Scope) -> M.Target | None:
    """`to exe|cgroup ...` (the other process is the one signalled or traced) or `from exe|
    cgroup ... | all` (a receive-side rule: the other process is the sender or tracer)."""
    direction = t.direction
    if t.who == "all":
        if t.value.raw != "all":
            ctx.diags.error("P019", t.value.span, f"`from` takes `exe \"...\"`, `cgroup \"...\"` or `all`, "
                            f"found `{t.value.raw}`",
                            hints=('`deny signal kill from all`: any sender; `from exe "/usr/bin/x"`: '
                                   "that program's",))
            return None
        return M.Target("all", None, None, t.span, direction)
    if t.who == "exe":
        g = patterns.glob(ctx, t.value, scope, "executable")
        return M.Target("exe", g, None, t.span, direction) if g is not None else None
    cg = patterns.cgroup(ctx, t.value, scope, absolute=False)
    return M.Target("cgroup", None, cg, t.span, direction) if cg is not None else None


def _object_hint(fname: str) -> tuple[str, ...]:
    fam = FAMILIES[fname]
    if fam.objects == "none" and fam.ops:
        return (f"list {fam.ops_kind}s: `{fname} {fam.ops[0]}`",)
    return ()


def _net(ctx: Context, spec: S.NetSpec) -> M.NetSpec | None:
    ok = True
    proto = spec.proto.value if spec.proto else "any"
    if proto not in PROTOCOLS:
        ctx.diags.error("P019", spec.proto.span, f"unknown protocol `{proto}`", hints=did_you_mean(proto, PROTOCOLS))
        ok = False
    nets = []
    for a in spec.addrs:
        try:
            nets.append(M.to_v6_network(ipaddress.ip_network(a.value, strict=True)))
        except ValueError as e:
            hint = ()
            try:
                fixed = ipaddress.ip_network(a.value, strict=False)
                hint = (f"the network is `{fixed}` (host bits set)",)
            except ValueError:
                pass
            ctx.diags.error("P019", a.span, f"bad address `{a.value}`: {e}", hints=hint)
            ok = False
    ports = []
    for p in spec.ports:
        lo, _, hi = p.value.partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
        if not (0 <= lo_i <= 65535 and 0 <= hi_i <= 65535) or lo_i > hi_i:
            ctx.diags.error("P020", p.span, f"bad port `{p.value}`",
                            hints=("ports are 0-65535; a range is `low-high`",))
            ok = False
        else:
            ports.append((lo_i, hi_i))
    if not ok:
        return None
    return M.NetSpec(proto, tuple(nets), tuple(ports), spec.span)
