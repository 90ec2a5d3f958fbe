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
    """The language's view of a rule family: the registry lowering, test blocks and
    `explain` read (tests/unit/test_family_registries.py holds every other layer to its keys)."""
    name: str
    ops: tuple[str, ...]          # what may stand in the OPS position; () = nothing may
    ops_kind: str                 # what the OPS position names, for messages
    objects: str                  # "paths", "net", "none" or "paths?" (optional paths)
    target: bool = False          # takes `to exe|cgroup ...`
    needs_ops: bool = False       # an event of this family names one op
    op_prefix: str = ""           # a prefix an op may be written with (`SIGTERM`, `CAP_CHOWN`)
    unknown_op_code: str = "P011" # the diagnostic for an op the family does not have
    # Where an event carries its op: None: in `event.op` as `FAMILY.OP` (`file.read`); else the
    # Event field that names it (`cap`, `signal`), `event.op` being the family alone.
    op_field: str | None = None
    needs_path: bool = False      # an event of this family names a path (`expect`, `explain`)
    first_op_number: int | None = None   # ops may be given by number (signal 15, capability 0)

    def op_name(self, written: str) -> str:
        """An op as written, in the vocabulary's spelling (`SIGTERM` -> `term`)."""
        name = written.lower().removeprefix(self.op_prefix)
        if self.first_op_number is not None and name.isdigit():
            i = int(name) - self.first_op_number
            if 0 <= i < len(self.ops):
                return self.ops[i]
        return name


FAMILIES = {
    "file": Family("file", FILE_OPS, "file operation", "paths?", needs_ops=True, needs_path=True),
    "exec": Family("exec", (), "operation", "paths?", needs_path=True),
    "net": Family("net", NET_OPS, "network operation", "net", needs_ops=True),
    "capability": Family("capability", CAPABILITIES, "capability", "none", needs_ops=True, op_prefix="cap_",
                         unknown_op_code="P012", op_field="cap", first_op_number=0),
    "signal": Family("signal", tuple(SIGNALS), "signal", "none", target=True, needs_ops=True, op_prefix="sig",
                     unknown_op_code="P013", op_field="signal", first_op_number=1),
    "ptrace": Family("ptrace", (), "operation", "none", target=True),
    "mount": Family("mount", (), "operation", "paths?"),
    "module": Family("module", ("load",), "module operation", "none", needs_ops=True),
    "bpf": Family("bpf", (), "operation", "none"),
}

DECISIONS = ("allow", "deny", "audit")
MODES = ("enforce", "audit")
DEFAULTS = ("allow", "deny")
