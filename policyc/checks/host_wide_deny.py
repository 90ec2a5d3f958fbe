"""P030 host-wide-deny (error) and W109 needless-acknowledgement.

A policy that governs every process (`subject all`, an exe pattern that matches every
program, or the root cgroup), in `enforce` mode, that denies what every system needs:
executing a shell, loading the C library, writing /dev/null, ... The host would stop
working at load time. It is an error unless the policy says `acknowledge host-wide-deny`.

Anti-pattern:   policy lockdown { subject all  default deny  allow exec "/usr/sbin/sshd" }
Best practice:  deny the specific things (`deny module load`, `deny file write "/boot/**"`),
                try it with `mode audit` first, or acknowledge the breakage on purpose.

The essentials are events handed to the reference evaluator (`decide_policy`), so whatever
rule or default denies them is found, however it is written. W109: an acknowledgement on a
policy that needs none (it hides future mistakes).
"""

from __future__ import annotations

from dataclasses import replace

from ..diagnostics import Diagnostics, Note
from ..evaluate import decide_policy
from ..ir.model import Event, Policy, Program
from ._globs import matches_everything

ACK = "host-wide-deny"
_ANY_EXE = "/usr/bin/bash"

# (event, how it reads in a message)
ESSENTIALS: tuple[tuple[Event, str], ...] = tuple(
    (Event(_ANY_EXE, op, **kw), text) for op, kw, text in (
        ("exec", {"path": "/bin/sh"}, 'exec "/bin/sh"'),
        ("exec", {"path": "/usr/bin/sh"}, 'exec "/usr/bin/sh"'),
        ("exec", {"path": "/usr/bin/env"}, 'exec "/usr/bin/env"'),
        ("exec", {"path": "/sbin/init"}, 'exec "/sbin/init"'),
        ("file.read", {"path": "/etc/ld.so.cache"}, 'file read "/etc/ld.so.cache"'),
        ("file.read", {"path": "/lib/x86_64-linux-gnu/libc.so.6"}, 'file read "/lib/x86_64-linux-gnu/libc.so.6"'),
        ("file.read", {"path": "/usr/lib/x86_64-linux-gnu/libc.so.6"}, 'file read "/usr/lib/x86_64-linux-gnu/libc.so.6"'),
        ("file.read", {"path": "/usr/lib/aarch64-linux-gnu/libc.so.6"}, 'file read "/usr/lib/aarch64-linux-gnu/libc.so.6"'),
        ("file.read", {"path": "/lib64/ld-linux-x86-64.so.2"}, 'file read "/lib64/ld-linux-x86-64.so.2"'),
        ("file.exec-map", {"path": "/usr/lib/x86_64-linux-gnu/libc.so.6"}, 'file exec-map "/usr/lib/x86_64-linux-gnu/libc.so.6"'),
        ("file.exec-map", {"path": "/lib64/ld-linux-x86-64.so.2"}, 'file exec-map "/lib64/ld-linux-x86-64.so.2"'),
        ("file.read", {"path": "/etc/passwd"}, 'file read "/etc/passwd"'),
        ("file.read", {"path": "/etc/nsswitch.conf"}, 'file read "/etc/nsswitch.conf"'),
        ("file.read", {"path": "/dev/urandom"}, 'file read "/dev/urandom"'),
        ("file.read", {"path": "/dev/null"}, 'file read "/dev/null"'),
        ("file.write", {"path": "/dev/null"}, 'file write "/dev/null"'),
        ("file.write", {"path": "/tmp/policyc-essential"}, 'file write "/tmp/..."'),
        ("file.create", {"path": "/tmp/policyc-essential"}, 'file create "/tmp/..."'),
        ("file.write", {"path": "/run/policyc-essential"}, 'file write "/run/..."'),
        ("file.write", {"path": "/var/log/syslog"}, 'file write "/var/log/syslog"'),
        ("capability", {"cap": "setuid"}, "capability setuid"),
        ("capability", {"cap": "setgid"}, "capability setgid"),
        ("capability", {"cap": "dac_override"}, "capability dac_override"),
        ("capability", {"cap": "chown"}, "capability chown"),
        ("capability", {"cap": "kill"}, "capability kill"),
        ("signal", {"signal": "term", "target_exe": "/usr/bin/sleep"}, "signal term"),
        ("signal", {"signal": "kill", "target_exe": "/usr/bin/sleep"}, "signal kill"),
        # received: systemd stopping a service (`systemctl stop`: SIGTERM, then SIGKILL)
        ("signal", {"signal": "term", "received": True, "source_exe": "/usr/lib/systemd/systemd",
                    "source_cgroup": "/init.scope"}, 'signal term from exe "/usr/lib/systemd/systemd"'),
        ("signal", {"signal": "kill", "received": True, "source_exe": "/usr/lib/systemd/systemd",
                    "source_cgroup": "/init.scope"}, 'signal kill from exe "/usr/lib/systemd/systemd"'),
        ("net.connect", {"proto": "udp", "addr": "127.0.0.53", "port": 53}, "net connect udp 127.0.0.53 port 53"),
        ("net.connect", {"proto": "tcp", "addr": "127.0.0.1", "port": 80}, "net connect tcp 127.0.0.1 port 80"),
    )
)


