"""`policyc explain PATH... --exe EXE --op OP [...] [--json]`: the decision for one event,
the policy and the rule that made it (file:line:col and the rule's text).

OP is `FAMILY[.OP]`: `file.read` ... `file.exec-map`, `exec`, `net.connect`, `net.bind`,
`net.create`, `capability` (with --cap, or `capability.NAME`), `signal` (with --signal, or
`signal.NAME`), `ptrace`, `mount`, `module.load`, `bpf`. PATH is absolute, except for `exec`
and `file.exec-map` of a file without one, named as the kernel names it (`memfd:x`). JSON:
`{"version": 1, "decision": "allow|deny|audit", "policy": NAME|null, "rule": "file:line:col"|null,
"governed": bool, ...}`, each place also as an object `{"file", "line", "col"}` beside its
string (`rule_location`, `location`: the place that decided; docs/cli.md, Places); a
process that no policy governs is allowed with policy and rule null
("no policy governs this process"). `--fail-on deny|audit|allow` exits 1 when the decision is
that one (`allow`: allowed, logged or not), for a CI step that asserts a decision.
"""

from __future__ import annotations

import ipaddress
import json
from typing import List, Optional, TextIO

import typer

from ..diagnostics import Diagnostics, did_you_mean
from ..evaluate import Decision, decide, decide_policy, governs, location
from ..ir.model import Event, Program
from ..ir.vocab import FAMILIES
from .common import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, EXIT_USAGE, guarded, load, print_diagnostics


JSON_VERSION = 1   # `version` of `explain --json`'s object: raised when a field changes meaning


def all_ops() -> list[str]:
    """Every OP `--op` accepts (besides `capability.NAME` and `signal.NAME`)."""
    out = []
    for name, fam in FAMILIES.items():
        if fam.op_field is not None or not fam.ops:
            out.append(name)
        else:
            out.extend(f"{name}.{op}" for op in fam.ops)
    return out


def parse_event(exe: str, op: str, path, addr, port, proto, cap, signal, target_exe, target_cgroup,
                cgroup, parents, diags: Diagnostics, *, owner: bool = False, source_exe: str | None = None,
                source_cgroup: str | None = None) -> Event | None:
    """The command-line options as an Event, or diagnostics (no spans: they name options).
    OWNER: the file is the process's own (`owner` rules). SOURCE_EXE, SOURCE_CGROUP: a signal
    or ptrace received by the process `--exe` names, from that sender (`from` rules)."""
    family, _, sub = op.partition(".")
    valid = all_ops()
    kw: dict = {}
    if family not in FAMILIES:
        diags.error("P011", None, f"unknown operation `{op}`", hints=did_you_mean(op, valid) or
                    (f"operations: {', '.join(valid)}",))
        return None
    fam = FAMILIES[family]
    if fam.op_field is not None:
        # the op is carried in its own field (`--cap NAME`, `--signal NAME`, or `--op FAMILY.NAME`)
        given = sub or {"cap": cap, "signal": signal}[fam.op_field]
        if not given:
            diags.error("P011", None, f"`{family}` needs `--{fam.op_field} NAME` (or `--op {family}.NAME`)")
            return None
        name = fam.op_name(given)
        if name not in fam.ops:
            diags.error(fam.unknown_op_code, None, f"unknown {fam.ops_kind} `{given}`",
                        hints=did_you_mean(name, fam.ops))
            return None
        kw[fam.op_field] = name
        op = family
    elif fam.ops:
        if not sub:
            diags.error("P011", None, f"`{family}` needs an operation: "
                        + ", ".join(f"`{family}.{o}`" for o in fam.ops))
            return None
        if sub not in fam.ops:
            diags.error("P011", None, f"unknown operation `{op}`", hints=did_you_mean(op, valid))
            return None
    elif sub:
        diags.error("P011", None, f"unknown operation `{op}`: `{family}` has no sub-operations",
                    hints=(f"write `--op {family}`",))
        return None
    if fam.needs_path and path is None:
        diags.error("P024", None, f"`{op}` needs `--path PATH`")
        return None
    # An executed or executable-mapped file without a path (a memfd, an anonymous inode) is
    # named as the kernel names it, `memfd:x`: the evaluator denies it (docs/semantics.md,
    # anonymous executables). Every other path must be absolute.
    anonymous = op in ("exec", "file.exec-map") and bool(path) and not path.startswith("/")
    for what, value in (("--exe", exe), ("--path", None if anonymous else path), ("--target-exe", target_exe),
                        *(("--parent-exe", p) for p in parents)):
        if value is not None and not value.startswith("/"):
            diags.error("P018", None, f"{what} `{value}` is not an absolute path")
            return None
    if addr is not None:
        try:
            addr = str(ipaddress.ip_address(addr))
        except ValueError:
            diags.error("P019", None, f"bad address `{addr}`", hints=("one IPv4 or IPv6 address, no prefix",))
            return None
    if port is not None and not 0 <= port <= 65535:
        diags.error("P020", None, f"bad port `{port}`", hints=("ports are 0-65535",))
        return None
    if proto is not None and proto not in ("tcp", "udp"):
        diags.error("P019", None, f"unknown protocol `{proto}`", hints=did_you_mean(proto, ("tcp", "udp")) or
                    ("`--proto tcp` or `--proto udp`",))
        return None
    if family == "net" and sub == "connect" and addr is None:
        diags.error("P024", None, "`net.connect` needs `--addr ADDRESS`")
        return None
    if owner and family != "file":
        diags.error("P026", None, f"`--owner` is for `file` operations, not `{op}`",
                    hints=("`owner` rules speak of a file's owner",))
        return None
    received = source_exe is not None or source_cgroup is not None
    if received:
        if family not in ("signal", "ptrace"):
            diags.error("P024", None, f"`--source-exe`/`--source-cgroup` name who sends a signal or traces; "
                        f"`{op}` is neither")
            return None
        if target_exe is not None or target_cgroup is not None:
            diags.error("P024", None, "a received signal or ptrace has `--exe` as the receiver and "
                        "`--source-*` as the sender: `--target-*` does not go with them")
            return None
        if source_exe is not None and not source_exe.startswith("/"):
            diags.error("P018", None, f"--source-exe `{source_exe}` is not an absolute path")
            return None
        kw.update(received=True, source_exe=source_exe, source_cgroup=source_cgroup)
    if owner:
        kw["owner"] = True
    return Event(exe=exe, op=op, path=path, addr=addr, port=port, proto=proto if family == "net" else None,
                 target_exe=target_exe, target_cgroup=target_cgroup, cgroup=cgroup,
                 ancestors=tuple(parents), **kw)


