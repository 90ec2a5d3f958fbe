"""Run-time statistics of the programs of a loaded policy."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from . import _libbpf as B
from .errors import BpfError
from .loader import _link_prog_id, _obj_get, _prog_fd_by_id


def _prog_info(fd: int):
    info = B.ffi.new("struct bpf_prog_info *")
    size = B.ffi.new("__u32 *", B.ffi.sizeof("struct bpf_prog_info"))
    rc = B.lib().bpf_obj_get_info_by_fd(fd, info, size)
    if rc < 0:
        raise BpfError(f"BPF_OBJ_GET_INFO_BY_FD on a program failed: {B.describe(rc)}")
    return info


def prog_stats(pin_root: str, name: str) -> list[dict]:
    """[{name, id, run_time_ns, run_cnt}] per pinned link of policy NAME, by program name.

    run_time_ns and run_cnt stay 0 unless statistics are on (`enable_stats()` or
    `sysctl kernel.bpf_stats_enabled=1`).
    """
    links_dir = os.path.join(pin_root, name, "links")
    try:
        names = sorted(os.listdir(links_dir))
    except OSError as e:
        raise BpfError(f"policy `{name}` is not loaded (`{links_dir}`: "
                       f"{B.describe(e.errno)})") from None
    out = []
    for pname in names:
        link_fd = _obj_get(os.path.join(links_dir, pname))
        try:
            prog_fd = _prog_fd_by_id(_link_prog_id(link_fd))
        finally:
            os.close(link_fd)
        try:
            info = _prog_info(prog_fd)
        finally:
            os.close(prog_fd)
        out.append({"name": pname, "id": info.id, "run_time_ns": info.run_time_ns,
                    "run_cnt": info.run_cnt})
    return out


@contextlib.contextmanager
def enable_stats() -> Iterator[None]:
    """Turn on BPF run-time statistics while the block runs (BPF_ENABLE_STATS)."""
    fd = B.lib().bpf_enable_stats(B.BPF_STATS_RUN_TIME)
    if fd < 0:
        raise BpfError(f"BPF_ENABLE_STATS failed: {B.describe(fd)}")
    try:
        yield
    finally:
        os.close(fd)
