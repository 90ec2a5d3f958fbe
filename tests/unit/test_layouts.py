"""The byte layouts Python writes into maps and reads from the ring buffer are the ones the
BPF programs use: compile the real headers for the BPF target and compare clang's BTF (sizes
and member offsets) with the Python struct formats."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from policyc.audit import event as E
from policyc.codegen import TEMPLATES, find_clang, _libbpf_include
from policyc.codegen import tables as T

PROBE = """
#include "policy.h"
struct policyc_event e; struct policyc_config c; struct dfa_state d; struct verdict v;
struct net_key nk; struct net_slice ns; struct net_entry ne; struct simple_verdict sv;
struct policyc_counters pc; struct rule_limit rl;
struct task_rule {
	__u64 sig_mask; __u64 target_cgroup; __u32 rule_id; __u32 target_bit;
	__u8 kind; __u8 decision; __u8 target_kind; __u8 pad[5];
};
struct task_rule tr;
"""


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


def test_sizes(btf):
    assert btf["policyc_config"]["size"] == T.CONFIG.size
    assert btf["dfa_state"]["size"] == T.DFA_STATE.size
    assert btf["verdict"]["size"] == T.VERDICT.size
    assert btf["net_key"]["size"] == T.NET_KEY.size
    assert btf["net_slice"]["size"] == T.NET_SLICE.size
    assert btf["net_entry"]["size"] == T.NET_ENTRY.size
    assert btf["simple_verdict"]["size"] == T.SIMPLE_VERDICT.size
    assert btf["task_rule"]["size"] == T.TASK_RULE.size
    assert btf["rule_limit"]["size"] == T.RULE_LIMIT.size
    assert btf["rule_limit"]["members"] == {"lock": 0, "per_window": 4, "window_ns": 8, "window_start": 16,
                                            "sent": 24}


def test_event_header(btf):
    ev = btf["policyc_event"]["members"]
    assert ev["path"] == E.HEADER_SIZE
    # the order of HEADER's fields, with their offsets as clang laid them out
    names = ["ts_boot_ns", "cgroup_id", "pid", "tgid", "ppid", "uid", "gid", "rule_id", "aux", "target_pid",
             "path_len", "port", "decision", "hook", "op", "reason", "family", "proto", "mode", "flags",
             "addr", "comm"]
    offsets = [ev[n] for n in names]
    assert offsets == sorted(offsets)
    import struct
    fmt = E.HEADER.format.lstrip("<")
    expected, off = [], 0
    for code in re.findall(r"\d*[A-Za-z]", fmt):
        expected.append(off)
        off += struct.calcsize("<" + code)
    assert offsets == expected


def test_task_rule_matches_the_template(btf):
    # the test's copy of struct task_rule must be the template's
    text = (TEMPLATES / "task.bpf.c.j2").read_text()
    assert "__u64 sig_mask;" in text and "__u8 pad[5];" in text