def to_dict(d: Decision, program: Program, event: Event) -> dict:
    """`explain --json`: Decision.to_dict (its places as strings and as `{"file", "line",
    "col"}` objects: `rule_location`, `location`), `version`, `governed`, `policy_location`,
    and `governing`: each policy that governs the process and its own decision."""
    out = {"version": JSON_VERSION, **d.to_dict()}
    out["governed"] = d.policy is not None
    out["policy_location"] = location(d.policy.span if d.policy else None)
    out["governing"] = []
    for p in program.policies:
        if governs(p, event):
            pd = decide_policy(p, event).to_dict()
            out["governing"].append({"policy": p.name, "decision": pd["decision"], "rule": pd["rule"],
                                     "rule_location": pd["rule_location"], "location": pd["location"]})
    return out


def run_explain(paths: list[str], exe: str, op: str, path=None, addr=None, port=None, proto=None, cap=None,
                signal=None, target_exe=None, target_cgroup=None, cgroup=None, parents=(), as_json=False,
                *, out: TextIO, err: TextIO, fail_on: str | None = None, owner: bool = False,
                source_exe: str | None = None, source_cgroup: str | None = None) -> int:
    if fail_on is not None and fail_on not in FAIL_ON:
        err.write(f"policyc: error: `--fail-on {fail_on}`: one of {', '.join(FAIL_ON)}\n")
        return EXIT_USAGE
    diags = Diagnostics()
    program = load(paths, diags).program
    event = parse_event(exe, op, path, addr, port, proto, cap, signal, target_exe, target_cgroup, cgroup,
                        list(parents or ()), diags, owner=owner, source_exe=source_exe,
                        source_cgroup=source_cgroup) if program is not None else None
    if program is None or event is None:
        print_diagnostics(diags, "text", err, err, program)
        return EXIT_BAD_INPUT
    d = decide(program, event)
    if as_json:
        json.dump(to_dict(d, program, event), out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(d, program, event))
    if fail_on is not None and _matches(d.action, fail_on):
        try:
            out.flush()
        except (OSError, ValueError):
            pass
        err.write(f"policyc: the decision is {d.action} (--fail-on {fail_on})\n")
        return EXIT_FAIL
    return EXIT_OK


# `--fail-on deny`: exit 1 when the event is denied; `audit` when it is logged (allowed by an
# audit rule, or a denial in mode audit); `allow` when it is allowed, logged or not.
FAIL_ON = ("deny", "audit", "allow")


def _matches(action: str, fail_on: str) -> bool:
    if fail_on == "allow":
        return action in ("allow", "audit")
    return action == fail_on


