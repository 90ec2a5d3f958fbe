"""policyc.vm without booting: apt output, kernel trees, the guest script, the marker."""

import importlib.util
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyc import vm
from policyc.cli import vm_cmd

REPO = Path(__file__).resolve().parents[2]

DEPENDS_61 = """\
linux-image-amd64
  Depends: linux-image-6.1.0-56-amd64
"""
DEPENDS_612 = """\
linux-image-6.12-amd64
  Depends: linux-image-6.12.117+deb12-amd64
"""


# --- apt-cache depends ---------------------------------------------------------------------


def test_parse_depends_names_the_image_package():
    assert vm.parse_apt_depends(DEPENDS_61) == "linux-image-6.1.0-56-amd64"
    assert vm.parse_apt_depends(DEPENDS_612) == "linux-image-6.12.117+deb12-amd64"


def test_parse_depends_skips_virtual_and_other_packages():
    text = """\
linux-image-amd64
  Depends: <linux-image>
  Depends: initramfs-tools
 |Depends: linux-image-6.1.0-57-amd64
  Depends: linux-image-6.1.0-56-amd64
  Recommends: linux-image-6.1.0-99-amd64
"""
    assert vm.parse_apt_depends(text) == "linux-image-6.1.0-57-amd64"


@pytest.mark.parametrize("text", ["", "linux-image-amd64\n", "W: no such package\n",
                                  "x\n  Recommends: linux-image-6.1.0-1-amd64\n"])
def test_parse_depends_without_an_image_is_none(text):
    assert vm.parse_apt_depends(text) is None


def test_resolve_package_checks_the_series(monkeypatch):
    monkeypatch.setattr(vm, "run_tool", lambda argv, cwd=None: DEPENDS_612)
    assert vm.resolve_package("6.12") == "linux-image-6.12.117+deb12-amd64"
    with pytest.raises(vm.VmError, match="apt-get update"):
        vm.resolve_package("6.1")


# --- kernel trees and the cache -------------------------------------------------------------


def make_tree(root: Path, version: str, modules="lib/modules") -> Path:
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{version}").write_bytes(b"MZ")
    (root / modules / version).mkdir(parents=True)
    return root / "boot" / f"vmlinuz-{version}"


def test_kernel_from_path(tmp_path):
    vmlinuz = make_tree(tmp_path / "k", "6.1.0-56-amd64")
    image = vm.resolve_kernel(str(vmlinuz))
    assert image.version == "6.1.0-56-amd64"
    assert image.root == tmp_path / "k" and image.vmlinuz == vmlinuz and image.package is None


def test_kernel_path_with_usr_lib_modules(tmp_path):
    vmlinuz = make_tree(tmp_path / "k", "6.12.117+deb12-amd64", modules="usr/lib/modules")
    assert vm.resolve_kernel(str(vmlinuz)).version == "6.12.117+deb12-amd64"


def test_kernel_path_without_modules_is_refused(tmp_path):
    vmlinuz = make_tree(tmp_path / "k", "6.1.0-56-amd64")
    (tmp_path / "k/lib/modules/6.1.0-56-amd64").rmdir()
    with pytest.raises(vm.VmError, match="modules must be beside it"):
        vm.resolve_kernel(str(vmlinuz))


@pytest.mark.parametrize("spec", ["5.10", "6", "/nonexistent/boot/vmlinuz-6.1"])
def test_unknown_kernel_specs(spec):
    with pytest.raises(vm.VmError):
        vm.resolve_kernel(spec)


def test_cache_the_guest_cannot_see_is_refused(monkeypatch):
    monkeypatch.setenv("POLICYC_CACHE", "/var/tmp/policyc")
    with pytest.raises(vm.VmError, match="empty tmpfs"):
        vm.resolve_kernel("6.1")


def no_apt(argv, cwd=None):
    raise vm.VmError(f"{argv[0]} is offline")


def test_cached_tree_is_reused_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path))
    make_tree(tmp_path / "kernels/linux-image-6.1.0-56-amd64", "6.1.0-56-amd64")
    calls = []

    def apt(argv, cwd=None):
        calls.append(argv)
        if argv[:2] == ["apt-cache", "depends"]:
            return DEPENDS_61
        raise AssertionError(f"unexpected {argv}")

    monkeypatch.setattr(vm, "run_tool", apt)
    image = vm.resolve_kernel("6.1")
    assert image.package == "linux-image-6.1.0-56-amd64"
    assert calls == [["apt-cache", "depends", "linux-image-amd64"]]


