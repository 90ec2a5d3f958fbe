"""`policyc suggest`: from a log's audit-mode and deny events, the smallest set of `allow`
rules that would have allowed them, as a `ruleset` per policy (add `use NAME-suggested` to the
policy), in the spirit of aa-logprof and audit2allow. docs/learning.md is the rollout guide.

What is proposed, and what is not:
- Only events that the policy's `default` decided become `allow` rules. An event an explicit
  `deny` (or `audit`) rule decided stays as it is: an `allow` cannot outrank a `deny` of the
  same policy anyway, and the point of such a rule is to hold. They are listed as comments.
- Failed-closed events (a path too long, a detached mount, ...) and objects without an
  absolute path (`pipe:[..]`, `memfd:x`) are not turned into rules: they are listed.
- Paths: `COLLAPSE` or more files of one directory for one operation become `DIR/*`; a
  directory with `COLLAPSE` or more such subdirectories becomes `DIR/**` (never within the
  first two levels: no `/usr/**`). `--widen DIR` makes the files seen under DIR `DIR/**`.
- Safe learning: no glob is proposed that would also allow a host essential
  (policyc/ir/essentials.py: credentials, keys, kernel memory, module and BPF interfaces)
  that was not itself seen: the two globs' languages must not intersect, which is decided
  exactly by a product of their automata (essentials.overlap). Nor one that, where its
  directory can be listed, would cover more than `max_widen` entries nobody was seen using.
  Every glob is written with a comment naming the paths seen behind it and a sample of what
  else it matches on this host. An allow of an essential that was seen, or of an address the
  essentials or a deny rule of the policy name, carries a `# warning:` naming the rule it
  would override.
- Rules with the same operations share one line (exact paths); each glob is its own rule.
  Characters the glob language would read (`*`, `?`, `{`, `}`, `$`) are written as `?`.

Reads only the records' `policy` (and, for `--policy`, `instance` when present), `type`,
`decision`, `mode`, `family`, `op`, `reason`, `rule_id`, `rule`, `rule_text`, `object` and
`failed_closed`: never the subject, the process or the host.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..ir.essentials import (CAPABILITIES as ESSENTIAL_CAPS, FAMILIES as ESSENTIAL_FAMILIES, Essential,
                             essential_address, essential_path, essentials_overlapping, glob_parts,
                             parse_address)
from ..ir.glob import matcher, path_bytes
from .logfile import Record
from .allow import literal, net_object, quote  # noqa: F401  (literal, quote: the names callers know)

COLLAPSE = 3
# Default of --max-widen: a collapse summarizes a directory the program uses as a whole (a
# conf.d, a cache, a set of pages); ten entries more than one run touched is that, a
# directory where one run saw 3 of 1,500 names (/usr/bin) is not.
MAX_WIDEN = 10
SAMPLE = 5          # unseen entries a glob's comment names
SHOWN = 10          # seen paths a glob's comment names
MAX_SCAN = 20000    # directory entries read to count what one glob would add
_GLOB_CHARS = re.compile(r"[*?{}$\[\]]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")

Lister = Callable[[str], Optional[list]]   # a directory -> sorted [(name, is_dir)], None: unknown


class SuggestError(Exception):
    pass


def scan_dir(d: str) -> list[tuple[str, bool]] | None:
    """The entries of a directory on this host, sorted; None when it cannot be read."""
    try:
        with os.scandir(d) as it:
            return sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
    except OSError:
        return None


@dataclass(frozen=True)
class Options:
    threshold: int = COLLAPSE
    max_widen: int = MAX_WIDEN
    widen: tuple[str, ...] = ()     # absolute directories, normalized
    lister: Lister = scan_dir


def options(max_widen: int = MAX_WIDEN, widen=(), lister: Lister | None = None) -> Options:
    """Checked options (SuggestError: a negative --max-widen, a --widen that is not an
    absolute directory)."""
    if max_widen < 0:
        raise SuggestError(f"--max-widen must be 0 or more (it is {max_widen})")
    dirs = []
    for d in widen:
        if not d.startswith("/"):
            raise SuggestError(f"--widen `{d}`: name an absolute directory (`/var/www/html`)")
        if _GLOB_CHARS.search(d):
            raise SuggestError(f"--widen `{d}`: name a directory, not a glob (suggest writes the `/**`)")
        d = "/" + posixpath.normpath(d).lstrip("/")
        if d not in dirs:
            dirs.append(d)
    return Options(max_widen=max_widen, widen=tuple(dirs), lister=lister or scan_dir)


def comment(text: str) -> str:
    """One comment line: a path with a newline in it must not end the comment."""
    return "# " + _CONTROL.sub("?", text)


def _depth(d: str) -> int:
    return len([c for c in d.split("/") if c])


def _under(path: str, d: str) -> bool:
    return path.startswith(d.rstrip("/") + "/")


def _join(d: str, name: str) -> str:
    return d.rstrip("/") + "/" + name


def _names(found: list[Essential], limit: int = 3) -> str:
    shown = ", ".join(f"{e.pattern} ({e.why})" for e in found[:limit])
    return shown + (f" and {len(found) - limit} more" if len(found) > limit else "")


# --- paths -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Listing:
    """What a glob matches on this host beyond the paths seen."""
    sample: tuple[str, ...]   # a few of them, relative to the glob's directory
    count: int                # how many were counted
    complete: bool            # False: at least `count` (the walk stopped or a directory was unreadable)

    def text(self) -> str:
        if not self.count:
            return "nothing else" + ("" if self.complete else " readable")
        more = ", ..." if self.count > len(self.sample) else ""
        n = f"{self.count}" if self.complete else f"at least {self.count}"
        return f"{', '.join(self.sample)}{more} ({n} unseen)"


@dataclass(frozen=True)
class Pattern:
    text: str                       # the glob, unquoted
    seen: tuple[str, ...]           # the paths seen that it stands for (sorted)
    base: str | None = None         # a glob's directory; None: one path
    listing: Listing | None = None  # what else it matches here (None: unknown, or not a glob)
    requested: bool = False         # --widen

    @property
    def is_glob(self) -> bool:
        return self.base is not None


def _ancestors(paths) -> set[str]:
    out: set[str] = set()
    for p in paths:
        d = posixpath.dirname(p)
        while d not in out and d != "/":
            out.add(d)
            d = posixpath.dirname(d)
    return out


def unseen(text: str, base: str, recursive: bool, seen: frozenset[str], lister: Lister,
           cap: int | None = None) -> Listing | None:
    """The entries under `base` on this host that the glob `text` matches and no event named
    (a directory holding a seen path counts as seen). None when `base` cannot be listed. The
    walk stops past `cap` entries (or MAX_SCAN read)."""
    top = lister(base)
    if top is None:
        return None
    m = matcher(glob_parts(text))
    skip = _ancestors(seen)
    found: list[str] = []
    complete = True
    scanned = 0
    queue = collections.deque([(base, top)])
    while queue:
        d, entries = queue.popleft()
        for name, is_dir in entries:
            full = _join(d, name)
            scanned += 1
            if full not in seen and full not in skip and m.matches(path_bytes(full)):
                found.append(full)
            if recursive and is_dir:
                sub = lister(full)
                if sub is None:
                    complete = False
                else:
                    queue.append((full, sub))
            if (cap is not None and len(found) > cap) or scanned >= MAX_SCAN:
                complete = False
                queue.clear()
                break
    rel = tuple(f[len(base.rstrip("/")) + 1:] for f in found[:SAMPLE])
    return Listing(rel, len(found), complete)


def _try_glob(text: str, base: str, recursive: bool, files, seen: frozenset[str], opts: Options,
              what: str, notes: list[str]) -> Pattern | None:
    bad = essentials_overlapping(text, seen)
    if bad:
        notes.append(f'not collapsed to "{text}" ({what}): it would also allow {_names(bad)}')
        return None
    listing = unseen(text, base, recursive, seen, opts.lister, cap=opts.max_widen)
    if listing is not None and listing.count > opts.max_widen:
        n = f"{listing.count}" if listing.complete else f"more than {opts.max_widen}"
        notes.append(f'not collapsed to "{text}" ({what}): it would also match {n} entries no event '
                     f"named ({', '.join(listing.sample)}, ...; --max-widen {opts.max_widen})")
        return None
    return Pattern(text, tuple(sorted(files)), base=base, listing=listing)


def plan_paths(paths, opts: Options | None = None, what: str = "file", widen: bool = True,
               notes: list[str] | None = None) -> list[Pattern]:
    """The patterns covering the absolute `paths` of one operation: `--widen` trees, then
    `DIR/**`, `DIR/*`, then single paths. What was not collapsed, and why, goes to `notes`."""
    opts = opts or Options()
    notes = [] if notes is None else notes
    rest = {p for p in paths if p.startswith("/")}
    seen = frozenset(rest)
    out: list[Pattern] = []
    for d in opts.widen if widen else ():
        under = sorted(p for p in rest if _under(p, d))
        if not under:
            continue
        text = _join(literal(d), "**")
        bad = essentials_overlapping(text, seen)
        if bad:
            notes.append(f'not widened to "{text}" ({what}): it would also allow {_names(bad)}')
            continue
        listing = unseen(text, d, True, seen, opts.lister, cap=None)
        out.append(Pattern(text, tuple(under), base=d, listing=listing, requested=True))
        rest -= set(under)
    # level 1: many files of one directory -> DIR/*
    by_dir: dict[str, set[str]] = defaultdict(set)
    for p in rest:
        by_dir[posixpath.dirname(p)].add(p)
    starred: dict[str, Pattern] = {}
    keep: set[str] = set()
    for d, files in sorted(by_dir.items()):
        if len(files) >= opts.threshold and d != "/":
            pat = _try_glob(_join(literal(d), "*"), d, False, files, seen, opts, what, notes)
            if pat is not None:
                starred[d] = pat
                continue
        keep |= files
    # level 2: a directory with many starred subdirectories -> DIR/**
    children: dict[str, set[str]] = defaultdict(set)
    for d in set(starred) | {posixpath.dirname(p) for p in keep}:
        parent = posixpath.dirname(d)
        if parent != d:
            children[parent].add(d)
    deep = [p for p, kids in children.items() if len(kids & starred.keys()) >= opts.threshold and _depth(p) >= 2]
    chosen: list[str] = []
    for p in sorted(deep, key=lambda x: (_depth(x), x)):   # outermost first
        if any(p == q or _under(p, q) for q in chosen):
            continue
        pat = _try_glob(_join(literal(p), "**"), p, True, {x for x in rest if _under(x, p)}, seen, opts,
                        what, notes)
        if pat is not None:
            chosen.append(p)
            out.append(pat)

    def covered(path: str) -> bool:
        return any(_under(path, q) for q in chosen)

    out += [pat for d, pat in sorted(starred.items()) if not covered(_join(d, "x"))]
    for p in sorted(keep):
        if covered(p):
            continue
        text = literal(p)
        if text != p:   # a `?` for a glob character: the pattern names more than the path
            bad = essentials_overlapping(text, seen)
            if bad:
                notes.append(f'not proposed: "{text}" ({what}, for the path seen {p!r}) would also allow '
                             f"{_names(bad)}, and the glob language cannot say the path alone")
                continue
        out.append(Pattern(text, (p,)))
    return out


def collapse_paths(paths: set[str], threshold: int = COLLAPSE, opts: Options | None = None) -> list[str]:
    """Globs (as raw pattern text, quoting later) covering `paths`, collapsing siblings."""
    opts = opts or Options()
    if threshold != opts.threshold:
        opts = Options(threshold, opts.max_widen, opts.widen, opts.lister)
    return [p.text for p in plan_paths(paths, opts)]


# --- the proposal ------------------------------------------------------------------------------
@dataclass
class Item:
    """One proposed rule, for the text and for `--interactive`."""
    rule: str                                        # the allow line
    comments: list[str] = field(default_factory=list)   # comment lines above it (with `# `)
    narrow: list[str] | None = None                  # a glob's exact alternative (rule lines)
    warning: bool = False


@dataclass
class Suggestion:
    text: str
    warnings: int = 0     # rules proposed with a `# warning:`
    unanswered: int = 0   # --interactive: rules skipped because the answers ended


Ask = Callable[[Item, int, int], Optional[str]]   # (item, n, of) -> "a" / "n" / "s", None: no more answers


def suggest(records: list[Record], policy: str | None = None, opts: Options | None = None,
            ask: Ask | None = None) -> str:
    return propose(records, policy, opts, ask).text


def propose(records: list[Record], policy: str | None = None, opts: Options | None = None,
            ask: Ask | None = None) -> Suggestion:
    opts = opts or Options()
    events = [r for r in records if r.data["type"] == "event"]
    if policy is not None:
        events = [r for r in events if policy in (r.data.get("policy"), r.data.get("instance"))]
        if not events:
            names = sorted({str(r.data.get("policy")) for r in records if r.data["type"] == "event"})
            raise SuggestError(f"no events of policy `{policy}` in the log"
                               + (f" (it has: {', '.join(names)})" if names else ""))
    if not events:
        raise SuggestError("the log has no events to learn from")
    by_policy: dict[str, list[Record]] = defaultdict(list)
    for r in events:
        by_policy[r.data["policy"]].append(r)
    built = [(name, *_ruleset(name, recs, opts)) for name, recs in sorted(by_policy.items())]
    out = Suggestion("")
    total = sum(len(items) for _, _, items in built)
    n = 0
    ended = False
    texts = []
    for name, head, items in built:
        body: list[str] = []
        unanswered = 0
        for item in items:
            n += 1
            answer = "a"
            if ask is not None:
                answer = None if ended else ask(item, n, total)
                ended = answer is None
            body += _render(item, answer)
            if answer is None:
                unanswered += 1
            elif answer != "s" and item.warning:
                out.warnings += 1
        if unanswered:
            out.unanswered += unanswered
            head = head + [comment(f"the answers ended: {unanswered} rules were not reviewed "
                                   "and are left out (run again to review them)")]
        texts.append("\n".join(head) + f"\nruleset {ruleset_name(name)} {{\n"
                     + "".join(f"    {line}\n" for line in body) + "}\n")
    out.text = "\n".join(texts)
    return out


def _render(item: Item, answer: str | None) -> list[str]:
    if answer == "a":
        return item.comments + [item.rule]
    if answer == "n" and item.narrow is not None:
        return [comment(f"narrowed in review: {item.rule}")] + item.narrow
    if answer is None:
        return [comment(f"not reviewed (the answers ended): {item.rule}")]
    return [comment(f"skipped in review: {item.rule}")]


def ruleset_name(policy: str) -> str:
    return f"{policy}-suggested"


def _net_rule(e: dict) -> tuple[str, str]:
    """(op, object text) of a net event."""
    return e["op"], net_object(e["op"], e["object"])


def _networks(rule_text: str) -> list:
    """The addresses and networks a rule's text names."""
    out = []
    for tok in re.split(r"[\s,]+", rule_text):
        if "." in tok or ":" in tok:
            try:
                out.append(ipaddress.ip_network(tok, strict=False))
            except ValueError:
                pass
    return out


