"""The host essentials a learned policy must not hand out by accident: credentials, private
keys, kernel memory, the module and BPF interfaces, the cloud metadata service. One list, for
`policyc suggest` (which never widens a glob over one of them) and for any check that wants
to know what is sensitive on a host.

Not to be confused with policyc/checks/host_wide_deny.py's ESSENTIALS: those are what every
host *needs* allowed (a shell, the C library); these are what no policy should grant without
meaning to.

`overlap` tells whether two globs can match a common path, exactly: a product of the two
globs' automata (policyc/ir/glob.py's, the ones the evaluator and the kernel's DFA use), with a
third component that leaves out a finite set of paths (the ones seen in a log). Unsure (the
product grew past MAX_STATES): it says they overlap.

>>> g = lambda t: parse_glob(t, NO_SPAN, Diagnostics()).parts
>>> overlap(g("/etc/*"), g("/etc/shadow")), overlap(g("/etc/ssh/*"), g("/etc/ssh/ssh_host_*_key"))
(True, True)
>>> overlap(g("/etc/nginx/*"), g("/etc/shadow")), overlap(g("/etc/ssh/*.pub"), g("/etc/ssh/ssh_host_*_key"))
(False, False)
>>> overlap(g("/etc/{passwd,shadow}"), g("/etc/shadow"), {"/etc/shadow"})
False
>>> [e.pattern for e in essentials_overlapping("/etc/*", {"/etc/passwd"})][:3]
['/etc/shadow', '/etc/shadow-', '/etc/gshadow']
>>> essential_path("/etc/ssh/ssh_host_rsa_key").why, essential_path("/etc/ssh/ssh_host_rsa_key.pub")
('SSH host private keys', None)
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Iterable

from ..diagnostics import Diagnostics
from ..span import NO_SPAN
from .glob import CLASS_OF, matcher, parse_glob, path_bytes
from .model import Lit


@dataclass(frozen=True)
class Essential:
    pattern: str   # a glob (paths) or a network (addresses)
    why: str


PATHS: tuple[Essential, ...] = tuple(Essential(p, w) for p, w in (
    # credentials
    ("/etc/shadow", "password hashes"),
    ("/etc/shadow-", "password hashes (backup)"),
    ("/etc/gshadow", "group password hashes"),
    ("/etc/gshadow-", "group password hashes (backup)"),
    ("/etc/security/opasswd", "old password hashes"),
    ("/etc/sudoers", "who may become root"),
    ("/etc/sudoers.d/**", "who may become root"),
    ("/etc/krb5.keytab", "Kerberos host keys"),
    ("/var/lib/sss/secrets/**", "SSSD secrets"),
    # keys
    ("/etc/ssh/ssh_host_*_key", "SSH host private keys"),
    ("/etc/ssl/private/**", "TLS private keys"),
    ("/etc/pki/tls/private/**", "TLS private keys"),
    ("/root/**", "root's home: keys, tokens, history"),
    ("/home/*/.ssh/**", "users' SSH keys"),
    ("/home/*/.gnupg/**", "users' GnuPG keys"),
    ("/home/*/.aws/**", "users' cloud credentials"),
    ("/home/*/.kube/**", "users' Kubernetes credentials"),
    ("/home/*/.docker/config.json", "users' registry credentials"),
    ("/home/*/.netrc", "users' passwords"),
    ("/home/*/.*_history", "users' shell histories"),
    # kernel memory and process memory
    ("/proc/kcore", "kernel memory"),
    ("/dev/mem", "physical memory"),
    ("/dev/kmem", "kernel memory"),
    ("/dev/port", "I/O ports"),
    ("/proc/kallsyms", "kernel symbol addresses"),
    ("/proc/*/mem", "another process's memory"),
    ("/proc/*/environ", "another process's environment (tokens)"),
    ("/proc/sys/kernel/core_pattern", "a program the kernel runs as root"),
    ("/proc/sys/kernel/modprobe", "a program the kernel runs as root"),
    ("/sys/kernel/debug/**", "debugfs"),
    ("/sys/kernel/tracing/**", "tracefs"),
    ("/sys/kernel/security/**", "the LSMs' interfaces"),
    ("/sys/firmware/efi/efivars/**", "EFI variables"),
    # modules and BPF
    ("/lib/modules/**", "kernel modules"),
    ("/usr/lib/modules/**", "kernel modules"),
    ("/sys/module/**", "kernel modules' parameters"),
    ("/etc/modprobe.d/**", "which kernel modules load, and how"),
    ("/etc/modules-load.d/**", "kernel modules loaded at boot"),
    ("/sys/fs/bpf/**", "pinned BPF programs and maps (policyc's own)"),
    ("/boot/**", "the kernel and its initramfs"),
    # the container runtime (its socket is root)
    ("/run/docker.sock", "the Docker daemon"),
    ("/var/run/docker.sock", "the Docker daemon"),
    ("/run/containerd/containerd.sock", "containerd"),
))

# Cloud instance metadata services: they hand out the instance's credentials.
ADDRESSES: tuple[Essential, ...] = tuple(Essential(n, w) for n, w in (
    ("169.254.169.254/32", "the cloud metadata service (instance credentials)"),
    ("169.254.170.2/32", "the ECS task metadata service (task credentials)"),
    ("fd00:ec2::254/128", "the cloud metadata service (instance credentials)"),
    ("100.100.100.200/32", "the Alibaba Cloud metadata service (instance credentials)"),
))

# Families and capabilities that reach into the kernel itself.
FAMILIES: dict[str, str] = {
    "module": "loading kernel modules",
    "bpf": "the bpf() system call: BPF programs and maps",
}
CAPABILITIES: dict[str, str] = {
    "sys_module": "loading kernel modules",
    "sys_rawio": "raw I/O: device memory and ports",
    "bpf": "BPF programs and maps",
    "mac_admin": "configuring the LSMs",
    "mac_override": "overriding the LSMs",
}

MAX_STATES = 50000   # product states explored before giving up (then: "they overlap")


@functools.lru_cache(maxsize=4096)
def glob_parts(text: str) -> tuple:
    """The parsed parts of a glob written by policyc itself (ValueError if it does not parse)."""
    diags = Diagnostics()
    g = parse_glob(text, NO_SPAN, diags)
    if g is None:
        raise ValueError(f"not a glob: {text!r}")
    return g.parts


def overlap(a, b, exclude: Iterable[str] = ()) -> bool:
    """Some path both globs (parts) match, other than the paths in `exclude`."""
    ma, mb = matcher(a), matcher(b)
    ma.fresh()
    mb.fresh()
    excluded = frozenset(path_bytes(p) for p in exclude)
    prefixes = frozenset(x[:i] for x in excluded for i in range(len(x) + 1))
    named = ma.nfa.named_bytes() | mb.nfa.named_bytes() | {c for x in excluded for c in x}
    alphabet = sorted(named)
    for cls in range(3):   # one byte no one names per class: all such bytes behave alike
        rep = next((c for c in range(256) if CLASS_OF[c] == cls and c not in named), None)
        if rep is not None:
            alphabet.append(rep)
    start = (1, 1, b"" if prefixes else None)
    seen = {start}
    stack = [start]
    while stack:
        sa, sb, t = stack.pop()
        if ma.accepting[sa] and mb.accepting[sb] and t not in excluded:
            return True
        for ch in alphabet:
            sa2 = ma.step(sa, ch)
            if not sa2:
                continue
            sb2 = mb.step(sb, ch)
            if not sb2:
                continue
            t2 = None
            if t is not None:
                t2 = t + bytes((ch,))
                if t2 not in prefixes:
                    t2 = None
            state = (sa2, sb2, t2)
            if state not in seen:
                if len(seen) > MAX_STATES:
                    return True
                seen.add(state)
                stack.append(state)
    return False


def essentials_overlapping(pattern: str, seen: Iterable[str] = ()) -> list[Essential]:
    """The essential paths a glob (its text) would also allow, paths in `seen` aside."""
    seen = frozenset(seen)
    parts = glob_parts(pattern)
    head = _prefix(parts)
    return [e for e in PATHS
            if _compatible(head, _prefix(glob_parts(e.pattern))) and overlap(parts, glob_parts(e.pattern), seen)]


def essential_path(path: str) -> Essential | None:
    """The first essential that names the path."""
    b = path_bytes(path)
    for e in PATHS:
        parts = glob_parts(e.pattern)
        if path.startswith(_prefix(parts)) and matcher(parts).matches(b):
            return e
    return None


def _prefix(parts) -> str:
    """The text every match starts with."""
    return parts[0].text if parts and isinstance(parts[0], Lit) else ""


def _compatible(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def parse_address(addr: str | None):
    """An address as the log writes it, IPv4-mapped IPv6 as IPv4; None if it is none."""
    try:
        a = ipaddress.ip_address(addr or "")
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def essential_address(addr: str | None) -> Essential | None:
    """The essentials entry whose network holds `addr` (IPv4-mapped IPv6 as IPv4), or None."""
    a = parse_address(addr)
    if a is None:
        return None
    for e in ADDRESSES:
        net = ipaddress.ip_network(e.pattern)
        if a.version == net.version and a in net:
            return e
    return None


__all__ = ["Essential", "PATHS", "ADDRESSES", "FAMILIES", "CAPABILITIES", "overlap", "glob_parts",
           "essentials_overlapping", "essential_path", "essential_address",
           "parse_address"]
