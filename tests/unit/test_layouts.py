"""The byte layouts Python writes into maps and reads from the ring buffer are the ones the
BPF programs use: compile the real headers alone for the BPF target and compare clang's BTF
(sizes and member offsets) with the struct formats Python packs and unpacks with.

tests/unit/test_abi.py does the same over a whole compiled policy object, member types and
enums included; this is the quick check that the headers compile on their own."""

import re
import shutil
import struct
import subprocess

import pytest

from policyc import abi
from policyc.audit import event as E
from policyc.codegen import TEMPLATES, find_clang, _libbpf_include
from policyc.codegen import tables as T

PROBE = '#include "policy.h"\n' + "".join(f"struct {s.name} probe_{s.name};\n" for s in abi.STRUCTS)

# what Python packs each struct with, as its users name it
CODECS = {
    "policyc_config": T.CONFIG, "dfa_state": T.DFA_STATE, "verdict": T.VERDICT, "net_key": T.NET_KEY,
    "net_slice": T.NET_SLICE, "net_entry": T.NET_ENTRY, "simple_verdict": T.SIMPLE_VERDICT,
    "task_rule": T.TASK_RULE, "rule_limit": T.RULE_LIMIT, "policyc_counters": abi.POLICYC_COUNTERS,
    "subject_state": abi.SUBJECT_STATE, "policyc_event": abi.POLICYC_EVENT, "dfa_edge": T.DFA_EDGE,
    "dfa_classes": T.DFA_CLASSES, "exec_transition": abi.EXEC_TRANSITION, "handoff": abi.HANDOFF,
}


@pytest.fixture(scope="module")
def btf(tmp_path_factory):
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    tmp = tmp_path_factory.mktemp("layout")
    for h in (TEMPLATES / "common").glob("*.h"):
        shutil.copy(h, tmp / h.name)
    (tmp / "probe.c").write_text(PROBE)
    subprocess.run([find_clang(), "-target", "bpf", "-g", "-O2", "-D__TARGET_ARCH_x86", "-I.", "-isystem",
                    _libbpf_include(), "-c", "probe.c", "-o", "probe.o"], cwd=tmp, check=True)
    dump = subprocess.run([bpftool, "btf", "dump", "file", str(tmp / "probe.o")], capture_output=True,
                          text=True, check=True).stdout
    structs = {}
    current = None
    for line in dump.splitlines():
        m = re.match(r"\[\d+\] STRUCT '(\w+)' size=(\d+)", line)
        if m:
            current = structs.setdefault(m.group(1), {"size": int(m.group(2)), "members": {}})
            continue
        m = re.match(r"\s+'(\w+)' type_id=\d+ bits_offset=(\d+)", line)
        if m and current is not None:
            current["members"][m.group(1)] = int(m.group(2)) // 8
        elif not line.startswith("\t"):
            current = None
    return structs


def format_offsets(s: abi.Struct) -> dict[str, int]:
    """Where the Python format puts each member: the struct.calcsize of what precedes it."""
    out, fmt = {}, "<"
    for slot in s.slots:
        if not slot.implicit:
            out[slot.field.name] = struct.calcsize(fmt)
        fmt += slot.code
    return out


def test_every_abi_struct_has_a_codec():
    assert set(CODECS) == {s.name for s in abi.STRUCTS}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_python_formats_match_clang(btf, name):
    codec = CODECS[name]
    assert btf[name]["size"] == codec.size == struct.calcsize(codec.format)
    assert btf[name]["members"] == format_offsets(codec)


def test_rule_limit_lock_comes_first(btf):
    assert btf["rule_limit"]["members"] == {"lock": 0, "per_window": 4, "window_ns": 8, "window_start": 16,
                                            "sent": 24}


def test_event_header(btf):
    ev = btf["policyc_event"]["members"]
    assert ev["path"] == E.HEADER_SIZE == E.HEADER.size
    # the header is the event's members up to `path`, each where clang put it
    offsets = format_offsets(E.HEADER)
    assert offsets == {k: v for k, v in ev.items() if k != "path"}
