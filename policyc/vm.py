"""Boot a Debian kernel under virtme-ng (qemu, TCG) and run one command in it as root.

The host kernel refuses BPF LSM programs, so everything that loads one runs in a guest:

    img = resolve_kernel("6.1")             # or "6.12", "7.2", "newest", or DIR/boot/vmlinuz-V
    res = run_in_vm(["bpftool", "prog"], kernel=img, stream=sys.stdout)
    res.returncode, res.output

Kernels come from Debian's archive (`apt-get download`), are unpacked with `dpkg-deb -x` into
`${POLICYC_CACHE:-~/.cache/policyc}/kernels/<package>/` and reused. 6.1 and 6.12 come through
the host's apt (bookworm, bookworm-security). "7.2" and "newest" come from Debian sid through a
private apt state, `kernels/sid-apt/` (its own sources list, lists and cache; the host's apt
configuration and lists are never touched), filled by `apt-get update` only when its lists are
missing or when the environment has POLICYC_REFRESH_KERNELS=1. Sid splits a kernel into
linux-binary-V (vmlinuz), linux-modules-V and linux-base-V (config, modules.builtin/order):
they are extracted into one tree, with the vmlinuz copied to boot/vmlinuz-V. "newest" is
whatever sid's linux-image-amd64 named when first resolved or last refreshed, pinned in
`kernels/newest.json` (package, version, date) and reused until the next refresh, so repeated
runs boot the same kernel; a refresh that fails (offline) keeps the pinned, cached kernel and
says so. The guest sees the host's
`/` read-only over 9p (so the venv of the running Python works by absolute path), gets no
environment of ours (we pass it with `env K=V ... CMD`), and reports the command's exit code on
a marker line of its own: vng's exit code 255 also means "the guest never reported". A boot
without the marker is retried (three boots in all); one VM runs at a time on the host (a lock in the cache).
Stdlib only: nothing here imports the rest of policyc.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

# Kernel series we know how to fetch: spec -> the metapackage whose dependency names the image.
KERNEL_SERIES = {
    "6.1": "linux-image-amd64",
    "6.12": "linux-image-6.12-amd64",
}
# Series fetched from Debian sid (private apt state, see the module docstring), and the spec for
# sid's newest kernel, pinned in kernels/newest.json.
SID_SERIES = ("7.2",)
NEWEST = "newest"
SID_META = "linux-image-amd64"
SID_MIRROR = "http://deb.debian.org/debian"
SID_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SID_SOURCES = f"deb [signed-by={SID_KEYRING}] {SID_MIRROR} sid main\n"
SID_STATE = "sid-apt"  # under kernels/
PIN_FILE = "newest.json"  # under kernels/
REFRESH_ENV = "POLICYC_REFRESH_KERNELS"  # =1: `apt-get update` sid's lists, re-pin "newest"
# The guest mounts empty tmpfs over these: a kernel or script kept there is invisible to it.
GUEST_HIDDEN_DIRS = ("/var/tmp", "/var/cache", "/run", "/dev/shm")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MARKER_PREFIX = "policyc-vm-exit-"
# Host tools virtme-ng needs, with the Debian package that provides each.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "depmod": "kmod",
    "busybox": "busybox-static",
    "udevadm": "udev",
}
SETUP_HINT = "run scripts/setup.sh"


class VmError(Exception):
    """The VM could not be prepared, booted or did not report: message is for humans."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


@dataclasses.dataclass(frozen=True)
class KernelImage:
    spec: str  # what was asked: "6.1", "6.12", "7.2", "newest" or a path
    version: str  # `uname -r` in the guest, e.g. "6.1.0-56-amd64"
    vmlinuz: Path  # ROOT/boot/vmlinuz-VERSION
    root: Path  # extracted package tree, modules in ROOT/lib/modules/VERSION
    package: str | None = None  # Debian package name, None for a path spec


@dataclasses.dataclass(frozen=True)
class VmResult:
    returncode: int  # exit code of the guest command
    output: str  # guest stdout+stderr and vng's own chatter, marker line removed
    seconds: float = 0.0  # wall time of the boot that reported
    boots: int = 1  # more than 1 when a boot never reported


def progress(message: str) -> None:
    print(f"policyc vm: {message}", file=sys.stderr, flush=True)


