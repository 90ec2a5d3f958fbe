"""`policyc install --root DIR` / `policyc uninstall` (policyc/install.py, policyc/cli/install_cmd.py):
the tree an image gets, the units (systemd-analyze verify on it), the enable links (the same as
`systemctl --root DIR enable` makes), the build of policies.d, rollback, uninstall and purge."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policyc import install as I
from policyc.cli import install_cmd
from policyc.cli.install_cmd import run_install, run_uninstall
from policyc.deploy import read_manifest

from _policyc_helpers import POLICIES, ROOT

EXEC = "/usr/bin/policyc"
GOOD = 'policy {name} {{\n    subject exe "/usr/bin/{name}"\n    default allow\n    deny file read "/etc/{name}-secret"\n}}\n'
HOST_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)


def image(tmp_path: Path, with_exec: bool = True) -> Path:
    root = tmp_path / "image"
    root.mkdir()
    if with_exec:
        stub = root / EXEC.lstrip("/")
        stub.parent.mkdir(parents=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return root


def install(root: Path, *paths, exec_path: str = EXEC) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_install([str(p) for p in paths], str(root), exec_path, None, False, out, err,
                       run_systemctl=_no_systemctl, systemd=lambda: True)
    return code, out.getvalue(), err.getvalue()


def uninstall(root: Path, purge: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_uninstall(str(root), purge, out, err, run_systemctl=_no_systemctl, systemd=lambda: True)
    return code, out.getvalue(), err.getvalue()


def _no_systemctl(args):
    raise AssertionError(f"an install into a root DIR asked systemd: systemctl {args}")


def unit_keys(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order (systemd allows a key more than once)."""
    out: dict[tuple[str, str], list[str]] = {}
    section = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        out.setdefault((section, k), []).append(v)
    return out


def links(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): os.readlink(p) for p in sorted(root.rglob("*")) if p.is_symlink()}


# ---- the tree -------------------------------------------------------------------------------------

def test_install_root_lays_out_sources_build_and_enabled_units(tmp_path):
    root = image(tmp_path)
    code, out, err = install(root, POLICIES)
    assert code == 0, err
    src = root / "etc/policyc/policies.d"
    shipped = sorted(str(p.relative_to(POLICIES)) for p in POLICIES.rglob("*") if p.name.endswith((".policy", ".policy.test")))
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()) == shipped
    # the build output: what `policyc build policies/` gives, one object, manifest and maps file each
    built = sorted(p.name for p in (root / "var/lib/policyc").iterdir())
    names = sorted(p.name.removesuffix(".manifest.json") for p in (root / "var/lib/policyc").glob("*.manifest.json"))
    assert names == ["ci-runner", "host-bpf", "host-modules", "host-shadow", "nginx", "sshd", "sshd-sessions"]
    assert built == sorted([f"{n}.bpf.o" for n in names] + [f"{n}.manifest.json" for n in names]
                           + [f"{n}.maps" for n in names])
    # rule locations name the sources as the target host has them (relative to /)
    man = read_manifest(root / "var/lib/policyc/nginx.manifest.json")
    assert {r["location"].split(":")[0] for r in man["rules"]} == {
        "etc/policyc/policies.d/abstractions/base.policy", "etc/policyc/policies.d/nginx.policy"}
    assert str(tmp_path) not in (root / "var/lib/policyc/nginx.manifest.json").read_text()
    # the units and the links `systemctl enable` would make
    assert links(root) == {
        "etc/systemd/system/sysinit.target.wants/policyc.service": "/etc/systemd/system/policyc.service",
        "etc/systemd/system/multi-user.target.wants/policyc-audit.service": "/etc/systemd/system/policyc-audit.service",
    }
    for name in I.UNITS:
        text = (root / "etc/systemd/system" / name).read_text()
        assert text.startswith(I.MARKER) and "@" not in text.replace("policyc@", "")
    assert "built nginx" in out and "enabled" in out and err == ""


def test_policyc_service_loads_early_from_the_build_directory(tmp_path):
    root = image(tmp_path)
    assert install(root, POLICIES)[0] == 0
    u = unit_keys((root / "etc/systemd/system/policyc.service").read_text())
    assert u[("Unit", "DefaultDependencies")] == ["no"]
    assert u[("Unit", "Before")] == ["sysinit.target shutdown.target"]
    assert u[("Unit", "After")] == ["sys-fs-bpf.mount"]                 # only what it needs
    assert u[("Unit", "RequiresMountsFor")] == ["/var/lib/policyc /usr/bin"]
    assert u[("Service", "Type")] == ["oneshot"] and u[("Service", "RemainAfterExit")] == ["yes"]
    assert u[("Service", "ExecStart")] == [f"{EXEC} load --sync /var/lib/policyc"]
    assert u[("Service", "ExecReload")] == [f"{EXEC} load --sync /var/lib/policyc --prune"]
    assert ("Service", "ExecStop") not in u            # stopping the unit never unloads
    assert u[("Install", "WantedBy")] == ["sysinit.target"]
    assert not any("clang" in v for vs in u.values() for v in vs)