def render_text(d: Decision, program: Program, event: Event) -> str:
    lines = [f"decision: {d.action}"]
    if d.policy is None:
        lines.append(f"policy:   none: no policy governs this process (`{event.exe}`)")
        lines.append("rule:     none")
        return "\n".join(lines) + "\n"
    p = d.policy
    lines.append(f"policy:   {p.name} (mode {p.mode}, default {p.default}) at {p.span}")
    if d.rule is not None:
        lines.append(f"rule:     {d.rule.span}: {d.rule.text}")
        for u in d.rule.used_from:
            lines.append(f"          (brought in by `use` at {u})")
    elif d.by == "no-receive-rule":
        lines.append("rule:     none: no receive-side (`from`) rule matches, and the receiving side allows what "
                     "none denies (the policy's default is for what its own processes do)")
    elif d.by == "anonymous-exec":
        lines.append(f"rule:     none: `{event.path}` is a file without a path (a memfd, an anonymous "
                     "inode): executing it or mapping it executable is denied, whatever the rules say")
    else:
        where = f" at {p.default_span}" if p.default_span else " (implicit)"
        lines.append(f"rule:     none: the policy's default `{p.default}`{where}")
    t = d.transition()
    if t is not None:
        lines.append("then:     `" + (event.path or "the program") + "` runs under "
                     + (f"policy `{t['policy']}` (if it is loaded; else the exec is denied)" if t["kind"] == "policy"
                        else f"no rule of policy `{p.name}` (it leaves), nor does what it starts"))
    if p.mode == "audit" and d.action == "audit" and (d.rule is None or d.rule.decision == "deny"):
        lines.append("note:     mode audit: the denial is logged, not enforced")
    others = [q for q in program.policies if q is not p and governs(q, event)]
    for q in others:
        qd = decide_policy(q, event)
        by = f"rule {qd.rule.span}" if qd.rule else "its default"
        lines.append(f"also:     policy {q.name} says {qd.action} ({by}); the most severe decision wins")
    return "\n".join(lines) + "\n"


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="policy files or directories of them"),
    exe: str = typer.Option(..., "--exe", help="the executable of the acting process"),
    op: str = typer.Option(..., "--op", help="FAMILY[.OP]: file.read, exec, net.connect, capability, ..."),
    path: Optional[str] = typer.Option(None, "--path", help="the file (file.*, mount) or program (exec)"),
    addr: Optional[str] = typer.Option(None, "--addr", help="the remote (connect) or local (bind) address"),
    port: Optional[int] = typer.Option(None, "--port", help="the port"),
    proto: Optional[str] = typer.Option(None, "--proto", help="tcp or udp (default tcp)"),
    cap: Optional[str] = typer.Option(None, "--cap", help="the capability (with --op capability)"),
    signal: Optional[str] = typer.Option(None, "--signal", help="the signal (with --op signal)"),
    target_exe: Optional[str] = typer.Option(None, "--target-exe", help="the executable of the target process"),
    target_cgroup: Optional[str] = typer.Option(None, "--target-cgroup", help="the cgroup of the target process"),
    cgroup: Optional[str] = typer.Option(None, "--cgroup", help="the cgroup v2 path of the acting process"),
    parents: Optional[List[str]] = typer.Option(None, "--parent-exe", help="an ancestor's executable, nearest first (repeatable)"),
    owner: bool = typer.Option(False, "--owner", help="file.*: the file is the process's own (its fsuid owns it)"),
    source_exe: Optional[str] = typer.Option(None, "--source-exe",
                                             help="signal, ptrace: received by --exe from this executable"),
    source_cgroup: Optional[str] = typer.Option(None, "--source-cgroup",
                                                help="signal, ptrace: received by --exe from a process in this cgroup"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="text or json (--json is json)"),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", metavar="deny|audit|allow",
                                          help="exit 1 when the decision is this (allow: allowed, logged or not), "
                                               "for a CI step that asserts a decision"),
) -> None:
    """Explain the decision for one event: which policy and rule decide, and where they are."""
    import sys

    if fmt is not None and fmt not in ("text", "json"):
        sys.stderr.write(f"policyc: error: unknown format `{fmt}` (text or json)\n")
        raise typer.Exit(EXIT_USAGE)
    guarded(run_explain, paths, exe, op, path, addr, port, proto, cap, signal, target_exe, target_cgroup,
            cgroup, parents or [], as_json or fmt == "json", out=sys.stdout, err=sys.stderr, fail_on=fail_on,
            owner=owner, source_exe=source_exe, source_cgroup=source_cgroup)
