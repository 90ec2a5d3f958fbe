"""`policyc vm`: run a command as root in a Debian kernel booted under qemu (virtme-ng)."""

from __future__ import annotations

from typing import TextIO

from policyc.vm import VmError, run_in_vm


def run_vm(kernel: str, argv: list[str], out: TextIO, err: TextIO) -> int:
    """Run `argv` in a VM of `kernel` ("6.1", "6.12", "7.2", "newest" or a vmlinuz path),
    streaming its output to `out`; returns the guest command's exit code, or 2 when the VM
    could not run it. "7.2" and "newest" come from Debian sid; POLICYC_REFRESH_KERNELS=1
    refreshes sid's package lists and re-pins "newest" (policyc/vm.py)."""
    if not argv:
        print("policyc: error: no command to run in the vm", file=err)
        return 2
    try:
        return run_in_vm(argv, kernel=kernel, stream=out).returncode
    except VmError as exc:
        print(f"policyc: error: {exc}", file=err)
        return 2