class _Default:
    """How a warning names the rule an allow overrides: the policy's default."""

    def __init__(self) -> None:
        self.loc: str | None = None

    def __str__(self) -> str:
        return f"the policy's `default` ({self.loc})" if self.loc else "the policy's `default`"


def _ruleset(policy: str, recs: list[Record], opts: Options) -> tuple[list[str], list[Item]]:
    file_paths: dict[str, set[str]] = defaultdict(set)   # op -> paths
    exec_paths: set[str] = set()
    mount_paths: set[str] = set()
    net: dict[tuple[str, str], str | None] = {}           # (op, object) -> address
    caps: set[str] = set()
    signals: dict[str | None, set[str]] = defaultdict(set)  # target exe -> signals
    ptrace: set[str | None] = set()
    module = bpf = False
    kept: dict[tuple, int] = defaultdict(int)
    failed: dict[tuple, int] = defaultdict(int)
    denied_nets: list[tuple[str, str, list]] = []         # (rule, text, networks) of deny rules
    default = _Default()
    sources = sorted({r.path for r in recs})
    for r in recs:
        e = r.data
        if e["reason"] != "default":
            if e.get("failed_closed"):
                failed[(e["reason"], e["family"], e["op"], str(e["object"].get("path", "")))] += 1
            else:
                kept[(e.get("rule"), e.get("rule_text"), e["decision"])] += 1
                text = e.get("rule_text") or ""
                if e["family"] == "net" and text.startswith("deny "):   # in audit mode: decision `audit`
                    key = (e.get("rule") or "?", text)
                    if all(k[:2] != key for k in denied_nets):
                        denied_nets.append((*key, _networks(text)))
            continue
        default.loc = default.loc or e.get("rule")
        fam, o = e["family"], e["object"]
        if fam in ("file", "exec", "mount") and not str(o.get("path") or "").startswith("/"):
            failed[("no-path", fam, e["op"], str(o.get("path") or ""))] += 1  # pipe:[..], memfd: no rule names them
            continue
        if fam == "file":
            file_paths[e["op"]].add(o.get("path") or "")
        elif fam == "exec":
            exec_paths.add(o.get("path") or "")
        elif fam == "mount":
            mount_paths.add(o.get("path") or "")
        elif fam == "net":
            op, obj = _net_rule(e)
            net[(op, obj)] = o.get("addr") if op == "connect" else None
        elif fam == "capability":
            caps.add(o["capability"])
        elif fam == "signal":
            signals[o.get("target_exe")].add(o["signal"])
        elif fam == "ptrace":
            ptrace.add(o.get("target_exe"))
        elif fam == "module":
            module = True
        elif fam == "bpf":
            bpf = True
    notes: list[str] = []
    items: list[Item] = []
    items += _path_items("file", dict(file_paths), opts, default, notes)
    items += _path_items("exec", {"": exec_paths}, opts, default, notes)
    items += _path_items("mount", {"": mount_paths}, opts, default, notes)
    for (op, obj), addr in sorted(net.items()):
        items.append(_net_item(op, obj, addr, denied_nets, default))
    plain = sorted(c for c in caps if c not in ESSENTIAL_CAPS)
    if plain:
        items.append(Item("allow capability " + ", ".join(plain)))
    for c in sorted(caps & ESSENTIAL_CAPS.keys()):
        items.append(Item(f"allow capability {c}", [comment(
            f"warning: capability {c} ({ESSENTIAL_CAPS[c]}) is a host essential: this allow overrides {default}")],
            warning=True))
    for target in sorted(signals, key=lambda t: t or ""):
        to = f" to exe {quote(literal(target))}" if target else ""
        items.append(Item(f"allow signal {', '.join(sorted(signals[target]))}{to}"))
    for target in sorted(ptrace, key=lambda t: t or ""):
        items.append(Item("allow ptrace" + (f" to exe {quote(literal(target))}" if target else "")))
    for fam, used, rule in (("module", module, "allow module load"), ("bpf", bpf, "allow bpf")):
        if used:
            items.append(Item(rule, [comment(f"warning: {ESSENTIAL_FAMILIES[fam]} is a host essential: "
                                             f"this allow overrides {default}")], warning=True))
    head = [f"# suggested by `policyc suggest` from {len(recs)} events of policy `{policy}` "
            f"({', '.join(sources)})",
            f"# to use: include this file and add `use {ruleset_name(policy)}` to policy `{policy}`",
            "# review every rule before enforcing, globs first (docs/learning.md)"]
    for (loc, text, decision), n in sorted(kept.items(), key=lambda kv: str(kv[0])):
        head.append(f"# kept: {n} events decided by rule {loc or '?'} ({text or decision}): no allow proposed")
    for (reason, fam, op, path), n in sorted(failed.items()):
        what = "not a path" if reason == "no-path" else f"failed closed: {reason}"
        head.append(f"# {what}: {n} {fam} {op} events{' on ' + path if path else ''}: no allow proposed")
    for d in opts.widen:
        if not any(_under(p, d) for paths in file_paths.values() for p in paths):
            head.append(f"# --widen {d}: no file events under it, nothing widened")
    head += [f"# {n}" for n in notes]
    head = [comment(h[2:]) for h in head]
    return head, items


