"""`policyc doctor`: can this host enforce policies, and if not, what to change.

Each check gives `ok`, `warn`, `fail` or `skip`, what it found and, when not ok, the fix.
The host can enforce when no *required* check fails: kernel version, the kernel built with
BPF LSM, `bpf` in the active LSM list, BTF, libbpf.so.1, and (as root, unless skipped) a
trial load of a two-instruction LSM program that is never attached. The rest (bpffs mounted,
root, clang and the libbpf headers for builds, the units, what is built and loaded) are
reported but do not decide.

Every path and probe is a field of `Host`, so the checks run on a fake tree in tests.
"""

from __future__ import annotations

import gzip
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MIN_KERNEL = (5, 7)       # BPF LSM appeared in Linux 5.7
TESTED_KERNEL = (6, 1)    # the oldest kernel the suite runs (tests/kernel)
MIN_LIBBPF = (1, 1)       # runtime/_libbpf.py declares the 1.1 ABI
CLANGS = ("clang-19", "clang-18", "clang-17", "clang-16", "clang")
UNITS = ("policyc.service", "policyc-audit.service")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    required: bool = False


def _libbpf_version() -> tuple[int, int]:
    import ctypes

    lib = ctypes.CDLL("libbpf.so.1")
    lib.libbpf_major_version.restype = ctypes.c_uint32
    lib.libbpf_minor_version.restype = ctypes.c_uint32
    return int(lib.libbpf_major_version()), int(lib.libbpf_minor_version())


def _systemctl(args: list[str]) -> str:
    try:
        p = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"error: {e}"
    text = (p.stdout.strip() or p.stderr.strip()).splitlines()
    return text[0] if text else ""


def _trial() -> str | None:
    """None when a BPF LSM program loads (never attached), else why not."""
    from . import runtime
    from .runtime.lsm import trial_load_lsm

    try:
        trial_load_lsm()
    except runtime.BpfError as e:
        return e.message
    return None


