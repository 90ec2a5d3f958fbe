"""The kernel ABI: every number, name and byte layout that crosses between Python and the BPF C.

Python writes map contents (codegen/tables.py at build time, deploy.py and execute.py at load
and run time) and reads the ring buffer and counters (audit/, deploy.py); the C in templates/
reads and writes the same bytes. Both sides take them from here: templates/common/abi.h is
generated from this module and committed,

    python -m policyc.abi --write      # or: python -m policyc.abi > templates/common/abi.h

and tests/unit/test_abi.py fails when the committed header differs from what this module
generates, or when clang lays a struct out other than `Struct` computes here (it compares
every member with the BTF of a compiled policy object).

Standard library only, and nothing else of policyc: the audit side (`policyc audit`, `exec`,
`status`) imports this without the compiler (lark, jinja2, codegen).

Names are the C names, so one grep finds both sides. Every constant, enum member included, is
also a module attribute (`abi.HOOK_PATH_RENAME`, `abi.CFG_MODE_AUDIT`); enums also map values
to the labels the audit log and the manifest use (`abi.HOOKS[6] == "path_rename"`).
"""

from __future__ import annotations

import struct as _struct
import sys
from dataclasses import dataclass
from pathlib import Path

# ---- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """A `#define`. `c` is the C text when it says more than the number (a sum, a shift, hex)."""

    name: str
    value: int
    comment: str = ""
    c: str | None = None

    def c_text(self) -> str:
        return self.c if self.c is not None else str(self.value)


@dataclass(frozen=True)
class Defines:
    """A group of #defines with one comment."""

    doc: str
    items: tuple[Const, ...]


def _flag(name: str, value: int, comment: str = "") -> Const:
    return Const(name, value, comment, hex(value))


@dataclass(frozen=True)
class Member:
    """An enum member. `label`: its name in the audit log and the manifest (None: a count)."""

    name: str
    value: int
    label: str | None
    comment: str = ""


@dataclass(frozen=True)
class Enum:
    name: str          # the C tag: `enum policyc_hook`
    doc: str
    members: tuple[Member, ...]

    @property
    def labels(self) -> dict[int, str]:
        """value -> label, for the labelled members."""
        return {m.value: m.label for m in self.members if m.label is not None}

    @property
    def index(self) -> dict[str, int]:
        """label -> value."""
        return {m.label: m.value for m in self.members if m.label is not None}


def _enum(name: str, doc: str, members: list[tuple]) -> Enum:
    return Enum(name, doc, tuple(Member(*m) for m in members))


# C types a field may have: (size, alignment, struct format code). A bpf_spin_lock is a __u32
# to user space: the kernel never copies it from a map update nor into a lookup's result.
CTYPES = {
    "__u8": (1, 1, "B"),
    "__u16": (2, 2, "H"),
    "__u32": (4, 4, "I"),
    "__u64": (8, 8, "Q"),
    "char": (1, 1, "s"),
    "struct bpf_spin_lock": (4, 4, "I"),
}


def _count(count: int | str | None) -> int:
    if count is None:
        return 1
    if isinstance(count, int):
        return count
    return _CONSTANTS[count]   # a constant's name: POLICYC_N_OPS


@dataclass(frozen=True)
class Field:
    """One member: `count` makes it an array (a number or a constant's name). `as_bytes`: a
    __u8 array Python handles as one bytes value (an address), not one int per element; char
    arrays always are. Fields named `pad...` are explicit padding: zero, never a value."""

    name: str
    ctype: str
    count: int | str | None = None
    comment: str = ""
    as_bytes: bool = False


@dataclass(frozen=True)
class Slot:
    """Where a member, or padding C inserts (`implicit`), sits."""

    field: Field
    offset: int
    size: int        # of the whole member (an array: all its elements)
    count: int       # elements; 1 for a scalar
    code: str        # its struct format: "I", "16s", "3x", "16B"
    implicit: bool = False


def _padding(offset: int, size: int) -> Slot:
    return Slot(Field(f"<padding at {offset}>", "__u8", size), offset, size, size, f"{size}x", implicit=True)


