"""Ring-buffer events to audit records: decoding, time, subject enrichment, the BPF side of
per-rule drop counting."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from policyc.audit import reader as audit_reader
from policyc.audit.event import decode
from policyc import abi
from policyc.audit.schema import (FAIL_CLOSED, HostInfo, Names, as_schema1, boot_offset_ns, exec_id, format_text,
                                  iso_utc)

from _audit_helpers import record, raw

ROOT = Path(__file__).resolve().parents[2]


def test_file_event_names_policy_rule_and_line():
    rec = record()
    assert rec["schema"] == 2 and rec["policy"] == "web" and rec["instance"] == "web"
    assert rec["host"] == {"name": "h1", "id": None, "boot_id": None}
    assert rec["rule_id"] == 1 and rec["rule"] == "p.policy:6:5"
    assert rec["rule_text"] == 'deny file read "/etc/shadow"'
    assert (rec["decision"], rec["mode"], rec["hook"], rec["family"], rec["op"]) == \
        ("deny", "enforce", "file_open", "file", "read")
    assert rec["object"] == {"path": "/etc/shadow"}
    assert rec["reason"] == "rule" and rec["failed_closed"] is False and rec["reason_text"] is None
    assert rec["errno"] == "EACCES"   # what the denied open(2) returned


def test_errno_is_the_deciding_familys():
    """A deny record says what the system call returned (#16): EACCES for file, exec and net,
    EPERM for the privilege families; null when nothing was denied (audit)."""
    addr = bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    assert record()["errno"] == "EACCES"
    assert record(family="exec", hook="bprm_check_security", op=abi.OP_EXEC, path="/usr/bin/curl")["errno"] == "EACCES"
    assert record(family="net", hook="socket_connect", rule_id=2, port=443, proto=1, addr=addr, path="")["errno"] == "EACCES"
    assert record(family="capability", hook="capable", aux=21, rule_id=0, reason=1, path="")["errno"] == "EPERM"
    assert record(family="signal", hook="task_kill", aux=9, target_pid=5, path="/x", rule_id=0, reason=1)["errno"] == "EPERM"
    assert record(family="ptrace", hook="ptrace_access_check", target_pid=5, path="", rule_id=0, reason=1)["errno"] == "EPERM"
    assert record(family="mount", hook="sb_mount", path="/mnt", rule_id=0, reason=1)["errno"] == "EPERM"
    assert record(family="module", hook="kernel_load_data", path="", rule_id=0, reason=1)["errno"] == "EPERM"
    assert record(family="bpf", hook="bpf", path="", rule_id=0, reason=1)["errno"] == "EPERM"
    # a fail-closed denial returns its family's errno too
    closed = record(rule_id=0, reason=2, path="")
    assert closed["failed_closed"] and closed["errno"] == "EACCES"
    # allowed and logged: nothing failed
    assert record(decision=1)["errno"] is None
    assert record(family="capability", hook="capable", aux=21, path="", decision=1, mode=1)["errno"] is None


def test_process_is_the_kernels_identity():
    p = record(pid=101, tgid=100, ppid=7, uid=1000, euid=0, gid=1001, loginuid=1000, cgroup=77)["process"]
    # process.pid is the process (tgid), process.tid the thread: what a SIEM maps to process.pid
    assert (p["pid"], p["tid"], p["parent"]["pid"]) == (100, 101, 7)
    assert (p["uid"], p["euid"], p["gid"], p["loginuid"]) == (1000, 0, 1001, 1000)
    assert (p["exe"], p["exe_state"], p["parent"]["exe"], p["parent"]["exe_state"]) == \
        ("/usr/bin/cat", "ok", "/usr/bin/bash", "ok")
    assert p["exe_inode"] == {"ino": 1234, "dev": 0x800001}
    assert p["name"] == "cat" and p["cgroup_id"] == 77
    assert p["args"] is None and p["args_truncated"] is False      # not recorded: marked absent
    assert p["start_time_ns"] == 1_700_000_000_000_000_000 + 4_000_000_000
    assert re.fullmatch(r"[0-9a-f]{32}", p["exec_id"])


def test_exec_id_separates_pid_reuse_and_exec():
    base = record(tgid=100, start=5, exec_count=1)["process"]["exec_id"]
    assert record(tgid=100, start=5, exec_count=1)["process"]["exec_id"] == base       # same exec
    assert record(tgid=100, start=9, exec_count=1)["process"]["exec_id"] != base       # pid reused
    assert record(tgid=100, start=5, exec_count=2)["process"]["exec_id"] != base       # it exec'd again
    from policyc.audit.event import decode as d
    ev = d(raw(tgid=100, start=5, exec_count=1))
    assert exec_id(HostInfo("h", "a" * 32, "b" * 32), ev) != exec_id(HostInfo("h", "a" * 32, "c" * 32), ev)


def test_exe_states_and_unresolved_names():
    p = record(exe=None, parent_exe=None)["process"]
    assert (p["exe"], p["exe_state"], p["parent"]["exe_state"], p["exe_inode"]) == (None, "none", "none", None)
    p = record(exe="memfd:payload", id_flags=abi.ID_EXE_PSEUDO | abi.ID_ARGS_ABSENT)["process"]
    assert (p["exe"], p["exe_state"]) == ("memfd:payload", "pseudo")
    p = record(exe="/tmp/gone", id_flags=abi.ID_EXE_DELETED | abi.ID_ARGS_ABSENT)["process"]
    assert (p["exe"], p["exe_state"]) == ("/tmp/gone", "deleted")
    # a path the kernel could not read whole: no path, the inode names it
    p = record(exe="", id_flags=abi.ID_EXE_UNRESOLVED | abi.ID_ARGS_ABSENT)["process"]
    assert (p["exe"], p["exe_state"], p["exe_inode"]) == (None, "unresolved", {"ino": 1234, "dev": 0x800001})
    p = record(loginuid=0xFFFFFFFF)["process"]
    assert p["loginuid"] is None


def test_args_from_the_kernel():
    p = record(args=["cat", "/etc/shadow"], id_flags=0)["process"]
    assert p["args"] == ["cat", "/etc/shadow"] and p["args_truncated"] is False
    p = record(args=["x" * 10], id_flags=abi.ID_ARGS_TRUNCATED)["process"]
    assert p["args"] == ["x" * 10] and p["args_truncated"] is True


def test_schema1_layout_keeps_its_fields():
    s1 = as_schema1(record(pid=101, tgid=100))
    assert s1["schema"] == 1 and s1["host"] == "h1" and "seq" not in s1 and "process" not in s1
    assert "errno" not in s1   # a schema 2 field: the first layout had none
    s = s1["subject"]
    assert (s["pid"], s["tgid"], s["ppid"], s["uid"], s["gid"], s["comm"], s["cgroup_id"]) == \
        (101, 100, 1, 1000, 1000, "cat", 77)
    # exe now from the kernel, no longer read from /proc after the process may be gone
    assert s["exe"] == "/usr/bin/cat" and s["parent_exe"] == "/usr/bin/bash" and s["cgroup"] is None


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
    assert rec["decision"] == "audit" and rec["mode"] == "audit" and rec["errno"] is None


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


def test_names_add_only_what_the_kernel_cannot(tmp_path):
    cg = tmp_path / "system.slice" / "web.service"
    cg.mkdir(parents=True)
    names = Names(str(tmp_path))
    assert names.cgroup(os.stat(cg).st_ino) == "/system.slice/web.service"
    assert names.cgroup(os.stat(tmp_path).st_ino) == "/"
    assert names.cgroup(0) is None
    assert names.user(0) == "root"
    p = record(cgroup=os.stat(cg).st_ino, uid=0, procs=names)["process"]
    assert p["cgroup"] == "/system.slice/web.service" and p["user"] == "root"


def test_names_rescan_finds_a_new_cgroup_but_not_in_a_loop(tmp_path):
    names = Names(str(tmp_path))
    names.RESCAN_S = 0.0
    assert names.cgroup(123456789) is None
    new = tmp_path / "late.scope"
    new.mkdir()
    assert names.cgroup(os.stat(new).st_ino) == "/late.scope"
    names.RESCAN_S = 3600.0
    newer = tmp_path / "later.scope"
    newer.mkdir()
    assert names.cgroup(os.stat(newer).st_ino) is None   # no rescan within RESCAN_S


def test_host_info_reads_machine_and_boot_ids(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "proc" / "sys" / "kernel" / "random").mkdir(parents=True)
    (tmp_path / "proc" / "sys" / "kernel" / "random" / "boot_id").write_text("11111111-2222-3333-4444-555555555555\n")
    h = HostInfo.here(str(tmp_path / "etc"), str(tmp_path / "proc"))
    assert (h.id, h.boot_id) == ("0123456789abcdef0123456789abcdef", "11111111222233334444555555555555")
    assert HostInfo.here(str(tmp_path / "none"), str(tmp_path / "none")).id is None


def test_text_line_is_one_line_naming_rule():
    line = format_text(record())
    assert "\n" not in line
    assert re.search(r"DENY policy=web file\.read /etc/shadow pid=100 comm=cat exe=/usr/bin/cat rule=p\.policy:6:5",
                     line)
    assert line.endswith(") errno=EACCES"), line   # what the program was told, last


def test_decode_rejects_short_event():
    import pytest

    with pytest.raises(ValueError):
        decode(raw()[:10])
    with pytest.raises(ValueError):   # a tail shorter than its lengths say
        decode(raw(args=["a" * 50], id_flags=0)[:-20])


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


def test_default_decisions_carry_the_rule_that_allows_exactly_them(tmp_path):
    from policyc import pipeline

    addr = bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    recs = [record(rule_id=0, reason=1, path="/srv/www/a b.html", op=0),
            record(rule_id=0, reason=1, path="/srv/*weird*", op=1),
            record(rule_id=0, reason=1, family="exec", hook="bprm_check_security", path="/usr/bin/curl"),
            record(rule_id=0, reason=1, family="net", hook="socket_connect", port=443, proto=1, addr=addr, path=""),
            record(rule_id=0, reason=1, family="capability", hook="capable", aux=21, path=""),
            record(rule_id=0, reason=1, family="signal", hook="task_kill", aux=9, target_pid=5, path="/usr/sbin/x"),
            record(rule_id=0, reason=1, family="module", hook="kernel_module_request", path="net-pf-38"),
            record(rule_id=0, reason=1, family="bpf", hook="bpf", path="")]
    got = [r["suggestion"] for r in recs]
    assert got[0] == 'allow file read "/srv/www/a b.html"'
    assert got[1] == 'allow file write "/srv/?weird?"'     # glob characters can only be read literally as `?`
    assert got[2] == 'allow exec "/usr/bin/curl"'
    assert got[3] == "allow net connect tcp 10.1.2.3 port 443"
    assert got[4] == "allow capability sys_admin"
    assert got[5] == 'allow signal kill to exe "/usr/sbin/x"'
    assert got[6:] == ["allow module load", "allow bpf"]
    # every suggestion is a rule the language takes
    src = tmp_path / "s.policy"
    src.write_text("policy s {\n    subject exe \"/x\"\n    default deny\n" + "".join(f"    {g}\n" for g in got) + "}\n")
    front = pipeline.front_end([str(src)])
    assert front.ok, [str(d) for d in front.diags.items]
    # only the default's decisions carry one; the text line shows it
    assert record()["suggestion"] is None and record(rule_id=0, reason=2, path="")["suggestion"] is None
    assert format_text(recs[2]).endswith('(default deny; to allow: allow exec "/usr/bin/curl") errno=EACCES')
    assert record(rule_id=0, reason=1, path="pipe:[123]")["suggestion"] is None


def test_exec_explains_a_death_by_denial():
    from policyc.execute import explain_exit

    lib = record(rule_id=0, reason=1, path="/usr/lib/x86_64-linux-gnu/libc.so.6", op=9, hook="mmap_file")
    lines = explain_exit(-11, [lib, lib, record()], ["/usr/bin/bash", "-c", "x"])
    assert lines[0] == "policyc: `bash` was killed by SIGSEGV after 3 denials:"
    assert lines[1].startswith("policyc:   file.exec-map /usr/lib/x86_64-linux-gnu/libc.so.6 denied by p.policy:4:5 "
                               "(default deny); to allow: allow file exec-map ")
    assert lines[2] == 'policyc:   file.read /etc/shadow denied by p.policy:6:5 (deny file read "/etc/shadow")'
    assert lines[-1].startswith("policyc: hint: it could not map a library")
    assert explain_exit(1, [record()], ["cat"])[0] == "policyc: `cat` exited 1 after 1 denial:"
    assert explain_exit(0, [record()], ["cat"]) == [] and explain_exit(1, [], ["cat"]) == []
