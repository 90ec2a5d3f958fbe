"""`policyc report FILE... [--since T] [--format text|json]`: an audit log summed up (top rules,
subjects, objects, per hour) as terminal tables or one JSON document. Malformed input: an
error naming the file and line, exit 2.

The JSON document is policyc/audit/report.py's summary (`version` REPORT_VERSION) with every
rule place given twice: `rule`, the `file:line:col` string, and beside it `location`, the
object `{"file", "line", "col"}` (null when the rule is unknown), in `top_rules`,
`dropped_by_rule` and `suppressed_by_rule` alike."""

from __future__ import annotations

import json
import sys
from typing import List, Optional, TextIO

import typer

from .common import EXIT_BAD_INPUT, EXIT_OK, guarded

FORMATS = ("text", "json")


def run_report(paths: list[str], since: str | None, fmt: str, top: int, out: TextIO, err: TextIO) -> int:
    from ..audit.logfile import LogError, parse_since, read_records
    from ..audit.report import render_tables, summarize

    if fmt not in FORMATS:
        err.write(f"policyc: error: unknown format `{fmt}` (use: {', '.join(FORMATS)})\n")
        return EXIT_BAD_INPUT
    if not paths:
        err.write("policyc: error: name at least one audit log (`policyc audit --output FILE` writes one)\n")
        return EXIT_BAD_INPUT
    try:
        since_ns = parse_since(since) if since else None
    except ValueError as e:
        err.write(f"policyc: error: --since: {e}\n")
        return EXIT_BAD_INPUT
    try:
        records = read_records(paths)
    except LogError as e:
        err.write(f"policyc: error: {e}\n")
        return EXIT_BAD_INPUT
    summary = summarize(records, since_ns, top=top)
    if fmt == "json":
        out.write(json.dumps(with_locations(summary), indent=2, sort_keys=True) + "\n")
    else:
        from rich.console import Console

        render_tables(summary, Console(file=out, width=None if out.isatty() else 160, highlight=False))
    return EXIT_OK


LOCATED = ("top_rules", "dropped_by_rule", "suppressed_by_rule")   # lists whose entries name a `rule`


def with_locations(summary: dict) -> dict:
    """`summary` with a `location` object beside each `rule` string that has none yet."""
    from ..audit.report import location

    for key in LOCATED:
        for entry in summary.get(key, ()):
            if "location" not in entry:
                entry["location"] = location(entry.get("rule"))
    return summary


def command(
    paths: Optional[List[str]] = typer.Argument(None, metavar="FILE...", help="audit logs (JSON lines; .gz too; - for stdin)"),
    since: Optional[str] = typer.Option(None, "--since", metavar="T", help="only events from T on: 30m, 2h, 7d, an ISO time, epoch seconds"),
    fmt: str = typer.Option("text", "--format", metavar="text|json", help="tables or one JSON document"),
    top: int = typer.Option(10, "--top", metavar="N", help="rows per top list"),
) -> None:
    """Summarize audit logs: top rules, subjects, objects, events per hour."""
    guarded(run_report, list(paths or []), since, fmt, top, out=sys.stdout, err=sys.stderr)