# --- kernels --------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("POLICYC_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "policyc"
    )
    return Path(base).absolute()


CACHE_HINT = "set POLICYC_CACHE to a directory elsewhere (default ~/.cache/policyc)"


def check_guest_visible(path: Path, what: str, hint: str = CACHE_HINT) -> None:
    for hidden in GUEST_HIDDEN_DIRS:
        if path == Path(hidden) or Path(hidden) in path.parents:
            raise VmError(
                f"{what} {path} is under {hidden}, which the guest replaces with an empty "
                f"tmpfs: {hint}"
            )


def parse_apt_depends(text: str) -> str | None:
    """The kernel image package named by `apt-cache depends <metapackage>` output, or None.

    Takes the first (possibly alternative, `|Depends:`) dependency on a concrete
    `linux-image-<digit>...` package; virtual packages (`<...>`) are ignored.
    """
    for line in text.splitlines():
        m = re.match(r"\s*\|?Depends:\s*(\S+)\s*$", line)
        if m and re.fullmatch(r"linux-image-\d[\w.+~-]*", m.group(1)):
            return m.group(1)
    return None


def version_from_vmlinuz(path: Path) -> str:
    m = re.fullmatch(r"vmlinuz-(.+)", path.name)
    if not m:
        raise VmError(f"{path}: kernel image name must be vmlinuz-VERSION")
    return m.group(1)