class Struct:
    """A struct that crosses the boundary: its C definition, and its bytes for Python.

    The Python format is little-endian (x86-64 and the BPF target agree) with every byte of
    padding C inserts written out as `x`, so `size` is the C `sizeof` and each value sits at
    its C offset. `pack`/`unpack`/`unpack_from`/`size`/`format` are those of a struct.Struct;
    `pack_fields(name=value, ...)` and `unpack_fields` go by member name (an absent member is
    zero), so no caller depends on the member order."""

    def __init__(self, name: str, doc: str, fields: list[Field], packed: bool = False,
                 tail_padding: bool = True):
        self.name, self.doc, self.fields, self.packed = name, doc, tuple(fields), packed
        slots, off, align = [], 0, 1
        for f in self.fields:
            size, falign, code = CTYPES[f.ctype]
            count = _count(f.count)
            falign = 1 if packed else falign
            if off % falign:
                slots.append(_padding(off, falign - off % falign))
                off += slots[-1].size
            if f.name.startswith("pad"):
                c = f"{size * count}x"
            elif code == "s" or f.as_bytes:
                c = f"{size * count}s"
            else:
                c = f"{count}{code}" if f.count is not None else code
            slots.append(Slot(f, off, size * count, count, c))
            off += size * count
            align = max(align, falign)
        if tail_padding and off % align:
            slots.append(_padding(off, align - off % align))
            off += slots[-1].size
        self.slots = tuple(slots)
        self.align = align
        self.format = "<" + "".join(s.code for s in slots)
        self._codec = _struct.Struct(self.format)
        self.size = self._codec.size
        assert self.size == off, (name, self.size, off)
        self.pack = self._codec.pack
        self.unpack = self._codec.unpack
        self.unpack_from = self._codec.unpack_from
        self.iter_unpack = self._codec.iter_unpack
        # the members that carry a value, in the order pack/unpack take them (pads carry none)
        self._valued = tuple(s for s in slots if not s.code.endswith("x"))
        self.names = tuple(s.field.name for s in self._valued)

    def member(self, name: str) -> Slot:
        for s in self.slots:
            if s.field.name == name:
                return s
        raise KeyError(f"struct {self.name} has no member `{name}`")

    def offset(self, name: str) -> int:
        return self.member(name).offset

    def pack_fields(self, **values) -> bytes:
        args = []
        for s in self._valued:
            v = values.pop(s.field.name, None)
            if s.code.endswith("s"):
                args.append(v if v is not None else b"")
            elif s.field.count is not None:
                v = tuple(v) if v is not None else (0,) * s.count
                if len(v) != s.count:
                    raise ValueError(f"struct {self.name}.{s.field.name} takes {s.count} values, not {len(v)}")
                args.extend(v)
            else:
                args.append(v or 0)
        if values:
            raise KeyError(f"struct {self.name} has no member {sorted(values)}")
        return self._codec.pack(*args)

    def unpack_fields(self, data: bytes, offset: int = 0) -> dict:
        flat = iter(self._codec.unpack_from(data, offset))
        out = {}
        for s in self._valued:
            if s.field.count is not None and not s.code.endswith("s"):
                out[s.field.name] = tuple(next(flat) for _ in range(s.count))
            else:
                out[s.field.name] = next(flat)
        return out

    def prefix(self, upto: str) -> "Struct":
        """The members before `upto`, ending where it starts (an event's header: what comes
        before the path, of which only path_len + 1 bytes are sent)."""
        names = [f.name for f in self.fields]
        sub = Struct(f"{self.name} before {upto}", "", list(self.fields[:names.index(upto)]),
                     self.packed, tail_padding=False)
        # C may pad between the last header member and `upto`: the header then ends there
        gap = self.offset(upto) - sub.size
        if gap:
            sub = Struct(sub.name, "", [*sub.fields, Field("pad_header", "__u8", gap)], self.packed,
                         tail_padding=False)
        return sub

    def __repr__(self) -> str:
        return f"<abi.Struct {self.name} size={self.size} format={self.format!r}>"


@dataclass(frozen=True)
class Map:
    """A map Python fills or reads (or both): its key and value C types."""

    name: str
    key: str
    value: str
    comment: str = ""


# ---- limits ---------------------------------------------------------------------------------

LIMITS = Defines("Limits both sides hold to.", (
    Const("POLICYC_PATH_MAX", 4096, "longest path decided, NUL included"),
    Const("POLICYC_TAIL_MASK", 8191, "offsets into the event's tail (path, exe, parent exe, args) are "
          "masked with this: the verifier's bound; the tail never reaches it"),
    Const("POLICYC_PATH_BUF", 8192 + 256, "the event's tail: the object's path (at most POLICYC_PATH_MAX), "
          "then the executable's, the parent's executable's and the args in what is left (a path that "
          "does not fit is flagged unresolved), with room for one more name while building. struct "
          "scratch holds it and the walk's names in one per-CPU value, which must stay under 32 KiB",
          "(8192 + 256)"),
    Const("POLICYC_ARGS_MAX", 256, "bytes of argv an event carries (NUL-separated, cut there)"),
    Const("MAX_COMPONENTS", 2048, "names a walk records: a 4,096-byte path has at most 2,048"),
    Const("MAX_NET_ENTRIES", 4096, "longest slice of net_entries a lookup scans"),
    Const("MAX_TASK_RULES", 256, "task_rules a signal or ptrace scans at most"),
    Const("MAX_TARGET_PATTERNS", 64, "`to exe` targets: the bits of verdict.targets"),
    Const("LOADED_POLICIES_MAX", 1024, "loaded_policies' entries: policies loaded at once"),
    Const("CGROUP_LEVELS", 31, "config.cgroup_levels: ancestors tested, root first"),
    Const("RULE_DROPS_MAX", 4096, "rule ids rule_drops counts; past them: per hook only"),
    Const("RULE_SUPPRESSED_MAX", 4096, "rules with a `limit` (build refuses more)"),
    Const("POLICYC_N_CAPS", 64, "capability numbers cap_verdicts holds"),
    Const("POLICYC_CAP_PERSONALITY", 64, "event.aux at uring_override_creds: not a capability"),
    Const("POLICYC_N_SIMPLE", 2, "simple_verdicts' entries (enum policyc_simple)"),
    Const("DEFAULT_RINGBUF_BYTES", 1 << 22, "events' size when the manifest gives none", "(1 << 22)"),
    Const("NET_KEY_OP_BITS", 8, "net_key.prefixlen counts op's bits before addr"),
    _flag("PROTO_MASK_ANY", 0xFF, "net_entry.proto_mask of `any`: every policyc_proto bit"),
))

