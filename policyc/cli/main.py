"""`policyc`: the list of commands. Each lives in its own module (`run_<command>` plus the
typer wrapper); add a command by adding a line to COMMANDS.

The command modules are imported lazily: only the one that runs is imported (its imports
are what a command costs at start-up: `build` brings jinja2 and the code generator, `exec`
libbpf through cffi). `policyc --help` lists the commands from COMMANDS' one-line help
without importing any (tests/unit/test_startup_lazy.py holds that help to the docstrings).

Exit codes (README.md, "Exit codes"): 0 ok, 1 a test failed or a file would change, 2 the
input has errors, 3 a policyc bug, 64 a usage error (an unknown option, a missing argument:
EX_USAGE), 130 interrupted. Click exits 2 on a usage error; `main` makes it 64, so 2 always
means "the policy has errors".
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import List, Optional

import typer
from typer.core import TyperGroup

from .. import __version__
from .common import EXIT_USAGE, guarded

# name -> (module in policyc.cli, function, one-line help, context settings)
COMMANDS: dict[str, tuple[str, str, str, dict]] = {
    "check": ("check", "command",
              "Check policies: syntax, names, includes, and the checks in docs/diagnostics.md.", {}),
    "fmt": ("fmt_cmd", "command", "Format policies in the canonical layout (docs/language.md, Formatting).", {}),
    "explain": ("explain", "command",
                "Explain the decision for one event: which policy and rule decide, and where they are.", {}),
    "test": ("test_cmd", "command", "Run the policies' test blocks against the reference evaluator.", {}),
    "build": ("build", "command",
              "Compile policies to BPF LSM objects and manifests (no kernel, no privileges needed).", {}),
    "inspect": ("inspect_cmd", "command", "Show a build's manifest as indented JSON, its maps' bytes as hex (`data`).",
                {}),
    "load": ("load", "command", "Load policies into the kernel (BPF LSM) and pin them under /sys/fs/bpf/policyc.", {}),
    "unload": ("unload", "command", "Unload policies: their programs detach and their pins go.", {}),
    "status": ("status", "command",
               "Show loaded policies: load time, object hash, per-hook counters since the first load.", {}),
    "exec": ("exec_cmd", "command",
             "Run one command under a policy, as its subject (needs BPF LSM: use `policyc vm` here).",
             {"allow_interspersed_args": False}),
    "audit": ("audit_cmd", "command", "Read the deny and audit events of every loaded policy (docs/audit-log.md).", {}),
    "report": ("report_cmd", "command", "Summarize audit logs: top rules, subjects, objects, events per hour.", {}),
    "suggest": ("suggest_cmd", "command", "Propose allow rules from audit-mode and deny events of audit logs.", {}),
    "import-apparmor": ("import_cmd", "command",
                        "Convert AppArmor profiles into one .policy file (what cannot be said is listed).", {}),
    "install": ("install_cmd", "install_command",
                "Install on a host: sources in /etc/policyc/policies.d, built into /var/lib/policyc, units enabled.",
                {}),
    "uninstall": ("install_cmd", "uninstall_command",
                  "Remove the units and their enable links (sources kept unless --purge; loaded policies stay).", {}),
    "doctor": ("doctor_cmd", "command",
               "Can this host enforce? Each check ok or its fix; exit 0 when it can, 1 otherwise.", {}),
    "lsp": ("main", "lsp_command", "Run the language server (LSP) over stdio, for editors.", {}),
    "completion": ("main", "completion_command",
                   "Print the shell completion script for bash, zsh or fish.", {}),
}


class PlainCommand(typer.core.TyperCommand):
    """A command whose plain parameters are converted without pydantic (plain_coercion)."""

    def get_params(self, ctx):
        return plain_coercion(super().get_params(ctx))


class _Listed(typer.core.TyperCommand):
    """A command as `policyc --help` lists it: its name and help, nothing imported."""


class LazyGroup(TyperGroup):
    """The commands of COMMANDS built when first asked for (their module imported then)."""

    _listing = False

    def list_commands(self, ctx) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        if self._listing:
            return _Listed(name=cmd_name, help=COMMANDS[cmd_name][2], callback=None)
        cmd = load_command(cmd_name)
        self.commands[cmd_name] = cmd
        return cmd

    def get_params(self, ctx):
        return plain_coercion(super().get_params(ctx))

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def shell_complete(self, ctx, incomplete: str):
        """Completing a command's name lists COMMANDS; nothing is imported for it."""
        self._listing = True
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._listing = False


def load_command(name: str):
    """The click command of COMMANDS[name], its module imported now."""
    module, attr, _, settings = COMMANDS[name]
    fn = getattr(importlib.import_module(f"policyc.cli.{module}"), attr)
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command(name, cls=PlainCommand, context_settings=settings or None)(fn)
    return typer.main.get_command(one)


def plain_coercion(params: list) -> list:
    """`params` (a command's) with their `str`, `bool`, `int` and `list[str]` values converted
    without pydantic. typer (0.29) converts every value through a pydantic TypeAdapter, and
    importing pydantic and building the adapters was a fifth of `policyc check`'s start-up
    (docs/benchmarks.md, Start-up). PlainParam passes a value that already has its type
    (every value from the command line is a str) as typer's adapter would, and hands anything
    else (bytes, `--port 1_000`, a bounded int) to typer's own conversion, so results and
    error messages stay typer's (tests/unit/test_startup_lazy.py compares the two). With a
    typer that has no such layer this does nothing."""
    if PlainParam is None:
        return params
    try:
        return _plain_coercion(params)
    except Exception:   # typer's private layer changed shape: its own conversion, unchanged
        return params