def _path_items(fam: str, by_op: dict[str, set[str]], opts: Options, default: _Default,
                notes: list[str]) -> list[Item]:
    """Rules for the paths of one family, by operation (`""`: a family without operations)."""
    exact: dict[str, set[str]] = defaultdict(set)        # pattern -> ops
    warned: dict[tuple[str, Essential], set[str]] = defaultdict(set)   # an essential seen: (pattern, it) -> ops
    globs: dict[tuple[str, tuple[str, ...]], tuple[Pattern, set[str]]] = {}
    for op, paths in sorted(by_op.items()):
        paths = {p for p in paths if p}
        if not paths:
            continue
        what = f"{fam} {op}".strip()
        for pat in plan_paths(paths, opts, what, widen=fam == "file", notes=notes):
            if pat.is_glob:
                globs.setdefault((pat.text, pat.seen), (pat, set()))[1].add(op)
            elif (ess := essential_path(pat.seen[0])) is not None:
                warned[(pat.text, ess)].add(op)
            else:
                exact[pat.text].add(op)

    def rule(ops, pats) -> str:
        ops_text = ", ".join(sorted(ops)) + " " if any(ops) else ""
        return f"allow {fam} {ops_text}{', '.join(quote(p) for p in sorted(pats))}"

    items: list[Item] = []
    by_ops: dict[tuple, list[str]] = defaultdict(list)
    for pat, ops in exact.items():
        by_ops[tuple(sorted(ops))].append(pat)
    for ops, pats in sorted(by_ops.items()):
        items.append(Item(rule(ops, pats)))
    for (pat, e), ops in sorted(warned.items(), key=lambda kv: kv[0][0]):
        items.append(Item(rule(ops, [pat]), [comment(
            f'warning: "{pat}" is a host essential ({e.why}), seen in the log: this allow overrides {default}')],
            warning=True))
    for (text, seen), (pat, ops) in sorted(globs.items(), key=lambda kv: (kv[0][0], sorted(kv[1][1]))):
        shown = ", ".join(seen[:SHOWN]) + (f" and {len(seen) - SHOWN} more" if len(seen) > SHOWN else "")
        lines = [comment(f'"{text}" stands for {len(seen)} {"path" if len(seen) == 1 else "paths"} seen: {shown}')]
        if pat.requested:
            lines.append(comment(f"widened on request (--widen {pat.base})"))
        also = pat.listing.text() if pat.listing is not None else f"unknown ({pat.base} cannot be listed on this host)"
        lines.append(comment(f"it also matches here: {also}"))
        inside = essentials_overlapping(text)
        warning = bool(inside)
        if inside:   # only essentials that were seen (plan_paths refuses the others)
            lines.append(comment(f"warning: it allows the host essentials {_names(inside)}, seen in the log: "
                                 f"this allow overrides {default}"))
        items.append(Item(rule(ops, [text]), lines, narrow=[rule(ops, [literal(p) for p in seen])],
                          warning=warning))
    return items


def _net_item(op: str, obj: str, addr: str | None, denied_nets, default: _Default) -> Item:
    line = f"allow net {op} {obj}"
    warnings = []
    ess = essential_address(addr)
    if ess is not None:
        warnings.append(comment(f"warning: {addr} is {ess.why}, a host essential: this allow overrides {default}"))
    a = parse_address(addr)
    if a is not None:
        for loc, text, nets in denied_nets:
            if any(a.version == n.version and a in n for n in nets):
                warnings.append(comment(f"warning: rule {loc} ({text}) denies {addr}; this allow would "
                                        "override what it stands for (it allows another protocol or port)"))
    return Item(line, warnings, warning=bool(warnings))
