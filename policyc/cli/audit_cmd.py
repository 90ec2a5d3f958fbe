"""`policyc audit [--follow] [--output FILE] [--format json|text|ecs] [--schema 1|2]`: the events
of every loaded policy, one record per line (docs/audit-log.md). SIGINT/SIGTERM: read what is left, flush,
exit 0. Under systemd the records also go to the journal with structured fields."""

from __future__ import annotations

import signal
import sys
from typing import Optional, TextIO

import typer

from .common import EXIT_BAD_INPUT, EXIT_OK, guarded

FORMATS = ("json", "text", "ecs")
SCHEMAS = (1, 2)


def run_audit(follow: bool, output: str | None, fmt: str, journal: bool | None, max_bytes: int, keep: int,
              out: TextIO, err: TextIO, schema: int = 2) -> int:
    from ..audit.reader import AuditError, AuditReader
    from ..audit.sinks import Fanout, JournalSink, RotatingFileSink, StreamSink, under_systemd

    if fmt not in FORMATS:
        err.write(f"policyc: error: unknown format `{fmt}` (use: {', '.join(FORMATS)})\n")
        return EXIT_BAD_INPUT
    if schema not in SCHEMAS:
        err.write(f"policyc: error: unknown audit schema {schema} (use: 1 or 2)\n")
        return EXIT_BAD_INPUT
    if schema == 1 and fmt != "json":
        err.write("policyc: error: `--schema 1` is a JSON layout: use it with `--format json`\n")
        return EXIT_BAD_INPUT
    if max_bytes < 0 or keep < 0:
        err.write("policyc: error: `--max-bytes` and `--keep` must not be negative\n")
        return EXIT_BAD_INPUT
    sinks = []
    try:
        sinks.append(RotatingFileSink(output, fmt, max_bytes, keep, schema) if output
                     else StreamSink(out, fmt, schema))
    except OSError as e:
        err.write(f"policyc: error: cannot write `{output}`: {e.strerror or e}\n")
        return EXIT_BAD_INPUT
    if journal or (journal is None and under_systemd()):
        try:
            sinks.append(JournalSink())
        except ImportError as e:
            if journal:   # asked for: an error
                err.write(f"policyc: error: journal output needs the `cysystemd` package: {e}\n")
                return EXIT_BAD_INPUT
            # only the systemd default: the log still goes where it was asked to, said once
            err.write(f"policyc: warning: not writing to the journal: {e}\n")
    sink = Fanout(sinks)

    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    reader = AuditReader(sink.write, warn=lambda m: err.write(f"policyc: warning: {m}\n"))
    try:
        reader.run(follow, stop=lambda: bool(stopping))
    except AuditError as e:
        err.write(f"policyc: error: {e}\n")
        return EXIT_BAD_INPUT
    finally:
        reader.close()
        sink.close()
        for s, h in old.items():
            signal.signal(s, h)
    if follow or reader.dropped or reader.suppressed:
        err.write(f"policyc: audit: {reader.events} events, {reader.dropped} dropped, "
                  f"{reader.suppressed} suppressed by rule limits (reported in `dropped` and `suppressed` "
                  f"records)\n")
    return EXIT_OK


def command(
    follow: bool = typer.Option(False, "--follow", "-f", help="keep reading; pick up policies loaded later"),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="append to FILE (size-rotated) instead of stdout"),
    fmt: str = typer.Option("json", "--format", metavar="json|text|ecs",
                            help="one JSON object (policyc's schema), one text line, or one ECS document per record"),
    schema: int = typer.Option(2, "--schema", metavar="1|2",
                               help="the JSON layout: 2 (the kernel's identity, process.*) or 1 (for existing pipelines)"),
    journal: Optional[bool] = typer.Option(None, "--journal/--no-journal",
                                           help="also log to the systemd journal (default: when under systemd)"),
    max_bytes: int = typer.Option(100 * 1024 * 1024, "--max-bytes", metavar="N",
                                  help="rotate --output past N bytes (0: never)"),
    keep: int = typer.Option(5, "--keep", metavar="N", help="rotated files to keep"),
) -> None:
    """Read the deny and audit events of every loaded policy (docs/audit-log.md)."""
    guarded(run_audit, follow, output, fmt, journal, max_bytes, keep, out=sys.stdout, err=sys.stderr,
            schema=schema)
