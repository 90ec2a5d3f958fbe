"""`policyc install [PATH...] [--root DIR]` and `policyc uninstall [--root DIR] [--purge]`
(policyc/install.py has the layout and the units)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Optional, TextIO

import typer

from .. import install as I
from .build import compile_program, prune_outputs
from .common import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, guarded

Systemctl = Callable[[list[str]], tuple[int, str]]


def systemctl(args: list[str]) -> tuple[int, str]:
    try:
        p = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return p.returncode, (p.stdout + p.stderr).strip()


def systemd_running() -> bool:
    """systemd is this system's init (what sd_booted() asks)."""
    return os.path.isdir("/run/systemd/system")


def build_sources(layout: I.Layout, kernel: str | None, out: TextIO, err: TextIO) -> int:
    """Build policies.d into the build directory: into a staging directory inside it first,
    then each object and maps file and then its manifest renamed into place, then the outputs of policies
    policies.d no longer has removed. Built from DIR with the relative path
    etc/policyc/policies.d, so rule locations read the same whether built on the host or into
    an image (and the manifests are byte-identical: `load --sync` sees no change)."""
    layout.build.mkdir(parents=True, exist_ok=True)
    if not I.has_sources(layout):
        for p in prune_outputs(layout.build, set()):
            out.write(f"removed {p} (policy no longer in {I.SOURCES})\n")
        out.write(f"no policies in {layout.sources}: nothing built\n")
        return EXIT_OK
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=layout.build))
    try:
        cwd = os.getcwd()
        os.chdir(layout.root)
        try:
            code, results = compile_program([I.SOURCES.lstrip("/")], staging, None, False, out, err,
                                            quiet=True, kernel=kernel)
        finally:
            os.chdir(cwd)
        if code:
            return code
        for r in results:
            # the manifest last: it names the object and the maps file by their sha256s
            for f in (r.object_path, r.maps_path):
                if f is not None:
                    os.replace(f, layout.build / f.name)
            os.replace(r.manifest_path, layout.build / r.manifest_path.name)
            out.write(f"built {r.policy} into {layout.build}\n")
        for p in prune_outputs(layout.build, {r.policy for r in results}):
            out.write(f"removed {p} (policy no longer in {I.SOURCES})\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EXIT_OK


def _os_error(e: OSError, err: TextIO) -> int:
    err.write(f"policyc: error: cannot write `{e.filename}`: {e.strerror or e}\n")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        err.write("  = help: run as root (or give --root DIR, a tree you may write)\n")
    return EXIT_BAD_INPUT


def run_install(paths: list[str], root: str | None, exec_path: str | None, kernel: str | None, now: bool,
                out: TextIO, err: TextIO, run_systemctl: Systemctl = systemctl,
                systemd: Callable[[], bool] = systemd_running) -> int:
    try:
        return _install(paths, root, exec_path, kernel, now, out, err, run_systemctl, systemd)
    except OSError as e:
        return _os_error(e, err)


def _install(paths: list[str], root: str | None, exec_path: str | None, kernel: str | None, now: bool,
             out: TextIO, err: TextIO, run_systemctl: Systemctl, systemd: Callable[[], bool]) -> int:
    layout = I.Layout(Path(root or "/"))
    if root is not None and not Path(root).is_dir():
        err.write(f"policyc: error: --root `{root}` is not a directory\n")
        return EXIT_BAD_INPUT
    if now and not layout.live:
        err.write("policyc: error: --now starts the units on this system: it does not go with --root\n")
        return EXIT_BAD_INPUT
    exec_path = exec_path or I.default_exec_path()
    try:
        for name in I.UNITS:
            path = layout.unit(name)
            if path.exists() and not I.ours(path):
                raise I.InstallError(f"`{path}` exists and was not written by `policyc install`",
                                     hint="move it away (policyc install writes its own)")
        for name in I.UNITS:
            I.render_unit(name, exec_path)   # a bad --exec-path: said before anything is written
        copied = I.copy_sources(paths, layout)
    except I.InstallError as e:
        err.write(f"policyc: error: {e.message}\n" + (f"  = help: {e.hint}\n" if e.hint else ""))
        return EXIT_BAD_INPUT
    for dest, _ in copied.files:
        out.write(f"copied {dest}\n")
    code = build_sources(layout, kernel, out, err)
    if code:
        copied.rollback()
        err.write(f"policyc: error: install stopped: the build failed; {layout.sources} is as it was, "
                  "the build output, the units and the loaded policies are unchanged\n")
        return code
    for path in I.write_units(layout, exec_path):
        out.write(f"wrote {path}\n")
    for link in I.enable(layout):
        out.write(f"enabled {link} -> {os.readlink(link)}\n")
    target = layout.at(exec_path)
    if not (target.is_file() and os.access(target, os.X_OK)):
        err.write(f"policyc: warning: `{target}` is not an executable: the units run `{exec_path}` "
                  "(--exec-path names another)\n")
    if not layout.live:
        out.write(f"installed into {layout.root}: policyc.service loads {I.BUILD} at its boot\n")
        return EXIT_OK
    try:
        import cysystemd  # noqa: F401
    except ImportError:
        err.write("policyc: note: policyc-audit.service logs to /var/log/policyc only: structured journal "
                  "records need `pip install 'policyc[journald]'`\n")
    if not systemd():
        out.write("systemd is not running here: the units are enabled for the next boot; load now with "
                  f"`policyc load --sync {I.BUILD}`\n")
        return EXIT_OK
    steps = [["daemon-reload"]]
    if now:
        steps += [["reload-or-restart", "policyc.service"], ["restart", "policyc-audit.service"]]
    for args in steps:
        rc, text = run_systemctl(args)
        if rc != 0:
            err.write(f"policyc: error: `systemctl {' '.join(args)}` failed ({rc})"
                      + (f": {text}" if text else "") + "\n  = help: `journalctl -u policyc -u policyc-audit`\n")
            return EXIT_FAIL
    if now:
        out.write("started: policyc.service (the kernel now holds what was built) and policyc-audit.service\n")
    else:
        out.write("to load now: `systemctl start policyc policyc-audit` (or reboot); after changing policies: "
                  "`policyc install && systemctl reload policyc`\n")
    return EXIT_OK


def run_uninstall(root: str | None, purge: bool, out: TextIO, err: TextIO,
                  run_systemctl: Systemctl = systemctl, systemd: Callable[[], bool] = systemd_running) -> int:
    try:
        return _uninstall(root, purge, out, err, run_systemctl, systemd)
    except OSError as e:
        return _os_error(e, err)


def _uninstall(root: str | None, purge: bool, out: TextIO, err: TextIO, run_systemctl: Systemctl,
               systemd: Callable[[], bool]) -> int:
    layout = I.Layout(Path(root or "/"))
    if root is not None and not Path(root).is_dir():
        err.write(f"policyc: error: --root `{root}` is not a directory\n")
        return EXIT_BAD_INPUT
    live = layout.live and systemd()
    if live:
        # stopping policyc.service unloads nothing (it has no ExecStop); the audit reader ends
        run_systemctl(["stop", "policyc-audit.service", "policyc.service"])
    removed, left = I.remove_units(layout)
    for p in removed:
        out.write(f"removed {p}\n")
    for p in left:
        err.write(f"policyc: warning: kept `{p}`: it was not written by `policyc install`\n")
    if purge:
        for d in I.purge(layout):
            out.write(f"removed {d}\n")
    else:
        out.write(f"kept {layout.at(I.ETC)} (the sources) and {layout.build} (the build output): "
                  "`--purge` removes them\n")
    out.write(f"kept {layout.at(I.LOGS)} (the audit log); loaded policies stay enforcing until "
              "`policyc unload --all` (nothing loads them at the next boot)\n")
    if live:
        rc, text = run_systemctl(["daemon-reload"])
        if rc != 0:
            err.write(f"policyc: error: `systemctl daemon-reload` failed ({rc}): {text}\n")
            return EXIT_FAIL
    return EXIT_OK


def install_command(
    paths: Optional[List[str]] = typer.Argument(None, metavar="[PATH...]",
                                                help="policy files or directories to copy into "
                                                     "/etc/policyc/policies.d first"),
    root: Optional[str] = typer.Option(None, "--root", metavar="DIR",
                                       help="install into the tree at DIR (an image): every path under DIR, "
                                            "no running systemd needed"),
    exec_path: Optional[str] = typer.Option(None, "--exec-path", metavar="PATH",
                                            help="the policyc executable the units run (default: this one)"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="6.1|6.12|PATH",
                                         help="refuse rules this kernel cannot enforce"),
    now: bool = typer.Option(False, "--now", help="also (re)start the units: load what was built now"),
) -> None:
    """Install on a host: sources in /etc/policyc/policies.d, built into /var/lib/policyc, units enabled."""
    guarded(run_install, list(paths or []), root, exec_path, kernel, now, out=sys.stdout, err=sys.stderr)


def uninstall_command(
    root: Optional[str] = typer.Option(None, "--root", metavar="DIR", help="uninstall from the tree at DIR"),
    purge: bool = typer.Option(False, "--purge", help="also remove /etc/policyc and /var/lib/policyc"),
) -> None:
    """Remove the units and their enable links (sources kept unless --purge; loaded policies stay)."""
    guarded(run_uninstall, root, purge, out=sys.stdout, err=sys.stderr)