def test_audit_service_is_sandboxed_and_logs_to_var_log(tmp_path):
    root = image(tmp_path)
    assert install(root, POLICIES)[0] == 0
    u = unit_keys((root / "etc/systemd/system/policyc-audit.service").read_text())
    assert u[("Service", "ExecStart")] == [
        f"{EXEC} audit --follow --output /var/log/policyc/audit.jsonl --max-bytes 104857600 --keep 10"]
    assert u[("Service", "Restart")] == ["on-failure"]
    assert u[("Service", "ProtectSystem")] == ["strict"]
    assert "/var/log/policyc" in u[("Service", "ReadWritePaths")][0].split()
    for key in ("ProtectHome", "NoNewPrivileges", "PrivateTmp", "PrivateDevices", "PrivateNetwork",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups"):
        assert u[("Service", key)] == ["yes"], key
    assert u[("Service", "CapabilityBoundingSet")] == ["CAP_BPF"]
    assert ("Service", "MemoryDenyWriteExecute") not in u   # cffi callbacks need W+X
    assert u[("Unit", "After")] == ["policyc.service"]


# ---- systemd's own tools on the tree ----------------------------------------------------------------

def with_host_units(root: Path) -> None:
    """The targets the units name (sysinit.target, multi-user.target, ...) as an image with
    systemd has them: a copy of this host's unit directory."""
    if HOST_UNITS is None:
        pytest.fail("systemd-analyze is here but no systemd unit directory is")
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)


def verify(root: Path) -> tuple[int, str]:
    p = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", *I.UNITS],
                       capture_output=True, text=True, cwd=root)
    return p.returncode, (p.stdout + p.stderr).strip()


needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (Debian: systemd); CI has it")


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path):
    root = image(tmp_path)
    assert install(root, POLICIES)[0] == 0
    with_host_units(root)
    rc, text = verify(root)
    assert (rc, text) == (0, "")    # no error and no warning (an unknown key is only a warning)


@needs_analyze
def test_verify_catches_what_it_is_meant_to(tmp_path):
    """The check above can fail: a missing executable is an error, an unknown key a warning."""
    root = image(tmp_path, with_exec=False)
    assert install(root, POLICIES)[0] == 0
    with_host_units(root)
    rc, text = verify(root)
    assert rc != 0 and f"Command {EXEC} is not executable" in text
    (root / EXEC.lstrip("/")).parent.mkdir(parents=True)
    (root / EXEC.lstrip("/")).write_text("#!/bin/sh\n")
    (root / EXEC.lstrip("/")).chmod(0o755)
    unit = root / "etc/systemd/system/policyc.service"
    unit.write_text(unit.read_text().replace("RemainAfterExit=yes", "RemainAfterExit=yes\nRemainAfterExitt=yes"))
    rc, text = verify(root)
    assert "Unknown key" in text and "RemainAfterExitt" in text


