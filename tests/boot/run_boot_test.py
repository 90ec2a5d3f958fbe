#!/usr/bin/env python3
"""The boot test (issue #15): policyc installed from its wheel into a real Debian userspace,
booted with systemd as PID 1, enforces from boot.

    python tests/boot/run_boot_test.py [--kernel 6.1] [--keep]

On the host (root: it extracts an image tree and chroots into it to install the wheel):
  1. a Debian bookworm image with systemd, made with mmdebstrap from the archive once and
     cached as a tarball (POLICYC_CACHE/boot/, rebuilt only when missing or its recipe
     changed);
  2. policyc's wheel (with its dependencies, from PyPI) installed into a venv in the image,
     in a chroot inside a private mount namespace (nothing stays mounted on the host);
  3. `policyc install --root IMAGE --exec-path /opt/policyc/bin/policyc` of two policies
     (tests/boot/guest/): bootdemo, which denies its service one file, and bootbroken, whose
     object is then overwritten with bytes that are no ELF;
  4. the confined service and a reporting unit (tests/boot/guest/), an ext4 disk image
     (mke2fs -d), a small initramfs (busybox and the modules that mount the disk);
  5. boot 1 (the Debian kernel under qemu, the machine's one-VM lock held): policyc.service
     ran before the service's first exec, which was denied; the audit record is in the
     journal and in /var/log/policyc/audit.jsonl naming the policy line; bootbroken failed
     loudly (the unit is failed, the journal says which policy and why) while bootdemo
     enforced;
  6. the policy is changed in /etc/policyc/policies.d (now denying another file), bootbroken
     removed, and the image rebuilt with `policyc build -o var/lib/policyc
     etc/policyc/policies.d` run at the image's root (what an operator runs at /);
  7. boot 2: policyc.service is active, the new policy enforces and the old denial is gone.

Exit 0 when every assertion held, 1 when one did not (what the guest reported is printed),
2 when the image could not be made or a VM did not report. Timings per step are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from policyc import vm  # noqa: E402

GUEST = Path(__file__).resolve().parent / "guest"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the image holds beside minbase: systemd as init and udev; Python 3.11 and venv for the
# wheel; libbpf1 (the runtime opens libbpf.so.1); kmod.
PACKAGES = ("systemd-sysv", "udev", "python3", "python3-venv", "libbpf1", "kmod")
# Modules the initramfs loads to mount the disk (Debian builds them as modules); crc32c_generic:
# ext4 asks the crypto API for crc32c at mount, which would otherwise modprobe (no helper there)
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
IMAGE_MB_SPARE = 768
BOOT_TIMEOUT = 900  # seconds per boot: systemd under TCG boots in one to two minutes
EXEC_PATH = "/opt/policyc/bin/policyc"
POLICY_FILE = "etc/policyc/policies.d/boot.policy"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do
    insmod "/modules/$m" || echo "pk-initramfs: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do usleep 100000; i=$((i + 1)); done
mkdir -p /newroot
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "pk-initramfs: cannot mount /dev/vda"
    poweroff -f
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
"""


class BootTestError(Exception):
    """The image could not be made or the VM did not report (exit 2)."""


def say(msg: str) -> None:
    print(f"boot_test: {msg}", file=sys.stderr, flush=True)


