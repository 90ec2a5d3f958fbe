"""Ring-buffer events to audit records: decoding, time, subject enrichment, the BPF side of
per-rule drop counting."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from policyc.audit import reader as audit_reader
from policyc.audit.event import decode
from policyc.audit.schema import FAIL_CLOSED, ProcCache, boot_offset_ns, format_text, iso_utc

from _audit_helpers import record, raw

ROOT = Path(__file__).resolve().parents[2]


def test_file_event_names_policy_rule_and_line():
    rec = record()
    assert rec["policy"] == "web" and rec["instance"] == "web" and rec["host"] == "h1"
    assert rec["rule_id"] == 1 and rec["rule"] == "p.policy:6:5"
    assert rec["rule_text"] == 'deny file read "/etc/shadow"'
    assert (rec["decision"], rec["mode"], rec["hook"], rec["family"], rec["op"]) == \
        ("deny", "enforce", "file_open", "file", "read")
    assert rec["object"] == {"path": "/etc/shadow"}
    assert rec["reason"] == "rule" and rec["failed_closed"] is False and rec["reason_text"] is None
    s = rec["subject"]
    assert (s["pid"], s["tgid"], s["ppid"], s["uid"], s["gid"], s["comm"], s["cgroup_id"]) == \
        (100, 100, 1, 1000, 1000, "cat", 77)
    assert s["exe"] is None and s["parent_exe"] is None and s["cgroup"] is None  # process gone


def test_time_is_boot_time_plus_offset_in_utc_ns():
    rec = record(ts=123, offset_ns=1_700_000_000_000_000_000)
    assert rec["time_ns"] == 1_700_000_000_000_000_123
    assert rec["time"] == "2023-11-14T22:13:20.000000123Z"
    assert rec["ts_boot_ns"] == 123


def test_boot_offset_is_close_to_the_clocks():
    off = boot_offset_ns()
    now = time.clock_gettime_ns(time.CLOCK_BOOTTIME) + off
    assert abs(now - time.time_ns()) < 50_000_000


def test_iso_utc_keeps_nine_digits():
    assert iso_utc(1) == "1970-01-01T00:00:00.000000001Z"


def test_default_decision_names_the_default_line():
    rec = record(rule_id=0, reason=1, path="/srv/x")
    assert rec["rule_id"] is None and rec["rule"] == "p.policy:4:5" and rec["reason"] == "default"


def test_failed_closed_carries_its_reason():
    rec = record(rule_id=0, reason=2, path="")
    assert rec["failed_closed"] and rec["reason"] == "path-too-long" and rec["rule"] is None
    assert "failed closed" in rec["reason_text"]
    assert FAIL_CLOSED >= {"path-too-long", "detached-mount", "read-fault", "map-fault", "bad-address"}


def test_audit_mode_event():
    rec = record(decision=1, mode=1)
    assert rec["decision"] == "audit" and rec["mode"] == "audit"


def test_net_capability_signal_module_objects():
    addr = bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    rec = record(family="net", hook="socket_connect", op=0, rule_id=2, port=443, proto=1, addr=addr, path="")
    assert rec["op"] == "connect" and rec["object"] == {"addr": "10.1.2.3", "port": 443, "proto": "tcp"}
    assert rec["rule"] == "p.policy:7:5"
    cap = record(family="capability", hook="capable", aux=21, rule_id=0, reason=1, path="")
    assert cap["object"] == {"capability": "sys_admin"}
    sig = record(family="signal", hook="task_kill", aux=9, target_pid=55, path="/usr/sbin/x", rule_id=0, reason=1)
    assert sig["object"] == {"signal": "kill", "target_pid": 55, "target_exe": "/usr/sbin/x"}
    mod = record(family="module", hook="kernel_load_data", path="", rule_id=0, reason=1)
    assert mod["object"] == {"module": None, "path": None}   # init_module: an image, no name
    mod = record(family="module", hook="kernel_module_request", path="net-pf-38", rule_id=0, reason=1)
    assert mod["object"] == {"module": "net-pf-38", "path": None}
    ko = "/lib/modules/6.1.0-56-amd64/kernel/fs/cramfs/cramfs.ko.xz"
    mod = record(family="module", hook="kernel_read_file", path=ko, rule_id=0, reason=1)
    assert mod["object"] == {"module": "cramfs", "path": ko}
    assert "cramfs" in format_text(mod)
    assert record(family="bpf", hook="bpf", path="", rule_id=0, reason=1)["object"] == {}


def test_subject_exe_parent_exe_and_cgroup_from_proc(tmp_path):
    for pid, exe in ((100, "/usr/bin/cat"), (1, "/sbin/init")):
        d = tmp_path / str(pid)
        d.mkdir()
        os.symlink(exe, d / "exe")
    (tmp_path / "100" / "cgroup").write_text("0::/system.slice/web.service\n")
    s = record(procs=ProcCache(str(tmp_path)))["subject"]
    assert (s["exe"], s["parent_exe"], s["cgroup"]) == ("/usr/bin/cat", "/sbin/init", "/system.slice/web.service")


def test_proc_cache_reads_once_per_batch(tmp_path):
    d = tmp_path / "100"
    d.mkdir()
    os.symlink("/a", d / "exe")
    pc = ProcCache(str(tmp_path))
    assert pc.exe(100) == "/a"
    os.unlink(d / "exe")
    assert pc.exe(100) == "/a"  # cached within the batch
    pc.clear()
    assert pc.exe(100) is None


def test_text_line_is_one_line_naming_rule():
    line = format_text(record())
    assert "\n" not in line
    assert re.search(r"DENY policy=web file\.read /etc/shadow pid=100 comm=cat .*rule=p\.policy:6:5", line)


def test_decode_rejects_short_event():
    import pytest

    with pytest.raises(ValueError):
        decode(raw()[:10])


def test_bpf_counts_drops_per_rule_in_apply_ex():
    from policyc import abi

    src = (ROOT / "templates" / "common" / "policy.h").read_text()
    assert audit_reader.RULE_DROPS_MAX == abi.RULE_DROPS_MAX   # abi.h's, generated from abi.py
    assert re.search(r"__uint\(max_entries, RULE_DROPS_MAX\);\s*__type\(key, __u32\);\s*__type\(value, __u64\);\s*"
                     r"} rule_drops SEC\(\"\.maps\"\);", src)
    body = src[src.index("static __always_inline int apply_ex(struct policyc_config *cfg, struct scratch *s, __u8 decision,\n\t\t\t\t    __u32 rule_id, __u8 reason, int quiet)\n{"):]
    assert re.search(r"bpf_ringbuf_output\(&events, ev, size, 0\)\) \{\s*count\(hook, 4\);\s*"
                     r"count_per_rule\(&rule_drops, rule_id\);", body)


def test_bpf_counts_suppressed_per_rule_and_limits_only_rules_and_the_default():
    from policyc.codegen import tables as T

    from policyc import abi

    src = (ROOT / "templates" / "common" / "policy.h").read_text()
    assert T.MAX_LIMITED_RULES == abi.RULE_SUPPRESSED_MAX and T.CFG_RATE_LIMITS == abi.CFG_RATE_LIMITS
    assert re.search(r"__uint\(max_entries, RULE_SUPPRESSED_MAX\);[^}]*} rule_suppressed SEC", src)
    body = src[src.index("static __always_inline int apply_ex(struct policyc_config *cfg"):]
    # only rules and the default are limited (never a failed-closed decision), and a
    # suppressed event is counted, then not sent
    assert re.search(r"if \(!quiet && \(cfg->flags & CFG_RATE_LIMITS\) && \(rule_id \|\| reason == REASON_DEFAULT\) &&"
                     r"\s*!within_limit\(rule_id\)\) \{\s*count_per_rule\(&rule_suppressed, rule_id\);\s*quiet = 1;", body)