FLAGS = (
    Defines("dfa_state.flags and dfa_edge.check", (
        _flag("DFA_ABSORBING", 0x1, "no byte leaves the state: the walk stops there"),
        _flag("DFA_NO_STATE", 0xFFFFFF, "dfa_edge.check of a slot no state owns (above MAX_STATES)"),
    )),
    Defines("config.flags", (
        _flag("CFG_SUBJECT_ALL", 0x1),
        _flag("CFG_SUBJECT_CGROUP", 0x2),
        _flag("CFG_MODE_AUDIT", 0x4),
        _flag("CFG_EXCEPT_CGROUP", 0x8),
        _flag("CFG_RATE_LIMITS", 0x10, "some rule has a `limit`: look rule_limits up"),
        _flag("CFG_RECEIVE_SIGNAL", 0x20, "some signal rule is receive-side (`from`): task_kill "
              "looks the receiver's task storage up"),
        _flag("CFG_RECEIVE_PTRACE", 0x40, "some ptrace rule is receive-side: an attach to a governed "
              "process is decided by those rules (else by the ptrace rules, the process as target)"),
        _flag("CFG_TRANSITIONS", 0x80, "some exec rule has `as`: look exec_transitions up"),
    )),
    Defines("subject_state.state: task storage bits (`policyc exec` writes PENDING through a "
            "pidfd). The NEXT bits are what the exec in progress will make of the task, applied "
            "only at bprm_committing_creds, where the exec can no longer fail: an exec that fails "
            "after bprm_check_security (E2BIG on a `#!` line, a missing ELF interpreter) leaves "
            "the old program as it was.", (
        _flag("SUBJECT_GOVERNED", 0x1, "started a subject executable, or descends from one"),
        _flag("SUBJECT_PENDING", 0x2, "`policyc exec`: governed from its next exec on (unchecked)"),
        _flag("SUBJECT_EXCEPTED", 0x4, "runs an `except exe` program: not governed; not inherited"),
        _flag("SUBJECT_STICKY", 0x8, "governed through a subject cgroup, wherever it moves"),
        _flag("SUBJECT_NEXT_GOVERNED", 0x10, "the exec in progress governs the task (at commit)"),
        _flag("SUBJECT_NEXT_EXCEPTED", 0x20, "the exec in progress excepts the task (at commit)"),
        _flag("SUBJECT_LEFT", 0x40, "ran a program an `as policy`/`as unconfined` rule let leave: "
              "not governed, and neither is anything it starts"),
        _flag("SUBJECT_NEXT_LEFT", 0x80, "the exec in progress leaves the policy (at commit)"),
    )),
    Defines("event.id_flags: how the process's identity was read when the event was sent. An "
            "executable whose path cannot be read whole is named by exe_ino/exe_dev alone.", (
        _flag("ID_NO_EXE", 0x1, "no executable: a kernel thread, or an exiting task without mm"),
        _flag("ID_EXE_UNRESOLVED", 0x2, "the path could not be read (too long, detached, fault)"),
        _flag("ID_EXE_PSEUDO", 0x4, "no path: a memfd or anonymous file, named by its leaf"),
        _flag("ID_EXE_DELETED", 0x8, "the file was unlinked after exec (nlink 0)"),
        _flag("ID_PARENT_NO_EXE", 0x10),
        _flag("ID_PARENT_UNRESOLVED", 0x20),
        _flag("ID_PARENT_PSEUDO", 0x40),
        _flag("ID_PARENT_DELETED", 0x80),
        _flag("ID_ARGS_ABSENT", 0x100, "argv was not recorded at this process's exec"),
        _flag("ID_ARGS_TRUNCATED", 0x200, "argv was longer than POLICYC_ARGS_MAX"),
        _flag("ID_NO_LOGINUID", 0x400, "the kernel keeps no loginuid (no CONFIG_AUDIT)"),
    )),
    Defines("event.flags", (
        _flag("EVENT_RECEIVE", 0x1, "decided on the receiving side: the policy governs target_pid "
              "(signalled or traced), a `from` rule or its absence decided; pid, exe... are the sender's"),
    )),
    Defines("subject_cgroups values", (
        Const("CGROUP_SUBJECT", 1),
        Const("CGROUP_EXCEPT", 2),
    )),
)
DEFINES = (LIMITS, *FLAGS)

# ---- enums ----------------------------------------------------------------------------------

DECISION = _enum("policyc_decision", "A decision; the larger value wins (deny over audit over allow).", [
    ("DECISION_ALLOW", 0, "allow"),
    ("DECISION_AUDIT", 1, "audit"),
    ("DECISION_DENY", 2, "deny"),
])

MODE = _enum("policyc_mode", "event.mode: the policy's mode when it decided.", [
    ("MODE_ENFORCE", 0, "enforce"),
    ("MODE_AUDIT", 1, "audit"),
])

FAMILY = _enum("policyc_family", "event.family: the rule family that decided.", [
    ("FAMILY_FILE", 1, "file"),
    ("FAMILY_EXEC", 2, "exec"),
    ("FAMILY_NET", 3, "net"),
    ("FAMILY_MOUNT", 4, "mount"),
    ("FAMILY_CAPABILITY", 5, "capability"),
    ("FAMILY_SIGNAL", 6, "signal"),
    ("FAMILY_PTRACE", 7, "ptrace"),
    ("FAMILY_MODULE", 8, "module"),
    ("FAMILY_BPF", 9, "bpf"),
])

OP = _enum("policyc_op", "Path operations: the columns of a DFA verdict vector, and event.op of "
           "file, exec and mount events.", [
    ("OP_READ", 0, "read"),
    ("OP_WRITE", 1, "write"),
    ("OP_APPEND", 2, "append"),
    ("OP_CREATE", 3, "create"),
    ("OP_DELETE", 4, "delete"),
    ("OP_RENAME", 5, "rename"),
    ("OP_LINK", 6, "link"),
    ("OP_CHMOD", 7, "chmod"),
    ("OP_CHOWN", 8, "chown"),
    ("OP_EXEC_MAP", 9, "exec-map"),
    ("OP_EXEC", 10, "exec"),
    ("OP_MOUNT", 11, "mount"),
    ("OP_SUBJECT", 12, "subject", "the path is a subject executable (rule: its index + 1)"),
    ("OP_EXCEPT", 13, "except", "the path is an `except exe` program"),
    ("POLICYC_N_OPS", 16, None, "columns: a power of two (the C masks an op with N - 1)"),
])