def test_offline_falls_back_to_newest_cached_tree(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path))
    for v in ("6.12.9+deb12-amd64", "6.12.117+deb12-amd64", "6.12.38+deb12-amd64"):
        make_tree(tmp_path / f"kernels/linux-image-{v}", v)
    monkeypatch.setattr(vm, "run_tool", no_apt)
    assert vm.resolve_kernel("6.12").version == "6.12.117+deb12-amd64"
    assert "using cached linux-image-6.12.117+deb12-amd64" in capsys.readouterr().err


def test_offline_without_cache_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path))
    monkeypatch.setattr(vm, "run_tool", no_apt)
    with pytest.raises(vm.VmError, match="offline"):
        vm.resolve_kernel("6.1")


def test_fetch_extracts_once_and_cleans_up(tmp_path, monkeypatch):
    kernels = tmp_path / "kernels"
    kernels.mkdir()

    def apt(argv, cwd=None):
        if argv[:2] == ["apt-get", "download"]:
            (Path(cwd) / f"{argv[2]}_1_amd64.deb").write_bytes(b"deb")
        elif argv[0] == "dpkg-deb":
            make_tree(Path(argv[3]), "6.1.0-56-amd64")
        return ""

    monkeypatch.setattr(vm, "run_tool", apt)
    tree = vm.fetch_package("linux-image-6.1.0-56-amd64", kernels)
    assert tree == kernels / "linux-image-6.1.0-56-amd64"
    assert sorted(p.name for p in kernels.iterdir()) == ["linux-image-6.1.0-56-amd64"]
    monkeypatch.setattr(vm, "run_tool", no_apt)
    assert vm.fetch_package("linux-image-6.1.0-56-amd64", kernels) == tree


# --- the guest script and the marker --------------------------------------------------------


def test_guest_path_always_holds_our_bin_dir():
    bindir = os.path.dirname(sys.executable)
    assert vm.guest_path() == f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin"
    assert vm.guest_path({"PATH": "/opt/x:/bin"}) == f"{bindir}:/opt/x:/bin"
    assert vm.guest_path({"PATH": f"/opt/x:{bindir}"}) == f"/opt/x:{bindir}"


def test_guest_script_mounts_bpffs_before_the_command():
    script = vm.guest_script(["true"], {"PATH": "/bin"}, "/work", "M")
    lines = script.splitlines()
    assert lines[0] == "exec 2>&1"
    assert "mount -t bpf bpf /sys/fs/bpf" in lines[1]
    assert lines[2] == "cd /work || exit 1"
    assert lines[3] == "env PATH=/bin true"
    assert lines[4] == "printf '\\nM:%d\\n' $?"


def test_guest_script_refuses_bad_input():
    with pytest.raises(vm.VmError):
        vm.guest_script([], {"PATH": "/bin"}, "/", "M")
    with pytest.raises(vm.VmError, match="variable name"):
        vm.guest_script(["true"], {"A B": "1"}, "/", "M")


