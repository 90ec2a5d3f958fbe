"""Pass 1, files and includes: command-line paths to parsed files, in program order.

Program order (docs/language.md) is command-line order, then source order, with an
`include` standing for the included file's statements at the place it is written (a file
is read once, at its first include). A policy file's tests (NAME.policy.test beside
NAME.policy) come right after the policy file, whichever of the two was named. This order
is the order of `Program.policies`: the evaluator's "first policy loaded", and the order
the policies are built and loaded into the kernel. `Program.files` lists the files in the
same order, so loading them again (as `policyc test --kernel` does in its VM) gives the
same program.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..diagnostics import Diagnostics, Note
from ..ir import syntax as S
from ..parse import parse_file
from ..span import Span, comment_start

MAX_INCLUDE_DEPTH = 32


def expand_paths(paths: list[str], diags: Diagnostics, suffixes: tuple[str, ...] = (".policy",)) -> list[str]:
    """Command-line PATHs: files (and `-`, standard input) as given; directories give their
    files ending in one of `suffixes` (`fmt` also takes `.policy.test`)."""
    out: list[str] = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).rglob("*") if f.is_file() and f.name.endswith(suffixes))
            if not found:
                diags.error("P006", None, f"no `.policy` files under `{p}`")
            out.extend(found)
        else:
            out.append(p)
    return out


class Sources:
    """Every file read, and the top-level statements other than includes in program order."""

    def __init__(self, diags: Diagnostics):
        self.diags = diags
        self.files: dict[str, S.File | None] = {}    # normalised path -> tree (None: failed)
        self.order: list[str] = []                    # files read, in program order
        self.items: list[tuple[object, str]] = []     # (Let | Policy | Ruleset | TestBlock, file)
        self.includes: dict[str, list[str]] = {}      # file -> the files its includes name
        self.skipped: list[tuple[S.Include, str]] = []  # `include?`s of absent files, their paths
        self._lines: dict[str, list[str]] = {}

    def load(self, path: str, stack: tuple[tuple[str, Span], ...] = ()) -> None:
        """Read `path` and, where they are written, the files it includes. `stack`: the
        includes that led here (file, span of its include), for cycles and depth."""
        key = os.path.normpath(path)
        if any(k == key for k, _ in stack):
            first = stack[-1][1]
            notes = [Note(sp, f"`{k}` is included from here") for k, sp in stack]
            self.diags.error("P005", first, f"include cycle: `{key}` includes itself", notes=notes)
            return
        if key in self.files:
            return
        if len(stack) > MAX_INCLUDE_DEPTH:
            self.diags.error("P005", stack[-1][1], f"includes nest deeper than {MAX_INCLUDE_DEPTH}")
            return
        if key.endswith(".policy.test"):
            main = key[: -len(".test")]
            if main not in self.files and os.path.isfile(main):
                self.load(main, stack)      # which reads this file right after itself
                if key in self.files:
                    return
        self.files[key] = None
        tree = parse_file(key, self.diags)
        self.files[key] = tree
        if tree is None:
            return
        self.order.append(key)
        targets = self.includes[key] = []
        for item in tree.items:
            if not isinstance(item, S.Include):
                self.items.append((item, key))
                continue
            target = include_target(key, item)
            if item.optional:
                if not self._optional_present(item, target):
                    self.skipped.append((item, target))
                    continue
            elif not os.path.exists(target):
                self.diags.error("P004", item.path.span, f"included file `{item.path.value}` not found",
                                 hints=(f"looked for `{target}`, relative to the including file",))
                continue
            if not os.path.isfile(target):
                # a directory, FIFO or device: read_source would refuse it without a place
                self.diags.error("P006", item.path.span, f"included `{item.path.value}` is not a policy file",
                                 hints=(f"`{target}` is not a regular file",))
                continue
            targets.append(target)
            self.load(target, stack + ((key, item.path.span),))
        test_file = key + ".test"
        if key.endswith(".policy") and os.path.isfile(test_file):
            self.load(test_file, stack)

    def _optional_present(self, item: S.Include, target: str) -> bool:
        """Whether an `include?` names something to read: False (skipped, no diagnostic) only
        when nothing is there. A name that is there but cannot be looked at, a symbolic link
        to nothing, and a missing name that is a glob are errors, as for `include`: an
        optional include skips an absent file, never one it cannot see."""
        try:
            os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            if any(c in item.path.value for c in _GLOB_CHARS):
                self.diags.error("P004", item.path.span, f"included file `{item.path.value}` not found",
                                 hints=("an include names one file: `*`, `?`, `{` and `[` are not globs "
                                        "there, and `include?` skips only a file that is absent",))
            return False
        except OSError as e:
            self.diags.error("P006", item.path.span, f"cannot read included `{item.path.value}`: {e.strerror or e}",
                             hints=(f"looked for `{target}`; `include?` skips only a file that is absent",))
            return False
        if not os.path.exists(target):
            self.diags.error("P004", item.path.span,
                             f"included file `{item.path.value}` is a symbolic link to nothing",
                             hints=(f"`{target}` -> `{os.readlink(target)}`; `include?` skips only a file "
                                    "that is absent",))
            return False
        return True

    def source_text(self, span: Span) -> str:
        """The text `span` covers: on several lines, joined with single spaces and without
        comments (a rule's text in messages and manifests)."""
        lines = self._lines.get(span.file)
        if lines is None:
            tree = self.files.get(span.file)
            if tree is None:
                return ""
            lines = self._lines[span.file] = tree.source.split("\n")
        if span.line == span.end_line:
            return lines[span.line - 1][span.col - 1: span.end_col - 1]
        first = lines[span.line - 1][span.col - 1:]
        rest = lines[span.line: span.end_line - 1]
        last = lines[span.end_line - 1][: span.end_col - 1]
        parts = (_without_comment(x).strip() for x in [first, *rest, last])
        return " ".join(p for p in parts if p)


_GLOB_CHARS = "*?{["


def include_target(including: str, item: S.Include) -> str:
    """The path an `include` (or `include?`) in the file `including` names: relative to
    that file's directory. Taken literally: no glob, and a directory is not a policy file."""
    return os.path.normpath(os.path.join(os.path.dirname(including), item.path.value))


def _without_comment(line: str) -> str:
    """A source line without its `# comment` (a `#` inside a string is text)."""
    i = comment_start(line)
    return line if i is None else line[:i]


def read(paths: list[str], diags: Diagnostics) -> Sources:
    sources = Sources(diags)
    for p in expand_paths(paths, diags):
        sources.load(p)
    return sources