NET_OP = _enum("policyc_net_op", "event.op of net events, and net_key.op.", [
    ("NET_OP_CONNECT", 0, "connect"),
    ("NET_OP_BIND", 1, "bind"),
    ("NET_OP_CREATE", 2, "create"),
])

PROTO = _enum("policyc_proto", "event.proto; net_entry.proto_mask is a set of these bits.", [
    ("PROTO_TCP", 1, "tcp"),
    ("PROTO_UDP", 2, "udp"),
    ("PROTO_ICMP", 4, "icmp"),
    ("PROTO_RAW", 8, "raw"),
    ("PROTO_PACKET", 16, "packet"),
    ("PROTO_OTHER", 32, "other"),
])

REASON = _enum("policyc_reason", "event.reason: why the decision was made.", [
    ("REASON_RULE", 0, "rule", "a rule decided (rule_id)"),
    ("REASON_DEFAULT", 1, "default", "no rule matched: the policy's default"),
    ("REASON_PATH_TOO_LONG", 2, "path-too-long", "fail closed: longer than POLICYC_PATH_MAX or too deep"),
    ("REASON_DETACHED", 3, "detached-mount", "fail closed: a mount outside the task's namespace tree"),
    ("REASON_READ_FAULT", 4, "read-fault", "fail closed: a kernel read failed"),
    ("REASON_MAP_FAULT", 5, "map-fault", "fail closed: a map lookup or task storage failed"),
    ("REASON_PROTECT", 6, "protect", "rename/link would move a path out from under a deny rule"),
    ("REASON_ANON_EXEC", 7, "anonymous-exec", "executing or mapping a file that has no path (memfd...)"),
    ("REASON_BAD_ADDRESS", 8, "bad-address", "fail closed: a socket address that cannot be read"),
    ("REASON_CRED_OVERRIDE", 9, "credential-override",
     "io_uring personality: the op would run on other credentials"),
    ("REASON_DISCONNECTED", 10, "disconnected",
     "fail closed: a file with no path from its mount's root (opened by handle, not yet connected)"),
    ("REASON_TRANSITION_UNLOADED", 11, "transition-unloaded",
     "fail closed: an `as policy NAME` exec while no policy NAME is loaded"),
])

TRANSITION = _enum("policyc_transition", "exec_transition.kind: what an allowed exec makes of the task.", [
    ("TRANSITION_NONE", 0, "none"),
    ("TRANSITION_POLICY", 1, "policy", "`as policy NAME`: governed by NAME from the commit on"),
    ("TRANSITION_UNCONFINED", 2, "unconfined", "`as unconfined`: leaves this policy"),
])
# The reasons apply_ex (templates/common/policy.h) counts as failed closed: from
# REASON_PATH_TOO_LONG on, but for REASON_PROTECT and REASON_ANON_EXEC.

HOOK = _enum("policyc_hook", "event.hook, and the index of counters: which hook decided. Labels are "
             "the LSM hooks' names, but for mount_syscall (the new mount API's system calls, "
             "decided at `capable`).", [
    ("HOOK_FILE_OPEN", 0, "file_open"),
    ("HOOK_PATH_MKNOD", 1, "path_mknod"),
    ("HOOK_PATH_MKDIR", 2, "path_mkdir"),
    ("HOOK_PATH_SYMLINK", 3, "path_symlink"),
    ("HOOK_PATH_UNLINK", 4, "path_unlink"),
    ("HOOK_PATH_RMDIR", 5, "path_rmdir"),
    ("HOOK_PATH_RENAME", 6, "path_rename"),
    ("HOOK_PATH_LINK", 7, "path_link"),
    ("HOOK_PATH_CHMOD", 8, "path_chmod"),
    ("HOOK_PATH_CHOWN", 9, "path_chown"),
    ("HOOK_PATH_TRUNCATE", 10, "path_truncate"),
    ("HOOK_MMAP_FILE", 11, "mmap_file"),
    ("HOOK_FILE_MPROTECT", 12, "file_mprotect"),
    ("HOOK_BPRM_CHECK", 13, "bprm_check_security"),
    ("HOOK_TASK_ALLOC", 14, "task_alloc"),
    ("HOOK_SOCKET_CONNECT", 15, "socket_connect"),
    ("HOOK_SOCKET_BIND", 16, "socket_bind"),
    ("HOOK_SOCKET_SENDMSG", 17, "socket_sendmsg"),
    ("HOOK_SB_MOUNT", 18, "sb_mount"),
    ("HOOK_MOVE_MOUNT", 19, "move_mount"),
    ("HOOK_CAPABLE", 20, "capable"),
    ("HOOK_TASK_KILL", 21, "task_kill"),
    ("HOOK_PTRACE_ACCESS_CHECK", 22, "ptrace_access_check"),
    ("HOOK_PTRACE_TRACEME", 23, "ptrace_traceme"),
    ("HOOK_KERNEL_READ_FILE", 24, "kernel_read_file"),
    ("HOOK_KERNEL_LOAD_DATA", 25, "kernel_load_data"),
    ("HOOK_KERNEL_MODULE_REQUEST", 26, "kernel_module_request"),
    ("HOOK_BPF", 27, "bpf"),
    ("HOOK_SOCKET_CREATE", 28, "socket_create"),
    ("HOOK_UNIX_STREAM_CONNECT", 29, "unix_stream_connect"),
    ("HOOK_UNIX_MAY_SEND", 30, "unix_may_send"),
    ("HOOK_SOCKET_LISTEN", 31, "socket_listen"),
    ("HOOK_SCTP_BIND_CONNECT", 32, "sctp_bind_connect"),
    ("HOOK_SB_UMOUNT", 33, "sb_umount"),
    ("HOOK_SB_PIVOTROOT", 34, "sb_pivotroot"),
    ("HOOK_URING_OVERRIDE_CREDS", 35, "uring_override_creds"),
    ("HOOK_FILE_SEND_SIGIOTASK", 36, "file_send_sigiotask"),
    ("HOOK_PERF_EVENT_ALLOC", 37, "perf_event_alloc"),
    ("HOOK_BPRM_COMMITTING_CREDS", 38, "bprm_committing_creds"),
    ("HOOK_FILE_IOCTL", 39, "file_ioctl"),
    ("HOOK_MOUNT_SYSCALL", 40, "mount_syscall"),
    ("POLICYC_N_HOOKS", 64, None, "counters' entries: room for hooks to come"),
])

