"""Self-protection (`protect policyc`, issue #15): a root process the policy governs cannot
unpin or open policyc's BPF objects, change its files, mount over them, signal, ptrace or
freeze-kill its units' processes, or load kernel code; each attack fails with its family's
errno (EACCES for a file, EPERM for bpf, a signal, a ptrace, a mount or a module) and an event
naming the `protect policyc` line. Each probe is first shown to work ungoverned, and a
control beside it still works governed. The administrator (ungoverned) still loads and
unloads."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyc import deploy

from .harness import Loaded, governed_worker

REPO = Path(__file__).resolve().parents[2]
OK = {"ok": True, "errno": None}

R = "/tmp/pk-protect"
CG = "/sys/fs/cgroup"
UNIT_CG = f"{CG}/policyc.slice/policyc-audit.service"   # both units run in policyc.slice
OTHER_CG = f"{CG}/system.slice/pk-other.service"
SCRATCH_PIN = f"{deploy.PIN_ROOT}/pk-protect-scratch"

POLICY = """
policy guarded {
    subject exe "/nonexistent/guarded-subject"
    default allow
    protect policyc
}
"""
PROTECT_LINE = next(i for i, line in enumerate(POLICY.splitlines(), 1) if line.strip() == "protect policyc")


@pytest.fixture(scope="module")
def pol():
    shutil.rmtree(R, ignore_errors=True)
    if not os.path.exists(f"{CG}/cgroup.procs"):
        subprocess.run(["mount", "-t", "cgroup2", "none", CG], check=True)
    os.makedirs(f"{R}/mnt")
    Path(f"{R}/free").write_text("free\n")
    with Loaded(POLICY, "protect") as p:
        yield p


@pytest.fixture
def worker(pol):
    yield from governed_worker(pol)


@pytest.fixture
def outsider(pol):
    w = pol.worker(governed=False)
    yield w
    w.close()


# what a denial of each family returns (policyc/abi.py DENY_ERRNO_BY_FAMILY), written out
DENY_ERRNO = {"file": "EACCES", "bpf": "EPERM", "signal": "EPERM", "ptrace": "EPERM", "mount": "EPERM",
              "module": "EPERM"}


def denied_by_protect(pol, ans, family, **match):
    """The operation failed with its family's errno and the one event for it names the
    protect line."""
    assert ans == {"ok": False, "errno": DENY_ERRNO[family]}, ans
    evs = [e for e in pol.drain() if e.family == family and all(getattr(e, k) == v for k, v in match.items())]
    assert evs, (family, match)
    assert all(e.decision == "deny" for e in evs), evs
    line = pol.rule_line(evs[0].rule_id)
    assert line.endswith(f":{PROTECT_LINE}:5"), line
    return evs[0]


def scratch_pin() -> None:
    """A map pinned among policyc's pins, made by the administrator (ungoverned)."""
    if not os.path.exists(SCRATCH_PIN):
        subprocess.run(["bpftool", "map", "create", SCRATCH_PIN, "type", "array", "key", "4", "value", "4",
                        "entries", "1", "name", "pkscratch"], check=True)


def test_pins_cannot_be_opened_or_removed(pol, worker, outsider):
    scratch_pin()
    subjects = f"{deploy.PIN_ROOT}/{pol.session.name}/maps/subjects"
    assert os.path.exists(subjects), subjects
    # the probes work ungoverned
    assert outsider.op("bpf-obj-get", subjects) == OK
    assert outsider.op("bpf-obj-get", SCRATCH_PIN) == OK
    # governed: no fd of a pinned map (bpf(2) itself is denied), no unpinning
    denied_by_protect(pol, worker.op("bpf-obj-get", subjects), "bpf")
    denied_by_protect(pol, worker.op("delete", SCRATCH_PIN), "file", op="delete", path=SCRATCH_PIN)
    assert os.path.exists(SCRATCH_PIN)
    denied_by_protect(pol, worker.op("rename", SCRATCH_PIN, dest=f"{deploy.PIN_ROOT}/pk-moved"), "file", op="rename")
    # control: the governed process still reads and writes its own files
    assert worker.op("write", f"{R}/free") == OK
    # the administrator unpins
    assert outsider.op("delete", SCRATCH_PIN) == OK


def _ids(kind: str) -> list[int]:
    out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True, check=True).stdout
    return [o["id"] for o in json.loads(out)]


def test_links_maps_and_programs_cannot_be_reached_by_id(pol, worker, outsider):
    """The way to detach a link or write a map without its pin: its fd by id."""
    for kind, cmd in (("link", 30), ("map", 14), ("prog", 13)):
        ident = _ids(kind)[-1]
        assert outsider.op("bpf-get-fd-by-id", cmd=cmd, id=ident) == OK, kind
        denied_by_protect(pol, worker.op("bpf-get-fd-by-id", cmd=cmd, id=ident), "bpf")


