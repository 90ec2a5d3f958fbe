"""What the language server knows about one buffer, without the protocol: diagnostics from the
front end and every check, the rule under the cursor (what it matches, which diagnostics of
the checks name it), where an `include` (or `include?`), a `use` or a `${var}` is defined,
and what may be typed at a place. policyc/lsp/server.py speaks LSP around it.

Positions here are policyc's: 1-based lines, 1-based columns counted in characters.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..diagnostics import Diagnostic, Diagnostics
from ..ir import model as M
from ..ir import syntax as S
from ..ir.vocab import DECISIONS, FAMILIES, MODES, PROTOCOLS
from ..span import Span

# Diagnostics the hover of a rule repeats: what the coverage checks say about it.
RULE_CODES = ("W101", "W102", "W103", "W106", "W107", "W110", "P041", "P054")


@dataclass
class Analysis:
    path: str                                   # normalised path of the buffer
    text: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    program: M.Program | None = None
    tree: S.File | None = None                  # the buffer's own syntax tree (None: syntax errors)
    trees: dict[str, S.File] = field(default_factory=dict)   # every file read, by path


def analyse(path: str, text: str, open_buffers: dict[str, str] | None = None) -> Analysis:
    """The front end and every check on `text` as the file `path` (which need not be saved or
    exist); includes resolved relative to `path`, read from `open_buffers` when open there.
    Every check but one part of P041: the path automaton's state cap, whose check builds the
    automaton (seconds for a 10,000-rule or an exploding policy, on every change); `policyc
    check` and `build` report it (docs/cli.md)."""
    from ..checks.kernel_limits import without_automaton
    from ..cli.common import overlaid
    from ..lower import sources as _sources
    from ..parse import parse_text
    from ..pipeline import front_end
    from ..report import Sources, apply_suppressions

    key = os.path.normpath(path)
    texts = dict(open_buffers or {})
    texts[key] = text
    diags = Diagnostics()
    trees: dict[str, S.File] = {}
    with overlaid(texts):
        reader = _sources.parse_file

        def keep(p: str, d: Diagnostics):
            tree = reader(p, d)
            if tree is not None:
                trees[os.path.normpath(p)] = tree
            return tree

        _sources.parse_file = keep
        try:
            with without_automaton():
                front = front_end([key], diags, checks=True)
        finally:
            _sources.parse_file = reader
    program = front.program
    sources = Sources(program.sources if program is not None else {})
    sources.add(key, text)
    items = apply_suppressions(diags.sorted(), program, sources)
    disabled = _disabled_codes(key)
    tree = trees.get(key)
    if tree is None:
        tree = parse_text(key, text, Diagnostics())
    return Analysis(key, text, [d for d in items if d.suppressed is None and d.code not in disabled],
                    program, tree, trees)


def _disabled_codes(path: str) -> frozenset[str]:
    """`disable` of the policyc.toml (or [tool.policyc]) nearest the file, as `policyc check`
    run beside it would read; none when there is none or it cannot be read (`check` says why)."""
    from pathlib import Path

    from ..config import ConfigError, load_config

    try:
        return frozenset(load_config(Path(os.path.dirname(os.path.abspath(path)))).disable)
    except (ConfigError, OSError):
        return frozenset()


def _inside(span: Span, line: int, col: int) -> bool:
    if (line, col) < (span.line, span.col):
        return False
    return (line, col) <= (span.end_line, span.end_col)


def _contains(outer: Span, inner: Span) -> bool:
    return (outer.file == inner.file and (outer.line, outer.col) <= (inner.line, inner.col)
            and (inner.end_line, inner.end_col) <= (outer.end_line, outer.end_col))


# --- hover --------------------------------------------------------------------------------------
def rules_at(a: Analysis, line: int, col: int) -> list[tuple[M.Policy, M.Rule]]:
    """The lowered rules written at this place (one per policy that has it: a ruleset's rule
    is in every policy that uses the ruleset)."""
    if a.program is None:
        return []
    out = []
    for p in a.program.policies:
        for r in p.rules:
            if r.span.file == a.path and _inside(r.span, line, col):
                out.append((p, r))
    return out


def describe_rule(r: M.Rule) -> str:
    """What a rule matches, in words."""
    fam = FAMILIES.get(r.family)
    parts = []
    if r.all_ops or not r.ops:
        what = f"every {fam.ops_kind}" if fam is not None and fam.ops else "the operation"
        parts.append(f"- **{r.family}**: {what}")
    else:
        parts.append(f"- **{r.family}** {', '.join(f'`{o}`' for o in r.ops)}")
    if r.paths:
        parts.append("- paths: " + ", ".join(f"`{g.text}`" for g in r.paths))
    elif fam is not None and fam.objects.startswith("paths"):
        parts.append("- paths: any")
    if r.net is not None:
        nets = ", ".join(str(n) for n in r.net.nets) or "any address"
        ports = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in r.net.ports) or "any port"
        parts.append(f"- network: `{r.net.proto}`, {nets}, {ports}")
    if r.target is not None:
        who = "sender" if r.receive else "target"
        if r.target.kind == "all":
            parts.append(f"- {who}: any process")
        else:
            t = r.target.exe.text if r.target.exe is not None else r.target.cgroup
            parts.append(f"- {who}: {r.target.kind} `{t}`")
    elif fam is not None and fam.target:
        parts.append("- target: any process")
    if r.owner:
        parts.append("- only files the process owns (`owner`)")
    if r.transition is not None:
        t = r.transition
        parts.append("- the program then runs " + (f"under policy `{t.policy}`" if t.kind == "policy"
                                                   else "outside this policy (`as unconfined`)"))
    if r.limit is not None:
        parts.append(f"- events limited to {r.limit.text}")
    return "\n".join(parts)


def hover(a: Analysis, line: int, col: int) -> tuple[str, Span] | None:
    """Markdown about the rule at this place: its decision, what it matches, the policies it is
    in, and what the checks say about it (which rule shadows or overrides it)."""
    found = rules_at(a, line, col)
    if not found:
        return _hover_include(a, line, col) or _hover_syntax(a, line, col)
    p, r = found[0]
    lines = [f"**{r.decision}** `{r.text}`", "", describe_rule(r), ""]
    names = ", ".join(f"`{q.name}` (mode {q.mode}, default {q.default})" for q, _ in found)
    lines.append(f"In policy {names}.")
    if r.used_from:
        lines.append("Brought in by `use` at " + ", ".join(str(u) for u in r.used_from) + ".")
    said = [d for d in a.diagnostics if d.code in RULE_CODES and d.span is not None and _contains(r.span, d.span)]
    for d in said:
        lines.append("")
        lines.append(f"{d.severity.value}[{d.code}]: {d.message}")
        for n in d.notes:
            where = f" ({n.span})" if n.span is not None else ""
            lines.append(f"- {n.message}{where}")
    if not said:
        lines.append("")
        lines.append("No other rule shadows or overrides it.")
    return "\n".join(lines), r.span


def _hover_include(a: Analysis, line: int, col: int) -> tuple[str, Span] | None:
    """An `include` or `include?`: the file it names, and whether an `include?` brings it in
    or skips it (the one place an absent optional file is mentioned: `check` says nothing)."""
    if a.tree is None:
        return None
    for item in a.tree.items:
        if isinstance(item, S.Include) and _inside(item.span, line, col):
            target = _include_target(a.path, item)
            if not item.optional:
                return f"**include** `{target}`", item.span
            if target in a.trees or os.path.lexists(target):
                return f"**include?** `{target}`: present, included", item.span
            return f"**include?** `{target}`: absent, skipped (an optional include)", item.span
    return None


def _include_target(path: str, item: S.Include) -> str:
    from ..lower.sources import include_target

    return include_target(path, item)


def _hover_syntax(a: Analysis, line: int, col: int) -> tuple[str, Span] | None:
    """Outside a lowered rule (a buffer with errors): the syntax rule under the cursor."""
    if a.tree is None:
        return None
    for item in _walk(a.tree.items):
        if isinstance(item, S.Rule) and _inside(item.span, line, col):
            b = item.body
            ops = ", ".join(o.value for o in b.ops) or "all operations"
            text = f"**{item.decision.value}** {b.family.value}: {ops}"
            if b.paths:
                text += "\n\npaths: " + ", ".join(f"`{s.value}`" for s in b.paths)
            return text + "\n\n(the file has errors: the checks did not run)", item.span
    return None


def _walk(items):
    for item in items:
        yield item
        if isinstance(item, (S.Policy, S.Ruleset, S.TestBlock)):
            yield from _walk(item.items)


# --- definitions --------------------------------------------------------------------------------
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_\-]*)\}")


def definition(a: Analysis, line: int, col: int) -> Span | None:
    """Where what is under the cursor is defined: the file an `include` names, the ruleset a
    `use` names, the `let` a `${var}` names (the innermost scope's: the policy's or ruleset's,
    else the file's, else a file it includes)."""
    if a.tree is None:
        return None
    for item in _walk(a.tree.items):
        if isinstance(item, S.Include) and _inside(item.span, line, col):
            target = _include_target(a.path, item)   # `include?` of an absent file: nowhere
            if os.path.exists(target) or target in a.trees:
                return Span(target, 1, 1, 1, 1)
            return None
        if isinstance(item, S.Use) and _inside(item.span, line, col):
            return _find_ruleset(a, item.name.value)
    # `${var}` in a string under the cursor
    for scope, item in _strings(a.tree.items):
        if not _inside(item.span, line, col) or item.span.line != line:
            continue
        for m in _VAR.finditer(item.raw):
            start = item.span.col + m.start()
            if start <= col <= item.span.col + m.end():
                return _find_let(a, scope, m.group(1))
    return None


def _strings(items, scope=None):
    """(enclosing block, Str) for every string literal."""
    for item in items:
        if isinstance(item, (S.Policy, S.Ruleset, S.TestBlock)):
            yield from _strings(item.items, item)
        elif isinstance(item, S.Let):
            yield scope, item.value
        elif isinstance(item, S.Include):
            yield scope, item.path
        elif isinstance(item, S.Subject):
            for spec in (*item.specs, *item.exceptions):
                if spec.value is not None:
                    yield scope, spec.value
        elif isinstance(item, (S.Rule, S.Expect)):
            yield from ((scope, s) for s in item.body.paths)
            if item.body.target is not None:
                yield scope, item.body.target.value
        elif isinstance(item, S.TestContext):
            yield scope, item.value


def _find_let(a: Analysis, scope, name: str) -> Span | None:
    return _find_named(scope.items if scope is not None else (), S.Let, name) or _find_top(a, S.Let, name)


def _find_ruleset(a: Analysis, name: str) -> Span | None:
    return _find_top(a, S.Ruleset, name)


def _find_top(a: Analysis, kind, name: str) -> Span | None:
    """The name's span of the first top-level `kind` called `name`: in the buffer, else in a
    file it includes."""
    for tree in [a.tree, *(t for k, t in a.trees.items() if k != a.path)]:
        if tree is not None:
            found = _find_named(tree.items, kind, name)
            if found is not None:
                return found
    return None


def _find_named(items, kind, name: str) -> Span | None:
    return next((item.name.span for item in items if isinstance(item, kind) and item.name.value == name), None)


# --- completion ---------------------------------------------------------------------------------
TOP_KEYWORDS = ("include", "include?", "let", "policy", "ruleset", "test")
POLICY_KEYWORDS = ("subject", "mode", "default", "let", "use", "acknowledge", "protect", *DECISIONS)
_WORD = re.compile(r"[A-Za-z0-9_\-]*$")


def completions(line_text: str, col: int) -> list[tuple[str, str]]:
    """(label, kind) for what may be typed at column `col` (1-based) of a line: families
    after a decision, a family's operations (file and net operations, capabilities, signals)
    after the family, protocols in a net rule, settings after `mode`/`default`, else
    keywords. Kinds: keyword, family, operation, capability, signal, protocol, value."""
    before = line_text[: col - 1]
    before = before[: len(before) - len(_WORD.search(before).group(0))]
    words = re.findall(r"[A-Za-z0-9_\-]+", before.split("#", 1)[0])
    if words and words[0] == "expect":
        words = words[1:]
    if not words:
        return [(k, "keyword") for k in (*TOP_KEYWORDS, *POLICY_KEYWORDS, "exe", "parent", "cgroup", "expect")]
    first = words[0]
    if first == "mode" and len(words) == 1:
        return [(m, "value") for m in MODES]
    if first == "default" and len(words) == 1:
        return [(d, "value") for d in ("allow", "deny")]
    if first == "acknowledge":
        return [("host-wide-deny", "value")]
    if first == "protect":
        return [("policyc", "value")]
    if first == "subject" or first == "except":
        return [(k, "keyword") for k in ("exe", "cgroup", "all", "except")]
    if first not in DECISIONS:
        return []
    if len(words) == 1:
        return [(f, "family") for f in FAMILIES]
    fam = FAMILIES.get(words[1])
    if fam is None:
        return []
    kind = {"capability": "capability", "signal": "signal"}.get(fam.name, "operation")
    out = [(o, kind) for o in fam.ops]
    if fam.name == "net":
        out += [(p, "protocol") for p in PROTOCOLS] + [("port", "keyword")]
    if fam.target:
        out.append(("to", "keyword"))
    out.append(("limit", "keyword"))
    return out

