"""policyc.vm without booting: apt output, kernel trees, the guest script, the marker."""

import datetime
import importlib.util
import io
import json
import os
import re
import shutil
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


# --- sid: 7.2 and newest, through a private apt state ----------------------------------------

SID_V = "7.2.13+deb14-amd64"
DEPENDS_SID_META = f"""\
linux-image-amd64
  Depends: linux-base-amd64
  Depends: linux-image-{SID_V}
"""
# `apt-cache depends linux-image-7.2.13+deb14-amd64` in sid, November 2026.
DEPENDS_SID_IMAGE = f"""\
linux-image-{SID_V}
  PreDepends: linux-base
 |Depends: dracut
 |Depends: initramfs-tools
  Depends: <linux-initramfs-tool>
    dracut
    initramfs-tools
    tiny-initramfs
  Depends: linux-base-{SID_V}
  Depends: linux-binary-{SID_V}
  Depends: linux-modules-{SID_V}
  Breaks: <fwupdate>
  Breaks: initramfs-tools
  Recommends: apparmor
  Suggests: linux-doc-7.2
"""
SID_PARTS = [f"linux-base-{SID_V}", f"linux-binary-{SID_V}", f"linux-modules-{SID_V}"]


def test_parse_depends_names_sids_image_package():
    assert vm.parse_apt_depends(DEPENDS_SID_META) == f"linux-image-{SID_V}"


def test_parse_split_depends_names_the_parts():
    assert vm.parse_split_depends(DEPENDS_SID_IMAGE, f"linux-image-{SID_V}") == SID_PARTS


def test_parse_split_depends_ignores_other_versions_and_kinds():
    text = f"""\
linux-image-{SID_V}
  Depends: linux-binary-7.2.12+deb14-amd64
  Depends: linux-modules-{SID_V}-extra
  Suggests: linux-binary-{SID_V}-dbg
  Depends: linux-binary-{SID_V}
  Depends: linux-modules-{SID_V}
"""
    assert vm.parse_split_depends(text, f"linux-image-{SID_V}") == SID_PARTS[1:]


def test_parse_split_depends_of_an_unsplit_kernel_is_empty():
    bookworm = "linux-image-6.1.0-56-amd64\n  Depends: kmod\n  Depends: linux-base\n"
    assert vm.parse_split_depends(bookworm, "linux-image-6.1.0-56-amd64") == []
    assert vm.parse_split_depends("", "linux-image-6.1.0-56-amd64") == []


def test_parse_split_depends_refuses_half_a_kernel():
    text = f"linux-image-{SID_V}\n  Depends: linux-binary-{SID_V}\n"
    with pytest.raises(vm.VmError, match="needs both .*" + re.escape(f"linux-modules-{SID_V}")):
        vm.parse_split_depends(text, f"linux-image-{SID_V}")


