"""runtime/ against the host kernel, with tracing programs only (the host refuses BPF LSM).

Needs root, clang and bpftool; builds tests/fixtures/runtime/*.bpf.c into a temporary
directory and pins under a fresh /sys/fs/bpf/policyc-test-<random>, removed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from policyc import runtime
from policyc.runtime import _libbpf as B
from policyc.runtime import loader

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "runtime"))
import build as fixture_build  # noqa: E402
from rtutil import prog_alive, progs_named  # noqa: E402

# A developer without root or clang may skip these; CI (CI=true) never does: there the
# missing prerequisite fails the run.
_CI = os.environ.get("CI") == "true"
pytestmark = [
    pytest.mark.skipif(not _CI and os.geteuid() != 0, reason="loading BPF programs needs root"),
    pytest.mark.skipif(not _CI and (not (shutil.which("clang-19") or shutil.which("clang"))
                       or not (shutil.which("bpftool") or os.path.exists("/usr/sbin/bpftool"))),
                       reason="needs clang and bpftool"),
]

GETPID_PROG = "rt_on_getpid"


@pytest.fixture(scope="module")
def objs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runtime-fixtures")
    return {n: fixture_build.build(n, out) for n in ("trace", "broken", "attach_fail")}


@pytest.fixture
def pin_root():
    root = f"/sys/fs/bpf/policyc-test-{uuid.uuid4().hex[:8]}"
    yield root
    for name in runtime.list_loaded(root):
        runtime.unload(name, pin_root=root)
    if os.path.isdir(root):
        leftovers = os.listdir(root)
        os.rmdir(root)
        assert not leftovers, f"test left pins behind: {leftovers}"


def u32(n: int) -> bytes:
    return struct.pack("=I", n)


def u64(n: int) -> bytes:
    return struct.pack("=Q", n)


def config(cookie: int, pid: int | None = None, max_entries: int | None = None):
    pid = os.getpid() if pid is None else pid
    return {"rt_config": runtime.MapFill(max_entries, [(u32(0), u64(pid)), (u32(1), u64(cookie))])}


def events_after_getpid(ringbuf_pin: str, n: int) -> list[tuple[int, int, int]]:
    got: list[bytes] = []
    with runtime.RingBufferReader([ringbuf_pin], got.append) as reader:
        reader.consume()  # drop what earlier getpid() calls queued
        got.clear()
        for _ in range(n):
            os.getpid()
        deadline = time.monotonic() + 5
        while len(got) < n and time.monotonic() < deadline:
            reader.poll(50)
    return [struct.unpack("=IIQ", g) for g in got]


# ---- load, pins, maps, ring buffer, stats, unload ----------------------------------------------


def test_load_pins_exactly_links_and_maps(objs, pin_root):
    p = runtime.load(str(objs["trace"]), "trace", config(7), pin_root=pin_root)
    d = Path(pin_root, "trace")
    assert sorted(os.listdir(d)) == ["links", "maps"]
    assert os.listdir(d / "links") == [GETPID_PROG]
    assert sorted(os.listdir(d / "maps")) == ["rt_config", "rt_counts", "rt_events", "rt_percpu"]
    assert p.links == {GETPID_PROG: str(d / "links" / GETPID_PROG)}
    assert p.maps["rt_config"] == str(d / "maps" / "rt_config")
    assert runtime.list_loaded(pin_root) == ["trace"]


def test_read_map_returns_what_was_filled_and_max_entries_took(objs, pin_root):
    fill = config(0xC0FFEE, max_entries=16)
    p = runtime.load(str(objs["trace"]), "trace", fill, pin_root=pin_root)
    assert sorted(runtime.read_map(p.maps["rt_config"])) == sorted(fill["rt_config"].entries)
    info = runtime.map_info(p.maps["rt_config"])
    assert (info["max_entries"], info["key_size"], info["value_size"]) == (16, 4, 8)
    assert runtime.map_info(p.maps["rt_counts"])["max_entries"] == 64  # untouched


def test_ring_buffer_delivers_getpid_events_and_maps_count_them(objs, pin_root):
    p = runtime.load(str(objs["trace"]), "trace", config(0xC0FFEE), pin_root=pin_root)
    events = events_after_getpid(p.maps["rt_events"], 5)
    assert len(events) == 5
    assert {(pid, cookie) for pid, _, cookie in events} == {(os.getpid(), 0xC0FFEE)}
    assert [seq for _, seq, _ in events] == sorted(seq for _, seq, _ in events)

    counts = dict(runtime.read_map(p.maps["rt_counts"]))
    assert struct.unpack("=Q", counts[u32(os.getpid())])[0] >= 5

    percpu = dict(runtime.read_map(p.maps["rt_percpu"]))
    per_cpu_values = percpu[u32(0)]
    assert isinstance(per_cpu_values, list) and len(per_cpu_values) == B.possible_cpus()
    assert sum(struct.unpack("=Q", v)[0] for v in per_cpu_values) >= 5


def test_ring_buffer_callback_exception_reaches_poll(objs, pin_root):
    p = runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)

    def boom(sample: bytes) -> None:
        raise ValueError("from the callback")

    with runtime.RingBufferReader([p.maps["rt_events"]], boom) as reader:
        os.getpid()
        with pytest.raises(ValueError, match="from the callback"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                reader.poll(50)


def test_ring_buffer_stop_returns_early_and_loses_nothing(objs, pin_root):
    p = runtime.load(str(objs["trace"]), "trace", config(3), pin_root=pin_root)
    got: list[bytes] = []

    def one_at_a_time(sample: bytes):
        got.append(sample)
        return runtime.RingBufferReader.STOP

    with runtime.RingBufferReader([p.maps["rt_events"]], got.append) as reader:
        reader.consume()
    got.clear()
    with runtime.RingBufferReader([p.maps["rt_events"]], one_at_a_time) as reader:
        for _ in range(5):
            os.getpid()
        assert reader.consume() == 0 and len(got) == 1   # stopped after the first sample
        for _ in range(20):
            reader.consume()
    mine = [struct.unpack("=IIQ", g) for g in got if struct.unpack("=IIQ", g)[0] == os.getpid()]
    seqs = [seq for _, seq, _ in mine]
    assert len(mine) >= 5 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))   # none skipped


def test_ring_buffer_rejects_a_map_that_is_not_one(objs, pin_root):
    p = runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    with pytest.raises(runtime.BpfError, match="EINVAL"):
        runtime.RingBufferReader([p.maps["rt_config"]], lambda b: None)


def test_read_map_refuses_a_ring_buffer(objs, pin_root):
    p = runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    with pytest.raises(runtime.BpfError, match="iterating"):
        runtime.read_map(p.maps["rt_events"])


def test_prog_stats_counts_runs(objs, pin_root):
    runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    with runtime.enable_stats():
        for _ in range(20):
            os.getpid()
        stats = runtime.prog_stats(pin_root, "trace")
    assert [s["name"] for s in stats] == [GETPID_PROG]
    assert stats[0]["run_cnt"] >= 20  # sys_enter runs for every syscall, not only ours
    assert stats[0]["run_time_ns"] > 0


def test_unload_removes_pins_and_detaches(objs, pin_root):
    runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    prog_id = runtime.prog_stats(pin_root, "trace")[0]["id"]
    runtime.unload("trace", pin_root=pin_root)
    assert not os.path.exists(os.path.join(pin_root, "trace"))
    assert runtime.list_loaded(pin_root) == []
    assert not prog_alive(prog_id)  # unload waited for the kernel to free the link
    with pytest.raises(runtime.BpfError, match="not loaded"):
        runtime.unload("trace", pin_root=pin_root)


# ---- failures unwind everything -----------------------------------------------------------------


def assert_nothing_left(pin_root: str, name: str, prog: str) -> None:
    assert not os.path.lexists(os.path.join(pin_root, name))
    assert runtime.list_loaded(pin_root) == []
    assert progs_named(prog) == []


def test_verifier_rejection_raises_with_the_verifier_log(objs, pin_root):
    with pytest.raises(runtime.BpfError) as ei:
        runtime.load(str(objs["broken"]), "broken", pin_root=pin_root)
    e = ei.value
    assert "EACCES" in e.message
    assert "-- BEGIN PROG LOAD LOG --" in e.log
    assert "invalid access to map value" in e.log or "invalid mem access" in e.log
    assert "invalid access to map value" in str(e) or "invalid mem access" in str(e)
    assert_nothing_left(pin_root, "broken", "rt_broken")


def test_attach_failure_detaches_what_was_attached(objs, pin_root):
    with pytest.raises(runtime.BpfError) as ei:
        runtime.load(str(objs["attach_fail"]), "af", pin_root=pin_root)
    assert "rt_no_attach" in ei.value.message
    assert "EOPNOTSUPP" in ei.value.message
    assert_nothing_left(pin_root, "af", "rt_attach_ok")


@pytest.mark.parametrize("fill, match", [
    ({"rt_nope": runtime.MapFill(None, [])}, "no map `rt_nope`"),
    ({"rt_config": runtime.MapFill(None, [(b"\0" * 3, u64(1))])}, "key is 3 bytes"),
    ({"rt_config": runtime.MapFill(None, [(u32(0), b"\0" * 4)])}, "value is 4 bytes"),
    ({"rt_config": runtime.MapFill(2, [(u32(i), u64(i)) for i in range(3)])}, "E2BIG"),
])
def test_bad_map_fill_leaves_nothing(objs, pin_root, fill, match):
    with pytest.raises(runtime.BpfError, match=match):
        runtime.load(str(objs["trace"]), "trace", fill, pin_root=pin_root)
    assert_nothing_left(pin_root, "trace", GETPID_PROG)


def test_failure_after_pinning_unpins(objs, pin_root, monkeypatch):
    real = loader._pin_map

    def fail_on_events(m, path, undo):
        if path.endswith("/rt_events"):
            raise runtime.BpfError("injected pin failure")
        return real(m, path, undo)

    monkeypatch.setattr(loader, "_pin_map", fail_on_events)
    with pytest.raises(runtime.BpfError, match="injected"):
        runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    assert_nothing_left(pin_root, "trace", GETPID_PROG)


def test_missing_object_is_a_bpf_error(pin_root):
    with pytest.raises(runtime.BpfError, match="does not exist"):
        runtime.load("/nonexistent.bpf.o", "x", pin_root=pin_root)
    assert runtime.list_loaded(pin_root) == []


# ---- loading over a loaded policy ---------------------------------------------------------------


def test_second_load_without_replace_is_refused_and_changes_nothing(objs, pin_root):
    runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    before = runtime.prog_stats(pin_root, "trace")
    with pytest.raises(runtime.BpfError, match="already loaded"):
        runtime.load(str(objs["trace"]), "trace", config(2), pin_root=pin_root)
    assert [s["id"] for s in runtime.prog_stats(pin_root, "trace")] == [s["id"] for s in before]


def test_replace_swaps_programs_and_maps(objs, pin_root):
    old = runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    old_prog = runtime.prog_stats(pin_root, "trace")[0]["id"]
    old_map = runtime.map_info(old.maps["rt_config"])["id"]

    new = runtime.load(str(objs["trace"]), "trace", config(2), pin_root=pin_root, replace=True)
    assert new.replaced and new.links == old.links and new.maps == old.maps
    new_prog = runtime.prog_stats(pin_root, "trace")[0]["id"]
    assert new_prog != old_prog
    assert runtime.map_info(new.maps["rt_config"])["id"] != old_map
    assert not prog_alive(old_prog)
    assert {c for _, _, c in events_after_getpid(new.maps["rt_events"], 3)} == {2}
    assert sorted(os.listdir(os.path.join(pin_root, "trace", "links"))) == [GETPID_PROG]


def test_failed_replace_keeps_the_old_version_running(objs, pin_root, monkeypatch):
    old = runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    old_prog = runtime.prog_stats(pin_root, "trace")[0]["id"]
    old_maps = {m: runtime.map_info(p)["id"] for m, p in old.maps.items()}
    real = loader._pin_map

    def fail_on_events(m, path, undo):  # fails after the new link and 3 new maps are pinned
        if path.endswith("/rt_events"):
            raise runtime.BpfError("injected pin failure")
        return real(m, path, undo)

    monkeypatch.setattr(loader, "_pin_map", fail_on_events)
    with pytest.raises(runtime.BpfError, match="loaded version is unchanged: injected"):
        runtime.load(str(objs["trace"]), "trace", config(2), pin_root=pin_root, replace=True)
    assert [s["id"] for s in runtime.prog_stats(pin_root, "trace")] == [old_prog]
    assert {m: runtime.map_info(p)["id"] for m, p in old.maps.items()} == old_maps
    assert {c for _, _, c in events_after_getpid(old.maps["rt_events"], 3)} == {1}
    assert len(progs_named(GETPID_PROG)) == 1  # the new program is gone


def test_failed_replace_at_load_keeps_the_old_version(objs, pin_root):
    runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    old_prog = runtime.prog_stats(pin_root, "trace")[0]["id"]
    with pytest.raises(runtime.BpfError, match="unchanged"):
        runtime.load(str(objs["broken"]), "trace", pin_root=pin_root, replace=True)
    assert [s["id"] for s in runtime.prog_stats(pin_root, "trace")] == [old_prog]


def test_replace_of_nothing_is_a_plain_load(objs, pin_root):
    p = runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root, replace=True)
    assert not p.replaced and runtime.list_loaded(pin_root) == ["trace"]


# ---- the LSM check -----------------------------------------------------------------------------


def test_check_bpf_lsm_reports_this_host_unusable():
    status = runtime.check_bpf_lsm()
    assert status.usable is False
    # The host refuses BPF_PROG_LOAD of LSM programs: the reason says so, by errno name.
    assert re.search(r"BPF_PROG_LOAD of an LSM program failed: E[A-Z]+", status.reason) or \
        "not among the active LSMs" in status.reason, status.reason
    assert "EPERM" in status.reason, status.reason
    assert "policyc vm" in status.hint
    assert progs_named("policyc_probe") == []  # the trial program was never left loaded


def test_check_bpf_lsm_hint_suggests_appending_bpf(monkeypatch):
    from policyc.runtime import lsm

    def refuse():
        raise runtime.BpfError("BPF_PROG_LOAD of an LSM program failed: EINVAL (Invalid argument)")

    monkeypatch.setattr(lsm, "active_lsms", lambda: ["lockdown", "capability", "apparmor"])
    monkeypatch.setattr(lsm, "trial_load_lsm", refuse)
    status = runtime.check_bpf_lsm()
    assert not status.usable
    assert "`bpf` is not among the active LSMs (lockdown,capability,apparmor)" in status.reason
    assert "lsm=lockdown,capability,apparmor,bpf" in status.hint

    monkeypatch.setattr(lsm, "trial_load_lsm", lambda: None)
    status = runtime.check_bpf_lsm()
    assert not status.usable and "would never run" in status.reason

    monkeypatch.setattr(lsm, "active_lsms", lambda: ["capability", "bpf"])
    assert runtime.check_bpf_lsm().usable


def test_ensure_bpffs_mounts_where_bpffs_is_missing(tmp_path):
    target = str(tmp_path / "bpffs")
    runtime.ensure_bpffs(target)
    try:
        assert (target, "bpf") in loader._mounts()
        runtime.ensure_bpffs(target)  # mounted already: nothing to do
        assert loader._mounts().count((target, "bpf")) == 1
    finally:
        subprocess.run(["umount", target], check=True)


def test_pin_root_off_bpffs_is_refused(objs, tmp_path):
    with pytest.raises(runtime.BpfError, match="not on a BPF filesystem"):
        runtime.load(str(objs["trace"]), "trace", config(1), pin_root=str(tmp_path))
    assert os.listdir(tmp_path) == []
    assert progs_named(GETPID_PROG) == []


KILLED_REPLACE = """
import os, sys
from policyc.runtime import loader
real = loader._move_in
def die_after_first(staged, final, old_fd, undo):
    real(staged, final, old_fd, undo)
    os.kill(os.getpid(), 9)  # SIGKILL halfway through moving the pins: no unwinding at all