def test_guest_script_runs_with_env_cwd_and_reports_the_code(tmp_path):
    """Run the script with sh on the host, with stub mountpoint/mount: no VM, no bpffs."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for tool in ("mountpoint", "mount"):
        (stubs / tool).write_text("#!/bin/sh\necho \"$0 $*\" >> \"$STUB_LOG\"\n")
        (stubs / tool).chmod(0o755)
    workdir = tmp_path / "it's a dir"
    workdir.mkdir()
    tricky = "a b $HOME `x` 'q' \"d\" \\ ;"
    marker = vm.new_marker()
    script = vm.guest_script(
        [sys.executable, "-c",
         "import os, sys; print(os.environ['TRICKY']); print(os.getcwd(), flush=True);"
         "print('to stderr', file=sys.stderr); sys.exit(3)"],
        {"TRICKY": tricky, "PATH": vm.guest_path()},
        str(workdir),
        marker,
    )
    proc = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True,
        env={"PATH": f"{stubs}:/usr/bin:/bin", "STUB_LOG": str(tmp_path / "log")},
    )
    assert proc.returncode == 0 and proc.stderr == ""
    code, output = vm.split_marker(proc.stdout, marker)
    assert code == 3
    assert output == f"{tricky}\n{workdir}\nto stderr\n"
    assert "mountpoint -q /sys/fs/bpf" in (tmp_path / "log").read_text()


def test_new_markers_are_unique():
    assert vm.new_marker() != vm.new_marker()
    assert vm.new_marker().startswith(vm.MARKER_PREFIX)


@pytest.mark.parametrize(
    "raw, code, output",
    [
        ("out\n\nM:0\n", 0, "out\n"),
        ("out\nM:7\n", 7, "out"),
        ("no newline\nM:255\n", 255, "no newline"),
        ("out\r\n\r\nM:1\r\n", 1, "out\r\n"),
        ("\nM:0\nvng: done\n", 0, "vng: done\n"),
        ("fake M:9 in output\n\nM:2\n", 2, "fake M:9 in output\n"),
        ("booted, no report\n", None, "booted, no report\n"),
        ("M:", None, "M:"),
    ],
)
def test_split_marker(raw, code, output):
    assert vm.split_marker(raw, "M") == (code, output)


STREAM = "line 1\nM is not it\npartial" + "\nMARK:12\n" + "after\n"


@pytest.mark.parametrize("cut1", range(len(STREAM) + 1))
def test_marker_filter_any_two_chunkings(cut1):
    expected = vm.split_marker(STREAM, "MARK")[1]
    for cut2 in range(cut1, len(STREAM) + 1):
        f = vm.MarkerFilter("MARK")
        parts = [STREAM[:cut1], STREAM[cut1:cut2], STREAM[cut2:]]
        shown = "".join(f.feed(p) for p in parts) + f.flush()
        assert shown == expected, parts


def test_marker_filter_holds_back_only_a_possible_marker():
    f = vm.MarkerFilter("MARK")
    assert f.feed("abc\n") == "abc"  # the newline may start the marker line
    assert f.feed("def\nMA") == "\ndef"
    assert f.feed("X\n") == "\nMAX"
    assert f.feed("\nMARK:1") == "\n"
    assert f.feed("0\ntail") == "tail"
    assert f.flush() == ""


# --- booting, without a kernel --------------------------------------------------------------


def image(tmp_path) -> vm.KernelImage:
    vmlinuz = make_tree(tmp_path / "k", "6.1.0-56-amd64")
    return vm.kernel_from_path(vmlinuz, spec="6.1")


def test_vng_command(tmp_path):
    img = image(tmp_path)
    cmd = vm.vng_command("/v/bin/vng", img, "/c/s.sh", cpus=1, memory="1G",
                         extra_qemu_opts=["-icount", "shift=0,sleep=off"], rwdirs=[str(tmp_path)])
    assert cmd == [
        "/v/bin/vng", "-r", str(img.vmlinuz), "--disable-kvm", "--force-9p", "--memory", "1G",
        "--cpus", "1", "--qemu-opts=-icount shift=0,sleep=off", f"--rwdir={tmp_path}",
        "--", "sh", "/c/s.sh",
    ]
    assert vm.vng_command("vng", img, "s")[-3:] == ["--", "sh", "s"]
    with pytest.raises(vm.VmError, match="spaces"):
        vm.vng_command("vng", img, "s", rwdirs=["/a b"])


def test_host_env_puts_our_bin_dir_first():
    assert vm.host_env()["PATH"].split(":")[0] == os.path.dirname(sys.executable)


def test_missing_vng_says_run_setup(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(vm.VmError, match="scripts/setup.sh"):
        vm.check_host({"PATH": "/usr/bin:/bin"})


def test_missing_qemu_says_run_setup(tmp_path, monkeypatch):
    (tmp_path / "vng").write_text("#!/bin/sh\n")
    (tmp_path / "vng").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(vm.VmError, match="qemu-system-x86.*scripts/setup.sh"):
        vm.check_host({"PATH": str(tmp_path)})


def test_boot_once_streams_without_the_marker(tmp_path):
    out = io.StringIO()
    cmd = ["sh", "-c", "echo hello; printf '\\nMARK:4\\n'; echo bye; exit 255"]
    rc, output = vm.boot_once(cmd, str(tmp_path), os.environ, 10, out, vm.MarkerFilter("MARK"))
    assert rc == 255
    assert output == "hello\n\nMARK:4\nbye\n"
    assert out.getvalue() == "hello\nbye\n"


def is_gone(pid: int, wait: float = 5.0) -> bool:
    """True once pid is dead (missing or a zombie not yet reaped by its new parent)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_boot_once_enforces_its_timeout_and_kills_the_group(tmp_path):
    pidfile = tmp_path / "pid"
    cmd = ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started; wait"]
    with pytest.raises(vm.VmError, match="within 1 s") as exc:
        vm.boot_once(cmd, str(tmp_path), os.environ, 1, None, vm.MarkerFilter("M"))
    assert exc.value.output == "started\n"
    assert is_gone(int(pidfile.read_text()))  # like qemu under vng: same process group


def test_one_vm_at_a_time_waits_for_the_holder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path))
    hold = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX);"
        "f.write('pid 1 (holder)'); f.flush(); print('held', flush=True); time.sleep(1)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "vm.lock")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    start = time.monotonic()
    with vm.one_vm_at_a_time():
        waited = time.monotonic() - start
        assert (tmp_path / "vm.lock").read_text().startswith(f"pid {os.getpid()} (")
    holder.wait()
    holder.stdout.close()
    assert waited > 0.5
    assert "waiting for the VM of pid 1 (holder) to finish" in capsys.readouterr().err