def test_policyc_files_cannot_be_changed(pol, worker, outsider):
    for d in ("/etc/policyc/policies.d", "/var/lib/policyc", "/run/policyc"):
        os.makedirs(d, exist_ok=True)
    for path in ("/etc/policyc/policies.d/evil.policy", "/var/lib/policyc/evil.manifest.json",
                 "/etc/systemd/system/policyc.service.d/override.conf"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        denied_by_protect(pol, worker.op("create", path), "file", op="create", path=path)
        assert not os.path.exists(path)
        assert outsider.op("create", path) == OK   # the probe works ungoverned
        os.unlink(path)
    assert worker.op("create", f"{R}/new-{os.getpid()}") == OK   # control
    # an installed policy and a built object: not deleted, not overwritten, not renamed away
    for path in ("/etc/policyc/policies.d/site.policy", "/var/lib/policyc/site.bpf.o"):
        Path(path).write_text("installed\n")
        denied_by_protect(pol, worker.op("delete", path), "file", op="delete", path=path)
        denied_by_protect(pol, worker.op("write", path), "file", op="write", path=path)
        denied_by_protect(pol, worker.op("rename", path, dest=f"{path}.moved"), "file", op="rename")
        assert Path(path).read_text() == "installed\n"
        assert outsider.op("delete", path) == OK   # the administrator may
        assert not os.path.exists(path)


def test_systemctl_socket_cannot_be_reached(pol, worker, outsider):
    os.makedirs("/run/systemd", exist_ok=True)
    path = "/run/systemd/private"
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    other = f"{R}/other.sock"
    srv2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv2.bind(other)
    srv2.listen(8)
    try:
        assert outsider.op("unix-connect", path) == OK
        denied_by_protect(pol, worker.op("unix-connect", path), "file", path=path)
        assert worker.op("unix-connect", other) == OK   # control
    finally:
        srv.close()
        srv2.close()
        os.unlink(path)


def _sleeper_in(cgroup: str) -> subprocess.Popen:
    os.makedirs(cgroup, exist_ok=True)
    p = subprocess.Popen(["/usr/bin/sleep", "600"])
    Path(f"{cgroup}/cgroup.procs").write_text(str(p.pid))
    return p


def test_policyc_units_cannot_be_signalled_traced_or_killed_through_their_cgroup(pol, worker, outsider):
    # the load made policyc.slice (deploy.cgroup_id: the rule holds the id systemd adopts)
    assert os.path.isdir(f"{CG}/policyc.slice")
    reader = _sleeper_in(UNIT_CG)      # stands for policyc-audit.service's process
    bystander = _sleeper_in(OTHER_CG)  # another service's
    try:
        denied_by_protect(pol, worker.op("signal", pid=reader.pid, sig=signal.SIGTERM), "signal",
                          target_pid=reader.pid)
        denied_by_protect(pol, worker.op("ptrace", pid=reader.pid), "ptrace", target_pid=reader.pid)
        denied_by_protect(pol, worker.op("write", f"{UNIT_CG}/cgroup.kill"), "file", path=f"{UNIT_CG}/cgroup.kill")
        denied_by_protect(pol, worker.op("write", f"{UNIT_CG}/cgroup.procs"), "file", path=f"{UNIT_CG}/cgroup.procs")
        # nor moved out of the slice (a write to another cgroup's cgroup.procs)
        denied_by_protect(pol, worker.op("write", f"{OTHER_CG}/cgroup.procs"), "file", path=f"{OTHER_CG}/cgroup.procs")
        time.sleep(0.2)
        assert reader.poll() is None, "the unit's process died"
        # controls: the same signal to another service's process is delivered
        assert worker.op("signal", pid=bystander.pid, sig=signal.SIGTERM) == OK
        assert bystander.wait(10) == -signal.SIGTERM
        # and the administrator may signal the unit's process (the probe works ungoverned)
        assert outsider.op("signal", pid=reader.pid, sig=signal.SIGTERM) == OK
        assert reader.wait(10) == -signal.SIGTERM
    finally:
        for p in (reader, bystander):
            p.kill()
            p.wait()


def test_bpffs_cannot_be_mounted_over_and_no_kernel_code_loads(pol, worker, outsider):
    assert outsider.op("mount", deploy.PIN_ROOT) == OK   # mounts a tmpfs and unmounts it
    denied_by_protect(pol, worker.op("mount", deploy.PIN_ROOT), "mount")
    assert worker.op("mount", f"{R}/mnt") == OK   # control: a mount of its own
    denied_by_protect(pol, worker.op("module-load"), "module")
    assert os.path.isdir(f"{deploy.PIN_ROOT}/{pol.session.name}")


def test_the_administrator_still_loads_and_unloads(pol, worker):
    """With a governed process alive, an ungoverned `policyc load` and `unload` work."""
    src = Path(f"{R}/admin.policy")
    src.write_text(POLICY.replace("policy guarded", "policy pkadmin"))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    policyc = [sys.executable, "-m", "policyc"]
    out = f"{R}/admin-out"
    subprocess.run([*policyc, "build", str(src), "-o", out], check=True, cwd=REPO, env=env,
                   capture_output=True, text=True)
    p = subprocess.run([*policyc, "load", out], cwd=REPO, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.path.isdir(f"{deploy.PIN_ROOT}/pkadmin")
    p = subprocess.run([*policyc, "unload", "pkadmin"], cwd=REPO, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not os.path.exists(f"{deploy.PIN_ROOT}/pkadmin")
    # the governed process is still denied
    denied_by_protect(pol, worker.op("bpf"), "bpf")