loader._move_in = die_after_first
from policyc import runtime
runtime.load(sys.argv[1], "trace", {}, pin_root=sys.argv[2], replace=True)
"""


def test_replace_killed_midway_leaves_attached_pins_and_is_recoverable(objs, pin_root):
    runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    old_prog = runtime.prog_stats(pin_root, "trace")[0]["id"]
    r = subprocess.run([sys.executable, "-c", KILLED_REPLACE, str(objs["trace"]), pin_root],
                       cwd=ROOT)
    assert r.returncode == -9
    # The link path was renamed over atomically: it names the new, attached link; the old one
    # died with the process that held it. Maps were not moved yet: old maps still pinned.
    d = Path(pin_root, "trace")
    assert os.path.isdir(d / loader.STAGING)
    [s] = runtime.prog_stats(pin_root, "trace")
    assert s["id"] != old_prog and prog_alive(s["id"])
    assert wait_gone(old_prog)
    # A new replace clears the leftovers and completes.
    runtime.load(str(objs["trace"]), "trace", config(3), pin_root=pin_root, replace=True)
    assert sorted(os.listdir(d)) == ["links", "maps"]
    assert {c for _, _, c in events_after_getpid(str(d / "maps" / "rt_events"), 2)} == {3}
    assert len(progs_named(GETPID_PROG)) == 1


def test_unload_clears_a_killed_replace(objs, pin_root):
    runtime.load(str(objs["trace"]), "trace", config(1), pin_root=pin_root)
    r = subprocess.run([sys.executable, "-c", KILLED_REPLACE, str(objs["trace"]), pin_root],
                       cwd=ROOT)
    assert r.returncode == -9
    runtime.unload("trace", pin_root=pin_root)
    assert not os.path.lexists(Path(pin_root, "trace"))
    assert progs_named(GETPID_PROG) == []


def wait_gone(prog_id: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while prog_alive(prog_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_large_fills_go_in_batches_and_read_back_exactly(objs, pin_root):
    # more than 64 entries take the BPF_MAP_UPDATE_BATCH path (and more than one batch)
    n = 9000
    fill = {"rt_config": runtime.MapFill(n, [(u32(i), u64(i * 7)) for i in range(n)])}
    loaded = runtime.load(str(objs["trace"]), "batch", fill, pin_root=pin_root)
    try:
        rows = dict(runtime.read_map(loaded.maps["rt_config"]))
        assert len(rows) == n
        assert all(rows[u32(i)] == u64(i * 7) for i in range(0, n, 97))
    finally:
        runtime.unload("batch", pin_root=pin_root)