def image_in_tree(root: Path, spec: str, package: str | None) -> KernelImage:
    """The single kernel of an extracted package tree, checked for what vng needs."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise VmError(f"{root}/boot: expected one vmlinuz-VERSION, found {len(images)}")
    return kernel_from_path(images[0], spec=spec, package=package)


def kernel_from_path(
    vmlinuz: Path, spec: str | None = None, package: str | None = None
) -> KernelImage:
    """The kernel at DIR/boot/vmlinuz-VERSION, checked to have DIR/lib/modules/VERSION."""
    vmlinuz = vmlinuz.absolute()
    if not vmlinuz.is_file():
        raise VmError(f"kernel image {vmlinuz} does not exist")
    version = version_from_vmlinuz(vmlinuz)
    root = vmlinuz.parent.parent
    if vmlinuz.parent.name != "boot" or not any(
        (root / sub / version).is_dir() for sub in ("lib/modules", "usr/lib/modules")
    ):
        raise VmError(
            f"{vmlinuz}: modules must be beside it in {root}/lib/modules/{version} "
            "(the layout of `dpkg-deb -x linux-image-....deb DIR`): without them the "
            "guest has no 9p and never starts"
        )
    check_guest_visible(root, "kernel tree", "move the extracted package elsewhere")
    return KernelImage(str(spec or vmlinuz), version, vmlinuz, root, package)


def run_tool(argv: Sequence[str], cwd: Path | None = None) -> str:
    """stdout of a host tool (apt-cache, apt-get, dpkg-deb); VmError with its stderr."""
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
    except FileNotFoundError:
        raise VmError(f"{argv[0]} not found: policyc fetches kernels on Debian with apt") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise VmError(
            f"`{shlex.join(argv)}` failed (exit {proc.returncode}): " + " / ".join(detail)
        )
    return proc.stdout


def resolve_package(spec: str) -> str:
    meta = KERNEL_SERIES[spec]
    package = parse_apt_depends(run_tool(["apt-cache", "depends", meta]))
    if package is None or not package.startswith(f"linux-image-{spec}."):
        raise VmError(
            f"`apt-cache depends {meta}` names no linux-image-{spec}.* package "
            f"(got {package!r}): run `apt-get update` (6.12 needs bookworm-security)"
        )
    return package


def fetch_package(
    package: str,
    kernels: Path,
    parts: Sequence[str] | None = None,
    apt_options: Sequence[str] = (),
) -> Path:
    """Download and extract `package` into kernels/<package>, once; returns the tree.

    `parts` are the packages that make up the kernel when it is split (sid: linux-binary-V,
    linux-modules-V, linux-base-V), extracted into the one tree; default: `package` itself.
    `apt_options` select a private apt state (sid). The tree appears complete or not at all.
    """
    tree = kernels / package
    if (tree / "boot").is_dir():
        return tree
    parts = list(parts or [package])
    work = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=kernels))
    try:
        progress(f"downloading {', '.join(parts)}")
        run_sid_tool("apt-get", apt_options, ["download", *parts], cwd=work)
        debs = sorted(work.glob("*.deb"))
        if len(debs) != len(parts):
            raise VmError(
                f"apt-get download {' '.join(parts)} left {len(debs)} .deb files in {work}"
            )
        for deb in debs:
            progress(f"extracting {deb.name}")
            run_tool(["dpkg-deb", "-x", str(deb), str(work / "tree")])
        if not (work / "tree" / "boot").is_dir():
            place_vmlinuz(work / "tree")  # split packages: vmlinuz is under usr/lib/modules/V
        (work / "tree").rename(tree)  # atomic: a tree with boot/ is complete
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tree


def place_vmlinuz(tree: Path) -> Path:
    """Copy tree/usr/lib/modules/V/vmlinuz to tree/boot/vmlinuz-V, where vng looks for it."""
    found = sorted(tree.glob("usr/lib/modules/*/vmlinuz")) + sorted(
        tree.glob("lib/modules/*/vmlinuz")
    )
    if len(found) != 1:
        raise VmError(
            f"the extracted kernel packages hold {len(found)} lib/modules/VERSION/vmlinuz "
            "files and no boot/vmlinuz-VERSION: expected one"
        )
    target = tree / "boot" / f"vmlinuz-{found[0].parent.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(found[0], target)
    return target


def cached_trees(kernels: Path, spec: str) -> list[Path]:
    """Complete cached trees of a series, newest package version last."""
    trees = [p for p in kernels.glob(f"linux-image-{spec}.*") if (p / "boot").is_dir()]

    def key(p: Path):
        return [int(n) for n in re.findall(r"\d+", p.name)]

    return sorted(trees, key=key)


# --- sid: the newest kernel, through a private apt state --------------------------------------


def sid_apt_options(state: Path) -> list[str]:
    """apt-get/apt-cache options that use only the private apt state in `state` (sid)."""
    return [
        "-o", f"Dir::Etc::sourcelist={state / 'sources.list'}",
        "-o", "Dir::Etc::sourceparts=/dev/null",
        "-o", "Dir::Etc::preferences=/dev/null",
        "-o", "Dir::Etc::preferencesparts=/dev/null",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", "APT::Sandbox::User=root",  # the _apt user cannot write a private dir of root's
    ]  # fmt: skip


def refresh_requested(environ: Mapping[str, str] | None = None) -> bool:
    """POLICYC_REFRESH_KERNELS=1 (or true/yes/on): refresh sid's lists and re-pin "newest"."""
    value = (os.environ if environ is None else environ).get(REFRESH_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def sid_lists_date(state: Path) -> str | None:
    """When the private sid lists were fetched (UTC date), None when there are none."""
    lists = [p for p in (state / "lists").glob("*_Packages*") if p.is_file()]
    if not lists:
        return None
    mtime = max(p.stat().st_mtime for p in lists)
    return datetime.datetime.fromtimestamp(mtime, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


_sid_refreshed = False  # a refresh asked by the environment happens once per process


class SidMoved(VmError):
    """Sid's linux-image-amd64 names a kernel of another series than the one asked for."""


def run_sid_tool(
    tool: str, apt_options: Sequence[str], args: Sequence[str], cwd: Path | None = None
) -> str:
    """run_tool for apt-get/apt-cache with `apt_options` (the private sid state: its errors
    leave the long options out); without options, exactly run_tool([tool, *args])."""
    if not apt_options:
        return run_tool([tool, *args], cwd=cwd)
    try:
        return run_tool([tool, *apt_options, *args], cwd=cwd)
    except VmError as exc:
        message = str(exc).replace(shlex.join(apt_options) + " ", "")
        raise VmError(f"{message} (Debian sid, private apt state)") from None


def sid_apt(kernels: Path, refresh: bool) -> list[str]:
    """The private sid apt state under kernels/, its lists fetched when missing or `refresh`."""
    global _sid_refreshed
    state = kernels / SID_STATE
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    sources = state / "sources.list"
    if not sources.is_file() or sources.read_text() != SID_SOURCES:
        sources.write_text(SID_SOURCES)
    options = sid_apt_options(state)
    missing = sid_lists_date(state) is None
    if missing or (refresh and not _sid_refreshed):
        progress(f"fetching Debian sid's package lists into {state}")
        run_sid_tool("apt-get", options, ["-q", "update"])
        if sid_lists_date(state) is None:
            raise VmError(f"`apt-get update` of {SID_SOURCES.strip()!r} left no package lists")
        _sid_refreshed = _sid_refreshed or refresh
    return options


def parse_split_depends(text: str, image_package: str) -> list[str]:
    """The packages a split sid kernel is made of, from `apt-cache depends linux-image-V`.

    linux-image-V is empty and depends on linux-binary-V (vmlinuz) and linux-modules-V, and on
    linux-base-V (config, System.map, modules.builtin and modules.order). Returns them as
    [base (when named), binary, modules]; [] for a kernel that is not split (the image package
    holds everything); VmError when only one of binary/modules is named.
    """
    version = image_package.removeprefix("linux-image-")
    named = {}
    for line in text.splitlines():
        m = re.match(r"\s*\|?(?:Pre)?Depends:\s*linux-(base|binary|modules)-(\S+)\s*$", line)
        if m and m.group(2) == version:
            named.setdefault(m.group(1), f"linux-{m.group(1)}-{version}")
    if not {"binary", "modules"} & named.keys():
        return []
    if not {"binary", "modules"} <= named.keys():
        raise VmError(
            f"{image_package} depends on {', '.join(named.values())} only: a split kernel "
            f"needs both linux-binary-{version} and linux-modules-{version}"
        )
    return [named[k] for k in ("base", "binary", "modules") if k in named]


def resolve_sid_package(spec: str, apt_options: Sequence[str]) -> str:
    """The linux-image-V that sid's linux-image-amd64 names, checked against `spec`."""
    text = run_sid_tool("apt-cache", apt_options, ["depends", SID_META])
    package = parse_apt_depends(text)
    if package is None:
        raise VmError(
            f"`apt-cache depends {SID_META}` in Debian sid names no linux-image-V package: "
            f"set {REFRESH_ENV}=1 to refresh sid's package lists"
        )
    if spec != NEWEST and not package.startswith(f"linux-image-{spec}."):
        raise SidMoved(
            f"Debian sid's {SID_META} now depends on {package}, not on a {spec} kernel "
            f"(use --kernel {NEWEST} for it)"
        )
    return package


def fetch_sid(package: str, kernels: Path, apt_options: Sequence[str]) -> Path:
    """kernels/<package> of sid, its split parts downloaded and extracted into it once."""
    tree = kernels / package
    if (tree / "boot").is_dir():
        return tree
    text = run_sid_tool("apt-cache", apt_options, ["depends", package])
    parts = parse_split_depends(text, package)
    return fetch_package(package, kernels, parts or [package], apt_options)


def pin_record(package: str, now: datetime.datetime | None = None) -> dict:
    """What kernels/newest.json holds: the package "newest" resolved to, its version, when."""
    now = now or datetime.datetime.now(datetime.UTC)
    return {
        "package": package,
        "version": package.removeprefix("linux-image-"),
        "resolved": now.astimezone(datetime.UTC).isoformat(timespec="seconds"),
    }


def parse_pin(text: str, where: str = PIN_FILE) -> dict:
    """The pin in the text of kernels/newest.json, checked; VmError when it is not one."""
    hint = f"delete it or set {REFRESH_ENV}=1 to pin sid's current kernel"
    try:
        pin = json.loads(text)
    except ValueError as exc:
        raise VmError(f"{where} is not JSON ({exc}): {hint}") from None
    package = pin.get("package") if isinstance(pin, dict) else None
    if not isinstance(package, str) or not re.fullmatch(r"linux-image-\d[\w.+~-]*", package):
        raise VmError(f"{where} names no linux-image-VERSION package: {hint}")
    if pin.get("version") != package.removeprefix("linux-image-") or not isinstance(
        pin.get("resolved"), str
    ):
        raise VmError(f"{where}: version or resolved date missing or not {package}'s: {hint}")
    return pin


def read_pin(path: Path) -> dict | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse_pin(text, str(path))


def write_pin(path: Path, pin: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(pin, indent=2) + "\n")
    tmp.replace(path)  # atomic


def resolve_sid(spec: str, kernels: Path, refresh: bool) -> tuple[Path, str]:
    """(tree, package) for "7.2" or "newest" from sid; the caller holds kernels/.lock."""
    pin_path = kernels / PIN_FILE
    pin = None
    if spec == NEWEST:
        try:
            pin = read_pin(pin_path)
        except VmError:
            if not refresh:
                raise  # with a refresh, a broken pin is replaced
    if pin is not None and not refresh:
        package = pin["package"]
        tree = kernels / package
        if not (tree / "boot").is_dir():  # pinned, not (or no longer) cached: fetch that one
            try:
                tree = fetch_sid(package, kernels, sid_apt(kernels, refresh=False))
            except VmError as exc:
                raise VmError(
                    f"{exc}; {pin_path} pins {package} (resolved {pin['resolved']}), which is "
                    f"not cached: set {REFRESH_ENV}=1 to pin sid's current kernel"
                ) from None
        progress(
            f"{NEWEST} is {package}, pinned in {pin_path} on {pin['resolved']} "
            f"({REFRESH_ENV}=1 re-resolves it)"
        )
        return tree, package
    apt_options: list[str] | None = None
    try:
        apt_options = sid_apt(kernels, refresh)
        package = resolve_sid_package(spec, apt_options)
        tree = fetch_sid(package, kernels, apt_options)
    except VmError as exc:
        if spec == NEWEST:
            cached = [kernels / pin["package"]] if pin is not None else []
        else:
            cached = cached_trees(kernels, spec)
        cached = [t for t in cached if (t / "boot").is_dir()]
        if not cached:
            what = f"no {spec} kernel is cached in {kernels}"
            if apt_options is not None and not refresh and not isinstance(exc, SidMoved):
                what += (
                    f"; sid's package lists are from {sid_lists_date(kernels / SID_STATE)}: "
                    f"set {REFRESH_ENV}=1 to refresh them"
                )
            raise VmError(f"{exc}; {what}") from None
        tree, package = cached[-1], cached[-1].name
        progress(f"{exc}; using cached {package}")
        return tree, package
    if spec == NEWEST:
        if pin is not None and pin["package"] != package:
            progress(f"{NEWEST} was {pin['package']}, is now {package}")
        write_pin(pin_path, pin_record(package))
        progress(f"{NEWEST} is {package}, pinned in {pin_path}")
    return tree, package


def resolve_kernel(spec: str) -> KernelImage:
    """A bootable kernel for "6.1", "6.12", "7.2", "newest" (Debian packages, cached) or a
    vmlinuz path. "7.2" and "newest" come from sid (module docstring; POLICYC_REFRESH_KERNELS=1
    refreshes sid's lists and re-pins "newest")."""
    spec = str(spec)
    if spec not in KERNEL_SERIES and spec not in SID_SERIES and spec != NEWEST:
        if "/" in spec or os.path.exists(spec):
            return kernel_from_path(Path(spec), spec=spec)
        raise VmError(
            f"unknown kernel {spec!r}: use one of "
            f"{', '.join([*KERNEL_SERIES, *SID_SERIES, NEWEST])} "
            "or a path to DIR/boot/vmlinuz-VERSION with DIR/lib/modules/VERSION beside it"
        )
    kernels = cache_dir() / "kernels"
    check_guest_visible(kernels, "kernel cache")
    kernels.mkdir(parents=True, exist_ok=True)
    with open(kernels / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download/extract at a time across processes
        if spec not in KERNEL_SERIES:
            tree, package = resolve_sid(spec, kernels, refresh_requested())
            return image_in_tree(tree, spec, package)
        try:
            package = resolve_package(spec)
            tree = fetch_package(package, kernels)
        except VmError as exc:
            cached = cached_trees(kernels, spec)
            if not cached:
                raise
            tree, package = cached[-1], cached[-1].name
            progress(f"{exc}; using cached {package}")
    return image_in_tree(tree, spec, package)


# --- the guest command ----------------------------------------------------------------------


def new_marker() -> str:
    return MARKER_PREFIX + uuid.uuid4().hex


def guest_path(env: Mapping[str, str] | None = None) -> str:
    """PATH for the guest: the caller's, else the running venv's bin dir and the system's."""
    bindir = os.path.dirname(sys.executable)
    path = (env or {}).get("PATH") or f"{bindir}:{SYSTEM_PATH}"
    if bindir not in path.split(":"):
        path = f"{bindir}:{path}"
    return path


# Where the guest keeps its copy of this Python's shared library (tmpfs: see guest_libpython).
GUEST_LIB_DIR = "/run/policyc-lib"


def guest_libpython() -> str | None:
    """The shared libpython this interpreter runs on, when it lives outside the system's
    library directories (a pyenv or self-built Python), else None.

    The guest reads the host's files over 9p without a cache: every page of a 23 MB
    unstripped libpython that a process touches is a round trip, and each Python process
    started in the guest paid about 1.4 s for it (`python -S -c pass`: 2.0 s against 0.6 s
    with the library on tmpfs, 6.1 under TCG). The guest script copies it, stripped, to
    GUEST_LIB_DIR once per boot (about 1.4 s) and puts that first on LD_LIBRARY_PATH (the
    interpreter names its library by RUNPATH, which LD_LIBRARY_PATH overrides)."""
    import sysconfig
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not libdir or not name:
        return None
    path = os.path.join(libdir, name)
    if not os.path.isfile(path) or os.path.realpath(libdir).startswith(("/usr/lib", "/lib")):
        return None
    return path


def guest_script(argv: Sequence[str], env: Mapping[str, str], cwd: str, marker: str,
                 libpython: str | None = None) -> str:
    """The sh script the guest runs: bpffs, cwd, `env K=V ... CMD`, then the marker line.

    `env` must already hold PATH. stderr joins stdout so the output keeps its order. With
    `libpython` (guest_libpython), a stripped copy on tmpfs is the one processes load.
    """
    if not argv:
        raise VmError("no command to run in the guest")
    for key in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise VmError(f"invalid environment variable name {key!r}")
    env = dict(env)
    copy_lib: list[str] = []
    if libpython:
        dest = f"{GUEST_LIB_DIR}/{os.path.basename(libpython)}"
        copy_lib = [f"mkdir -p {GUEST_LIB_DIR} && {{ strip -o {shlex.quote(dest)} {shlex.quote(libpython)} 2>/dev/null"
                    f" || cp {shlex.quote(libpython)} {shlex.quote(dest)}; }}"]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (GUEST_LIB_DIR, env.get("LD_LIBRARY_PATH")) if p)
    assignments = [f"{k}={v}" for k, v in env.items()]
    return "\n".join(
        [
            "exec 2>&1",
            "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf"
            " || echo 'policyc vm: cannot mount bpffs at /sys/fs/bpf'",
            *copy_lib,
            f"cd {shlex.quote(cwd)} || exit 1",
            shlex.join(["env", *assignments, *argv]),
            f"printf '\\n{marker}:%d\\n' $?",
            "",
        ]
    )


def split_marker(output: str, marker: str) -> tuple[int | None, str]:
    """(exit code reported on the marker line or None, output without that line)."""
    matches = list(re.finditer(rf"\r?\n?{re.escape(marker)}:(\d+)\r?\n?", output))
    if not matches:
        return None, output
    m = matches[-1]
    return int(m.group(1)), output[: m.start()] + output[m.end() :]


class MarkerFilter:
    """Passes streamed output through, holding back only what may become the marker line.

    The guest prints a newline, the marker, ":", the exit code and a newline; a chunk of
    output may end anywhere in that.
    """

    def __init__(self, marker: str):
        self.head = f"\n{marker}:"
        self.line = re.compile(rf"\r?{re.escape(self.head)}\d+\r?\n")
        self.pending = ""

    def feed(self, text: str) -> str:
        s = self.line.sub("", self.pending + text)
        keep = self.holdback(s)
        self.pending = s[len(s) - keep :]
        return s[: len(s) - keep]

    def flush(self) -> str:
        _, out = split_marker(self.pending, self.head[1:-1])
        self.pending = ""
        return out

    def holdback(self, s: str) -> int:
        """Length of the tail of s that could still turn out to be the marker line."""
        i = s.rfind(self.head)
        if i >= 0 and re.fullmatch(r"\d*\r?", s[i + len(self.head) :]):
            return len(s) - i
        for n in range(min(len(s), len(self.head) - 1), 0, -1):
            if self.head.startswith(s[-n:]):
                return n
        return 0


# --- booting --------------------------------------------------------------------------------


def vng_command(
    vng: str,
    image: KernelImage,
    script: str,
    cpus: int | None = None,
    memory: str = "2G",
    extra_qemu_opts: str | Sequence[str] | None = None,
    rwdirs: Iterable[str] = (),
) -> list[str]:
    """The vng command line that boots `image` and runs `sh script` in it."""
    cmd = [vng, "-r", str(image.vmlinuz), "--disable-kvm", "--force-9p", "--memory", memory]
    if os.environ.get("POLICYC_VM_VERBOSE"):
        # The kernel's console on our output: how a guest that dies without a word is diagnosed.
        cmd += ["--verbose", "--append", "loglevel=7 printk.devkmsg=on"]
    if cpus is not None:
        cmd += ["--cpus", str(cpus)]
    if extra_qemu_opts:
        if not isinstance(extra_qemu_opts, str):
            extra_qemu_opts = shlex.join(extra_qemu_opts)
        cmd.append(f"--qemu-opts={extra_qemu_opts}")
    for rwdir in rwdirs:
        if not rwdir or any(c.isspace() for c in str(rwdir)):
            raise VmError(f"--rwdir {rwdir!r}: vng cannot pass an empty path or one with spaces")
        cmd.append(f"--rwdir={os.path.abspath(rwdir)}")
    return [*cmd, "--", "sh", script]


# Debian 7.2 under multi-threaded TCG (each vCPU a host thread) panicked now and then: `Oops:
# int3` in `__schedule` (captured with POLICYC_VM_VERBOSE; in CI all three boots of one run
# died, at different tests). The kernel live-patches its text (static keys: the first perf
# event turns on `perf_sched_events` in `__schedule`; from 6.9 every BPF LSM attach and detach
# flips the hook's key) through an int3 breakpoint, and the other vCPU ran the stale int3
# after the poke had finished and the kernel's handler no longer claimed it. Holding the perf
# key on from boot (the workaround of an earlier session) still crashed on the first flip, and
# left the LSM keys. On those kernels the vCPUs run in one host thread, in turn
# (`-accel tcg,thread=single`): a write to kernel text is then seen by every vCPU before the
# next runs, as on real hardware after the kernel's sync. The guest keeps its two CPUs (per-CPU
# maps, concurrency between tasks), at about 1.5x the suite's time.
def single_threaded_tcg(version: str) -> bool:
    """Must a guest of this kernel run its vCPUs in one host thread (see above)?"""
    m = re.match(r"(\d+)\.", version)
    return bool(m and int(m.group(1)) >= 7)


def tcg_opts(version: str, extra_qemu_opts: str | Sequence[str] | None) -> list[str] | str | None:
    """The qemu options for a guest of this kernel: `extra_qemu_opts`, and single-threaded TCG
    where the kernel needs it (an -icount run is single-threaded already)."""
    opts = shlex.split(extra_qemu_opts) if isinstance(extra_qemu_opts, str) else list(extra_qemu_opts or [])
    if single_threaded_tcg(version) and "-icount" not in opts:
        opts = ["-accel", "tcg,thread=single", *opts]
    return opts or None


def host_env() -> dict[str, str]:
    """Our environment with the venv's bin dir first (vng execs virtme-run from it)."""
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ)
    env["PATH"] = ":".join(p for p in (bindir, env.get("PATH"), SYSTEM_PATH) if p)
    return env


def check_host(env: Mapping[str, str]) -> str:
    """Path of vng; VmError naming what to install when a tool is missing."""
    vng = os.path.join(os.path.dirname(sys.executable), "vng")
    if not os.access(vng, os.X_OK):
        raise VmError(
            f"virtme-ng (vng) is not installed beside {sys.executable}: {SETUP_HINT} "
            "and run policyc with the python of its venv"
        )
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool, path=env["PATH"]) is None:
            raise VmError(f"{tool} not found (Debian package {package}): {SETUP_HINT}")
    return vng


