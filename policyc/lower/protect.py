"""`protect policyc`: the rules that keep a policy's processes from policyc itself.

The statement lowers into ordinary deny rules, appended after the policy's written rules
(their ids continue), each spanned on the `protect policyc` statement (so `explain`, audit
records and the kernel name that line) and with its canonical text as if it were written
(`deny bpf`). They are made as syntax nodes and lowered by policyc/lower/rules.py like any
rule, so every check, the evaluator and the code generator treat them as rules; the kernel
needs nothing new. docs/language.md, "Self-protection", says why each is there and what
stays open.

The paths come from where each fact is kept: policyc/install.py (sources, build output,
logs, units) and policyc/paths.py (bpffs pins, the state directory, cgroup v2, systemd's
runtime units and private socket). Neither imports the runtime (cffi).
"""

from __future__ import annotations

from ..ir import syntax as S
from ..span import Span

# What `protect NAME` may name.
TARGETS = ("policyc",)

# Every way a file changes: the ops of FILE_OPS less `read` and `exec-map`.
WRITE_OPS = ("write", "append", "create", "delete", "rename", "link", "chmod", "chown")


def _tree(path: str) -> tuple[str, str]:
    """A directory and everything below it (`dir/**` alone does not match `dir`)."""
    return (path, path + "/**")


def rule_specs() -> list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, str] | None]]:
    """(family, ops, paths, target) of each rule `protect policyc` adds, in order. Paths and
    cgroups are read from their constants when asked (a test may change them)."""
    from .. import install
    from .. import paths as P

    units = P.UNIT_GLOB
    unit_dirs = (install.UNIT_DIR, P.RUNTIME_UNIT_DIR)
    slice_cg = P.SLICE_CGROUP
    specs = [
        # policyc's files: the sources (install.SOURCES is below ETC), the built objects and
        # manifests boot loads, the audit log, the loaded policies' manifests and records
        ("file", WRITE_OPS, (*_tree(install.ETC), *_tree(install.BUILD), *_tree(install.LOGS),
                             *_tree(P.STATE_DIR)), None),
        # the pinned links and maps: unlinking a link's pin drops the last reference
        ("file", WRITE_OPS, _tree(P.DEFAULT_PIN_ROOT), None),
        # the units and their slice, their drop-ins (also the runtime ones in /run) and the
        # enable links
        ("file", WRITE_OPS, tuple(p for d in unit_dirs for u in (units, P.POLICYC_SLICE)
                                  for p in (f"{d}/{u}", f"{d}/{u}.d", f"{d}/{u}.d/**"))
         + (f"{install.UNIT_DIR}/*.wants/{units}",), None),
        # the units' slice: cgroup.kill and cgroup.freeze stop its processes without a signal;
        # and every cgroup.procs and cgroup.threads: a write to one moves a process, which would
        # take the audit reader out of the slice (and the rules below off it) or a governed
        # process into it
        ("file", WRITE_OPS, (*_tree(f"{P.CGROUP_ROOT}{slice_cg}"),
                             *(f"{P.CGROUP_ROOT}{mid}/cgroup.{f}" for f in ("procs", "threads") for mid in ("", "/**"))),
         None),
        # systemctl's private socket to PID 1 (`systemctl stop policyc-audit`): connecting to
        # an AF_UNIX socket is a `file write` of its path
        ("file", ("write",), (P.SYSTEMD_PRIVATE,), None),
        # every bpf(2) command: getting a pin, a link or map by id, detaching, map writes
        ("bpf", (), (), None),
        # kernel code could unhook anything (kexec_file_load is decided as a module load)
        ("module", (), (), None),
        # the loader and the audit reader: everything in policyc.slice (a target covers the
        # cgroups below it)
        ("signal", (), (), ("cgroup", slice_cg)),
        ("ptrace", (), (), ("cgroup", slice_cg)),
        # a mount over the pins, the sources or the build output, or over any directory above
        # them, hides them; an umount of bpffs drops the pins
        ("mount", (), (*_tree(P.BPFFS), *_tree(install.ETC), *_tree(install.BUILD),
                       *_ancestors(P.BPFFS, install.ETC, install.BUILD, P.STATE_DIR), P.STATE_DIR), None),
    ]
    return specs


def _ancestors(*paths: str) -> tuple[str, ...]:
    """Every directory above PATHS, once, `/` first."""
    out: list[str] = []
    for p in paths:
        parts = p.strip("/").split("/")
        for i in range(len(parts)):
            a = "/" + "/".join(parts[:i])
            if a not in out:
                out.append(a)
    return tuple(out)


def rule_text(family: str, ops, paths, target) -> str:
    words = ["deny", family]
    if ops:
        words.append(", ".join(ops))
    if paths:
        words.append(", ".join(f'"{p}"' for p in paths))
    if target:
        words.append(f'to {target[0]} "{target[1]}"')
    return " ".join(words)


def syntax_rules(span: Span) -> list[tuple[S.Rule, str]]:
    """The rules as syntax nodes spanned on the statement, with their texts."""
    out = []
    for family, ops, paths, target in rule_specs():
        body = S.RuleBody(
            S.Name(family, span),
            tuple(S.Name(o, span) for o in ops),
            tuple(S.Str(p, f'"{p}"', span) for p in paths),
            None,
            S.Target(target[0], S.Str(target[1], f'"{target[1]}"', span), span) if target else None,
        )
        out.append((S.Rule(S.Name("deny", span), body, span), rule_text(family, ops, paths, target)))
    return out

