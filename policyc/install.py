"""`policyc install` / `policyc uninstall`: the host layout and the systemd units.

    /etc/policyc/policies.d/           the sources (.policy, .policy.test, included files)
    /var/lib/policyc/                  the build output: NAME.bpf.o + NAME.manifest.json + NAME.maps
    /var/log/policyc/audit.jsonl       the audit log (policyc-audit.service)
    /etc/systemd/system/policyc.service         loads /var/lib/policyc at boot
    /etc/systemd/system/policyc-audit.service   `policyc audit --follow`
    /etc/systemd/system/sysinit.target.wants/policyc.service          enable links, as
    /etc/systemd/system/multi-user.target.wants/policyc-audit.service `systemctl enable` makes

With a root DIR every path is under DIR (an image being built): nothing is asked of a
running systemd, the enable links are made by hand (what `systemctl --root DIR enable` makes).

The unit templates are package data (policyc/units/*.service.in): `@POLICYC@` becomes the
absolute path of the policyc executable the units run, `@EXEC_DIR@` its directory (a mount
the unit waits for), `@VERSION@` policyc's version. Every unit written starts with MARKER;
uninstall removes only files that do.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from . import __version__

SOURCES = "/etc/policyc/policies.d"
ETC = "/etc/policyc"
BUILD = "/var/lib/policyc"
LOGS = "/var/log/policyc"
UNIT_DIR = "/etc/systemd/system"
UNITS = ("policyc.service", "policyc-audit.service")
MARKER = "# Installed by `policyc install`"
SOURCE_SUFFIXES = (".policy", ".policy.test")


class InstallError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class Layout:
    """The host's paths, under `root` ("/" for this host)."""

    root: Path

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def sources(self) -> Path:
        return self.at(SOURCES)

    @property
    def build(self) -> Path:
        return self.at(BUILD)

    @property
    def unit_dir(self) -> Path:
        return self.at(UNIT_DIR)

    def unit(self, name: str) -> Path:
        return self.unit_dir / name

    @property
    def live(self) -> bool:
        """The running system itself (root /), not an image."""
        return self.root.resolve() == Path("/")


# ---- the units --------------------------------------------------------------------------------

def unit_template(name: str) -> str:
    return (files(__package__) / "units" / f"{name}.in").read_text()


def default_exec_path() -> str:
    """The policyc executable the units should run: the one running now when it was started
    as `policyc` (its absolute path, symlinks kept), else `policyc` on PATH, else
    /usr/bin/policyc."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "policyc" and os.path.isfile(argv0) and os.access(argv0, os.X_OK):
        return os.path.abspath(argv0)
    found = shutil.which("policyc")
    return os.path.abspath(found) if found else "/usr/bin/policyc"


def render_unit(name: str, exec_path: str) -> str:
    if not os.path.isabs(exec_path) or any(c.isspace() for c in exec_path) or "%" in exec_path:
        raise InstallError(f"--exec-path `{exec_path}` must be an absolute path without spaces or `%`")
    text = unit_template(name)
    return (text.replace("@POLICYC@", exec_path).replace("@EXEC_DIR@", os.path.dirname(exec_path) or "/")
            .replace("@VERSION@", __version__))


def wanted_by(unit_text: str) -> list[str]:
    """The targets of the unit's `[Install] WantedBy=` (what enabling links it into)."""
    out: list[str] = []
    section = None
    for line in unit_text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
        elif section == "Install" and s.startswith("WantedBy="):
            out.extend(s.removeprefix("WantedBy=").split())
    return out


def write_units(layout: Layout, exec_path: str) -> list[Path]:
    layout.unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in UNITS:
        text = render_unit(name, exec_path)
        path = layout.unit(name)
        _write_atomically(path, text, 0o644)
        written.append(path)
    return written


def enable_links(layout: Layout) -> list[tuple[Path, str]]:
    """(link, target) per unit and WantedBy target: UNIT_DIR/TARGET.wants/UNIT pointing at
    the unit's absolute path on the host (inside DIR it means DIR's own file)."""
    out = []
    for name in UNITS:
        for target in wanted_by(render_unit(name, "/usr/bin/policyc")):
            out.append((layout.unit_dir / f"{target}.wants" / name, f"{UNIT_DIR}/{name}"))
    return out


def enable(layout: Layout) -> list[Path]:
    made = []
    for link, target in enable_links(layout):
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.is_symlink() and os.readlink(link) == target:
                made.append(link)
                continue
            link.unlink()
        link.symlink_to(target)
        made.append(link)
    return made


