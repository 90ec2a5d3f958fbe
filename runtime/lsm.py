"""Can this kernel run BPF LSM programs? Checked without attaching anything."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import _libbpf as B
from .errors import BpfError

LSM_LIST = "/sys/kernel/security/lsm"
SECURITYFS = "/sys/kernel/security"
TRIAL_HOOK = "bpf_lsm_file_open"
VM_HINT = "or run the policy under `policyc vm`"


@dataclass(frozen=True)
class LsmStatus:
    usable: bool
    reason: str
    hint: str


def _mount_securityfs() -> None:
    """Mount securityfs if /sys/kernel/security is not a mount point (root only; quiet)."""
    if os.path.exists(LSM_LIST) or not os.path.isdir(SECURITYFS) or os.path.ismount(SECURITYFS):
        return
    if os.geteuid() != 0:
        return
    B.libc().mount(b"securityfs", SECURITYFS.encode(), b"securityfs", 0, B.ffi.NULL)


def active_lsms() -> list[str] | None:
    """The active LSMs in order, or None when the list cannot be read."""
    try:
        _mount_securityfs()
        with open(LSM_LIST) as f:
            return [x for x in f.read().strip().split(",") if x]
    except OSError:
        return None


def _lsm_hint(lsms: list[str] | None) -> str:
    if lsms is None:
        return f"boot with `lsm=<current list>,bpf` on the kernel command line, {VM_HINT}"
    wanted = ",".join([x for x in lsms if x != "bpf"] + ["bpf"])
    return f"boot with `lsm={wanted}` on the kernel command line, {VM_HINT}"


def trial_load_lsm() -> None:
    """Load (never attach) a two-instruction LSM program on `file_open`, then close it.

    Raises BpfError saying which step failed.
    """
    lib = B.lib()
    with B.LogCapture() as cap:
        btf = lib.btf__load_vmlinux_btf()
        if btf == B.ffi.NULL:
            err = B.ffi.errno
            raise BpfError(f"loading the kernel's BTF (/sys/kernel/btf/vmlinux) failed: "
                           f"{B.describe(err)}", cap.text)
        try:
            btf_id = lib.btf__find_by_name_kind(btf, TRIAL_HOOK.encode(), B.BTF_KIND_FUNC)
        finally:
            lib.btf__free(btf)
    if btf_id < 0:
        raise BpfError(f"the kernel has no `{TRIAL_HOOK}` (built without CONFIG_BPF_LSM): "
                       f"{B.describe(btf_id)}", cap.text)

    insns = B.ffi.new("struct bpf_insn[2]")
    insns[0].code = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
    insns[1].code = 0x95  # BPF_JMP | BPF_EXIT
    log = B.ffi.new("char[]", 65536)
    opts = B.ffi.new("struct bpf_prog_load_opts *")
    opts.sz = B.ffi.sizeof("struct bpf_prog_load_opts")
    opts.expected_attach_type = B.BPF_LSM_MAC
    opts.attach_btf_id = btf_id
    opts.log_level = 1
    opts.log_size = len(log)
    opts.log_buf = log
    with B.LogCapture() as cap:
        fd = lib.bpf_prog_load(B.BPF_PROG_TYPE_LSM, b"policyc_probe", b"GPL", insns, 2, opts)
    if fd < 0:
        verifier = B.ffi.string(log).decode("utf-8", "replace")
        raise BpfError(f"BPF_PROG_LOAD of an LSM program failed: {B.describe(fd)}",
                       cap.text + verifier)
    os.close(fd)


def check_bpf_lsm() -> LsmStatus:
    lsms = active_lsms()
    try:
        trial_load_lsm()
    except BpfError as e:
        reason = e.message
        if lsms is not None and "bpf" not in lsms:
            reason += f"; `bpf` is not among the active LSMs ({','.join(lsms)})"
            hint = _lsm_hint(lsms)
        elif lsms is None:
            reason += f"; {LSM_LIST} could not be read"
            hint = _lsm_hint(None)
        else:
            hint = (f"the kernel lists `bpf` as active but refuses its programs (a sandbox, "
                    f"seccomp or lockdown); {VM_HINT.removeprefix('or ')}")
        if os.geteuid() != 0 and "EPERM" in e.message:
            hint = f"run as root (CAP_BPF, CAP_PERFMON and CAP_MAC_ADMIN are needed); {hint}"
        return LsmStatus(False, reason, hint)
    if lsms is None:
        return LsmStatus(False, f"LSM programs load, but {LSM_LIST} could not be read to confirm "
                         "that the `bpf` LSM is active", "mount securityfs on /sys/kernel/security "
                         f"(`mount -t securityfs securityfs {SECURITYFS}`), {VM_HINT}")
    if "bpf" not in lsms:
        return LsmStatus(False, f"LSM programs load, but `bpf` is not among the active LSMs "
                         f"({','.join(lsms)}): attached programs would never run",
                         _lsm_hint(lsms))
    return LsmStatus(True, f"`bpf` is an active LSM ({','.join(lsms)}) and LSM programs load", "")