def boot_once(
    cmd: list[str],
    cwd: str,
    env: Mapping[str, str],
    timeout: float,
    stream: TextIO | None,
    marker_filter: MarkerFilter,
) -> tuple[int, str]:
    """Run vng until it exits: (its exit code, all its output). VmError on timeout.

    With `stream`, the output also goes there as it comes, without the marker line.
    """
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,  # open: vng crashes on a closed stdin
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout can kill qemu too
    )
    # SIGTERM (a CI timeout, pkill) must not orphan qemu: turn it into an exit that runs the
    # `finally` below, which kills the VM's process group.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks: list[str] = []

    def show(text: str) -> None:
        if stream is not None and text:
            stream.write(text)
            stream.flush()

    deadline = time.monotonic() + timeout
    try:
        fd = proc.stdout.fileno()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VmError(
                    f"the guest command did not finish within {timeout:g} s", "".join(chunks)
                )
            if not select.select([fd], [], [], min(remaining, 1.0))[0]:
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            text = decoder.decode(data)
            chunks.append(text)
            show(marker_filter.feed(text))
        text = decoder.decode(b"", final=True)
        chunks.append(text)
        show(marker_filter.feed(text) + marker_filter.flush())
        try:
            returncode = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            raise VmError(f"vng did not exit within {timeout:g} s", "".join(chunks)) from None
        return returncode, "".join(chunks)
    finally:
        stop(proc)
        proc.stdout.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def stop(proc: subprocess.Popen) -> None:
    """Kill vng and the qemu it started (its own process group), if still running. vng may
    exit before its qemu does: the group gets a SIGKILL at the end whatever happened."""
    try:
        if proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    pass
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def one_vm_at_a_time():
    """Host-wide lock: two TCG guests on this machine take twice as long each."""
    path = cache_dir() / "vm.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            progress(f"waiting for the VM of {holder} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} ({shlex.join(sys.argv)[:150]})")
        lock.flush()
        yield