SIMPLE = _enum("policyc_simple", "simple_verdicts' index: one decision for a whole family.", [
    ("SIMPLE_MODULE_LOAD", 0, "module"),
    ("SIMPLE_BPF", 1, "bpf"),
])

TASK_KIND = _enum("policyc_task_kind", "task_rule.kind: what a signal/ptrace rule decides.", [
    ("TASK_SIGNAL", 0, "signal"),
    ("TASK_PTRACE", 1, "ptrace"),
])

TARGET_KIND = _enum("policyc_target_kind", "task_rule.target_kind: whom a signal/ptrace rule names.", [
    ("TARGET_ANY", 0, "any", "no target, or `from all`"),
    ("TARGET_EXE", 1, "exe", "the other's executable: bit target_bit of its verdict.targets"),
    ("TARGET_CGROUP", 2, "cgroup", "the other process's cgroup or an ancestor: target_cgroup"),
])

ENUMS = (DECISION, MODE, FAMILY, OP, NET_OP, PROTO, REASON, TRANSITION, HOOK, SIMPLE, TASK_KIND, TARGET_KIND)

# ---- the errno of a denial ------------------------------------------------------------------
# What a denied system call returns, by the family that decided (#16). Access to a file or a
# network endpoint is EACCES, as AppArmor and Landlock return it and as open(2), execve(2),
# mmap(2), connect(2), bind(2) and socket(2) document it: programs report it as a permission
# problem (nginx answers 403 to EACCES and 500 to EPERM). A privilege the process lacks is
# EPERM, as the kernel's own checks return it: a capability, a signal (kill(2)), a ptrace, a
# mount, a module, bpf(2). Fail-closed denials of a family return the family's errno.
DENY_ERRNO_BY_FAMILY = {
    "file": "EACCES", "exec": "EACCES", "net": "EACCES",
    "mount": "EPERM", "capability": "EPERM", "signal": "EPERM", "ptrace": "EPERM",
    "module": "EPERM", "bpf": "EPERM",
}
assert set(DENY_ERRNO_BY_FAMILY) == set(FAMILY.labels.values())
_EACCES_FAMILY_MASK = sum(1 << v for v, label in FAMILY.labels.items() if DENY_ERRNO_BY_FAMILY[label] == "EACCES")
DENY_ERRNO = Defines("The errno of a denial: EACCES for the families whose bit is set, else EPERM "
                     "(policyc/abi.py, DENY_ERRNO_BY_FAMILY says why).", (
    Const("EPERM", 1), Const("EACCES", 13),
    _flag("POLICYC_EACCES_FAMILIES", _EACCES_FAMILY_MASK, "bit n: family n's denials return EACCES"),
))
DEFINES = (*DEFINES, DENY_ERRNO)


# A denied capability is the exception: capable() only learns yes or no, and the kernel check
# that asked picks what the system call returns: EPERM for most (the hook's own -EPERM), but
# EACCES where the kernel refuses a permission (its usual use of these capabilities).
CAPABILITY_ERRNO = {
    "net_bind_service": "EACCES",   # bind(2) of a port below 1024 (inet_bind)
    "dac_override": "EACCES",       # open(2) of a file its mode refuses (generic_permission)
    "dac_read_search": "EACCES",    # the same, for reading and searching directories
}


def deny_errno(family: int | str, capability: str | None = None) -> str:
    """The errno name a denial decided by `family` (its number or label) returns; for a
    capability, the errno its usual kernel check returns (CAPABILITY_ERRNO)."""
    label = family if isinstance(family, str) else FAMILY.labels.get(family)
    if label == "capability" and capability in CAPABILITY_ERRNO:
        return CAPABILITY_ERRNO[capability]
    return DENY_ERRNO_BY_FAMILY.get(label, "EPERM")

# ---- module attributes ----------------------------------------------------------------------

_CONSTANTS: dict[str, int] = {}
for _group in DEFINES:
    for _c in _group.items:
        _CONSTANTS[_c.name] = _c.value
for _e in ENUMS:
    for _m in _e.members:
        assert _m.name not in _CONSTANTS, _m.name
        _CONSTANTS[_m.name] = _m.value
globals().update(_CONSTANTS)   # abi.HOOK_PATH_RENAME, abi.CFG_MODE_AUDIT, ...
del _group, _c, _e, _m

