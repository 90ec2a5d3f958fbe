"""runtime/ with an enforcing BPF LSM program: runs only inside the VM (POLICYC_IN_VM=1).

    python tests/kernel/run_suite.py --kernel 6.1 --kernel 6.12 -- -k runtime

The fixture tests/fixtures/runtime/lsm.bpf.c denies `file_open` of the files whose
(dev, inode) is in its map; it is built in the guest against the guest kernel's BTF. Target
files live on /dev/shm (a tmpfs of the guest: its inode numbers are its own).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

if os.environ.get("POLICYC_IN_VM") != "1":  # belt and braces: conftest already ignores us
    raise RuntimeError("tests/kernel/test_runtime_lsm.py attaches LSM programs: VM only")

from policyc import runtime  # noqa: E402
from policyc.runtime import _libbpf as B  # noqa: E402
from policyc.runtime import loader  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "runtime"))
import build as fixture_build  # noqa: E402
from rtutil import prog_alive, progs_named  # noqa: E402

pytestmark = pytest.mark.kernel
PROG = "rt_file_open"

HAMMER = r"""
import json, os, sys, time
path, started, stop = sys.argv[1:4]
opened = denied = other = 0
open(started, "w").close()
while not os.path.exists(stop):
    try:
        os.close(os.open(path, os.O_RDONLY))
        opened += 1
    except PermissionError:
        denied += 1
    except OSError:
        other += 1