def run_in_vm(
    argv: Sequence[str],
    kernel: str | KernelImage = "6.1",
    env: Mapping[str, str] | None = None,
    cpus: int | None = None,
    memory: str = "2G",
    timeout: float = 900,
    extra_qemu_opts: str | Sequence[str] | None = None,
    rwdirs: Iterable[str] = (),
    stream: TextIO | None = None,
    cwd: str | None = None,
) -> VmResult:
    """Boot `kernel` and run `argv` as root in the guest, in `cwd` (default: ours).

    The guest gets only `env` plus a PATH holding this Python's bin dir (unless env sets
    PATH). Output (guest stdout and stderr merged, plus vng's messages) is returned and, when
    `stream` is a file (e.g. sys.stdout), also written to it as it comes. `timeout` bounds
    each boot; a boot whose guest never reports the exit code is retried once. One VM at a
    time on this host: a second caller waits for the first. Raises VmError when the VM cannot
    be set up, times out, or never reports.
    """
    image = kernel if isinstance(kernel, KernelImage) else resolve_kernel(kernel)
    cwd = os.path.abspath(cwd or os.getcwd())
    check_guest_visible(Path(cwd), "working directory", "run from a directory elsewhere")
    henv = host_env()
    vng = check_host(henv)
    genv = {**(env or {}), "PATH": guest_path(env)}
    marker = new_marker()
    rundir = cache_dir() / "run"
    check_guest_visible(rundir, "script directory")
    rundir.mkdir(parents=True, exist_ok=True)
    script = rundir / f"{marker}.sh"
    script.write_text(guest_script(list(argv), genv, cwd, marker, libpython=guest_libpython()))
    cmd = vng_command(vng, image, str(script), cpus, memory, tcg_opts(image.version, extra_qemu_opts), rwdirs)
    try:
        with one_vm_at_a_time():
            # Three boots: a guest that dies without reporting (a TCG fault such as the one
            # single_threaded_tcg avoids) is retried and said; a test that fails still fails (the
            # guest reports its exit code).
            for boot in (1, 2, 3):
                progress(f"booting {image.version} under qemu (TCG, ~20-30 s)")
                start = time.monotonic()
                vng_rc, output = boot_once(cmd, cwd, henv, timeout, stream, MarkerFilter(marker))
                seconds = time.monotonic() - start
                code, output = split_marker(output, marker)
                if code is not None:
                    progress(f"guest command exited {code} after {seconds:.1f} s")
                    return VmResult(code, output, seconds, boot)
                if boot < 3:
                    progress(f"the guest never reported (vng exit {vng_rc}) after {seconds:.1f} s; "
                             "booting once more")
    finally:
        script.unlink(missing_ok=True)
    tail = "\n".join(output.strip().splitlines()[-15:])
    raise VmError(
        f"the guest never reported an exit code in 3 boots of {image.version} "
        f"(vng exit {vng_rc}); last output:\n{tail}",
        output,
    )