DECISIONS = DECISION.labels     # 0: "allow", ...
MODES = MODE.labels
FAMILIES = FAMILY.labels
OPS = OP.labels                 # 9: "exec-map", 10: "exec", ...
NET_OPS = NET_OP.labels
PROTOS = PROTO.labels
REASONS = REASON.labels
HOOKS = [HOOK.labels[i] for i in range(len(HOOK.labels))]   # by enum value: contiguous from 0


# The reasons apply_ex (templates/common/policy.h) counts as failed closed: from
# REASON_PATH_TOO_LONG on, but for REASON_PROTECT and REASON_ANON_EXEC.
FAILED_CLOSED = frozenset(v for v in REASONS if v >= _CONSTANTS["REASON_PATH_TOO_LONG"]
                          and v not in (_CONSTANTS["REASON_PROTECT"], _CONSTANTS["REASON_ANON_EXEC"]))


def constant(name: str) -> int:
    """A #define's or enum member's value by its C name."""
    return _CONSTANTS[name]


# ---- structs --------------------------------------------------------------------------------

POLICYC_EVENT = Struct(
    "policyc_event",
    "The ring-buffer event. Fields are ordered by size so the layout has no implicit padding. "
    "Only the header (up to `path`) and the tail are sent: the object's path and its NUL, the "
    "executable's and its NUL, the parent's executable's and its NUL, then args_len bytes.",
    [
        Field("ts_boot_ns", "__u64", None, "bpf_ktime_get_boot_ns()"),
        Field("cgroup_id", "__u64"),
        Field("start_boot_ns", "__u64", None, "the process's start (group leader's start_boottime)"),
        Field("exec_count", "__u64", None, "the group leader's self_exec_id: execs of this process"),
        Field("exe_ino", "__u64", None, "the executable's inode number (0: no mm or no file)"),
        Field("pid", "__u32", None, "thread id"),
        Field("tgid", "__u32", None, "process id"),
        Field("ppid", "__u32", None, "parent's tgid"),
        Field("uid", "__u32"),
        Field("gid", "__u32"),
        Field("euid", "__u32"),
        Field("loginuid", "__u32", None, "(__u32)-1: unset, or the kernel has no audit"),
        Field("exe_dev", "__u32", None, "the executable's device (kernel dev_t: major << 20 | minor)"),
        Field("rule_id", "__u32", None, "0: the default decided, or a fail-closed reason"),
        Field("aux", "__u32", None, "op-specific: capability number, signal number"),
        Field("target_pid", "__u32", None, "signal, ptrace: the other process (its exe: `path`)"),
        Field("path_len", "__u16"),
        Field("port", "__u16", None, "host order"),
        Field("exe_len", "__u16", None, "the executable's path: exe_len bytes after path's NUL"),
        Field("parent_exe_len", "__u16", None, "then the parent's executable's path and its NUL"),
        Field("args_len", "__u16", None, "then argv as read at exec, NUL-separated (0: absent)"),
        Field("id_flags", "__u16", None, "ID_*: how the identity fields were read"),
        Field("decision", "__u8", None, "enum policyc_decision: audit or deny"),
        Field("hook", "__u8", None, "enum policyc_hook"),
        Field("op", "__u8", None, "enum policyc_op (file, exec, mount) or policyc_net_op"),
        Field("reason", "__u8", None, "enum policyc_reason"),
        Field("family", "__u8", None, "enum policyc_family"),
        Field("proto", "__u8", None, "enum policyc_proto bit"),
        Field("mode", "__u8", None, "enum policyc_mode"),
        Field("flags", "__u8", None, "EVENT_*"),
        Field("addr", "__u8", 16, "IPv6, IPv4 as ::ffff:a.b.c.d", as_bytes=True),
        Field("comm", "char", 16),
        Field("path", "char", "POLICYC_PATH_BUF"),
    ])

POLICYC_COUNTERS = Struct(
    "policyc_counters",
    "Per-hook counters (per-CPU array indexed by enum policyc_hook), read by `policyc status`.",
    [
        Field("checked", "__u64", None, "events of governed processes"),
        Field("denied", "__u64"),
        Field("audited", "__u64"),
        Field("failed_closed", "__u64"),
        Field("dropped", "__u64", None, "events the ring buffer had no room for"),
    ])

POLICYC_CONFIG = Struct("policyc_config", "config[0]: the policy as a whole.", [
    Field("flags", "__u32", None, "CFG_*"),
    Field("cgroup_levels", "__u32", None, "how many ancestor levels to test against subject_cgroups"),
    Field("task_rules", "__u32", None, "entries in task_rules"),
    Field("default_decision", "__u8", None, "the policy's default, for what no rule matches"),
    Field("pad", "__u8", 3),
    Field("policy_id", "__u64", None, "policy_id() of the name it is loaded under (filled at load)"),
])

DFA_STATE = Struct("dfa_state", "dfa_states[state]: a state of the path automaton. Its row in dfa_comb holds "
                   "the edges that differ from the default by base class.", [
    Field("next", "__u32", 3, "default successor by base class: '/', 0x80-0xBF, other"),
    Field("verdict", "__u32", None, "index into verdicts"),
    Field("protect_rule", "__u32", None, "deny rule a rename/link of this path would escape, or 0"),
    Field("base", "__u32", None, "where the state's row starts in dfa_comb (any value if it has none)"),
    Field("flags", "__u32", None, "DFA_ABSORBING: every byte leads back here (the walk may stop)"),
])