def test_sid_apt_options_use_only_the_private_state(tmp_path):
    opts = vm.sid_apt_options(tmp_path)
    assert opts[::2] == ["-o"] * (len(opts) // 2)
    values = dict(o.split("=", 1) for o in opts[1::2])
    assert values == {
        "Dir::Etc::sourcelist": f"{tmp_path}/sources.list",
        "Dir::Etc::sourceparts": "/dev/null",
        "Dir::Etc::preferences": "/dev/null",
        "Dir::Etc::preferencesparts": "/dev/null",
        "Dir::State::Lists": f"{tmp_path}/lists",
        "Dir::Cache": f"{tmp_path}/cache",
        "Dir::State::status": "/dev/null",
        "APT::Sandbox::User": "root",
    }
    assert vm.SID_SOURCES == (
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://deb.debian.org/debian sid main\n"
    )


@pytest.mark.parametrize("value, wanted", [("1", True), ("yes", True), (" True ", True),
                                           ("0", False), ("", False), ("no", False)])
def test_refresh_requested(value, wanted):
    assert vm.refresh_requested({vm.REFRESH_ENV: value}) is wanted
    assert vm.refresh_requested({}) is False


def test_pin_round_trip():
    now = datetime.datetime(2026, 11, 30, 12, 0, 5, tzinfo=datetime.UTC)
    pin = vm.pin_record(f"linux-image-{SID_V}", now)
    assert pin == {"package": f"linux-image-{SID_V}", "version": SID_V,
                   "resolved": "2026-11-30T12:00:05+00:00"}
    assert vm.parse_pin(json.dumps(pin)) == pin


@pytest.mark.parametrize("text", [
    "", "{", "[]", '{"package": 3}', '{"package": "linux-base-7.2"}',
    f'{{"package": "linux-image-{SID_V}", "resolved": "x"}}',
    f'{{"package": "linux-image-{SID_V}", "version": "7.2.12+deb14-amd64", "resolved": "x"}}',
    f'{{"package": "linux-image-{SID_V}", "version": "{SID_V}"}}',
])
def test_parse_pin_refuses_what_is_not_a_pin(text):
    with pytest.raises(vm.VmError, match="POLICYC_REFRESH_KERNELS=1"):
        vm.parse_pin(text, "newest.json")


def test_place_vmlinuz_copies_it_to_boot(tmp_path):
    (tmp_path / f"usr/lib/modules/{SID_V}").mkdir(parents=True)
    (tmp_path / f"usr/lib/modules/{SID_V}/vmlinuz").write_bytes(b"MZ7")
    target = vm.place_vmlinuz(tmp_path)
    assert target == tmp_path / f"boot/vmlinuz-{SID_V}" and target.read_bytes() == b"MZ7"
    assert (tmp_path / f"usr/lib/modules/{SID_V}/vmlinuz").exists()
    with pytest.raises(vm.VmError, match="0 lib/modules/VERSION/vmlinuz"):
        vm.place_vmlinuz(tmp_path / "empty")


class FakeSid:
    """apt-get/apt-cache/dpkg-deb of a private sid state, as run_tool: no network."""

    def __init__(self, version=SID_V):
        self.version = version  # what sid's linux-image-amd64 points at
        self.offline = False
        self.calls = []

    def kinds(self):
        return [a for a in self.calls if a[0] in ("apt-get", "apt-cache", "dpkg-deb")]

    def __call__(self, argv, cwd=None):
        argv = list(argv)
        self.calls.append(argv)
        opts = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-o")
        args = [a for i, a in enumerate(argv[1:], 1)
                if a not in ("-o", "-q") and argv[i - 1] != "-o"]
        if argv[0] == "apt-get" and args == ["update"]:
            assert opts["Dir::State::status"] == "/dev/null"
            if self.offline:
                raise vm.VmError("`apt-get update` failed (exit 100): Could not resolve host")
            lists = Path(opts["Dir::State::Lists"])
            (lists / "deb.debian.org_debian_dists_sid_main_binary-amd64_Packages.lz4").touch()
            return ""
        if argv[0] == "apt-cache" and args[0] == "depends":
            assert "Dir::State::Lists" in opts  # never the host's lists
            if args[1] == "linux-image-amd64":
                return f"linux-image-amd64\n  Depends: linux-image-{self.version}\n"
            v = args[1].removeprefix("linux-image-")
            return "".join(f"  Depends: linux-{k}-{v}\n" for k in ("base", "binary", "modules"))
        if argv[0] == "apt-get" and args[0] == "download":
            if self.offline:
                raise vm.VmError("`apt-get download` failed (exit 100): 404 Not Found")
            for part in args[1:]:
                (Path(cwd) / f"{part}_1_amd64.deb").write_text(part)
            return ""
        if argv[0] == "dpkg-deb":
            part = Path(argv[2]).read_text()
            kind, v = re.match(r"linux-(base|binary|modules)-(.+)", part).groups()
            mod = Path(argv[3]) / "usr/lib/modules" / v
            f = {"base": mod / "config", "binary": mod / "vmlinuz",
                 "modules": mod / "kernel/net/sctp/sctp.ko.xz"}[kind]
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(kind)
            return ""
        raise AssertionError(f"unexpected {argv}")


@pytest.fixture
def sid(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path))
    monkeypatch.delenv(vm.REFRESH_ENV, raising=False)
    monkeypatch.setattr(vm, "_sid_refreshed", False)
    fake = FakeSid()
    monkeypatch.setattr(vm, "run_tool", fake)
    return fake


def updates(fake):
    return [a for a in fake.calls if a[0] == "apt-get" and "update" in a]