@dataclass
class Host:
    """Where the checks look. Defaults: this host."""

    root: Path = Path("/")
    release: str = field(default_factory=platform.release)
    euid: int = field(default_factory=os.geteuid)
    libbpf: Callable[[], tuple[int, int]] = _libbpf_version
    which: Callable[[str], str | None] = shutil.which
    systemctl: Callable[[list[str]], str] = _systemctl
    systemd_running: bool | None = None        # None: /run/systemd/system exists under root
    trial: Callable[[], str | None] | None = _trial   # None: no trial load
    pin_root: str = field(default_factory=lambda: os.environ.get("POLICYC_PIN_ROOT", "/sys/fs/bpf/policyc"))

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def _version(release: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_kernel(h: Host) -> Check:
    v = _version(h.release)
    if v is None:
        return Check("kernel", WARN, f"cannot read the version of `{h.release}`", required=True)
    if v < MIN_KERNEL:
        return Check("kernel", FAIL, f"Linux {h.release}: BPF LSM needs Linux 5.7 or newer",
                     "boot a newer kernel (policyc is tested on 6.1, 6.12 and 7.2)", required=True)
    if v < TESTED_KERNEL:
        return Check("kernel", WARN, f"Linux {h.release}: older than 6.1, the oldest kernel policyc is tested on",
                     "`policyc check --load-test POLICY` tells which rules this kernel's verifier refuses",
                     required=True)
    return Check("kernel", OK, f"Linux {h.release}", required=True)


def _kernel_config(h: Host) -> tuple[str, str] | None:
    """(text, where) of the running kernel's build configuration, or None."""
    for p in (h.at(f"/boot/config-{h.release}"),):
        try:
            return p.read_text(errors="replace"), str(p)
        except OSError:
            pass
    p = h.at("/proc/config.gz")
    try:
        return gzip.decompress(p.read_bytes()).decode(errors="replace"), str(p)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None


def check_config(h: Host) -> Check:
    found = _kernel_config(h)
    if found is None:
        return Check("bpf-lsm-config", SKIP, f"no kernel configuration found (/boot/config-{h.release}, "
                     "/proc/config.gz): the `lsm` check decides", required=True)
    text, where = found
    if re.search(r"^CONFIG_BPF_LSM=y\s*$", text, re.M):
        return Check("bpf-lsm-config", OK, f"CONFIG_BPF_LSM=y ({where})", required=True)
    return Check("bpf-lsm-config", FAIL, f"this kernel was built without CONFIG_BPF_LSM ({where})",
                 "no boot option adds it: boot a kernel built with CONFIG_BPF_LSM=y (Debian's are)",
                 required=True)


def _cmdline_lsm(h: Host) -> str | None:
    try:
        words = h.at("/proc/cmdline").read_text().split()
    except OSError:
        return None
    found = [w.split("=", 1)[1] for w in words if w.startswith("lsm=")]
    return found[-1] if found else None


def _grub_line(h: Host) -> str | None:
    try:
        for line in h.at("/etc/default/grub").read_text().splitlines():
            if re.match(r"\s*GRUB_CMDLINE_LINUX=", line):
                return line.strip()
    except OSError:
        pass
    return None


def lsm_fix(lsms: list[str], h: Host) -> str:
    """How to add `bpf` to the boot command line: the whole list (the active one with bpf
    appended: `lsm=` replaces the kernel's default list), and the GRUB line to change."""
    wanted = ",".join([x for x in lsms if x != "bpf"] + ["bpf"])
    fix = f"boot with `lsm={wanted}` on the kernel command line"
    current = _cmdline_lsm(h)
    if current is not None:
        fix += f" (it has `lsm={current}` now: replace it)"
    grub = _grub_line(h)
    m = re.match(r'\s*GRUB_CMDLINE_LINUX=(["\']?)(.*?)\1\s*$', grub or "")
    if m:
        words = [w for w in m.group(2).split() if not w.startswith("lsm=")] + [f"lsm={wanted}"]
        fix += (f": in /etc/default/grub change `{grub}` to `GRUB_CMDLINE_LINUX=\"{' '.join(words)}\"`")
    else:
        fix += f": add `lsm={wanted}` to GRUB_CMDLINE_LINUX in /etc/default/grub"
    return fix + ", run `update-grub` (elsewhere `grub2-mkconfig -o /boot/grub2/grub.cfg`) and reboot"


def check_lsm(h: Host) -> Check:
    path = h.at("/sys/kernel/security/lsm")
    try:
        lsms = [x for x in path.read_text().strip().split(",") if x]
    except OSError as e:
        return Check("lsm", FAIL, f"cannot read {path}: {e.strerror}",
                     "mount securityfs: `mount -t securityfs securityfs /sys/kernel/security`", required=True)
    if "bpf" in lsms:
        return Check("lsm", OK, f"`bpf` is an active LSM ({','.join(lsms)})", required=True)
    return Check("lsm", FAIL, f"`bpf` is not among the active LSMs ({','.join(lsms) or 'none'}): attached "
                 "programs would never run", lsm_fix(lsms, h), required=True)


def check_btf(h: Host) -> Check:
    p = h.at("/sys/kernel/btf/vmlinux")
    if p.is_file():
        return Check("btf", OK, f"{p} present", required=True)
    return Check("btf", FAIL, f"{p} is missing: the kernel has no BTF, which BPF LSM programs attach by",
                 "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's are)", required=True)


def check_bpffs(h: Host) -> Check:
    try:
        lines = h.at("/proc/self/mountinfo").read_text().splitlines()
    except OSError as e:
        return Check("bpffs", WARN, f"cannot read mountinfo: {e.strerror}")
    for line in lines:
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) > 4 and parts[4] == "/sys/fs/bpf" and right.split()[:1] == ["bpf"]:
            return Check("bpffs", OK, "bpffs is mounted at /sys/fs/bpf")
    return Check("bpffs", WARN, "bpffs is not mounted at /sys/fs/bpf (systemd mounts it at boot; "
                 "`policyc load` mounts it itself as root)", "`mount -t bpf bpf /sys/fs/bpf`")


def check_libbpf(h: Host) -> Check:
    try:
        v = h.libbpf()
    except (OSError, AttributeError) as e:
        return Check("libbpf", FAIL, f"libbpf.so.1 cannot be loaded: {e}",
                     "install libbpf 1.1 or newer (Debian: `apt-get install libbpf1`)", required=True)
    text = f"libbpf {v[0]}.{v[1]}"
    if tuple(v) < MIN_LIBBPF:
        return Check("libbpf", FAIL, f"{text}: policyc needs libbpf 1.1 or newer",
                     "install libbpf 1.1 or newer (Debian 12: `apt-get install libbpf1`)", required=True)
    return Check("libbpf", OK, f"{text} (libbpf.so.1)", required=True)


def check_root(h: Host) -> Check:
    if h.euid == 0:
        return Check("root", OK, "running as root")
    return Check("root", WARN, "not root: load, unload, status and audit need root (CAP_BPF, CAP_PERFMON, "
                 "CAP_MAC_ADMIN), and the trial load below is skipped", "run `sudo policyc doctor`")