DFA_EDGE = Struct("dfa_edge", "dfa_comb[base + byte class]: an edge of state `check` (AppArmor's "
                  "base/next/check comb); another state's entry, or DFA_NO_STATE, means the default.", [
    Field("check", "__u32", None, "the state this slot belongs to, or DFA_NO_STATE"),
    Field("next", "__u32"),
])

DFA_CLASSES = Struct("dfa_classes", "dfa_classes[0]: each byte's class, the column of dfa_comb it reads "
                     "(bytes no state tells apart share one).", [
    Field("of", "__u8", 256, as_bytes=True),
])

VERDICT = Struct("verdict", "verdicts[i]: per operation, the winning rule and its decision. A policy "
                 "with `owner` rules has them in pairs: a state's verdict (even index) and then the same "
                 "with the owner rules left out, for a file the process does not own.", [
    Field("rule", "__u32", "POLICYC_N_OPS"),
    Field("decision", "__u8", "POLICYC_N_OPS"),
    Field("targets", "__u64", None, "bit i: `to exe` target pattern i matches"),
])

NET_KEY = Struct("net_key", "net_prefixes' key: (op, IPv6 address) as one LPM prefix.", [
    Field("prefixlen", "__u32", None, "NET_KEY_OP_BITS + the address prefix"),
    Field("op", "__u8", None, "enum policyc_net_op"),
    Field("addr", "__u8", 16, "network order; IPv4 as ::ffff:a.b.c.d", as_bytes=True),
], packed=True)

NET_SLICE = Struct("net_slice", "net_prefixes' value: the prefix's entries in net_entries.", [
    Field("start", "__u32"),
    Field("count", "__u32"),
])

NET_ENTRY = Struct("net_entry", "net_entries[i]: in precedence order within a slice.", [
    Field("rule_id", "__u32"),
    Field("port_lo", "__u16"),
    Field("port_hi", "__u16"),
    Field("proto_mask", "__u8", None, "policyc_proto bits"),
    Field("decision", "__u8"),
    Field("pad", "__u8", 2),
])

SIMPLE_VERDICT = Struct(
    "simple_verdict",
    "A decision that depends on nothing but the family (module load, bpf) or a number "
    "(capability): precomputed at build time.",
    [
        Field("rule_id", "__u32"),
        Field("decision", "__u8"),
        Field("pad", "__u8", 3),
    ])

SUBJECT_STATE = Struct("subject_state", "subjects' task storage.", [
    Field("state", "__u32", None, "SUBJECT_*"),
])

EXEC_TRANSITION = Struct("exec_transition", "exec_transitions[rule id]: an `allow exec ... as` rule's "
                         "transition.", [
    Field("policy_id", "__u64", None, "TRANSITION_POLICY: policy_id() of the policy it enters"),
    Field("kind", "__u32", None, "enum policyc_transition"),
    Field("pad", "__u32"),
])

HANDOFF = Struct("handoff", "handoff's task storage, one map shared by every loaded policy: the "
                 "policy an exec in progress hands the task to (0: none), read at commit.", [
    Field("next_policy", "__u64"),
])

TASK_RULE = Struct(
    "task_rule",
    "task_rules[i]: signal and ptrace rules in precedence order, scanned to the first match "
    "among those of the side being decided (`receive`).",
    [
        Field("sig_mask", "__u64", None, "bit n-1: signal n (signal rules)"),
        Field("target_cgroup", "__u64", None, "TARGET_CGROUP: the cgroup id (filled at load)"),
        Field("rule_id", "__u32"),
        Field("target_bit", "__u32", None, "TARGET_EXE: bit in verdict.targets"),
        Field("kind", "__u8", None, "enum policyc_task_kind"),
        Field("decision", "__u8"),
        Field("target_kind", "__u8", None, "enum policyc_target_kind"),
        Field("receive", "__u8", None, "1: a receive-side rule (`from`): target_* name the sender"),
        Field("pad", "__u8", 4),
    ])

RULE_LIMIT = Struct(
    "rule_limit",
    "rule_limits[rule id] (the default's at 0): `limit N/UNIT`; per_window 0: no limit. A "
    "fixed window that opens with the first event after the previous one closed; the lock "
    "makes the count exact across CPUs. Python writes per_window and window_ns; the rest is "
    "the kernel's.",
    [
        Field("lock", "struct bpf_spin_lock"),
        Field("per_window", "__u32"),
        Field("window_ns", "__u64"),
        Field("window_start", "__u64"),
        Field("sent", "__u64", None, "events sent in the current window"),
    ])

STRUCTS = (POLICYC_EVENT, POLICYC_COUNTERS, POLICYC_CONFIG, DFA_STATE, DFA_EDGE, DFA_CLASSES, VERDICT,
           NET_KEY, NET_SLICE, NET_ENTRY, SIMPLE_VERDICT, SUBJECT_STATE, TASK_RULE, RULE_LIMIT,
           EXEC_TRANSITION, HANDOFF)

# What `policyc audit` decodes: the event up to `path` (offsetof(struct policyc_event, path)).
EVENT_HEADER = POLICYC_EVENT.prefix("path")

# Scalar map keys and values.
U8 = _struct.Struct("<B")
U32 = _struct.Struct("<I")
U64 = _struct.Struct("<Q")

# ---- maps -----------------------------------------------------------------------------------

