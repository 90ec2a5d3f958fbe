"""policyc runtime: load, attach, pin and read BPF objects through the system libbpf (cffi).

It deals in files and bytes and never imports `policyc`. See docs/design.md, "Runtime API".
"""

from .errors import BpfError
from .loader import (DEFAULT_PIN_ROOT, LoadedPolicy, MapFill, ProgramVerdict, ensure_bpffs, list_loaded, load,
                     load_test, shared_dir, unload)
from .lsm import LsmStatus, check_bpf_lsm
from .maps import delete_from_map, map_info, mark_task, read_map, update_map
from .ringbuf import RingBufferReader
from .stats import enable_stats, prog_stats

__all__ = [
    "BpfError",
    "DEFAULT_PIN_ROOT",
    "LoadedPolicy",
    "LsmStatus",
    "MapFill",
    "ProgramVerdict",
    "RingBufferReader",
    "check_bpf_lsm",
    "delete_from_map",
    "enable_stats",
    "ensure_bpffs",
    "list_loaded",
    "load",
    "load_test",
    "map_info",
    "mark_task",
    "prog_stats",
    "read_map",
    "shared_dir",
    "unload",
    "update_map",
]