def run(argv, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise BootTestError(f"failed ({p.returncode}): {' '.join(map(str, argv))}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


@contextlib.contextmanager
def step(name: str, timings: dict):
    t = time.monotonic()
    say(f"{name} ...")
    yield
    timings[name] = round(time.monotonic() - t, 1)
    say(f"{name}: {timings[name]} s")


# ---- the image --------------------------------------------------------------------------------

def boot_cache() -> Path:
    d = vm.cache_dir() / "boot"
    d.mkdir(parents=True, exist_ok=True)
    return d


def base_image() -> Path:
    """The Debian tree as a tarball, made by mmdebstrap once per recipe."""
    recipe = json.dumps({"suite": SUITE, "variant": "minbase", "packages": PACKAGES, "mirror": MIRROR})
    tar = boot_cache() / f"{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.tar"
    if tar.is_file():
        say(f"base image cached: {tar}")
        return tar
    if not shutil.which("mmdebstrap"):
        raise BootTestError("mmdebstrap is not installed: run scripts/setup.sh")
    part = tar.with_suffix(".part.tar")
    run(["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
         '--aptopt=Acquire::Retries "3"', SUITE, part, MIRROR])
    os.replace(part, tar)
    return tar


def wheelhouse(work: Path) -> Path:
    """policyc's wheel and its dependencies' (PyPI), for the image's Python (3.11, as here)."""
    out = work / "wheels"
    env = dict(os.environ, POLICYC_PREBUILT="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    src = work / "src"   # the tracked and new files, as scripts/test_wheel.sh builds from
    src.mkdir()
    files = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout
    subprocess.run(["tar", "-C", REPO, "--null", "--ignore-failed-read", "-T", "-", "-cf", work / "src.tar"],
                   input=files, capture_output=True, check=True)
    run(["tar", "-C", src, "-xf", work / "src.tar"])
    run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", out, f"{src}[journald]"], env=env)
    return out


def in_chroot(root: Path, script: str) -> None:
    """Run `script` (sh) chrooted in `root`, /dev and /proc mounted in a private mount
    namespace: they vanish with it, so nothing stays mounted under the tree."""
    inner = (f"mount --rbind /dev {root}/dev && mount -t proc proc {root}/proc && "
             f"chroot {root} /bin/sh -ec {shlex.quote(script)}")
    run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", inner])


def install_units(root: Path, units: list[str]) -> None:
    sysd = root / "etc/systemd/system"
    wants = sysd / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for u in units:
        shutil.copy(GUEST / u, sysd / u)
        link = wants / u
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{u}")


def make_tree(root: Path, wheels: Path, timings: dict) -> None:
    with step("extract the base image", timings):
        run(["tar", "-C", root, "--numeric-owner", "-xpf", base_image()])
    with step("install the wheel into the image (venv, pip, chroot)", timings):
        shutil.copytree(wheels, root / "tmp/wheels")
        in_chroot(root, "python3 -m venv /opt/policyc\n"
                        "/opt/policyc/bin/pip install -q --no-index --find-links /tmp/wheels 'policyc[journald]'\n"
                        "rm -rf /tmp/wheels")
    # the confined service's shell: dash under a name only it runs
    shutil.copy2(root / "usr/bin/dash", root / "usr/local/bin/pk-boot-sh")
    shutil.copy2(root / "usr/bin/dash", root / "usr/local/bin/pk-boot-other")
    (root / "etc/pk-boot").mkdir()
    for f in ("secret-1", "secret-2", "free"):
        (root / "etc/pk-boot" / f).write_text(f"{f}\n")
    shutil.copy2(GUEST / "pk-boot-check", root / "usr/local/bin/pk-boot-check")
    install_units(root, ["pk-boot-service.service", "pk-boot-check.service"])
    (root / "etc/hostname").write_text("pk-boot\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw 0 1\n")
    # no login prompt on the console the report is written to
    (root / "etc/systemd/system/serial-getty@ttyS0.service").symlink_to("/dev/null")
    (root / "etc/systemd/system/getty@tty1.service").symlink_to("/dev/null")
    with step("policyc install --root (builds on the host, writes units, enables them)", timings):
        policyc(["install", "--root", root, "--exec-path", EXEC_PATH, GUEST / "boot.policy", GUEST / "broken.policy"])
    broken = root / "var/lib/policyc/bootbroken.bpf.o"
    if not broken.is_file():
        raise BootTestError(f"policyc install did not build {broken}")
    # bytes libbpf must refuse, under a manifest that vouches for them (its object_sha256
    # rewritten): the load itself fails, not only the loader's check of the hash
    garbage = b"\x7fELF this is no BPF object\n"
    broken.write_bytes(garbage)
    manifest = broken.with_name("bootbroken.manifest.json")
    m = json.loads(manifest.read_text())
    m["object_sha256"] = "sha256:" + hashlib.sha256(garbage).hexdigest()
    manifest.write_text(json.dumps(m, indent=1))


def policyc(args, cwd: Path | None = None) -> str:
    exe = Path(sys.executable).parent / "policyc"
    p = run([exe, *args], cwd=cwd)
    return p.stdout + p.stderr


def disk_image(root: Path, img: Path) -> None:
    used = int(run(["du", "-sm", "--apparent-size", root]).stdout.split()[0])
    img.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-t", "ext4", "-L", "pk-boot", "-d", root, img, f"{used + IMAGE_MB_SPARE}M"])


def initramfs(kernel: vm.KernelImage) -> Path:
    """busybox and the modules that mount an ext4 virtio disk; cached per kernel version."""
    out = boot_cache() / f"initramfs-{kernel.version}-{hashlib.sha256(INIT.encode()).hexdigest()[:8]}.cpio.gz"
    if out.is_file():
        return out
    busybox = shutil.which("busybox")
    if not busybox:
        raise BootTestError("busybox (busybox-static) is not installed: run scripts/setup.sh")
    with tempfile.TemporaryDirectory(prefix="pk-initramfs-") as tmp:
        t = Path(tmp)
        for d in ("bin", "proc", "sys", "dev", "modules", "newroot"):
            (t / d).mkdir()
        shutil.copy2(busybox, t / "bin/busybox")
        order: list[str] = []
        for m in INITRAMFS_MODULES:
            deps = run(["modprobe", "-d", kernel.root, "-S", kernel.version, "--show-depends", m]).stdout
            for line in deps.splitlines():
                if line.startswith("insmod "):
                    ko = Path(line.split()[1])
                    if ko.name not in order:
                        if ko.suffix != ".ko":
                            raise BootTestError(f"{ko}: compressed modules are not handled here (boot test kernel: 6.1)")
                        shutil.copy2(ko, t / "modules" / ko.name)
                        order.append(ko.name)
        (t / "modules.order").write_text("\n".join(order) + "\n")
        (t / "init").write_text(INIT)
        (t / "init").chmod(0o755)
        names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=t, capture_output=True, text=True, check=True).stdout
        cpio = subprocess.run([busybox, "cpio", "-o", "-H", "newc"], cwd=t, input=names.encode(),
                              capture_output=True, check=True).stdout
    part = out.with_suffix(".part")
    part.write_bytes(gzip.compress(cpio, 6))
    os.replace(part, out)
    return out


# ---- a boot -----------------------------------------------------------------------------------

def boot(kernel: vm.KernelImage, initrd: Path, img: Path, log: Path) -> dict[str, list[str]]:
    """Boot the image once; return the PKBOOT report (name -> values, in order)."""
    argv = ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-smp", "2", "-m", "2G",
            "-kernel", kernel.vmlinuz, "-initrd", initrd,
            "-append", "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=4 systemd.show_status=0",
            "-drive", f"file={img},format=raw,if=virtio,cache=unsafe",
            "-nic", "none", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]
    with vm.one_vm_at_a_time(), open(log, "w") as out:
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            p.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            vm.stop(p)
            raise BootTestError(f"the VM did not power off within {BOOT_TIMEOUT} s (console: {log})")
    report: dict[str, list[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^PKBOOT ([^:]+): ?(.*)$", line.strip("\r"))
        if m:
            report.setdefault(m.group(1), []).append(m.group(2))
    if report.get("done") != ["yes"]:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        raise BootTestError(f"the guest never reported (console {log}):\n{tail}")
    return report


# ---- what each boot must show ------------------------------------------------------------------

class Checks:
    def __init__(self, label: str, report: dict[str, list[str]]):
        self.label, self.report, self.failed = label, report, []

    def one(self, name: str) -> str:
        return (self.report.get(name) or [""])[0]

    def expect(self, what: str, ok: bool, got) -> None:
        say(f"{self.label}: {'ok  ' if ok else 'FAIL'} {what}" + ("" if ok else f" (got {got!r})"))
        if not ok:
            self.failed.append(what)


def check_boot1(r: dict[str, list[str]]) -> Checks:
    c = Checks("boot 1", r)
    c.expect("policyc.service failed (bootbroken's object is no ELF)", c.one("policyc.service") == "failed",
             c.one("policyc.service"))
    log = "\n".join(r.get("policyc.log", []))
    c.expect("the loader's journal names bootbroken and libbpf's refusal",
             re.search(r"^failed bootbroken: loading policy `bootbroken` failed: ", log, re.M) is not None, log)
    c.expect("the loader's journal says bootdemo loaded and sums up",
             re.search(r"^loaded bootdemo \(enforce, \d+ rules?\)$", log, re.M) is not None
             and re.search(r"^sync: 1 loaded, 1 failed$", log, re.M) is not None, log)
    start, exit_ = int(c.one("service.start_us") or 0), int(c.one("policyc.exit_us") or 0)
    c.expect("policyc.service had run before the confined service's first exec",
             0 < exit_ < start, {"policyc_exit_us": exit_, "service_start_us": start})
    c.expect("the confined service's open of secret-1 was denied", c.one("file.secret-1") == "denied",
             r.get("file.secret-1"))
    c.expect("secret-2 and the free file were read", c.one("file.secret-2") == "read" and c.one("file.free") == "read",
             (r.get("file.secret-2"), r.get("file.free")))
    fields = r.get("journal.field", [])
    c.expect("the journal holds the audit record naming the policy line",
             "POLICYC_POLICY=bootdemo" in fields and "POLICYC_DECISION=deny" in fields
             and "POLICYC_OBJECT_PATH=/etc/pk-boot/secret-1" in fields
             and f"POLICYC_RULE={POLICY_FILE}:{deny_line(1)}" in [f.rsplit(":", 1)[0] for f in fields], fields)
    jl = [json.loads(x) for x in r.get("audit.jsonl", [])]
    c.expect("/var/log/policyc/audit.jsonl holds the same denial",
             any(e.get("policy") == "bootdemo" and e.get("decision") == "deny"
                 and str(e.get("rule", "")).startswith(f"{POLICY_FILE}:{deny_line(1)}:") for e in jl), jl)
    c.expect("policyc-audit.service is active", c.one("policyc-audit.service") == "active",
             c.one("policyc-audit.service"))
    # `protect policyc`: the service, root, went for the audit reader
    c.expect("the units run in policyc.slice", c.one("policyc-audit.cgroup") == "/policyc.slice/policyc-audit.service",
             c.one("policyc-audit.cgroup"))
    c.expect("the service found the audit reader's pid", c.one("file.reader-pid") == c.one("policyc-audit.pid") != "",
             (r.get("file.reader-pid"), c.one("policyc-audit.pid")))
    c.expect("its kill of the audit reader was denied", c.one("file.kill-reader") == "denied", r.get("file.kill-reader"))
    c.expect("its write to the reader's cgroup.kill was denied", c.one("file.cgroup-kill") == "denied",
             r.get("file.cgroup-kill"))
    c.expect("the audit reader lives on, never restarted", c.one("policyc-audit.restarts") == "0",
             c.one("policyc-audit.restarts"))
    rules = [f for f in fields if f.startswith("POLICYC_RULE=")]
    c.expect("the journal names the protect line for those denials",
             rules.count(f"POLICYC_RULE={POLICY_FILE}:{protect_line()}:5") >= 2, rules)
    return c


def check_boot2(r: dict[str, list[str]]) -> Checks:
    c = Checks("boot 2", r)
    c.expect("policyc.service is active (every policy loaded)", c.one("policyc.service") == "active",
             (c.one("policyc.service"), r.get("policyc.log")))
    start, exit_ = int(c.one("service.start_us") or 0), int(c.one("policyc.exit_us") or 0)
    c.expect("policyc.service had run before the confined service's first exec",
             0 < exit_ < start, {"policyc_exit_us": exit_, "service_start_us": start})
    c.expect("the changed policy enforces: secret-2 denied", c.one("file.secret-2") == "denied", r.get("file.secret-2"))
    c.expect("the old rule is gone: secret-1 read", c.one("file.secret-1") == "read", r.get("file.secret-1"))
    fields = r.get("journal.field", [])
    c.expect("the journal's record names the changed line",
             f"POLICYC_RULE={POLICY_FILE}:{deny_line(2)}" in [f.rsplit(":", 1)[0] for f in fields], fields)
    status = c.one("status")
    c.expect("policyc status lists bootdemo and no bootbroken", "bootdemo" in status and "bootbroken" not in status, status)
    return c


def protect_line() -> int:
    text = policy_text(1)
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith("protect policyc"))


def deny_line(version: int) -> int:
    text = policy_text(version)
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith("deny file read"))


def policy_text(version: int) -> str:
    text = (GUEST / "boot.policy").read_text()
    if version == 2:   # another file denied, on another line
        text = text.replace('    deny file read "/etc/pk-boot/secret-1"\n',
                            '    # version 2: the service may read secret-1 again\n'
                            '    deny file read "/etc/pk-boot/secret-2"\n')
    return text


# ---- main -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (image, console logs)")
    ap.add_argument("--cache-only", action="store_true",
                    help="only make the cached parts (the Debian image, the initramfs), no VM: "
                         "scripts/test.sh runs this beside another guest")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        say("error: the boot test runs as root (it extracts an image tree and chroots into it)")
        return 2
    if args.cache_only:
        try:
            t = time.monotonic()
            base_image()
            initramfs(vm.resolve_kernel(args.kernel))
            say(f"cached parts ready in {time.monotonic() - t:.1f} s")
            return 0
        except (BootTestError, vm.VmError) as e:
            say(f"error: {e}")
            return 2
    timings: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="policyc-boot-", dir=os.environ.get("TMPDIR", "/tmp")))
    failed: list[str] = []
    try:
        kernel = vm.resolve_kernel(args.kernel)
        with step("base image (mmdebstrap, cached)", timings):
            base_image()
        with step("wheel and its dependencies", timings):
            wheels = wheelhouse(work)
        root = work / "root"
        root.mkdir()
        make_tree(root, wheels, timings)
        with step("initramfs (cached per kernel)", timings):
            initrd = initramfs(kernel)
        img = work / "disk.img"
        with step("disk image 1 (mke2fs -d)", timings):
            disk_image(root, img)
        with step(f"boot 1 ({kernel.version})", timings):
            r1 = boot(kernel, initrd, img, work / "console-1.log")
        for key in ("policyc.log", "journal.event"):
            for line in r1.get(key, []):
                say(f"boot 1 {key}: {line}")
        c1 = check_boot1(r1)
        failed += c1.failed
        # the operator's change: a new version of the policy, the broken one removed, rebuilt
        (root / POLICY_FILE).write_text(policy_text(2))
        (root / "etc/policyc/policies.d/broken.policy").unlink()
        with step("policyc build -o var/lib/policyc etc/policyc/policies.d (at the image's root)", timings):
            policyc(["build", "-o", "var/lib/policyc", "etc/policyc/policies.d"], cwd=root)
        with step("disk image 2", timings):
            disk_image(root, img)
        with step(f"boot 2 ({kernel.version})", timings):
            r2 = boot(kernel, initrd, img, work / "console-2.log")
        c2 = check_boot2(r2)
        failed += c2.failed
    except (BootTestError, vm.VmError) as e:
        say(f"error: {e}")
        return 2
    finally:
        say("timings (s): " + json.dumps(timings))
        if args.keep or failed:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        say(f"FAILED: {len(failed)} check(s): " + "; ".join(failed))
        return 1
    say("ok: enforcement from boot, a broken policy reported, a changed policy enforced at the next boot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