@needs_analyze
def test_audit_service_exposure_is_ok_or_better(tmp_path):
    root = image(tmp_path)
    assert install(root, POLICIES)[0] == 0
    with_host_units(root)
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager",
                        "policyc-audit.service"], capture_output=True, text=True, cwd=root)
    m = re.search(r"Overall exposure level for policyc-audit\.service: ([\d.]+) (\w+)", p.stdout + p.stderr)
    if m is None and "offline" in p.stderr:
        pytest.skip(f"this systemd-analyze has no offline security review: {p.stderr.strip()}")
    assert m, p.stdout + p.stderr
    # systemd's bands: SAFE, OK (< 5.0), MEDIUM, EXPOSED, UNSAFE; unhardened it is 9.6 UNSAFE
    assert float(m.group(1)) < 5.0 and m.group(2) in ("SAFE", "OK"), m.group(0)


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not installed")
def test_enable_links_are_what_systemctl_enable_makes(tmp_path):
    ours = image(tmp_path)
    assert install(ours, POLICIES)[0] == 0
    theirs = tmp_path / "theirs"
    (theirs / "etc/systemd/system").mkdir(parents=True)
    for name in I.UNITS:
        shutil.copy(ours / "etc/systemd/system" / name, theirs / "etc/systemd/system" / name)
    p = subprocess.run(["systemctl", f"--root={theirs}", "enable", *I.UNITS], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert links(theirs) == links(ours)
    p = subprocess.run(["systemctl", f"--root={ours}", "is-enabled", *I.UNITS], capture_output=True, text=True)
    assert p.stdout.split() == ["enabled", "enabled"], p.stdout + p.stderr


# ---- building policies.d ----------------------------------------------------------------------------

def test_install_twice_gives_the_same_bytes_and_drops_deleted_policies(tmp_path):
    root = image(tmp_path)
    srcs = tmp_path / "src"
    srcs.mkdir()
    for n in ("alpha", "beta"):
        (srcs / f"{n}.policy").write_text(GOOD.format(name=n))
    assert install(root, srcs)[0] == 0
    build = root / "var/lib/policyc"
    (build / "README").write_text("mine\n")          # not policyc's: never removed
    before = {p.name: p.read_bytes() for p in build.iterdir()}
    code, out, _ = install(root)                      # rebuild policies.d as it is
    assert code == 0 and {p.name: p.read_bytes() for p in build.iterdir()} == before
    (root / "etc/policyc/policies.d/beta.policy").unlink()
    code, out, _ = install(root)
    assert code == 0
    assert sorted(p.name for p in build.iterdir()) == ["README", "alpha.bpf.o", "alpha.manifest.json", "alpha.maps"]
    assert "removed" in out and "beta.manifest.json" in out
    assert not any(p.name.startswith(".staging") for p in build.iterdir())


def test_install_without_policies_builds_nothing_and_still_installs_units(tmp_path):
    root = image(tmp_path)
    code, out, err = install(root)
    assert code == 0, err
    assert "nothing built" in out
    assert (root / "etc/policyc/policies.d").is_dir() and list((root / "var/lib/policyc").iterdir()) == []
    assert (root / "etc/systemd/system/policyc.service").is_file()


def test_a_failed_build_leaves_everything_as_it_was(tmp_path):
    root = image(tmp_path)
    srcs = tmp_path / "src"
    srcs.mkdir()
    (srcs / "alpha.policy").write_text(GOOD.format(name="alpha"))
    assert install(root, srcs / "alpha.policy")[0] == 0
    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "alpha.policy").write_text(GOOD.format(name="alpha").replace("deny file read", "deny file reed"))
    (bad / "gamma.policy").write_text(GOOD.format(name="gamma"))
    code, out, err = install(root, bad)
    assert code == 2
    assert "install stopped" in err and "P0" in err      # the diagnostic, then what was left alone
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == snapshot                              # alpha restored, gamma gone, build untouched


def test_install_refuses_a_unit_it_did_not_write(tmp_path):
    root = image(tmp_path)
    unit = root / "etc/systemd/system/policyc.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    code, _, err = install(root, POLICIES)
    assert code == 2 and "not written by `policyc install`" in err
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert not (root / "etc/policyc").exists()


@pytest.mark.parametrize("bad", ["policyc", "usr/bin/policyc", "/opt/my policyc/bin/policyc", "/x/%n"])
def test_exec_path_must_be_absolute_and_plain(tmp_path, bad):
    root = image(tmp_path)
    code, _, err = install(root, POLICIES, exec_path=bad)
    assert code == 2 and "--exec-path" in err
    assert not (root / "etc").exists()


def test_a_missing_executable_is_warned_about(tmp_path):
    root = image(tmp_path, with_exec=False)
    code, _, err = install(root, exec_path="/opt/policyc/bin/policyc")
    assert code == 0
    assert "warning" in err and "/opt/policyc/bin/policyc" in err
    u = unit_keys((root / "etc/systemd/system/policyc.service").read_text())
    assert u[("Unit", "RequiresMountsFor")] == ["/var/lib/policyc /opt/policyc/bin"]


def test_root_must_exist(tmp_path):
    code, _, err = install(tmp_path / "nope")
    assert code == 2 and "not a directory" in err