print(json.dumps({"opened": opened, "denied": denied, "other": other}))
"""


@pytest.fixture(scope="module")
def objs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runtime-lsm-fixtures")
    return {n: fixture_build.build(n, out) for n in ("lsm", "lsm_attach_fail", "lsm_broken")}


@pytest.fixture
def pin_root():
    root = f"/sys/fs/bpf/policyc-ktest-{uuid.uuid4().hex[:8]}"
    yield root
    for name in runtime.list_loaded(root):
        runtime.unload(name, pin_root=root)
    if os.path.isdir(root):
        leftovers = os.listdir(root)
        os.rmdir(root)
        assert not leftovers, leftovers


@pytest.fixture
def files():
    base = Path("/dev/shm") / f"rt-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    paths = {}
    for n in "abcd":
        paths[n] = base / n
        paths[n].write_text(n)
    yield paths
    for p in paths.values():
        p.unlink()
    base.rmdir()


def file_key(path: Path) -> bytes:
    st = os.stat(path)
    return struct.pack("=QQ", (os.major(st.st_dev) << 20) | os.minor(st.st_dev), st.st_ino)


def deny(*paths: Path, mode: int = 1) -> dict[str, runtime.MapFill]:
    return {"rt_denied": runtime.MapFill(None, [(file_key(p), struct.pack("=I", mode))
                                                for p in paths])}


def open_errno(path: Path) -> int:
    """0 when PATH opens, else the errno."""
    try:
        os.close(os.open(path, os.O_RDONLY))
        return 0
    except OSError as e:
        return e.errno


def link_prog_id(pin_root: str, name: str) -> int:
    [s] = runtime.prog_stats(pin_root, name)
    return s["id"]


class Hammer:
    """A process opening PATH in a loop from start() to stop(); counts the outcomes."""

    def __init__(self, path: Path, tmp: Path) -> None:
        self.started, self.stop_file = tmp / "started", tmp / "stop"
        self.proc = subprocess.Popen([sys.executable, "-c", HAMMER, str(path), str(self.started),
                                      str(self.stop_file)], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not self.started.exists():
            assert time.monotonic() < deadline, "hammer did not start"
            time.sleep(0.01)
        time.sleep(0.2)  # let it run against the old version first

    def stop(self) -> dict[str, int]:
        time.sleep(0.2)  # and against the new one
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out)


# ---- the check ---------------------------------------------------------------------------------


def test_check_bpf_lsm_says_usable_in_the_vm():
    status = runtime.check_bpf_lsm()
    assert status.usable, (status.reason, status.hint)
    assert progs_named("policyc_probe") == []


# ---- load, deny, mark, unload ------------------------------------------------------------------


def test_load_denies_with_eperm_and_unload_restores_access(objs, pin_root, files):
    assert open_errno(files["a"]) == 0
    p = runtime.load(str(objs["lsm"]), "lsm", deny(files["a"]), pin_root=pin_root)
    assert sorted(os.listdir(Path(pin_root, "lsm", "links"))) == [PROG]
    assert sorted(os.listdir(Path(pin_root, "lsm", "maps"))) == ["rt_denials", "rt_denied",
                                                                 "rt_marks"]
    assert open_errno(files["a"]) == errno.EPERM
    assert open_errno(files["b"]) == 0
    with pytest.raises(PermissionError):
        files["a"].read_text()
    [(_, count)] = runtime.read_map(p.maps["rt_denials"])
    assert struct.unpack("=Q", count)[0] >= 2
    assert runtime.read_map(p.maps["rt_denied"]) == [(file_key(files["a"]),
                                                      struct.pack("=I", 1))]

    prog_id = link_prog_id(pin_root, "lsm")
    runtime.unload("lsm", pin_root=pin_root)
    assert open_errno(files["a"]) == 0  # at once: unload waited for the link to go
    assert not prog_alive(prog_id)
    assert not os.path.exists(Path(pin_root, "lsm"))


def test_mark_task_denies_only_the_marked_process(objs, pin_root, files):
    p = runtime.load(str(objs["lsm"]), "lsm", deny(files["d"], mode=2), pin_root=pin_root)
    child = ("import os, sys; sys.stdin.readline()\n"
             "try:\n    os.close(os.open(sys.argv[1], os.O_RDONLY)); print('opened')\n"
             "except PermissionError:\n    print('denied')\n")

    def run(mark: bytes | None) -> str:
        proc = subprocess.Popen([sys.executable, "-c", child, str(files["d"])],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if mark is not None:
            runtime.mark_task(proc.pid, p.maps["rt_marks"], mark)
        out, _ = proc.communicate("go\n", timeout=60)
        return out.strip()

    assert run(None) == "opened"
    assert run(struct.pack("=I", 1)) == "denied"
    assert run(struct.pack("=I", 0)) == "opened"
    assert open_errno(files["d"]) == 0  # this test process is not marked

    with pytest.raises(runtime.BpfError, match="value is 8 bytes"):
        runtime.mark_task(os.getpid(), p.maps["rt_marks"], b"\0" * 8)
    with pytest.raises(runtime.BpfError, match="not a task storage map"):
        runtime.mark_task(os.getpid(), p.maps["rt_denied"], b"\0" * 4)


def test_prog_stats_counts_lsm_runs(objs, pin_root, files):
    runtime.load(str(objs["lsm"]), "lsm", deny(files["a"]), pin_root=pin_root)
    with runtime.enable_stats():
        for _ in range(10):
            open_errno(files["b"])
        [s] = runtime.prog_stats(pin_root, "lsm")
    assert s["name"] == PROG and s["run_cnt"] >= 10 and s["run_time_ns"] > 0


# ---- replace -----------------------------------------------------------------------------------


def test_replace_swaps_the_program_without_a_gap(objs, pin_root, files, tmp_path):
    runtime.load(str(objs["lsm"]), "lsm", deny(files["a"], files["c"]), pin_root=pin_root)
    old_prog = link_prog_id(pin_root, "lsm")
    assert (open_errno(files["b"]), open_errno(files["c"])) == (0, errno.EPERM)

    hammer = Hammer(files["a"], tmp_path)  # `a` is denied by both versions
    new = runtime.load(str(objs["lsm"]), "lsm", deny(files["a"], files["b"]), pin_root=pin_root,
                       replace=True)
    counts = hammer.stop()
    print(f"replace: swapped in place {new.swapped_in_place}; hammer {counts}")
    assert counts["opened"] == 0, f"`a` opened during the replace: a gap ({counts})"
    assert counts["denied"] > 100 and counts["other"] == 0, counts

    assert new.replaced
    assert (open_errno(files["b"]), open_errno(files["c"])) == (errno.EPERM, 0)
    assert link_prog_id(pin_root, "lsm") != old_prog
    assert not prog_alive(old_prog)
    assert len(progs_named(PROG)) == 1


def test_lsm_links_cannot_be_updated_in_place(objs, pin_root, files):
    """Documents why replace attaches beside the old link: BPF_LINK_UPDATE on an LSM (tracing)
    link. If a kernel ever supports it, replace uses it (swapped_in_place) and this says so."""
    runtime.load(str(objs["lsm"]), "lsm", deny(files["a"]), pin_root=pin_root)
    undo, log = loader._Undo(), []
    obj = loader._Object(str(objs["lsm"]), {}, undo, log)
    link_fd = loader._obj_get(str(Path(pin_root, "lsm", "links", PROG)))
    old_prog_fd = loader._prog_fd_by_id(link_prog_id(pin_root, "lsm"))
    try:
        rc = loader._link_update(link_fd, obj.prog_fd(PROG), old_prog_fd)
        if rc == 0:
            loader._swap_back(link_fd, old_prog_fd, obj.prog_fd(PROG))
        print(f"BPF_LINK_UPDATE on an LSM link: {rc} ({B.errname(rc) if rc else 'ok'})")
        assert rc == 0 or -rc in loader._NO_LINK_UPDATE
        new = runtime.load(str(objs["lsm"]), "lsm", deny(files["a"]), pin_root=pin_root,
                           replace=True)
        assert new.swapped_in_place == ((PROG,) if rc == 0 else ())
    finally:
        os.close(link_fd)
        os.close(old_prog_fd)
        undo.run()


def test_failed_replace_keeps_the_old_version_enforcing(objs, pin_root, files, tmp_path):
    runtime.load(str(objs["lsm"]), "lsm", deny(files["a"], files["c"]), pin_root=pin_root)
    old_prog = link_prog_id(pin_root, "lsm")
    old_maps = {m: runtime.map_info(str(Path(pin_root, "lsm", "maps", m)))["id"]
                for m in ("rt_denied", "rt_marks", "rt_denials")}

    hammer = Hammer(files["a"], tmp_path)
    # The new version would deny `b` only; its second program fails to attach.
    with pytest.raises(runtime.BpfError, match="unchanged.*rt_no_attach.*EOPNOTSUPP"):
        runtime.load(str(objs["lsm_attach_fail"]), "lsm", deny(files["b"]), pin_root=pin_root,
                     replace=True)
    counts = hammer.stop()
    assert counts["opened"] == 0 and counts["denied"] > 100, counts

    assert link_prog_id(pin_root, "lsm") == old_prog
    assert {m: runtime.map_info(str(Path(pin_root, "lsm", "maps", m)))["id"]
            for m in old_maps} == old_maps
    assert [open_errno(files[n]) for n in "abc"] == [errno.EPERM, 0, errno.EPERM]
    assert progs_named(PROG) == [old_prog]

    with pytest.raises(runtime.BpfError, match="unchanged"):
        runtime.load(str(objs["lsm_broken"]), "lsm", pin_root=pin_root, replace=True)
    assert link_prog_id(pin_root, "lsm") == old_prog
    assert open_errno(files["a"]) == errno.EPERM


# ---- failed loads leave nothing attached ---------------------------------------------------------


def test_verifier_rejection_leaves_nothing(objs, pin_root):
    with pytest.raises(runtime.BpfError) as ei:
        runtime.load(str(objs["lsm_broken"]), "broken", pin_root=pin_root)
    assert "EACCES" in ei.value.message
    assert "-- BEGIN PROG LOAD LOG --" in ei.value.log
    assert "invalid mem access" in ei.value.log, ei.value.log[-2000:]
    assert not os.path.lexists(Path(pin_root, "broken"))
    assert progs_named("rt_broken_open") == []


def test_attach_failure_undoes_the_enforcing_attach(objs, pin_root, files):
    with pytest.raises(runtime.BpfError, match="rt_no_attach.*EOPNOTSUPP"):
        runtime.load(str(objs["lsm_attach_fail"]), "af", deny(files["a"]), pin_root=pin_root)
    assert open_errno(files["a"]) == 0  # rt_file_open had attached; it is gone again
    assert not os.path.lexists(Path(pin_root, "af"))
    assert runtime.list_loaded(pin_root) == []
    assert progs_named(PROG) == []