def _plain_coercion(params: list) -> list:
    for p in params:
        desc = getattr(p, "type_descriptor", None)
        if (desc is None or getattr(p, "_runtime_param", False) is not None or desc.annotation not in _PLAIN
                or desc.file_annotation is not None or desc.parameter_info.parser is not None
                or desc.is_choice or desc.is_path or desc.is_ranged):
            continue
        p._runtime_param = PlainParam(parameter_info=desc.parameter_info, annotation=desc.annotation)
    return params


_PLAIN = (str, bool, int, List[str], list[str])

try:
    from typer._coercion import RuntimeParam as _RuntimeParam
    from typer._coercion import build_runtime_param as _build_runtime_param
    from typer._coercion import resolve_type_descriptor as _resolve_type_descriptor
except ImportError:   # an older typer: its conversion needs no pydantic
    PlainParam = None
else:
    class PlainParam(_RuntimeParam):
        """typer's conversion of one plain parameter, without pydantic for plain values."""

        def _coerce_value(self, value, param, ctx):
            ann = self.annotation
            if ann is str and isinstance(value, str):
                return value
            if ann is bool and isinstance(value, bool):
                return value
            if ann is int and type(value) is int:
                return value
            if ann is int and isinstance(value, str) and value.isascii() and value.isdigit():
                return int(value)
            if ann not in (str, bool, int) and isinstance(value, (list, tuple)) \
                    and all(isinstance(v, str) for v in value):
                return list(value)
            theirs = _build_runtime_param(_resolve_type_descriptor(self.annotation, self.parameter_info))
            return theirs._coerce_value(value, param=param, ctx=ctx)


app = typer.Typer(
    name="policyc",
    cls=LazyGroup,
    help="A declarative policy compiler for Linux process security: .policy files to BPF LSM programs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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


@app.command("vm", cls=PlainCommand, context_settings={"allow_interspersed_args": False})
def vm(
    kernel: str = typer.Option("6.1", "--kernel", metavar="VERSION", help="the kernel to boot (6.1, 6.12, 7.2, newest, or DIR/boot/vmlinuz-V)"),
    argv: Optional[List[str]] = typer.Argument(None, metavar="-- CMD...", help="the command to run in the VM"),
) -> None:
    """Boot a kernel in a VM and run a command in it (policyc/cli/vm_cmd.py)."""

    def run(kernel, argv, out, err) -> int:
        from .vm_cmd import run_vm   # imported here: it needs the VM tooling

        return run_vm(kernel, list(argv or []), out, err)

    guarded(run, kernel, argv, out=sys.stdout, err=sys.stderr)


def lsp_command(
    stdio: bool = typer.Option(True, "--stdio", help="talk LSP on standard input and output (the only transport)"),
) -> None:
    """Run the language server (LSP) over stdio, for editors."""

    def run(out, err) -> int:
        try:
            from ..lsp.server import serve
        except ImportError as e:
            err.write(f"policyc: error: `policyc lsp` needs the lsp extra: pip install 'policyc[lsp]' ({e})\n")
            return 2
        serve()
        return 0

    guarded(run, out=sys.stdout, err=sys.stderr)


def completion_command(
    shell: str = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish"),
) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    def run(out, err) -> int:
        text = completion_script(shell)
        if text is None:
            err.write(f"policyc: error: unknown shell `{shell}` (bash, zsh or fish)\n")
            return EXIT_USAGE
        out.write(text)
        return 0

    guarded(run, out=sys.stdout, err=sys.stderr)


COMPLETE_VAR = "_POLICYC_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str | None:
    """typer's completion script for `shell` (None for another shell): sourced, it asks
    `policyc` itself (with _POLICYC_COMPLETE set) for the words that may follow."""
    if shell not in SHELLS:
        return None
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="policyc", complete_var=COMPLETE_VAR, shell=shell) + "\n"


def _usage_errors_exit_64() -> None:
    """Click (vendored by typer) exits 2 on a usage error; policyc's 2 means "the input has
    errors", so the `policyc` command exits 64 (EX_USAGE) on one instead. And click says an
    error as `Error: ...`; the `policyc` command says it as every other error of policyc,
    `policyc: error: ...` (after click's usage lines). Set by the entry point, for the
    process it runs in: `app` itself (typer's CliRunner) keeps click's 2 and wording."""
    from typer._click import exceptions as _exc

    _exc.UsageError.exit_code = EXIT_USAGE
    for cls in (_exc.ClickException, _exc.UsageError):
        if "show" in vars(cls) and not getattr(cls.show, "policyc_prefixed", False):
            cls.show = _prefixed(cls.show)


def _prefixed(show):
    """click's `show` with its last `Error: ` line begun `policyc: error: ` instead."""
    def prefixed_show(self, file=None) -> None:
        import io

        from typer._click._compat import get_text_stderr

        buf = io.StringIO()
        show(self, buf)
        text = buf.getvalue()
        at = text.rfind("Error: ")
        if at == 0 or (at > 0 and text[at - 1] == "\n"):
            text = text[:at] + "policyc: error: " + text[at + len("Error: "):]
        (file or get_text_stderr()).write(text)

    prefixed_show.policyc_prefixed = True
    return prefixed_show


def main() -> None:
    _usage_errors_exit_64()
    if COMPLETE_VAR in os.environ:
        # a shell asks for completions: typer's completion classes answer it
        from typer._completion_classes import completion_init

        completion_init()
    app(prog_name="policyc", complete_var=COMPLETE_VAR)


if __name__ == "__main__":
    main()
