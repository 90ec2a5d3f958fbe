"""`policyc suggest FILE... [--policy NAME] [--max-widen N] [--widen DIR]... [--interactive]`:
`allow` rules, as a `.policy` ruleset, that would have allowed what a policy's default denied
(or would have denied, in audit mode) in the logs. Malformed input or options: an error naming
what is wrong, exit 2. docs/learning.md is the rollout guide."""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

import typer

from ..audit.suggest import MAX_WIDEN
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded

ANSWERS = {"a": "a", "accept": "a", "n": "n", "narrow": "n", "s": "s", "skip": "s"}


def asker(stdin: TextIO, err: TextIO):
    """`--interactive`: each proposed rule on `err`, its answer read from `stdin` (`a`
    accept, `n` narrow a glob to the paths seen, `s` skip); None at the end of the input."""

    def ask(item, n: int, total: int) -> str | None:
        err.write(f"\n[{n}/{total}]\n")
        for line in item.comments:
            err.write(f"    {line}\n")
        err.write(f"    {item.rule}\n")
        choices = "(a)ccept, (n)arrow to the paths seen, (s)kip" if item.narrow else "(a)ccept, (s)kip"
        while True:
            err.write(f"{choices}? ")
            err.flush()
            line = stdin.readline()
            if not line:
                err.write("\n")
                return None
            answer = ANSWERS.get(line.strip().lower())
            if answer == "n" and not item.narrow:
                err.write("nothing to narrow: this rule names only what was seen\n")
            elif answer is not None:
                return answer
            else:
                err.write(f"answer a, n or s (not `{line.strip()}`)\n")

    return ask


def run_suggest(paths: list[str], policy: str | None, out: TextIO, err: TextIO, *,
                max_widen: int | None = None, widen: list[str] | None = None, interactive: bool = False,
                stdin: TextIO | None = None, lister=None) -> int:
    from ..audit.logfile import LogError, read_records
    from ..audit.suggest import SuggestError, options, propose

    try:
        opts = options(MAX_WIDEN if max_widen is None else max_widen, widen or (), lister)
    except SuggestError as e:
        err.write(f"policyc: error: {e}\n")
        return EXIT_BAD_INPUT
    if not paths:
        err.write("policyc: error: name at least one audit log (`policyc audit --output FILE` writes one)\n")
        return EXIT_BAD_INPUT
    if interactive and "-" in paths:
        err.write("policyc: error: --interactive reads its answers from stdin: give the log as a file, not `-`\n")
        return EXIT_BAD_INPUT
    ask = asker(stdin if stdin is not None else sys.stdin, err) if interactive else None
    try:
        result = propose(read_records(paths), policy, opts, ask)
    except (LogError, SuggestError) as e:
        err.write(f"policyc: error: {e}\n")
        return EXIT_BAD_INPUT
    out.write(result.text)
    if result.unanswered:
        err.write(f"policyc: the answers ended: the {result.unanswered} rules not reviewed are left out\n")
    if result.warnings:
        err.write(f"policyc: warning: {result.warnings} suggested rules allow a host essential or an address a "
                  "deny rule names: read their `# warning:` comments before using them\n")
    return EXIT_OK


def command(
    paths: Optional[List[str]] = typer.Argument(None, metavar="FILE...", help="audit logs (JSON lines)"),
    policy: Optional[str] = typer.Option(None, "--policy", metavar="NAME", help="only this policy's events"),
    max_widen: int = typer.Option(
        MAX_WIDEN, "--max-widen", metavar="N",
        help="collapse siblings into a glob only if, where the directory can be listed, it covers at most N "
             "entries no event named"),
    widen: Optional[List[str]] = typer.Option(
        None, "--widen", metavar="DIR",
        help="allow the files seen under DIR as DIR/** (a tree of served files; repeatable; never over a host "
             "essential)"),
    interactive: bool = typer.Option(
        False, "--interactive", "-i",
        help="review each rule: (a)ccept, (n)arrow a glob to the paths seen, (s)kip; answers on stdin"),
) -> None:
    """Propose allow rules from audit-mode and deny events of audit logs."""
    guarded(run_suggest, list(paths or []), policy, out=sys.stdout, err=sys.stderr, max_widen=max_widen,
            widen=list(widen or []), interactive=interactive)
