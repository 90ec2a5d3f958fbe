"""Capabilities, signals, ptrace, module loading, bpf() and raw/packet sockets in a real
kernel: denied -> the family's errno (EPERM; EACCES for a `net create`) and an event naming the
rule; allowed -> works; audit mode -> works and sends its event; a process outside the subject
is untouched."""

import ctypes
import os
import signal
import subprocess
import time

import pytest

from .harness import Loaded, Worker

POLICY = """
policy families {
    subject exe "/nonexistent/families"
    default allow
    deny capability net_raw
    deny signal term, usr1 to exe "/usr/bin/sleep"
    deny ptrace
    deny module load
    deny bpf
    deny net create packet
    audit signal hup
}
"""

AUDIT_POLICY = """
policy families-audit {
    subject exe "/nonexistent/families-audit"
    mode audit
    default allow
    deny capability net_raw
    deny bpf
}
"""

RAW_SOCKET = ("import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
              "    print('raw ok')\nexcept OSError as e:\n    print('raw', e.errno)\n")
PACKET_SOCKET = ("import socket\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
                 "    print('packet ok')\nexcept OSError as e:\n    print('packet', e.errno)\n")
BPF_CALL = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "attr = (ctypes.c_uint32 * 16)(1, 4, 4, 1)  # BPF_MAP_CREATE: array, 4-byte key/value, 1\n"
            "fd = libc.syscall(321, 0, attr, 64)\nprint('bpf', 'ok' if fd >= 0 else ctypes.get_errno())\n")
INIT_MODULE = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nbuf = b'not a module' * 8\n"
               "r = libc.syscall(175, buf, len(buf), b'')\nprint('init_module', ctypes.get_errno())\n")
FINIT_MODULE = ("import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                "r = libc.syscall(313, fd, b'', 0)\nprint('finit_module', ctypes.get_errno())\n")
SETHOSTNAME = ("import ctypes, socket\nlibc = ctypes.CDLL(None, use_errno=True)\nn = socket.gethostname().encode()\n"
               "r = libc.sethostname(n, len(n))\nprint('sethostname', 'ok' if r == 0 else ctypes.get_errno())\n")
PTRACE_ATTACH = ("import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                 "r = libc.ptrace(16, int(sys.argv[1]), 0, 0)\nprint('ptrace', 'ok' if r == 0 else ctypes.get_errno())\n"
                 "r == 0 and libc.ptrace(17, int(sys.argv[1]), 0, 0)\n")


@pytest.fixture(scope="module")
def pol():
    p = Loaded(POLICY, "families")
    yield p
    p.close()


def py(pol, code, *args):
    return pol.run(["python3", "-c", code, *args])


def ungoverned(code, *args):
    return subprocess.run(["python3", "-c", code, *args], capture_output=True, text=True)


def test_capability_denied(pol):
    res = py(pol, RAW_SOCKET)
    assert res.stdout.strip() == "raw 1", res.stdout + res.stderr  # EPERM: inet_create's own capability check
    evs = [e for e in res.events if e.family == "capability"]
    assert evs and evs[0].aux == 13 and evs[0].decision == "deny"  # CAP_NET_RAW
    assert evs[0].rule_id == pol.rule_id_of("deny capability net_raw")
    assert ungoverned(RAW_SOCKET).stdout.strip() == "raw ok"


def test_signal_denied_by_target_and_signal(pol):
    victim = subprocess.Popen(["/usr/bin/sleep", "60"])
    try:
        res = pol.run(["sh", "-c", f"kill -TERM {victim.pid}; echo term $?; kill -HUP {victim.pid}; echo hup $?"])
        assert "term 1" in res.stdout, res.stdout + res.stderr
        assert "Operation not permitted" in res.stderr, res.stderr  # the shell's kill: EPERM, a signal denial
        evs = [e for e in res.events if e.family == "signal"]
        assert evs[0].decision == "deny" and evs[0].aux == 15 and evs[0].target_pid == victim.pid
        assert evs[0].path == "/usr/bin/sleep"
        assert evs[0].rule_id == pol.rule_id_of("deny signal term")
        # SIGHUP is audited: delivered, and logged
        assert "hup 0" in res.stdout
        assert any(e.decision == "audit" and e.aux == 1 for e in evs)
        victim.wait(5)
        assert victim.returncode == -signal.SIGHUP
    finally:
        victim.kill()
        victim.wait()


def test_signal_to_an_untargeted_process_is_allowed(pol):
    other = subprocess.Popen(["python3", "-c", "import time; time.sleep(60)"])
    try:
        res = pol.run(["sh", "-c", f"kill -TERM {other.pid}; echo term $?"])
        assert "term 0" in res.stdout
        other.wait(5)
    finally:
        other.kill()
        other.wait()


def test_ptrace_by_a_governed_process(pol):
    victim = subprocess.Popen(["/usr/bin/sleep", "60"])
    try:
        res = py(pol, PTRACE_ATTACH, str(victim.pid))
        assert res.stdout.strip() == "ptrace 1", res.stdout + res.stderr  # EPERM
        assert any(e.family == "ptrace" and e.decision == "deny" and e.target_pid == victim.pid for e in res.events)
        assert ungoverned(PTRACE_ATTACH, str(victim.pid)).stdout.strip() == "ptrace ok"
    finally:
        victim.kill()
        victim.wait()


def test_ptrace_of_a_governed_process_by_an_outsider(pol):
    w = pol.worker()
    pol.drain()
    try:
        res = ungoverned(PTRACE_ATTACH, str(w.pid))
        assert res.stdout.strip() == "ptrace 1", res.stdout + res.stderr
        assert any(e.family == "ptrace" and e.target_pid == w.pid for e in pol.drain())
    finally:
        w.close()


SYS_ADMIN_POLICY = """
policy no-sys-admin {
    subject exe "/nonexistent/no-sys-admin"
    default allow
    deny capability sys_admin
}
"""


def test_capability_checks_the_kernel_makes_as_someone_else_are_not_the_subjects(tmp_path):
    # overlayfs reads its trusted.overlay.* xattrs under its mounter's credentials; a process
    # denied sys_admin must still see the overlay as it is: an opaque upper directory hides
    # the lower layer's files
    # layers on a tmpfs of our own (the guest's /tmp is itself an overlay: no trusted xattrs)
    subprocess.run(["mount", "-t", "tmpfs", "none", str(tmp_path)], check=True)
    for d in ("lower/d", "upper/d", "work", "merged"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "lower/d/hidden").write_text("lower\n")
    (tmp_path / "upper/d/shown").write_text("upper\n")
    os.setxattr(tmp_path / "upper/d", "trusted.overlay.opaque", b"y")
    merged = tmp_path / "merged"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work", str(merged)],
                   check=True)
    try:
        with Loaded(SYS_ADMIN_POLICY, "no-sys-admin") as p:
            res = p.run(["ls", f"{merged}/d"])   # the first lookup of d: overlayfs reads the xattr now
            assert res.stdout.split() == ["shown"], res.stdout + res.stderr
            assert not [e for e in res.events if e.family == "capability"], res.events
            # the process's own use of sys_admin is still denied
            res = p.run(["python3", "-c", SETHOSTNAME])
            assert res.stdout.strip() == "sethostname 1", res.stdout + res.stderr
            assert any(e.family == "capability" and e.aux == 21 for e in res.events)
    finally:
        subprocess.run(["umount", str(merged)], check=False)
        subprocess.run(["umount", str(tmp_path)], check=False)