@pytest.fixture
def fake_boots(tmp_path, monkeypatch):
    """run_in_vm with boot_once replaced by canned boots; returns the list to fill."""
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vm, "check_host", lambda env: "vng")
    boots, scripts = [], []

    def boot_once(cmd, cwd, env, timeout, stream, marker_filter):
        script = Path(cmd[-1])
        scripts.append(script.read_text())
        marker = marker_filter.head.strip().rstrip(":")
        return boots.pop(0)(marker)

    monkeypatch.setattr(vm, "boot_once", boot_once)
    return boots, scripts, image(tmp_path)


def test_run_in_vm_reports_the_guest_code(fake_boots, tmp_path):
    boots, scripts, img = fake_boots
    boots.append(lambda m: (0, f"hi\n\n{m}:5\n"))
    res = vm.run_in_vm(["id"], kernel=img, env={"A": "1"}, cwd=str(tmp_path))
    assert (res.returncode, res.output, res.boots) == (5, "hi\n", 1)
    assert "env A=1 PATH=" in scripts[0] and scripts[0].rstrip().endswith(":%d\\n' $?")
    assert list((tmp_path / "cache/run").iterdir()) == []  # the script is removed


def test_run_in_vm_retries_a_boot_that_never_reported(fake_boots, tmp_path):
    boots, _, img = fake_boots
    boots += [lambda m: (255, "kernel panic\n"), lambda m: (0, f"\n{m}:0\n")]
    res = vm.run_in_vm(["true"], kernel=img, cwd=str(tmp_path))
    assert (res.returncode, res.boots) == (0, 2)


def test_run_in_vm_gives_up_after_two_silent_boots(fake_boots, tmp_path):
    boots, _, img = fake_boots
    boots += [lambda m: (255, "one\n"), lambda m: (255, "two\n")]
    with pytest.raises(vm.VmError, match=r"never reported.*vng exit 255.*\ntwo") as exc:
        vm.run_in_vm(["true"], kernel=img, cwd=str(tmp_path))
    assert exc.value.output == "two\n"


def test_run_in_vm_refuses_a_cwd_the_guest_cannot_see(fake_boots):
    _, _, img = fake_boots
    with pytest.raises(vm.VmError, match="/run"):
        vm.run_in_vm(["true"], kernel=img, cwd="/run/x")


# --- policyc vm and run_suite ---------------------------------------------------------------


def test_run_vm_returns_the_guest_code(monkeypatch):
    seen = {}

    def fake(argv, kernel, stream):
        seen.update(argv=argv, kernel=kernel, stream=stream)
        return vm.VmResult(3, "")

    monkeypatch.setattr(vm_cmd, "run_in_vm", fake)
    out, err = io.StringIO(), io.StringIO()
    assert vm_cmd.run_vm("6.12", ["id", "-u"], out, err) == 3
    assert seen == {"argv": ["id", "-u"], "kernel": "6.12", "stream": out}


def test_run_vm_prints_vm_errors(monkeypatch):
    def fake(argv, kernel, stream):
        raise vm.VmError("qemu-system-x86_64 not found: run scripts/setup.sh")

    monkeypatch.setattr(vm_cmd, "run_in_vm", fake)
    err = io.StringIO()
    assert vm_cmd.run_vm("6.1", ["true"], io.StringIO(), err) == 2
    assert err.getvalue() == "error: qemu-system-x86_64 not found: run scripts/setup.sh\n"
    assert vm_cmd.run_vm("6.1", [], io.StringIO(), io.StringIO()) == 2


def load_run_suite():
    spec = importlib.util.spec_from_file_location("run_suite", REPO / "tests/kernel/run_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_suite_arguments():
    rs = load_run_suite()
    args, extra = rs.parse_args(["--kernel", "6.12", "--", "-k", "sanity", "--", "x"])
    assert args.kernel == ["6.12"] and extra == ["-k", "sanity", "--", "x"]
    args, extra = rs.parse_args([])
    assert args.kernel == ["6.1", "6.12"] and extra == []


def test_run_suite_reads_the_pytest_summary():
    rs = load_run_suite()
    out = "x\n===== 1 failed, 4 passed in 9.76s =====\nvng noise\n"
    assert rs.pytest_summary(out) == "1 failed, 4 passed in 9.76s"
    assert rs.pytest_summary("kernel panic") == "no pytest summary"
