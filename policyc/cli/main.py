"""`policyc`: the list of commands. Each lives in its own module (`run_<command>` plus the
typer wrapper); add a command by adding a line here."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from .. import __version__
from . import build, check, exec_cmd, explain, fmt_cmd, load, status, test_cmd, unload
from . import audit_cmd, report_cmd, suggest_cmd
from . import import_cmd
from .common import guarded

app = typer.Typer(
    name="policyc",
    help="A declarative policy compiler for Linux process security: .policy files to BPF LSM programs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)



def _print_version(value: bool) -> None:
    if value:
        print(f"policyc {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="print `policyc VERSION` and exit"),
) -> None:
    pass


app.command("check")(check.command)
app.command("fmt")(fmt_cmd.command)
app.command("explain")(explain.command)
app.command("test")(test_cmd.command)
app.command("build")(build.command)
app.command("load")(load.command)
app.command("unload")(unload.command)
app.command("status")(status.command)
app.command("exec", context_settings={"allow_interspersed_args": False})(exec_cmd.command)
app.command("audit")(audit_cmd.command)
app.command("report")(report_cmd.command)
app.command("suggest")(suggest_cmd.command)
app.command("import-apparmor")(import_cmd.command)
from . import doctor_cmd, install_cmd  # noqa: E402 - host operations (issue #15)
app.command("install")(install_cmd.install_command)
app.command("uninstall")(install_cmd.uninstall_command)
app.command("doctor")(doctor_cmd.command)


@app.command("vm", context_settings={"allow_interspersed_args": False})
def vm(
    kernel: str = typer.Option("6.1", "--kernel", metavar="VERSION", help="the kernel to boot (6.1, 6.12, 7.2, newest, or DIR/boot/vmlinuz-V)"),
    argv: Optional[List[str]] = typer.Argument(None, metavar="-- CMD...", help="the command to run in the VM"),
) -> None:
    """Boot a kernel in a VM and run a command in it (policyc/cli/vm_cmd.py)."""

    def run(kernel, argv, out, err) -> int:
        from .vm_cmd import run_vm   # imported here: it needs the VM tooling

        return run_vm(kernel, list(argv or []), out, err)

    guarded(run, kernel, argv, out=sys.stdout, err=sys.stderr)


def main() -> None:
    app(prog_name="policyc")


if __name__ == "__main__":
    main()
