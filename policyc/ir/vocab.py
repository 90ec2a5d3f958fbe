"""The names the language knows: families, their operations, capabilities, signals.

One table decides what each family accepts; the parser stays generic, checks use these
tables for "did you mean", the evaluator and codegen for meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

FILE_OPS = (
    "read", "write", "append", "create", "delete", "rename", "link", "chmod", "chown", "exec-map",
)
NET_OPS = ("connect", "bind", "create")
PROTOCOLS = ("any", "tcp", "udp", "icmp", "raw", "packet")

# Linux capabilities (include/uapi/linux/capability.h), by number.
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)

# Signal names without the SIG prefix, by x86-64 number.
SIGNALS = {
    "hup": 1, "int": 2, "quit": 3, "ill": 4, "trap": 5, "abrt": 6, "bus": 7, "fpe": 8,
    "kill": 9, "usr1": 10, "segv": 11, "usr2": 12, "pipe": 13, "alrm": 14, "term": 15,
    "stkflt": 16, "chld": 17, "cont": 18, "stop": 19, "tstp": 20, "ttin": 21, "ttou": 22,
    "urg": 23, "xcpu": 24, "xfsz": 25, "vtalrm": 26, "prof": 27, "winch": 28, "io": 29,
    "pwr": 30, "sys": 31,
}


@dataclass(frozen=True)
class Family:
    name: str
    ops: tuple[str, ...]          # what may stand in the OPS position; () = nothing may
    ops_kind: str                 # what the OPS position names, for messages
    objects: str                  # "paths", "net", "none" or "paths?" (optional paths)
    target: bool = False          # takes `to exe|cgroup ...`
    needs_ops: bool = False       # an event of this family names one op


FAMILIES = {
    "file": Family("file", FILE_OPS, "file operation", "paths?", needs_ops=True),
    "exec": Family("exec", (), "operation", "paths?"),
    "net": Family("net", NET_OPS, "network operation", "net", needs_ops=True),
    "capability": Family("capability", CAPABILITIES, "capability", "none", needs_ops=True),
    "signal": Family("signal", tuple(SIGNALS), "signal", "none", target=True, needs_ops=True),
    "ptrace": Family("ptrace", (), "operation", "none", target=True),
    "mount": Family("mount", (), "operation", "paths?"),
    "module": Family("module", ("load",), "module operation", "none", needs_ops=True),
    "bpf": Family("bpf", (), "operation", "none"),
}

DECISIONS = ("allow", "deny", "audit")
MODES = ("enforce", "audit")
DEFAULTS = ("allow", "deny")