def test_fetch_package_extracts_split_parts_into_one_tree(tmp_path, monkeypatch):
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    fake = FakeSid()
    monkeypatch.setattr(vm, "run_tool", fake)
    opts = vm.sid_apt_options(kernels / "sid-apt")
    tree = vm.fetch_package(f"linux-image-{SID_V}", kernels, SID_PARTS, opts)
    assert tree == kernels / f"linux-image-{SID_V}"
    assert sorted(p.name for p in kernels.iterdir()) == [tree.name]  # no temp dir left
    assert (tree / f"boot/vmlinuz-{SID_V}").read_text() == "binary"
    assert (tree / f"usr/lib/modules/{SID_V}/kernel/net/sctp/sctp.ko.xz").is_file()
    assert (tree / f"usr/lib/modules/{SID_V}/config").is_file()
    assert fake.calls[0] == ["apt-get", *opts, "download", *SID_PARTS]
    image = vm.image_in_tree(tree, "7.2", tree.name)
    assert image.version == SID_V


def test_sid_72_resolves_downloads_and_reuses(sid, tmp_path, capsys):
    image = vm.resolve_kernel("7.2")
    assert (image.spec, image.version, image.package) == ("7.2", SID_V, f"linux-image-{SID_V}")
    assert image.root == tmp_path / f"kernels/linux-image-{SID_V}"
    state = tmp_path / "kernels/sid-apt"
    assert (state / "sources.list").read_text() == vm.SID_SOURCES
    assert len(updates(sid)) == 1  # the lists were missing
    assert not (tmp_path / "kernels/newest.json").exists()  # 7.2 pins nothing
    sid.calls.clear()
    assert vm.resolve_kernel("7.2").root == image.root
    # no update, no download
    assert [a[-2:] for a in sid.calls] == [["depends", "linux-image-amd64"]]


def test_sid_72_after_sid_moved_uses_the_cached_72(sid, tmp_path, capsys):
    make_tree(tmp_path / f"kernels/linux-image-{SID_V}", SID_V, modules="usr/lib/modules")
    sid.version = "7.3.1+deb14-amd64"
    assert vm.resolve_kernel("7.2").version == SID_V
    err = capsys.readouterr().err
    assert "now depends on linux-image-7.3.1+deb14-amd64, not on a 7.2 kernel" in err
    assert f"using cached linux-image-{SID_V}" in err


def test_sid_72_after_sid_moved_without_cache_fails_clearly(sid):
    sid.version = "7.3.1+deb14-amd64"
    with pytest.raises(vm.VmError, match=r"not on a 7.2 kernel \(use --kernel newest for it\); "
                                         r"no 7.2 kernel is cached in "):
        vm.resolve_kernel("7.2")


def test_sid_72_offline_without_cache_says_so(sid):
    sid.offline = True
    with pytest.raises(vm.VmError, match="Could not resolve host.*no 7.2 kernel is cached"):
        vm.resolve_kernel("7.2")


def test_sid_download_failure_with_old_lists_suggests_a_refresh(sid):
    vm.sid_apt(Path(os.environ["POLICYC_CACHE"]) / "kernels", refresh=False)
    sid.offline = True
    with pytest.raises(vm.VmError, match="404.*lists are from .*POLICYC_REFRESH_KERNELS=1"):
        vm.resolve_kernel("7.2")


def test_newest_is_pinned_until_a_refresh(sid, tmp_path, monkeypatch, capsys):
    pin_path = tmp_path / "kernels/newest.json"
    first = vm.resolve_kernel("newest")
    assert (first.spec, first.version) == ("newest", SID_V)
    pin = json.loads(pin_path.read_text())
    assert (pin["package"], pin["version"]) == (f"linux-image-{SID_V}", SID_V)
    # sid moves on; without a refresh, newest stays where it was, without apt
    sid.version = "7.3.1+deb14-amd64"
    sid.calls.clear()
    assert vm.resolve_kernel("newest").version == SID_V
    assert sid.calls == []
    assert f"newest is linux-image-{SID_V}, pinned in {pin_path}" in capsys.readouterr().err
    # the refresh re-resolves (one apt-get update) and moves the pin
    monkeypatch.setenv(vm.REFRESH_ENV, "1")
    assert vm.resolve_kernel("newest").version == "7.3.1+deb14-amd64"
    assert len(updates(sid)) == 1
    assert json.loads(pin_path.read_text())["package"] == "linux-image-7.3.1+deb14-amd64"
    assert f"newest was linux-image-{SID_V}, is now linux-image-7.3.1" in capsys.readouterr().err
    vm.resolve_kernel("newest")
    assert len(updates(sid)) == 1  # once per process