def host_wide(policy: Policy):
    """The subject that makes `policy` govern every process, or None."""
    for s in policy.subjects:
        if s.kind == "all" or (s.kind == "cgroup" and s.cgroup == "/"):
            return s
        if s.kind == "exe" and matches_everything(s.exe):
            return s
    return None


def denied_essentials(policy: Policy):
    """{rule or None (the default): [essential text, ...]} for essentials the policy denies."""
    out: dict = {}
    for event, text in ESSENTIALS:
        d = decide_owned_or_not(policy, event)
        if d.action == "deny":
            out.setdefault(d.rule, []).append(text)
    return out


def decide_owned_or_not(policy: Policy, event: Event):
    """The decision for a file event whether or not the process owns the file (a system file
    is root's: root's processes own it, the others do not), the denial if either is denied;
    other events as they are."""
    d = decide_policy(policy, event)
    if (d.action != "deny" and event.family == "file" and not event.owner
            and any(r.owner for r in policy.rules)):   # else the same decision again
        owned = decide_policy(policy, replace(event, owner=True))
        if owned.action == "deny":
            return owned
    return d


def run(program: Program, diags: Diagnostics) -> None:
    for policy in program.policies:
        subject = host_wide(policy)
        acked = ACK in policy.acknowledged
        needed = False
        if subject is not None and policy.mode == "enforce":
            culprits = denied_essentials(policy)
            needed = bool(culprits)
            if culprits and not acked:
                _report(policy, subject, culprits, diags)
        if acked and not needed and policy.acknowledge_span is not None:
            why = ("the policy does not govern every process" if subject is None else
                   "in `mode audit` nothing is denied" if policy.mode == "audit" else
                   "it denies nothing essential")
            diags.warning("W109", policy.acknowledge_span, f"`acknowledge {ACK}` acknowledges nothing: {why}",
                          hints=("remove it, so a future host-wide denial is caught",))


def _report(policy: Policy, subject, culprits: dict, diags: Diagnostics) -> None:
    for rule, texts in culprits.items():
        shown = ", ".join(f"`{t}`" for t in texts[:3])
        more = f" and {len(texts) - 3} more" if len(texts) > 3 else ""
        if rule is not None:
            span, what = rule.span, f"rule `{rule.text}`"
        else:
            span, what = policy.default_span or policy.span, "`default deny`"
        diags.error(
            "P030", span,
            f"{what} denies {shown}{more} to every process on the host",
            hints=(f"if this is intended, add `acknowledge {ACK}` to policy `{policy.name}`",
                   "or narrow the rule, or try the policy with `mode audit` first"),
            notes=(Note(subject.span, "this subject makes the policy govern every process"),),
        )