# Every map of a policy object, by the name it is pinned under (PIN_ROOT/NAME/maps/<name>).
MAPS = {m.name: m for m in (
    Map("config", "__u32", "struct policyc_config", "one entry"),
    Map("dfa_states", "__u32", "struct dfa_state"),
    Map("dfa_classes", "__u32", "struct dfa_classes", "one entry: byte -> class"),
    Map("dfa_comb", "__u32", "struct dfa_edge", "base + class -> (owning state, next state)"),
    Map("verdicts", "__u32", "struct verdict"),
    Map("subject_cgroups", "__u64", "__u8", "cgroup id -> CGROUP_SUBJECT or CGROUP_EXCEPT (filled at load)"),
    Map("simple_verdicts", "__u32", "struct simple_verdict", "enum policyc_simple"),
    Map("cap_verdicts", "__u32", "struct simple_verdict", "by capability number"),
    Map("net_prefixes", "struct net_key", "struct net_slice"),
    Map("net_entries", "__u32", "struct net_entry"),
    Map("task_rules", "__u32", "struct task_rule"),
    Map("rule_limits", "__u32", "struct rule_limit", "by rule id"),
    Map("subjects", "int", "struct subject_state", "task storage; `policyc exec` marks through a pidfd"),
    Map("events", "", "", "the ring buffer of struct policyc_event"),
    Map("counters", "__u32", "struct policyc_counters", "per CPU, by enum policyc_hook"),
    Map("rule_drops", "__u32", "__u64", "per CPU: events the ring buffer had no room for, by rule id"),
    Map("rule_suppressed", "__u32", "__u64", "per CPU: events a `limit` held back, by rule id"),
    Map("scratch_map", "__u32", "struct scratch", "the BPF side's own"),
    Map("sigio_owners", "__u64", "__u32", "the BPF side's own"),
    Map("exec_transitions", "__u32", "struct exec_transition", "by rule id: `allow exec ... as` rules"),
    Map("handoff", "int", "struct handoff", "task storage shared by every policy (SHARED_MAPS)"),
    Map("loaded_policies", "__u64", "__u8", "policy_id -> 1 for every loaded policy; shared (SHARED_MAPS)"),
)}

# Maps every policy object reuses from one pin (PIN_ROOT-shared/NAME) instead of having its
# own: an exec transition is one policy's program handing a task to another's.
SHARED_MAPS = ("handoff", "loaded_policies")


def policy_id(name: str) -> int:
    """The 64-bit number a loaded policy is known by in the kernel (config.policy_id, an
    `as policy NAME` transition's target): the first 8 bytes of sha256(NAME), never 0."""
    import hashlib
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") or 1


# ---- the C header ---------------------------------------------------------------------------

HEADER_PATH = Path(__file__).resolve().parent.parent / "templates" / "common" / "abi.h"


def _comment(text: str, indent: str = "") -> list[str]:
    """A C block comment wrapped at 96 columns."""
    words, lines, line = text.split(), [], ""
    width = 96 - (8 if indent == "\t" else len(indent)) - 3
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    lines.append(line)
    if len(lines) == 1:
        return [f"{indent}/* {lines[0]} */"]
    return [f"{indent}/* {lines[0]}"] + [f"{indent} * {x}" for x in lines[1:-1]] + [f"{indent} * {lines[-1]} */"]


def _aligned(rows: list[tuple[str, str]], indent: str = "") -> list[str]:
    """`code  /* comment */` rows with their comments in one column; a comment that would
    pass 100 columns goes on the lines above its row instead."""
    tab = 8 if indent == "\t" else len(indent)
    width = max(len(code) for code, _ in rows) + 1
    out = []
    for code, c in rows:
        if not c:
            out.append(f"{indent}{code}")
        elif tab + width + len(c) + 6 <= 100:
            out.append(f"{indent}{code:<{width}}/* {c} */")
        else:
            out += _comment(c, indent)
            out.append(f"{indent}{code}")
    return out


def c_header() -> str:
    out = [
        "/* GENERATED from policyc/abi.py by `python -m policyc.abi --write`: do not edit.",
        " *",
        " * The kernel ABI: every constant, enum and struct Python and the BPF programs share (map",
        " * contents, the ring-buffer event, counters). Change policyc/abi.py and regenerate;",
        " * tests/unit/test_abi.py compares this file, and clang's layout of it, with policyc/abi.py.",
        " * Needs the __u8..__u64 types and struct bpf_spin_lock (vmlinux_min.h) first. */",
        "#ifndef POLICYC_ABI_H",
        "#define POLICYC_ABI_H",
        "",
    ]
    for group in DEFINES:
        out += _comment(group.doc)
        out += _aligned([(f"#define {c.name} {c.c_text()}", c.comment) for c in group.items])
        out.append("")
    for e in ENUMS:
        out += _comment(e.doc)
        out.append(f"enum {e.name} {{")
        out += _aligned([(f"{m.name} = {m.value},", m.comment) for m in e.members], "\t")
        out += ["};", ""]
    for s in STRUCTS:
        out += _comment(s.doc)
        out.append(f"struct {s.name} {{")
        rows = []
        for f in s.fields:
            arr = f"[{f.count}]" if f.count is not None else ""
            rows.append((f"{f.ctype} {f.name}{arr};", f.comment))
        out += _aligned(rows, "\t")
        out += ["} __attribute__((packed));" if s.packed else "};", ""]
    out.append("#endif")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = c_header()
    if argv == ["--write"]:
        HEADER_PATH.write_text(text)
        return 0
    if argv == ["--check"]:
        if HEADER_PATH.read_text() != text:
            sys.stderr.write(f"{HEADER_PATH} is not what policyc/abi.py generates: "
                             "run `python -m policyc.abi --write`\n")
            return 1
        return 0
    if argv:
        sys.stderr.write("usage: python -m policyc.abi [--write | --check]\n")
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