def test_now_does_not_go_with_root(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert run_install([], str(image(tmp_path)), EXEC, None, True, out, err, run_systemctl=_no_systemctl) == 2
    assert "--now" in err.getvalue()


def test_on_the_running_system_systemd_is_reloaded_and_now_starts_the_units(tmp_path, monkeypatch):
    monkeypatch.setattr(I.Layout, "live", property(lambda self: True))   # the tree stands for /
    root = image(tmp_path)
    calls = []

    def fake(args):
        calls.append(args)
        return 0, ""

    out, err = io.StringIO(), io.StringIO()
    assert run_install([], str(root), EXEC, None, True, out, err, run_systemctl=fake, systemd=lambda: True) == 0
    assert calls == [["daemon-reload"], ["reload-or-restart", "policyc.service"], ["restart", "policyc-audit.service"]]
    calls.clear()
    assert run_install([], str(root), EXEC, None, False, out, err, run_systemctl=fake, systemd=lambda: True) == 0
    assert calls == [["daemon-reload"]] and "systemctl start policyc" in out.getvalue()
    # systemd not running: nothing asked, the next boot loads
    out = io.StringIO()
    assert run_install([], str(root), EXEC, None, False, out, err, run_systemctl=_no_systemctl,
                       systemd=lambda: False) == 0
    assert "policyc load --sync /var/lib/policyc" in out.getvalue()
    # a failing systemctl is exit 1, with its words
    err = io.StringIO()
    assert run_install([], str(root), EXEC, None, True, io.StringIO(), err,
                       run_systemctl=lambda a: (1, "Job failed") if a[0] != "daemon-reload" else (0, ""),
                       systemd=lambda: True) == 1
    assert "Job failed" in err.getvalue() and "journalctl" in err.getvalue()


# ---- uninstall --------------------------------------------------------------------------------------

def test_uninstall_removes_units_and_links_and_keeps_sources_and_build(tmp_path):
    root = image(tmp_path)
    assert install(root, POLICIES)[0] == 0
    other = root / "etc/systemd/system/multi-user.target.wants/other.service"
    other.symlink_to("/etc/systemd/system/other.service")
    code, out, err = uninstall(root)
    assert code == 0, err
    assert links(root) == {"etc/systemd/system/multi-user.target.wants/other.service": "/etc/systemd/system/other.service"}
    assert not (root / "etc/systemd/system/sysinit.target.wants").exists()
    assert not any((root / "etc/systemd/system" / n).exists() for n in I.UNITS)
    assert (root / "etc/policyc/policies.d/nginx.policy").is_file()
    assert (root / "var/lib/policyc/nginx.manifest.json").is_file()
    assert "kept" in out and "--purge" in out and "policyc unload --all" in out
    assert uninstall(root)[0] == 0      # again: nothing left to remove, not an error


def test_uninstall_purge_removes_sources_and_build_and_keeps_logs(tmp_path):
    root = image(tmp_path)
    assert install(root, POLICIES)[0] == 0
    (root / "var/log/policyc").mkdir(parents=True)
    (root / "var/log/policyc/audit.jsonl").write_text("{}\n")
    code, out, _ = uninstall(root, purge=True)
    assert code == 0
    assert not (root / "etc/policyc").exists() and not (root / "var/lib/policyc").exists()
    assert (root / "var/log/policyc/audit.jsonl").read_text() == "{}\n"


def test_uninstall_keeps_a_unit_it_did_not_write(tmp_path):
    root = image(tmp_path)
    unit = root / "etc/systemd/system/policyc.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    code, _, err = uninstall(root)
    assert code == 0 and "kept" in err and unit.is_file()


def test_uninstall_on_the_running_system_stops_the_units_and_reloads(tmp_path, monkeypatch):
    root = image(tmp_path)
    assert install(root)[0] == 0
    monkeypatch.setattr(I.Layout, "live", property(lambda self: True))
    calls = []
    out, err = io.StringIO(), io.StringIO()
    assert run_uninstall(str(root), False, out, err, run_systemctl=lambda a: calls.append(a) or (0, ""),
                         systemd=lambda: True) == 0
    assert calls == [["stop", "policyc-audit.service", "policyc.service"], ["daemon-reload"]]


# ---- the units ship in the wheel -------------------------------------------------------------------

def test_unit_templates_are_package_data(tmp_path):
    from test_package import lay_out_wheel, run_python

    site = tmp_path / "site-packages"
    lay_out_wheel(site)
    code = ("from policyc.install import render_unit, UNITS\n"
            "for u in UNITS: assert render_unit(u, '/usr/bin/policyc').startswith('# Installed by')\n"
            "import policyc; print(policyc.__file__)")
    r = run_python(code, tmp_path, str(site))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(site / "policyc" / "__init__.py")


def test_default_exec_path_is_the_running_policyc(monkeypatch, tmp_path):
    exe = tmp_path / "bin" / "policyc"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(exe), "install"])
    assert I.default_exec_path() == str(exe)
    monkeypatch.setattr(sys, "argv", ["/somewhere/pytest"])
    monkeypatch.setenv("PATH", str(exe.parent))
    assert I.default_exec_path() == str(exe)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert I.default_exec_path() == "/usr/bin/policyc"


def test_install_and_uninstall_are_commands():
    from typer.testing import CliRunner

    from policyc.cli.main import app

    for cmd in ("install", "uninstall"):
        r = CliRunner().invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "--root" in r.output
    assert install_cmd.systemd_running() == os.path.isdir("/run/systemd/system")
    assert ROOT.is_dir()


def test_a_tree_that_cannot_be_written_is_an_error_not_a_crash(tmp_path):
    root = image(tmp_path)
    (root / "etc").mkdir()
    (root / "etc/systemd").write_text("a file where a directory goes\n")
    code, _, err = install(root)
    assert code == 2 and "cannot write" in err and "internal error" not in err
    (root / "etc/systemd").unlink()
    assert install(root)[0] == 0
