"""Syntax trees to the resolved model: includes, `${vars}`, rulesets, globs, addresses, tests.

`load_program(paths, diags)` is the front end's single entry: it reads every file (and the
files they include), and returns a `Program`, or None when anything was an error.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..diagnostics import Diagnostics, Note, did_you_mean
from ..ir import model as M
from ..ir import syntax as S
from ..ir.vocab import FAMILIES, PROTOCOLS
from ..parse import parse_file
from ..span import Span, comment_start
from .globs import is_absolute, parse_glob

MAX_INCLUDE_DEPTH = 32
# `limit N/UNIT`: the window of each unit in seconds, and the largest N (a rule that may log a
# million events a second is not limited in any way that matters)
LIMIT_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
MAX_LIMIT = 1_000_000
_VAR = re.compile(r"\$\{([^}]*)\}")


def expand_paths(paths: list[str], diags: Diagnostics) -> list[str]:
    """Command-line PATHs: files as given; directories give their `*.policy` files."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).rglob("*.policy") if f.is_file())
            if not found:
                diags.error("P006", None, f"no `.policy` files under `{p}`")
            out.extend(found)
        else:
            out.append(p)
    return out


@dataclass
class _Scope:
    """Names visible while lowering one file: its lets and what its includes brought."""

    lets: dict[str, tuple[str, Span]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


class _Loader:
    def __init__(self, diags: Diagnostics):
        self.diags = diags
        self.files: dict[str, S.File | None] = {}    # resolved path -> tree (None: failed)
        self.order: list[str] = []
        self.file_lets: dict[str, dict[str, tuple[str, Span]]] = {}
        self.rulesets: dict[str, tuple[S.Ruleset, str]] = {}
        self.policies: dict[str, tuple[S.Policy, str]] = {}
        self.tests: list[tuple[S.TestBlock, str]] = []
        self.let_uses: set[tuple[str, int, int]] = set()   # (file, line, col) of used lets

    # --- reading and includes ---------------------------------------------------------------
    def load(self, path: str, stack: tuple[tuple[str, Span], ...] = ()) -> None:
        key = os.path.normpath(path)
        if any(k == key for k, _ in stack):
            first = stack[-1][1]
            notes = [Note(sp, f"`{k}` is included from here") for k, sp in stack]
            self.diags.error("P005", first, f"include cycle: `{key}` includes itself", notes=notes)
            return
        if key in self.files:
            return
        if len(stack) > MAX_INCLUDE_DEPTH:
            self.diags.error("P005", stack[-1][1], f"includes nest deeper than {MAX_INCLUDE_DEPTH}")
            return
        self.files[key] = None
        tree = parse_file(key, self.diags)
        self.files[key] = tree
        if tree is None:
            return
        for item in tree.items:
            if isinstance(item, S.Include):
                target = os.path.normpath(os.path.join(os.path.dirname(key), item.path.value))
                if not os.path.isfile(target):
                    self.diags.error("P004", item.path.span, f"included file `{item.path.value}` not found",
                                     hints=(f"looked for `{target}`, relative to the including file",))
                    continue
                self.load(target, stack + ((key, item.path.span),))
        # A policy's tests may live beside it in NAME.policy.test.
        test_file = key + ".test"
        if key.endswith(".policy") and os.path.isfile(test_file):
            self.load(test_file, stack)
        if key.endswith(".policy.test"):
            main = key[: -len(".test")]
            if os.path.isfile(main):
                self.load(main, stack)
        self.order.append(key)

    # --- declarations -----------------------------------------------------------------------
    def collect(self) -> None:
        for key in self.order:
            tree = self.files[key]
            if tree is None:
                continue
            lets: dict[str, tuple[str, Span]] = {}
            self.file_lets[key] = lets
            for item in tree.items:
                if isinstance(item, S.Let):
                    self._define_let(lets, item, lets)
                elif isinstance(item, S.Policy):
                    self._declare(self.policies, item, key, "policy", "P015")
                elif isinstance(item, S.Ruleset):
                    self._declare(self.rulesets, item, key, "ruleset", "P015")
                elif isinstance(item, S.TestBlock):
                    self.tests.append((item, key))

    def _declare(self, table, item, key, what, code) -> None:
        name = item.name.value
        if name in table:
            prev = table[name][0]
            self.diags.error(code, item.name.span, f"{what} `{name}` is defined twice",
                             notes=(Note(prev.name.span, "first defined here"),))
            return
        table[name] = (item, key)

    def _define_let(self, table, item: S.Let, scope_lets) -> bool:
        name = item.name.value
        if name in table:
            self.diags.error("P015", item.name.span, f"`{name}` is already defined",
                             notes=(Note(table[name][1], "first defined here"),))
            return False
        value = self.interpolate(item.value, scope_lets)
        if value is not None:
            table[name] = (value[0], item.name.span)
        return True

    def visible_lets(self, key: str) -> dict[str, tuple[str, Span]]:
        """A file sees its own lets and those of the files it includes (transitively)."""
        seen: set[str] = set()
        out: dict[str, tuple[str, Span]] = {}

        def visit(k: str):
            if k in seen or self.files.get(k) is None:
                return
            seen.add(k)
            for item in self.files[k].items:
                if isinstance(item, S.Include):
                    visit(os.path.normpath(os.path.join(os.path.dirname(k), item.path.value)))
            out.update(self.file_lets.get(k, {}))

        visit(key)
        return out

    # --- strings ----------------------------------------------------------------------------
    def interpolate(self, s: S.Str, lets) -> tuple[str, callable] | None:
        """`${name}` replaced by its value. Returns the text and a map from text offsets back
        to offsets in the literal (so a glob error inside an interpolated value still points
        near the right column)."""
        out: list[str] = []
        marks: list[tuple[int, int]] = []  # (text offset, source offset)
        pos = 0
        ok = True
        value = s.value
        for m in _VAR.finditer(value):
            out.append(value[pos:m.start()])
            name = m.group(1)
            if name in lets:
                marks.append((sum(map(len, out)), m.start()))
                out.append(lets[name][0])
                sp = lets[name][1]
                self.let_uses.add((sp.file, sp.line, sp.col))
            else:
                ok = False
                self.diags.error("P014", s.span.at_offset(m.start() + 1, len(m.group(0))),
                                 f"undefined variable `{name}`", hints=did_you_mean(name, lets))
            pos = m.end()
        out.append(value[pos:])
        text = "".join(out)
        if "${" in value[pos:]:
            col = pos + value[pos:].find("${") + 1
            self.diags.error("P014", s.span.at_offset(col, 2), "unclosed `${`", hints=("write `${name}`",))
            ok = False
        if not ok:
            return None

        def offset_map(i: int) -> int:
            src = i
            for t_off, s_off in marks:
                if i >= t_off:
                    src = s_off
            return src

        return text, offset_map

    def glob(self, s: S.Str, lets, what: str, abstract_socket: bool = False) -> M.Glob | None:
        r = self.interpolate(s, lets)
        if r is None:
            return None
        text, offset_map = r
        if abstract_socket and text.startswith("@"):
            return parse_glob(text, s.span, self.diags, offset_map)
        if not text.startswith(("/", "{")):
            self.diags.error("P018", s.span, f"{what} `{text}` is not an absolute path",
                             hints=(f"write `/{text}`" if text and not text.startswith("*") else
                                    "paths start with `/`",))
            return None
        g = parse_glob(text, s.span, self.diags, offset_map)
        if g is not None and not is_absolute(g.parts):
            self.diags.error("P018", s.span, f"{what} `{text}` is not an absolute path",
                             hints=("every alternative of a leading `{...}` must start with `/`",))
            return None
        return g


def _without_comment(line: str) -> str:
    """A source line without its `# comment` (a `#` inside a string is text)."""
    i = comment_start(line)
    return line if i is None else line[:i]


@contextlib.contextmanager
def paused_gc():
    """The cyclic garbage collector paused: parsing and lowering allocate hundreds of
    thousands of small acyclic objects, and full collections over them used to take half
    the time of `check` on 10,000 rules. Reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_program(paths: list[str], diags: Diagnostics) -> M.Program | None:
    """Read, resolve and lower `paths`; None when there were errors (all in `diags`)."""
    with paused_gc():
        return _load_program(paths, diags)


def _load_program(paths: list[str], diags: Diagnostics) -> M.Program | None:
    loader = _Loader(diags)
    for p in expand_paths(paths, diags):
        loader.load(p)
    if diags.has_errors:
        return None
    loader.collect()
    lowering = _Lowering(loader)
    policies = []
    for name, (pol, key) in loader.policies.items():
        lowered = lowering.policy(pol, key)
        if lowered is not None:
            policies.append(lowered)
    tests = []
    by_name = {p.name: p for p in policies}
    for block, key in loader.tests:
        tc = lowering.test(block, key, by_name)
        if tc is not None:
            tests.append(tc)
    lowering.report_unused_lets()
    if diags.has_errors:
        return None
    sources = {k: t.source for k, t in loader.files.items() if t is not None}
    return M.Program(tuple(policies), tuple(tests), tuple(loader.order), sources)


class _Lowering:
    def __init__(self, loader: _Loader):
        self.l = loader
        self.diags = loader.diags
        self.all_lets: list[tuple[str, Span]] = []
        self._lines: dict[str, list[str]] = {}

    def source_text(self, span: Span) -> str:
        lines = self._lines.get(span.file)
        if lines is None:
            tree = self.l.files.get(span.file)
            if tree is None:
                return ""
            lines = self._lines[span.file] = tree.source.split("\n")
        if span.line == span.end_line:
            return lines[span.line - 1][span.col - 1: span.end_col - 1]
        first = lines[span.line - 1][span.col - 1:]
        rest = lines[span.line: span.end_line - 1]
        last = lines[span.end_line - 1][: span.end_col - 1]
        parts = (_without_comment(x).strip() for x in [first, *rest, last])
        return " ".join(p for p in parts if p)

    # --- policies ---------------------------------------------------------------------------
    def policy(self, pol: S.Policy, key: str) -> M.Policy | None:
        lets = dict(self.l.visible_lets(key))
        subjects: list[M.Subject] = []
        exceptions: list[M.Subject] = []
        acknowledge_span = None
        mode = default = None
        mode_span = default_span = None
        default_limit = None
        acknowledged: set[str] = set()
        raw_rules: list[tuple[S.Rule, tuple[Span, ...], dict]] = []
        for item in pol.items:
            if isinstance(item, S.Let):
                if self.l._define_let(lets, item, lets):
                    self.all_lets.append((item.name.value, item.name.span))
            elif isinstance(item, S.Subject):
                for spec in item.specs:
                    subj = self.subject(spec, lets)
                    if subj is not None:
                        subjects.append(subj)
                for spec in item.exceptions:
                    subj = self.subject(spec, lets)
                    if subj is not None:
                        exceptions.append(subj)
            elif isinstance(item, S.Setting):
                if item.key == "acknowledge":
                    if item.value.value != "host-wide-deny":
                        self.diags.error("P017", item.value.span, f"unknown acknowledgement `{item.value.value}`",
                                         hints=did_you_mean(item.value.value, ["host-wide-deny"]) or
                                         ("the only one is `host-wide-deny`",))
                    acknowledged.add(item.value.value)
                    acknowledge_span = acknowledge_span or item.span
                    continue
                allowed = ("enforce", "audit") if item.key == "mode" else ("allow", "deny")
                if item.value.value not in allowed:
                    self.diags.error("P017", item.value.span,
                                     f"`{item.key}` is `{allowed[0]}` or `{allowed[1]}`, not `{item.value.value}`",
                                     hints=did_you_mean(item.value.value, allowed))
                    continue
                prev_span = mode_span if item.key == "mode" else default_span
                if prev_span is not None:
                    self.diags.error("P015", item.span, f"`{item.key}` is set twice",
                                     notes=(Note(prev_span, "first set here"),))
                    continue
                if item.key == "mode":
                    mode, mode_span = item.value.value, item.span
                else:
                    default, default_span = item.value.value, item.span
                    if item.limit is not None:
                        default_limit = self.limit(item.limit)
            elif isinstance(item, S.Rule):
                raw_rules.append((item, (), lets))
            elif isinstance(item, S.Use):
                raw_rules.extend(self.use(item, (), lets))
        if not subjects and not any(isinstance(i, S.Subject) for i in pol.items):
            self.diags.error("P016", pol.name.span, f"policy `{pol.name.value}` has no `subject`",
                             hints=('add `subject exe "/path/to/program"`, `subject cgroup "/path"` or `subject all`',))
        rules = []
        for rule, used_from, scope in raw_rules:
            lowered = self.rule(rule, scope, len(rules) + 1, used_from)
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
        )

    def use(self, use: S.Use, chain: tuple[Span, ...], lets, depth: int = 0):
        name = use.name.value
        if name not in self.l.rulesets:
            self.diags.error("P021", use.name.span, f"unknown ruleset `{name}`",
                             hints=did_you_mean(name, self.l.rulesets))
            return []
        if depth > MAX_INCLUDE_DEPTH or any(s == use.span for s in chain):
            self.diags.error("P005", use.span, f"ruleset `{name}` uses itself")
            return []
        rs, key = self.l.rulesets[name]
        scope = dict(self.l.visible_lets(key))
        out = []
        for item in rs.items:
            if isinstance(item, S.Let):
                if self.l._define_let(scope, item, scope):
                    self.all_lets.append((item.name.value, item.name.span))
            elif isinstance(item, S.Rule):
                out.append((item, chain + (use.span,), scope))
            elif isinstance(item, S.Use):
                if any(u.name.value == item.name.value for u in [use]) or depth > MAX_INCLUDE_DEPTH:
                    self.diags.error("P005", item.span, f"ruleset `{item.name.value}` uses itself")
                    continue
                out.extend(self.use(item, chain + (use.span,), scope, depth + 1))
        return out

    def subject(self, spec: S.SubjectSpec, lets) -> M.Subject | None:
        if spec.kind == "all":
            return M.Subject("all", None, None, spec.span)
        if spec.kind == "exe":
            g = self.l.glob(spec.value, lets, "executable")
            return M.Subject("exe", g, None, spec.span) if g else None
        text = self.l.interpolate(spec.value, lets)
        if text is None:
            return None
        cg = text[0]
        if not cg.startswith("/"):
            self.diags.error("P018", spec.value.span, f"cgroup `{cg}` is not an absolute cgroup v2 path",
                             hints=('write it as under /sys/fs/cgroup, e.g. "/system.slice/nginx.service"',))
            return None
        return M.Subject("cgroup", None, cg.rstrip("/") or "/", spec.span)

    # --- rules ------------------------------------------------------------------------------
    def rule(self, rule: S.Rule, lets, rule_id: int, used_from) -> M.Rule | None:
        body = self.body(rule.body, lets, "rule")
        if body is None:
            return None
        family, ops, all_ops, paths, net, target = body
        limit = None
        if rule.limit is not None:
            limit = self.limit(rule.limit)
            if limit is None:
                return None
        return M.Rule(
            id=rule_id,
            decision=rule.decision.value,
            family=family,
            ops=ops,
            paths=paths,
            net=net,
            target=target,
            span=rule.span,
            text=self.source_text(rule.span),
            all_ops=all_ops,
            used_from=used_from,
            limit=limit,
        )

    def limit(self, lim: S.Limit) -> M.RateLimit | None:
        count_text, unit = lim.text.split("/", 1)
        window = LIMIT_UNITS.get(unit.lower())
        count = int(count_text)
        if window is None or not 1 <= count <= MAX_LIMIT:
            problem = (f"unknown unit `{unit}`" if window is None
                       else f"the count must be 1 to {MAX_LIMIT:,}")
            self.diags.error("P025", lim.span, f"bad limit `{lim.text}`: {problem}",
                             hints=("write it as `limit 100/s`, `limit 10/min` or `limit 5/h`",))
            return None
        return M.RateLimit(count, window, lim.text, lim.span)

    def body(self, body: S.RuleBody, lets, where: str):
        fname = body.family.value
        fam = FAMILIES.get(fname)
        if fam is None:
            self.diags.error("P010", body.family.span, f"unknown rule family `{fname}`",
                             hints=did_you_mean(fname, FAMILIES) or (f"families: {', '.join(FAMILIES)}",))
            return None
        ok = True
        ops: list[str] = []
        for op in body.ops:
            name = op.value.lower()
            if fname == "signal" and name.startswith("sig"):
                name = name[3:]
            if fname == "capability" and name.startswith("cap_"):
                name = name[4:]
            if not fam.ops:
                self.diags.error("P011", op.span, f"`{fname}` takes no operations, found `{op.value}`",
                                 hints=(f'write `{fname}` alone' + (' or with a path' if fam.objects == "paths?" else ''),)
                                 if fname != "exec" else ('write the program as a string: `exec "/usr/bin/x"`',))
                ok = False
            elif name not in fam.ops:
                self.diags.error("P011" if fname not in ("capability", "signal") else
                                 ("P012" if fname == "capability" else "P013"),
                                 op.span, f"unknown {fam.ops_kind} `{op.value}`",
                                 hints=did_you_mean(name, fam.ops))
                ok = False
            elif name in ops:
                self.diags.warning("W105", op.span, f"`{op.value}` is listed twice")
            else:
                ops.append(name)
        all_ops = not body.ops and bool(fam.ops)
        if all_ops:
            ops = list(fam.ops)
        paths: list[M.Glob] = []
        net = None
        if body.paths:
            if fam.objects not in ("paths", "paths?"):
                self.diags.error("P019", body.paths[0].span, f"`{fname}` rules take no paths",
                                 hints=self._object_hint(fname))
                ok = False
            else:
                for s in body.paths:
                    # `@name`: an abstract AF_UNIX socket (file rules only; docs/language.md)
                    g = self.l.glob(s, lets, "path", abstract_socket=fname == "file")
                    if g is None:
                        ok = False
                    else:
                        paths.append(g)
        if body.net is not None:
            if fam.objects != "net":
                self.diags.error("P019", body.net.span, f"`{fname}` rules take no network address or port",
                                 hints=self._object_hint(fname))
                ok = False
            else:
                net = self.net(body.net)
                ok = ok and net is not None
        if fam.objects == "net" and body.net is None:
            net = M.NetSpec("any", (), (), body.family.span)
        target = None
        if body.target is not None:
            if not fam.target:
                self.diags.error("P019", body.target.span, f"`{fname}` rules take no `to` target",
                                 hints=("targets are for `signal` and `ptrace`",))
                ok = False
            elif body.target.kind == "exe":
                g = self.l.glob(body.target.value, lets, "executable")
                ok = ok and g is not None
                target = M.Target("exe", g, None, body.target.span)
            else:
                text = self.l.interpolate(body.target.value, lets)
                ok = ok and text is not None
                if text is not None:
                    target = M.Target("cgroup", None, text[0].rstrip("/") or "/", body.target.span)
        if not ok:
            return None
        return fname, tuple(ops), all_ops, tuple(paths), net, target

    def _object_hint(self, fname: str) -> tuple[str, ...]:
        fam = FAMILIES[fname]
        if fam.objects == "none" and fam.ops:
            return (f"list {fam.ops_kind}s: `{fname} {fam.ops[0]}`",)
        return ()

    def net(self, spec: S.NetSpec) -> M.NetSpec | None:
        ok = True
        proto = spec.proto.value if spec.proto else "any"
        if proto not in PROTOCOLS:
            self.diags.error("P019", spec.proto.span, f"unknown protocol `{proto}`", hints=did_you_mean(proto, PROTOCOLS))
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
                self.diags.error("P019", a.span, f"bad address `{a.value}`: {e}", hints=hint)
                ok = False
        ports = []
        for p in spec.ports:
            lo, _, hi = p.value.partition("-")
            lo_i, hi_i = int(lo), int(hi or lo)
            if not (0 <= lo_i <= 65535 and 0 <= hi_i <= 65535) or lo_i > hi_i:
                self.diags.error("P020", p.span, f"bad port `{p.value}`",
                                 hints=("ports are 0-65535; a range is `low-high`",))
                ok = False
            else:
                ports.append((lo_i, hi_i))
        if not ok:
            return None
        return M.NetSpec(proto, tuple(nets), tuple(ports), spec.span)

    # --- tests ------------------------------------------------------------------------------
    def test(self, block: S.TestBlock, key: str, policies: dict[str, M.Policy]) -> M.TestCase | None:
        name = block.policy.value
        pol = policies.get(name)
        if pol is None:
            if name not in self.l.policies:
                self.diags.error("P022", block.policy.span, f"test of unknown policy `{name}`",
                                 hints=did_you_mean(name, self.l.policies))
            return None
        lets = dict(self.l.visible_lets(key))
        exe = None
        parents: list[str] = []
        cgroup = None
        for item in block.items:
            if isinstance(item, S.TestContext):
                text = self.l.interpolate(item.value, lets)
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
                self.diags.error("P023", block.policy.span, f"test of `{name}` needs `exe \"/path\"`",
                                 hints=("the policy's subject is a pattern; name the program the test runs as",))
                return None
        if cgroup is None:
            cgs = [s.cgroup for s in pol.subjects if s.kind == "cgroup"]
            cgroup = cgs[0] if cgs and not any(s.kind in ("exe", "all") for s in pol.subjects) else None
        expectations = []
        for item in block.items:
            if isinstance(item, S.Expect):
                ev = self.event(item, lets, exe, tuple(parents), cgroup)
                if ev is not None:
                    expectations.append(M.Expectation(item.decision.value, ev, item.span, self.source_text(item.span)))
        return M.TestCase(name, tuple(expectations), block.span)

    def event(self, ex: S.Expect, lets, exe, parents, cgroup) -> M.Event | None:
        body = ex.body
        fname = body.family.value
        fam = FAMILIES.get(fname)
        if fam is None:
            self.diags.error("P010", body.family.span, f"unknown rule family `{fname}`", hints=did_you_mean(fname, FAMILIES))
            return None

        def one(items, what, span):
            if len(items) != 1:
                self.diags.error("P024", span, f"an expectation names exactly one {what}",
                                 hints=("write one `expect` line per case",))
                return None
            return items[0]

        kw: dict = {"exe": exe, "ancestors": parents, "cgroup": cgroup}
        op = fname
        if fam.needs_ops:
            o = one(body.ops, fam.ops_kind, body.family.span)
            if o is None:
                return None
            name = o.value.lower()
            if fname == "signal":
                name = name.removeprefix("sig")
            if fname == "capability":
                name = name.removeprefix("cap_")
            if name not in fam.ops:
                code = {"capability": "P012", "signal": "P013"}.get(fname, "P011")
                self.diags.error(code, o.span, f"unknown {fam.ops_kind} `{o.value}`", hints=did_you_mean(name, fam.ops))
                return None
            if fname in ("file", "net", "module"):
                op = f"{fname}.{name}"
            elif fname == "capability":
                kw["cap"] = name
            elif fname == "signal":
                kw["signal"] = name
        elif body.ops:
            self.diags.error("P011", body.ops[0].span, f"`{fname}` takes no operations")
            return None
        if body.paths:
            s = one(body.paths, "path", body.paths[0].span)
            if s is None:
                return None
            text = self.l.interpolate(s, lets)
            if text is None:
                return None
            kw["path"] = text[0]
        elif fname in ("file", "exec"):
            self.diags.error("P024", ex.span, f"a `{fname}` expectation names a path")
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
                    self.diags.error("P019", a.span, f"an expectation needs one address, not `{a.value}`")
                    return None
            if n.ports:
                p = one(n.ports, "port", n.ports[0].span)
                if p is None:
                    return None
                if "-" in p.value or int(p.value) > 65535:
                    self.diags.error("P020", p.span, f"an expectation needs one port, not `{p.value}`")
                    return None
                kw["port"] = int(p.value)
        if body.target is not None:
            text = self.l.interpolate(body.target.value, lets)
            if text is None:
                return None
            kw["target_exe" if body.target.kind == "exe" else "target_cgroup"] = text[0]
        return M.Event(op=op, **kw)

    def report_unused_lets(self) -> None:
        seen = set()
        for key, lets in self.l.file_lets.items():
            for name, (_, span) in lets.items():
                self.all_lets.append((name, span))
        for name, span in self.all_lets:
            k = (span.file, span.line, span.col)
            if k in seen:
                continue
            seen.add(k)
            if k not in self.l.let_uses:
                self.diags.warning("W104", span, f"`{name}` is defined but never used",
                                   hints=("remove it, or use it as `${" + name + "}`",))