def test_module_load_denied(pol):
    res = py(pol, INIT_MODULE)
    assert res.stdout.strip() == "init_module 1", res.stdout + res.stderr
    assert any(e.family == "module" and e.hook == "kernel_load_data" for e in res.events)
    # outside the subject the same call gets as far as parsing the image
    assert ungoverned(INIT_MODULE).stdout.strip() != "init_module 1"


def test_module_file_load_denied_and_named(pol, tmp_path):
    ko = tmp_path / "policyc_fake.ko"
    ko.write_bytes(b"not a module" * 8)
    res = py(pol, FINIT_MODULE, str(ko))
    assert res.stdout.strip() == "finit_module 1", res.stdout + res.stderr
    evs = [e for e in res.events if e.family == "module"]
    assert evs and evs[0].hook == "kernel_read_file" and evs[0].path == str(ko)
    assert evs[0].rule_id == pol.rule_id_of("deny module load")
    # outside the subject the kernel reads it and refuses the image itself (ENOEXEC)
    assert ungoverned(FINIT_MODULE, str(ko)).stdout.strip() == "finit_module 8"


def test_bpf_denied_and_policyc_itself_untouched(pol):
    res = py(pol, BPF_CALL)
    assert res.stdout.strip() == "bpf 1", res.stdout + res.stderr
    assert any(e.family == "bpf" and e.rule_id == pol.rule_id_of("deny bpf") for e in res.events)
    assert ungoverned(BPF_CALL).stdout.strip() == "bpf ok"


def test_packet_socket_denied_raw_follows_capability(pol):
    res = py(pol, PACKET_SOCKET)
    assert res.stdout.strip() == "packet 13", res.stdout + res.stderr  # EACCES: a net denial (socket_create)
    assert any(e.hook == "socket_create" and e.proto == "packet" and e.decision == "deny" for e in res.events)
    assert ungoverned(PACKET_SOCKET).stdout.strip() == "packet ok"


def test_audit_mode_allows_and_logs():
    pol = Loaded(AUDIT_POLICY, "families-audit")
    try:
        res = py(pol, RAW_SOCKET)
        assert res.stdout.strip() == "raw ok"
        assert any(e.family == "capability" and e.decision == "audit" and e.mode == "audit" for e in res.events)
        res = py(pol, BPF_CALL)
        assert res.stdout.strip() == "bpf ok"
        assert any(e.family == "bpf" and e.decision == "audit" for e in res.events)
    finally:
        pol.close()
