"""The host side's registry of rule families, for the audit log: how an event's op number is
named, what its `object` holds, and how that object reads in a log line and in a report.

One entry per family of policyc/ir/vocab.py FAMILIES; tests/unit/test_family_registries.py
fails when a layer forgets one. What the kernel test performs for a family is the guest side's
registry (policyc/kernel_test.py PERFORM). Imports no compiler module: the audit reader loads
this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import abi
from ..ir.vocab import CAPABILITIES, SIGNALS

_SIGNAL_NAMES = {v: k for k, v in SIGNALS.items()}
_MODULE_SUFFIXES = (".ko.xz", ".ko.zst", ".ko.gz", ".ko")


def capability_name(aux: int) -> str:
    if aux == abi.POLICYC_CAP_PERSONALITY:
        return "io_uring-personality"   # templates/capability.bpf.c.j2: not a capability number
    return CAPABILITIES[aux] if aux < len(CAPABILITIES) else str(aux)


def module_object(path: str) -> dict:
    """`finit_module` sends the module file's path, a request modprobe would serve (the kernel
    loading a protocol or filesystem for the process) its name; `init_module` nothing."""
    if not path:
        return {"module": None, "path": None}
    if not path.startswith("/"):
        return {"module": path, "path": None}
    name = path.rsplit("/", 1)[-1]
    for suffix in _MODULE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return {"module": name, "path": path}


class _Ev:
    """What an object builder reads from a decoded event (policyc/audit/event.py RawEvent)."""
    path: str
    addr: str | None
    port: int
    proto: str | None
    aux: int
    target_pid: int
    flags: int


@dataclass(frozen=True)
class AuditFamily:
    op_name: Callable[[int], str]             # event.op number -> the record's `op`
    object: Callable[[_Ev], dict]             # the record's `object`
    text: Callable[[dict], str]               # the object in a log line
    report_text: Callable[[dict], str]        # the object in `policyc report`'s tables
    qualified_op: bool = False                # a log line says `FAMILY.OP` (file.read, net.connect)


def _path_op(op: int) -> str:
    return abi.OPS.get(op, str(op))


def _path_object(ev: _Ev) -> dict:
    return {"path": ev.path}


def _path_text(o: dict) -> str:
    return o.get("path") or ""


def _target_text(o: dict) -> str:
    received = ", by its receive rules" if o.get("side") == "receive" else ""
    return (o.get("signal", "") + f" to pid {o['target_pid']} ({o.get('target_exe') or '?'}){received}").strip()


def _target_report(o: dict) -> str:
    received = " (receive side)" if o.get("side") == "receive" else ""
    return f"{o.get('signal', 'ptrace')} to {o.get('target_exe') or 'pid ' + str(o.get('target_pid'))}{received}"


def _task_object(ev: _Ev, **fields) -> dict:
    """A signal's or ptrace's object; `side: "receive"` when the policy of the process signalled
    or traced (`target_pid`) decided, by its `from` rules (EVENT_RECEIVE). Absent otherwise
    (the acting process's policy decided): records of send-side decisions stay as they were."""
    obj = {**fields, "target_pid": ev.target_pid, "target_exe": ev.path or None}
    if getattr(ev, "flags", 0) & abi.EVENT_RECEIVE:
        obj["side"] = "receive"
    return obj


def _named(name: str) -> Callable[[int], str]:
    return lambda op: name


def _net_object(ev: _Ev) -> dict:
    return {"addr": ev.addr, "port": ev.port, "proto": ev.proto}


def _net_text(o: dict) -> str:
    return f"{o.get('proto')} {o.get('addr')} port {o.get('port')}"


FAMILIES: dict[str, AuditFamily] = {
    "file": AuditFamily(_path_op, _path_object, _path_text, lambda o: str(o.get("path")), qualified_op=True),
    "exec": AuditFamily(_path_op, _path_object, _path_text, lambda o: str(o.get("path"))),
    "mount": AuditFamily(_path_op, _path_object, _path_text, lambda o: str(o.get("path"))),
    "net": AuditFamily(lambda op: abi.NET_OPS.get(op, str(op)), _net_object, _net_text, _net_text,
                       qualified_op=True),
    "capability": AuditFamily(_named("capability"), lambda ev: {"capability": capability_name(ev.aux)},
                              lambda o: o["capability"], lambda o: f"capability {o.get('capability')}"),
    "signal": AuditFamily(_named("signal"),
                          lambda ev: _task_object(ev, signal=_SIGNAL_NAMES.get(ev.aux, str(ev.aux))),
                          _target_text, _target_report),
    "ptrace": AuditFamily(_named("ptrace"),
                          lambda ev: _task_object(ev),
                          _target_text, _target_report),
    "module": AuditFamily(_named("load"), lambda ev: module_object(ev.path),
                          lambda o: o.get("module") or "", lambda o: f"module {o.get('module') or '?'}"),
    "bpf": AuditFamily(_named("bpf"), lambda ev: {}, lambda o: "", lambda o: "bpf"),
}

# An event of a family this reader does not know (a newer object): its path, if any.
UNKNOWN = AuditFamily(_path_op, _path_object, _path_text, lambda o: str(o.get("path")))


def family(name: str) -> AuditFamily:
    return FAMILIES.get(name, UNKNOWN)


def op_text(fam: str, op: str) -> str:
    """The op as a log line says it: `file.read`, `net.connect`, `exec`, `capability`."""
    if fam == "exec":
        return "exec"
    return f"{fam}.{op}" if family(fam).qualified_op else op
