"""Reading pinned maps and marking tasks, fd based (no bpf_object needed)."""

from __future__ import annotations

import os

from . import _libbpf as B
from .errors import BpfError


def _obj_get(pin_path: str) -> int:
    fd = B.lib().bpf_obj_get(os.fsencode(pin_path))
    if fd < 0:
        raise BpfError(f"opening pinned map `{pin_path}` failed: {B.describe(fd)}")
    return fd


def _map_info(fd: int):
    """struct bpf_map_info of a map fd (bpf_obj_get_info_by_fd: libbpf 1.1 has no
    bpf_map_get_info_by_fd)."""
    info = B.ffi.new("struct bpf_map_info *")
    size = B.ffi.new("__u32 *", B.ffi.sizeof("struct bpf_map_info"))
    rc = B.lib().bpf_obj_get_info_by_fd(fd, info, size)
    if rc < 0:
        raise BpfError(f"BPF_OBJ_GET_INFO_BY_FD on a map failed: {B.describe(rc)}")
    return info


def read_map(pin_path: str) -> list[tuple[bytes, bytes | list[bytes]]]:
    """Every (key, value) of the pinned map, in the kernel's iteration order.

    For a per-CPU map the value is a list with one bytes per possible CPU. Maps that cannot be
    iterated (ring buffers, task storage) raise BpfError.
    """
    lib = B.lib()
    fd = _obj_get(pin_path)
    try:
        info = _map_info(fd)
        ksize, vsize = info.key_size, info.value_size
        percpu = info.type in B.PERCPU_MAP_TYPES
        ncpu = B.possible_cpus() if percpu else 1
        stride = (vsize + 7) // 8 * 8 if percpu else vsize
        cur = B.ffi.new("char[]", max(ksize, 1))
        nxt = B.ffi.new("char[]", max(ksize, 1))
        val = B.ffi.new("char[]", max(stride * ncpu, 1))
        out: list[tuple[bytes, bytes | list[bytes]]] = []
        prev = B.ffi.NULL
        while True:
            rc = lib.bpf_map_get_next_key(fd, prev, nxt)
            if rc == -2:  # ENOENT: no more keys
                break
            if rc < 0:
                raise BpfError(f"iterating `{pin_path}` failed: {B.describe(rc)}")
            rc = lib.bpf_map_lookup_elem(fd, nxt, val)
            key = bytes(B.ffi.buffer(nxt, ksize))
            if rc == 0:
                raw = B.ffi.buffer(val, stride * ncpu)
                if percpu:
                    out.append((key, [bytes(raw[c * stride:c * stride + vsize])
                                      for c in range(ncpu)]))
                else:
                    out.append((key, bytes(raw[:vsize])))
            elif rc != -2:  # ENOENT: deleted meanwhile, skip it
                raise BpfError(f"looking up a key of `{pin_path}` failed: {B.describe(rc)}")
            cur, nxt = nxt, cur
            prev = cur
        return out
    finally:
        os.close(fd)


def mark_task(pid: int, task_storage_pin_path: str, value: bytes) -> None:
    """Set PID's entry in a pinned BPF_MAP_TYPE_TASK_STORAGE map (keyed by a pidfd)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        raise BpfError(f"pidfd_open({pid}) failed: {B.describe(e.errno)}") from None
    try:
        fd = _obj_get(task_storage_pin_path)
        try:
            info = _map_info(fd)
            if info.type != B.BPF_MAP_TYPE_TASK_STORAGE:
                raise BpfError(f"`{task_storage_pin_path}` is not a task storage map "
                               f"(map type {info.type})")
            if len(value) != info.value_size:
                raise BpfError(f"value is {len(value)} bytes, `{task_storage_pin_path}` "
                               f"holds {info.value_size}")
            key = B.ffi.new("int *", pidfd)
            rc = B.lib().bpf_map_update_elem(fd, key, value, B.BPF_ANY)
            if rc < 0:
                raise BpfError(f"marking pid {pid} in `{task_storage_pin_path}` failed: "
                               f"{B.describe(rc)}")
        finally:
            os.close(fd)
    finally:
        os.close(pidfd)


def update_map(pin_path: str, key: bytes, value: bytes) -> None:
    """Set KEY to VALUE in the pinned map (BPF_ANY)."""
    fd = _obj_get(pin_path)
    try:
        rc = B.lib().bpf_map_update_elem(fd, key, value, B.BPF_ANY)
        if rc < 0:
            raise BpfError(f"updating `{pin_path}` failed: {B.describe(rc)}")
    finally:
        os.close(fd)


def delete_from_map(pin_path: str, key: bytes) -> bool:
    """Delete KEY from the pinned map; False if it was not there."""
    fd = _obj_get(pin_path)
    try:
        rc = B.lib().bpf_map_delete_elem(fd, key)
        if rc == -2:   # ENOENT
            return False
        if rc < 0:
            raise BpfError(f"deleting a key of `{pin_path}` failed: {B.describe(rc)}")
        return True
    finally:
        os.close(fd)


def map_info(pin_path: str) -> dict:
    """{id, name, type, key_size, value_size, max_entries, flags} of a pinned map."""
    fd = _obj_get(pin_path)
    try:
        i = _map_info(fd)
        return {"id": i.id, "name": B.ffi.string(i.name).decode(), "type": i.type,
                "key_size": i.key_size, "value_size": i.value_size,
                "max_entries": i.max_entries, "flags": i.map_flags}
    finally:
        os.close(fd)