def test_newest_refresh_offline_keeps_the_pinned_cached_kernel(sid, tmp_path, monkeypatch,
                                                               capsys):
    vm.resolve_kernel("newest")
    pin = (tmp_path / "kernels/newest.json").read_text()
    sid.offline = True
    monkeypatch.setenv(vm.REFRESH_ENV, "1")
    assert vm.resolve_kernel("newest").version == SID_V
    assert ("Could not resolve host (Debian sid, private apt state); "
            f"using cached linux-image-{SID_V}") in capsys.readouterr().err
    assert (tmp_path / "kernels/newest.json").read_text() == pin


def test_newest_pinned_but_not_cached_fetches_the_pinned_one(sid, tmp_path):
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    pin = vm.pin_record("linux-image-7.1.9+deb14-amd64")
    (kernels / "newest.json").write_text(json.dumps(pin))
    assert vm.resolve_kernel("newest").version == "7.1.9+deb14-amd64"  # not sid's 7.2.13
    sid.offline = True
    shutil.rmtree(kernels / "linux-image-7.1.9+deb14-amd64")
    with pytest.raises(vm.VmError, match="pins linux-image-7.1.9.*not cached.*REFRESH_KERNELS=1"):
        vm.resolve_kernel("newest")


def test_newest_with_a_broken_pin(sid, tmp_path, monkeypatch):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels/newest.json").write_text("{")
    with pytest.raises(vm.VmError, match="not JSON"):
        vm.resolve_kernel("newest")
    monkeypatch.setenv(vm.REFRESH_ENV, "1")
    assert vm.resolve_kernel("newest").version == SID_V
    assert vm.parse_pin((tmp_path / "kernels/newest.json").read_text())["version"] == SID_V


def test_newest_offline_without_pin_fails(sid):
    sid.offline = True
    with pytest.raises(vm.VmError, match="no newest kernel is cached"):
        vm.resolve_kernel("newest")


def test_unknown_kernel_lists_the_sid_specs():
    with pytest.raises(vm.VmError, match="use one of 6.1, 6.12, 7.2, newest or a path"):
        vm.resolve_kernel("7.1")


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


def test_run_in_vm_gives_up_after_three_silent_boots(fake_boots, tmp_path):
    boots, _, img = fake_boots
    boots += [lambda m: (255, "one\n"), lambda m: (255, "two\n"), lambda m: (255, "three\n")]
    with pytest.raises(vm.VmError, match=r"never reported.*3 boots.*vng exit 255.*\nthree") as exc:
        vm.run_in_vm(["true"], kernel=img, cwd=str(tmp_path))
    assert exc.value.output == "three\n"


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
    assert err.getvalue() == "policyc: error: qemu-system-x86_64 not found: run scripts/setup.sh\n"
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
    assert args.kernel == ["6.1", "7.2", "6.12"] and extra == []  # oldest, newest, then between


def test_run_suite_reads_the_pytest_summary():
    rs = load_run_suite()
    out = "x\n===== 1 failed, 4 passed in 9.76s =====\nvng noise\n"
    assert rs.pytest_summary(out) == "1 failed, 4 passed in 9.76s"
    assert rs.pytest_summary("kernel panic") == "no pytest summary"


@pytest.mark.parametrize("version, single", [("6.1.0-57-amd64", False), ("6.12.118+deb12-amd64", False),
                                             ("7.2.13+deb14-amd64", True), ("7.10.1-amd64", True)])
def test_kernels_from_7_run_single_threaded_tcg(version, single):
    # 7.2 under multi-threaded TCG died on a stale int3 of live-patched kernel text (vm.py)
    assert vm.single_threaded_tcg(version) == single
    opts = vm.tcg_opts(version, None)
    assert (opts == ["-accel", "tcg,thread=single"]) if single else opts is None
    # the caller's options stay, after ours; an -icount run is single-threaded already
    assert vm.tcg_opts(version, "-cpu max")[-2:] == ["-cpu", "max"]
    assert vm.tcg_opts(version, ["-icount", "shift=0,sleep=off"]) == ["-icount", "shift=0,sleep=off"]
    script = vm.guest_script(["true"], {"PATH": "/usr/bin:/bin"}, "/", "M")
    assert "perf" not in script


def test_the_vng_command_carries_single_threaded_tcg(tmp_path):
    image = vm.KernelImage(spec="7.2", version="7.2.13+deb14-amd64", vmlinuz=tmp_path / "vmlinuz", root=tmp_path)
    cmd = vm.vng_command("vng", image, "s.sh", None, "2G", vm.tcg_opts(image.version, None))
    assert "--qemu-opts=-accel tcg,thread=single" in cmd
