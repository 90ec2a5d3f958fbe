"""The cffi declarations of runtime/_libbpf.py against the C headers and the system libbpf.

ABI mode compiles nothing, so a wrong offset would silently corrupt memory: this compiles a
small C program with the installed <bpf/bpf.h> and <linux/bpf.h> and compares every size,
offset and constant the runtime relies on. No root needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from policyc import runtime
from policyc.runtime import _libbpf as B

CC = shutil.which("clang-19") or shutil.which("clang") or shutil.which("cc")

# struct -> declared fields that are padding or merged bitfields in our cdef (not in C)
RENAMED = {"regs", "gpl_compatible_bits", "_pad", "_union"}
# libbpf option structs: our layout is libbpf 1.1's; newer headers may only append fields.
OPTS = ["bpf_prog_load_opts", "bpf_link_update_opts"]
# UAPI structs: ours may be a prefix of the kernel header's.
UAPI = ["bpf_prog_info", "bpf_map_info", "bpf_link_info", "bpf_insn"]
CONSTANTS = {
    "BPF_ANY": "BPF_ANY",
    "BPF_F_REPLACE": "BPF_F_REPLACE",
    "BPF_PROG_TYPE_LSM": "BPF_PROG_TYPE_LSM",
    "BPF_LSM_MAC": "BPF_LSM_MAC",
    "BTF_KIND_FUNC": "BTF_KIND_FUNC",
    "BPF_STATS_RUN_TIME": "BPF_STATS_RUN_TIME",
    "BPF_MAP_TYPE_PERCPU_HASH": "BPF_MAP_TYPE_PERCPU_HASH",
    "BPF_MAP_TYPE_PERCPU_ARRAY": "BPF_MAP_TYPE_PERCPU_ARRAY",
    "BPF_MAP_TYPE_LRU_PERCPU_HASH": "BPF_MAP_TYPE_LRU_PERCPU_HASH",
    "BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE": "BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE",
    "BPF_MAP_TYPE_RINGBUF": "BPF_MAP_TYPE_RINGBUF",
    "BPF_MAP_TYPE_TASK_STORAGE": "BPF_MAP_TYPE_TASK_STORAGE",
}


def fields(struct: str) -> list[str]:
    return [n for n, _ in B.ffi.typeof(f"struct {struct}").fields if n not in RENAMED]


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory) -> dict[str, int]:
    if CC is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no C compiler: CI must compare the cffi declarations with the headers")
        pytest.skip("no C compiler")
    lines = []
    for s in OPTS + UAPI:
        lines.append(f'printf("sizeof {s} %zu\\n", sizeof(struct {s}));')
        for f in fields(s):
            lines.append(f'printf("offsetof {s}.{f} %zu\\n", offsetof(struct {s}, {f}));')
    for k, c in CONSTANTS.items():
        lines.append(f'printf("const {k} %lld\\n", (long long)({c}));')
    src = ("#include <stddef.h>\n#include <stdio.h>\n#include <bpf/bpf.h>\n#include <bpf/btf.h>\n"
           "#include <linux/bpf.h>\nint main(void) {\n" + "\n".join(lines) + "\nreturn 0; }\n")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(src)
    r = subprocess.run([CC, "-o", str(d / "abi"), str(d / "abi.c")], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"compiling the layout probe failed (libbpf-dev installed?):\n{r.stderr}")
    out = subprocess.run([str(d / "abi")], capture_output=True, text=True, check=True).stdout
    return {m[0]: int(m[1]) for m in re.findall(r"^(\S+ \S+) (-?\d+)$", out, re.MULTILINE)}


@pytest.mark.parametrize("struct", OPTS + UAPI)
def test_field_offsets_match_the_headers(c_layout, struct):
    for f in fields(struct):
        assert B.ffi.offsetof(f"struct {struct}", f) == c_layout[f"offsetof {struct}.{f}"], f


@pytest.mark.parametrize("struct", OPTS + UAPI)
def test_declared_struct_is_a_prefix_of_the_header(c_layout, struct):
    assert B.ffi.sizeof(f"struct {struct}") <= c_layout[f"sizeof {struct}"]


def test_insn_is_8_bytes_with_regs_at_1(c_layout):
    assert B.ffi.sizeof("struct bpf_insn") == c_layout["sizeof bpf_insn"] == 8
    assert B.ffi.offsetof("struct bpf_insn", "regs") == 1


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constants_match_the_headers(c_layout, name):
    assert getattr(B, name) == c_layout[f"const {name}"]


def test_every_declared_function_resolves_in_the_system_libraries():
    names = set(re.findall(r"(\w+)\(", B.CDEF))  # function pointer typedefs are `(*name)(`
    assert {"bpf_object__open_file", "bpf_link_update", "ring_buffer__poll"} <= names
    for n in sorted(names):
        lib = B.libc() if n in B.LIBC_FUNCTIONS else B.lib()
        getattr(lib, n)  # AttributeError if the library does not export it


def test_errno_names():
    assert B.describe(-1) == "EPERM (Operation not permitted)"
    assert B.errname(95) == "EOPNOTSUPP"
    assert B.errname(524) == "ENOTSUPP"
    assert B.errname(4242) == "errno 4242"


def test_bpf_error_str_shows_only_the_verifier_log():
    log = ("libbpf: noise\nlibbpf: prog 'p': -- BEGIN PROG LOAD LOG --\nR0 invalid mem access\n"
           "-- END PROG LOAD LOG --\nlibbpf: more noise\n")
    e = runtime.BpfError("loading `x` failed: EACCES (Permission denied)", log)
    assert e.message.startswith("loading") and e.log == log
    assert "R0 invalid mem access" in str(e) and "noise" not in str(e)
    assert str(runtime.BpfError("plain")) == "plain"


def test_runtime_does_not_import_policyc():
    # policyc.runtime's parent package is loaded with it (policyc/__init__.py, which imports
    # nothing of policyc's); nothing else of policyc may be
    import sys
    r = subprocess.run([sys.executable, "-c",
                        "import sys, policyc.runtime; assert not any(m.startswith('policyc.') and not "
                        "m.startswith('policyc.runtime') for m in sys.modules), sorted(sys.modules)"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
