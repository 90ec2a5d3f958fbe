"""`policyc doctor` (policyc/doctor.py) on fake /sys, /proc, /boot and /etc trees: each check ok
or its fix, the verdict and the exit code. No check touches this host's kernel here: libbpf,
the trial load and systemctl are stand-ins."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from policyc import doctor as D
from policyc.cli.doctor_cmd import run_doctor

LSMS = "lockdown,capability,landlock,yama,apparmor"
MOUNTINFO = ("22 28 0:21 / /sys rw,nosuid - sysfs sysfs rw\n"
             "35 22 0:30 / /sys/fs/bpf rw,nosuid,nodev - bpf bpf rw,mode=700\n")


def tree(tmp_path: Path, *, lsm: str | None = LSMS + ",bpf", btf=True, bpffs=True, config="CONFIG_BPF_LSM=y\n",
         release="6.1.0-18-amd64", cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet\n",
         grub='GRUB_CMDLINE_LINUX="console=ttyS0"\n', units=False, built=(), loaded=()) -> Path:
    root = tmp_path / "host"

    def put(path: str, text: str) -> None:
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    if lsm is not None:
        put("/sys/kernel/security/lsm", lsm)
    if btf:
        put("/sys/kernel/btf/vmlinux", "BTF")
    put("/proc/self/mountinfo", MOUNTINFO if bpffs else MOUNTINFO.splitlines(True)[0])
    if config is not None:
        put(f"/boot/config-{release}", config)
    if cmdline is not None:
        put("/proc/cmdline", cmdline)
    if grub is not None:
        put("/etc/default/grub", "GRUB_DEFAULT=0\n" + grub)
    put("/usr/include/bpf/bpf_helpers.h", "")
    if units:
        for u in D.UNITS:
            put(f"/etc/systemd/system/{u}", "# Installed by `policyc install`\n")
    for n in built:
        put(f"/var/lib/policyc/{n}.manifest.json", "{}")
    for n in loaded:
        (root / "sys/fs/bpf/policyc" / n).mkdir(parents=True)
    return root


def host(root: Path, **kw) -> D.Host:
    base = dict(root=root, release="6.1.0-18-amd64", euid=0, libbpf=lambda: (1, 1),
                which=lambda n: f"/usr/bin/{n}" if n == "clang-19" else None,
                systemctl=lambda a: pytest.fail(f"systemctl {a} asked while systemd is not running"),
                systemd_running=False, trial=lambda: None, pin_root="/sys/fs/bpf/policyc")
    base.update(kw)
    return D.Host(**base)


def by_name(checks) -> dict[str, D.Check]:
    return {c.name: c for c in checks}


def doctor(h: D.Host, as_json=False, trial=True) -> tuple[int, str]:
    out = io.StringIO()
    code = run_doctor(as_json, trial, out, io.StringIO(), host=h)
    return code, out.getvalue()


def test_a_host_that_can_enforce(tmp_path):
    h = host(tree(tmp_path, units=True, built=("nginx",), loaded=("nginx",)))
    checks = by_name(D.examine(h))
    for name in ("kernel", "bpf-lsm-config", "lsm", "btf", "bpffs", "libbpf", "root", "trial-load", "clang",
                 "libbpf-headers", "policyc.service", "policyc-audit.service", "built", "loaded"):
        assert checks[name].status == D.OK, (name, checks[name])
    assert "libbpf 1.1" in checks["libbpf"].detail and "1 loaded: nginx" in checks["loaded"].detail
    code, out = doctor(h)
    assert code == 0 and out.splitlines()[-1] == "policyc can enforce on this host"
    assert all(ln.startswith(("ok ", "policyc")) for ln in out.splitlines())


def test_bpf_missing_from_the_lsm_list_gives_the_boot_option_with_the_current_list(tmp_path):
    h = host(tree(tmp_path, lsm=LSMS, grub='GRUB_CMDLINE_LINUX="console=ttyS0 lsm=apparmor"\n',
                  cmdline="root=/dev/vda1 lsm=apparmor ro\n"))
    c = by_name(D.examine(h))["lsm"]
    assert c.status == D.FAIL and c.required
    assert f"lsm={LSMS},bpf" in c.fix
    assert "it has `lsm=apparmor` now: replace it" in c.fix
    assert f'GRUB_CMDLINE_LINUX="console=ttyS0 lsm={LSMS},bpf"' in c.fix       # the old lsm= replaced
    assert "update-grub" in c.fix and "reboot" in c.fix
    code, out = doctor(h)
    assert code == 1
    assert "FAIL  lsm" in out and "fix: boot with `lsm=" in out
    assert out.splitlines()[-1] == "policyc cannot enforce on this host: fix the FAIL lines"
    # the trial load is not even tried on a kernel that cannot run the programs
    assert by_name(D.examine(host(h.root, trial=lambda: pytest.fail("trial ran"))))["trial-load"].status == D.SKIP


def test_lsm_fix_without_a_grub_file(tmp_path):
    c = by_name(D.examine(host(tree(tmp_path, lsm="capability,yama", grub=None, cmdline=None))))["lsm"]
    assert c.fix.startswith("boot with `lsm=capability,yama,bpf` on the kernel command line: add `lsm=capability,"
                            "yama,bpf` to GRUB_CMDLINE_LINUX in /etc/default/grub")


def test_unreadable_lsm_list(tmp_path):
    c = by_name(D.examine(host(tree(tmp_path, lsm=None))))["lsm"]
    assert c.status == D.FAIL and "securityfs" in c.fix


@pytest.mark.parametrize("kw, name, status", [
    (dict(btf=False), "btf", D.FAIL),
    (dict(config="# CONFIG_BPF_LSM is not set\n"), "bpf-lsm-config", D.FAIL),
    (dict(config=None), "bpf-lsm-config", D.SKIP),
    (dict(bpffs=False), "bpffs", D.WARN),
])
def test_each_tree_fault_is_found(tmp_path, kw, name, status):
    h = host(tree(tmp_path, **kw))
    checks = by_name(D.examine(h))
    assert checks[name].status == status, checks[name]
    assert D.can_enforce(list(checks.values())) == (status != D.FAIL)
    if status != D.SKIP:
        assert checks[name].fix


def test_kernel_config_from_proc_config_gz(tmp_path):
    root = tree(tmp_path, config=None)
    (root / "proc/config.gz").write_bytes(gzip.compress(b"# CONFIG_BPF_LSM is not set\n"))
    c = by_name(D.examine(host(root)))["bpf-lsm-config"]
    assert c.status == D.FAIL and "config.gz" in c.detail


@pytest.mark.parametrize("release, status", [("5.4.0-150-generic", D.FAIL), ("5.15.0-1-amd64", D.WARN),
                                             ("6.1.0-18-amd64", D.OK), ("7.2.0-1-amd64", D.OK)])
def test_kernel_version(tmp_path, release, status):
    root = tree(tmp_path, release=release)
    assert by_name(D.examine(host(root, release=release)))["kernel"].status == status


@pytest.mark.parametrize("libbpf, status", [(lambda: (1, 4), D.OK), (lambda: (0, 8), D.FAIL)])
def test_libbpf_version(tmp_path, libbpf, status):
    assert by_name(D.examine(host(tree(tmp_path), libbpf=libbpf)))["libbpf"].status == status


def test_libbpf_that_does_not_load(tmp_path):
    def missing():
        raise OSError("libbpf.so.1: cannot open shared object file: No such file or directory")

    c = by_name(D.examine(host(tree(tmp_path), libbpf=missing)))["libbpf"]
    assert c.status == D.FAIL and "cannot be loaded" in c.detail and "libbpf1" in c.fix


def test_the_real_libbpf_probe_reads_a_version():
    """ctypes only: libbpf_major_version() and libbpf_minor_version(), no BPF call (libbpf1
    comes with scripts/setup.sh's libbpf-dev: its absence is a failure, not a skip)."""
    major, minor = D._libbpf_version()
    assert major >= 1 and minor >= 0


def test_a_refused_trial_load_fails_and_a_skipped_one_says_so(tmp_path):
    root = tree(tmp_path)
    checks = by_name(D.examine(host(root, trial=lambda: "BPF_PROG_LOAD of an LSM program failed: EPERM")))
    assert checks["trial-load"].status == D.FAIL and "EPERM" in checks["trial-load"].detail
    assert not D.can_enforce(list(checks.values()))
    code, out = doctor(host(root, trial=lambda: pytest.fail("--no-trial ran the trial")), trial=False)
    assert code == 0
    assert "skip  trial-load" in out and out.splitlines()[-1].startswith(
        "policyc can enforce on this host as far as the checks tell without a trial load")


def test_not_root_skips_the_trial_and_warns(tmp_path):
    checks = by_name(D.examine(host(tree(tmp_path), euid=1000, trial=lambda: pytest.fail("trial as a user"))))
    assert checks["root"].status == D.WARN and checks["trial-load"].status == D.SKIP
    assert D.can_enforce(list(checks.values()))


def test_no_clang_is_a_warning_only(tmp_path, monkeypatch):
    monkeypatch.delenv("POLICYC_CLANG", raising=False)
    root = tree(tmp_path)
    (root / "usr/include/bpf/bpf_helpers.h").unlink()
    checks = by_name(D.examine(host(root, which=lambda n: None)))
    assert checks["clang"].status == D.WARN and "clang-19" in checks["clang"].fix
    assert checks["libbpf-headers"].status == D.WARN
    assert D.can_enforce(list(checks.values()))


def test_units_under_systemd(tmp_path):
    states = {("is-enabled", "policyc.service"): "enabled", ("is-active", "policyc.service"): "failed",
              ("is-enabled", "policyc-audit.service"): "disabled", ("is-active", "policyc-audit.service"): "inactive"}
    h = host(tree(tmp_path, units=True), systemd_running=True, systemctl=lambda a: states[tuple(a)])
    checks = by_name(D.examine(h))
    assert checks["policyc.service"].status == D.WARN and "journalctl -b -u policyc.service" in checks["policyc.service"].fix
    assert checks["policyc-audit.service"].status == D.WARN and "systemctl enable" in checks["policyc-audit.service"].fix
    states.update({("is-active", "policyc.service"): "active", ("is-enabled", "policyc-audit.service"): "enabled",
                   ("is-active", "policyc-audit.service"): "active"})
    checks = by_name(D.examine(h))
    assert checks["policyc.service"].status == checks["policyc-audit.service"].status == D.OK
    assert checks["policyc.service"].detail == "installed, enabled, active"


def test_units_not_installed_and_nothing_built(tmp_path):
    checks = by_name(D.examine(host(tree(tmp_path))))
    assert checks["policyc.service"].status == D.WARN and "policyc install" in checks["policyc.service"].fix
    assert checks["built"].status == D.WARN and checks["loaded"].detail == "no policy is loaded now"


def test_json(tmp_path):
    code, out = doctor(host(tree(tmp_path, btf=False)), as_json=True)
    doc = json.loads(out)
    assert code == 1 and doc["can_enforce"] is False
    btf = next(c for c in doc["checks"] if c["name"] == "btf")
    assert btf == {"name": "btf", "status": "fail", "required": True, "detail": btf["detail"], "fix": btf["fix"]}
    assert "CONFIG_DEBUG_INFO_BTF" in btf["fix"]


def test_doctor_is_a_command():
    from typer.testing import CliRunner

    from policyc.cli.main import app

    r = CliRunner().invoke(app, ["doctor", "--help"])
    assert r.exit_code == 0 and "--json" in r.output and "--no-trial" in r.output