def _write_atomically(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ---- the sources ------------------------------------------------------------------------------

@dataclass
class Copied:
    """Files copied into policies.d, with what they replaced (None: new) for a rollback."""

    files: list[tuple[Path, bytes | None]]

    def rollback(self) -> None:
        for dest, old in reversed(self.files):
            try:
                if old is None:
                    dest.unlink()
                else:
                    dest.write_bytes(old)
            except OSError:
                pass


def source_files(path: Path) -> list[tuple[Path, Path]]:
    """(file, its path relative to what is copied) for a file or a directory of policies:
    every .policy and .policy.test file in it, at any depth (included files and tests too)."""
    if path.is_dir():
        return [(f, f.relative_to(path)) for f in sorted(path.rglob("*"))
                if f.is_file() and f.name.endswith(SOURCE_SUFFIXES)]
    if path.is_file():
        return [(path, Path(path.name))]
    raise InstallError(f"`{path}` does not exist")


def copy_sources(paths: list[str], layout: Layout) -> Copied:
    """Copy policy files and directories into policies.d (a directory's contents, keeping
    their relative paths); a file of the same name is replaced."""
    plan = []
    for p in paths:
        found = source_files(Path(p))
        if not found and Path(p).is_dir():
            raise InstallError(f"no `.policy` files under `{p}`")
        plan.extend(found)
    copied = Copied([])
    try:
        layout.sources.mkdir(parents=True, exist_ok=True)
        for src, rel in plan:
            dest = layout.sources / rel
            if dest.resolve() == src.resolve():
                continue   # already there (installing policies.d itself)
            dest.parent.mkdir(parents=True, exist_ok=True)
            old = dest.read_bytes() if dest.is_file() else None
            copied.files.append((dest, old))
            shutil.copyfile(src, dest)
            os.chmod(dest, 0o644)
    except OSError as e:
        copied.rollback()
        raise InstallError(f"copying into `{layout.sources}` failed: {e.strerror or e} ({e.filename})",
                           hint="run as root (or give --root DIR, a tree you may write)")
    return copied


def has_sources(layout: Layout) -> bool:
    return layout.sources.is_dir() and any(f.is_file() for f in layout.sources.rglob("*.policy"))


# ---- uninstall --------------------------------------------------------------------------------

def ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def remove_units(layout: Layout) -> tuple[list[Path], list[Path]]:
    """Remove the enable links that point at our units (in any *.wants or *.requires
    directory) and the unit files that carry MARKER; (removed, left alone)."""
    removed, left = [], []
    if layout.unit_dir.is_dir():
        for d in sorted(layout.unit_dir.iterdir()):
            if not (d.is_dir() and d.name.endswith((".wants", ".requires"))):
                continue
            for name in UNITS:
                link = d / name
                if link.is_symlink():
                    link.unlink()
                    removed.append(link)
            try:
                d.rmdir()   # only when now empty, as systemctl disable leaves it
            except OSError:
                pass
    for name in UNITS:
        path = layout.unit(name)
        if not path.exists():
            continue
        if ours(path):
            path.unlink()
            removed.append(path)
        else:
            left.append(path)
    return removed, left


# ---- the man pages and shell completions ---------------------------------------------------------

# Package data (policyc/share, written by scripts/gen_docs.py --package) -> where Debian's man,
# bash-completion, zsh (its vendor-completions is on $fpath) and fish look for them.
DOCS = {
    "man/man1/policyc.1": "/usr/share/man/man1/policyc.1",
    "man/man5/policyc.policy.5": "/usr/share/man/man5/policyc.policy.5",
    "completion/policyc.bash": "/usr/share/bash-completion/completions/policyc",
    "completion/_policyc": "/usr/share/zsh/vendor-completions/_policyc",
    "completion/policyc.fish": "/usr/share/fish/vendor_completions.d/policyc.fish",
}


def shipped_doc(name: str) -> str:
    """The text of one of DOCS' files as the package ships it."""
    return (files(__package__) / "share" / name).read_text()


def install_docs(layout: Layout) -> list[Path]:
    """Write the man pages and the bash/zsh/fish completion scripts under the layout's root
    (an image: `Layout(Path(DIR))`), each 0644; a file already there is replaced. Not part of
    `install` itself: for a caller that wants them (a `--docs` option, an image build)."""
    written = []
    for name, dest in DOCS.items():
        path = layout.at(dest)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, shipped_doc(name), 0o644)
        written.append(path)
    return written


def purge(layout: Layout) -> list[Path]:
    """Remove /etc/policyc (the sources) and /var/lib/policyc (the build output)."""
    gone = []
    for d in (layout.at(ETC), layout.build):
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
            gone.append(d)
    return gone
