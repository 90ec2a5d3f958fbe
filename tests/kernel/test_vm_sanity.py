"""The guest run_suite.py boots is the one the kernel tests need."""

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel


def mounts() -> list[list[str]]:
    return [line.split() for line in Path("/proc/mounts").read_text().splitlines()]


def test_kernel_is_the_one_asked_for():
    expected = os.environ.get("POLICYC_EXPECT_KERNEL")
    assert expected, "POLICYC_EXPECT_KERNEL is not set (run_suite.py passes the kernel release)"
    assert os.uname().release == expected


def test_bpf_lsm_is_active():
    lsms = Path("/sys/kernel/security/lsm").read_text().strip().split(",")
    assert "bpf" in lsms, f"active LSMs: {lsms}"


def test_bpffs_is_mounted():
    assert any(m[1] == "/sys/fs/bpf" and m[2] == "bpf" for m in mounts())


def test_kernel_has_btf_for_core():
    assert Path("/sys/kernel/btf/vmlinux").is_file()


def test_we_are_root():
    assert os.geteuid() == 0