def check_trial(h: Host) -> Check:
    if h.trial is None:
        return Check("trial-load", SKIP, "skipped (--no-trial)")
    if h.euid != 0:
        return Check("trial-load", SKIP, "skipped: loading a BPF program needs root")
    reason = h.trial()
    if reason is None:
        return Check("trial-load", OK, "an LSM program loads (loaded and closed, never attached)", required=True)
    return Check("trial-load", FAIL, f"an LSM program does not load: {reason}",
                 "if the checks above are ok, a sandbox, seccomp or kernel lockdown refuses BPF: "
                 "run on the host itself, as root", required=True)


def check_clang(h: Host) -> Check:
    env = os.environ.get("POLICYC_CLANG")
    for name in ((env,) if env else ()) + CLANGS:
        path = h.which(name)
        if path:
            return Check("clang", OK, f"{path} (for `policyc build` and `install`)")
    return Check("clang", WARN, "no clang: this host cannot build policies (loading built ones needs none; "
                 "the boot never runs clang)", "`apt-get install clang-19` (or build elsewhere and copy the "
                 "build directory)")


def check_headers(h: Host) -> Check:
    for d in ("/usr/include", "/usr/local/include"):
        p = h.at(d) / "bpf" / "bpf_helpers.h"
        if p.is_file():
            return Check("libbpf-headers", OK, f"{p.parent} (for builds)")
    return Check("libbpf-headers", WARN, "no bpf/bpf_helpers.h: this host cannot build policies",
                 "`apt-get install libbpf-dev`")


def check_units(h: Host) -> list[Check]:
    out = []
    running = h.systemd_running if h.systemd_running is not None else h.at("/run/systemd/system").is_dir()
    for unit in UNITS:
        path = h.at(f"/etc/systemd/system/{unit}")
        if not path.is_file():
            out.append(Check(unit, WARN, f"not installed ({path})", "`policyc install [POLICY...]`"))
            continue
        if not running:
            out.append(Check(unit, OK, f"installed ({path}); systemd is not running here"))
            continue
        enabled, active = h.systemctl(["is-enabled", unit]), h.systemctl(["is-active", unit])
        state = f"{enabled}, {active}"
        if enabled != "enabled":
            out.append(Check(unit, WARN, f"installed, {state}", f"`systemctl enable {unit}` (or `policyc install`)"))
        elif active == "failed":
            out.append(Check(unit, WARN, f"installed, {state}", f"`journalctl -b -u {unit}` says why"))
        elif active != "active":
            out.append(Check(unit, WARN, f"installed, {state}", f"`systemctl start {unit}`"))
        else:
            out.append(Check(unit, OK, f"installed, {state}"))
    return out


def check_built(h: Host) -> Check:
    d = h.at("/var/lib/policyc")
    names = sorted(p.name.removesuffix(".manifest.json") for p in d.glob("*.manifest.json")) if d.is_dir() else []
    if not names:
        return Check("built", WARN, f"no policy is built in {d}", "`policyc install POLICY...`")
    return Check("built", OK, f"{len(names)} built in {d}: {', '.join(names)}")


def check_loaded(h: Host) -> Check:
    root = h.at(h.pin_root)
    try:
        names = sorted(n for n in os.listdir(root) if (root / n).is_dir())
    except FileNotFoundError:
        names = []
    except OSError as e:
        return Check("loaded", SKIP, f"cannot list {root}: {e.strerror}")
    if not names:
        return Check("loaded", OK, "no policy is loaded now")
    return Check("loaded", OK, f"{len(names)} loaded: {', '.join(names)}")


def examine(h: Host | None = None) -> list[Check]:
    h = h or Host()
    checks = [check_kernel(h), check_config(h), check_lsm(h), check_btf(h), check_bpffs(h), check_libbpf(h),
              check_root(h)]
    # the trial load only means something when the static checks passed
    if all(c.status != FAIL for c in checks if c.required):
        checks.append(check_trial(h))
    else:
        checks.append(Check("trial-load", SKIP, "skipped: a required check above failed"))
    checks += [check_clang(h), check_headers(h), *check_units(h), check_built(h), check_loaded(h)]
    return checks


def can_enforce(checks: list[Check]) -> bool:
    return not any(c.required and c.status == FAIL for c in checks)


def to_json(checks: list[Check]) -> dict:
    return {"can_enforce": can_enforce(checks), "checks": [asdict(c) for c in checks]}


def render_text(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper() if c.status == FAIL else c.status:<5} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<5} {'':<{width}}  fix: {c.fix}")
    if not can_enforce(checks):
        lines.append("policyc cannot enforce on this host: fix the FAIL lines")
    elif any(c.name == "trial-load" and c.status == OK for c in checks):
        lines.append("policyc can enforce on this host")
    else:
        lines.append("policyc can enforce on this host as far as the checks tell without a trial load "
                     "(as root, without --no-trial, one proves it)")
    return "\n".join(lines) + "\n"
