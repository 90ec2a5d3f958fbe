"""Pass 3, variables: every `let` resolved, and `${NAME}` replaced in the strings that use them.

Scopes (docs/language.md): a file's top-level lets are visible in it and in every file that
includes it (its own win over those it includes); a policy's or ruleset's lets only in that
block, and they may not reuse a name the file already sees. Within a scope the order of the
lets does not matter: `let b = "${a}/x"` may come before `let a`, and a subject may use a
let written below it. So each scope's lets are resolved in dependency order, by a
depth-first walk (iterative: a chain of ten thousand lets must not exhaust Python's stack),
and a let that refers back to itself through others is an error naming the cycle.

A let whose definition is an error gets no value. Strings that use it fail silently: the
one error is at the definition, not repeated at each use (and a cycle does not also read
as "undefined variable").

Interpolation is bounded: doubling lets (`let a2 = "${a1}${a1}"`, thirty times) would
otherwise ask for gigabytes. One string after interpolation is at most MAX_VALUE_CHARS
characters, 16 times the longest path the kernel resolves (PATH_MAX, 4096 bytes), which
leaves room for a glob with many `{...}` alternatives; the size is checked before the
string is built. All interpolated strings of a program together are at most
MAX_TOTAL_CHARS (as much as the largest source file, parse.MAX_FILE_BYTES), so ten thousand
uses of a long value cannot add up to gigabytes either.
"""

from __future__ import annotations

from .. import abi
import re
from collections import ChainMap
from dataclasses import dataclass
from typing import Callable, Mapping

from ..diagnostics import Diagnostics, Note, did_you_mean
from ..ir import syntax as S
from ..parse import MAX_FILE_BYTES
from ..span import Span
from .sources import Sources

PATH_MAX = abi.POLICYC_PATH_MAX
MAX_VALUE_CHARS = 16 * PATH_MAX
MAX_TOTAL_CHARS = MAX_FILE_BYTES
_VAR = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Var:
    name: str
    value: str | None     # None: its definition was an error (said there)
    span: Span            # the name in its `let`


Scope = Mapping[str, Var]


def _identity(i: int) -> int:
    return i


class Variables:
    """The lets of every scope, resolved once, and interpolation of strings in a scope."""

    def __init__(self, sources: Sources, diags: Diagnostics):
        self.sources = sources
        self.diags = diags
        self.used: set[Span] = set()          # name spans of the lets some string refers to
        self.defined: list[Var] = []          # every let resolved, for the unused warning
        self._own: dict[str, dict[str, Var]] = {}        # file -> its own top-level lets
        self._visible: dict[str, dict[str, Var]] = {}    # file -> what its strings see
        self._budget = MAX_TOTAL_CHARS
        self._over_budget = False

    # --- scopes ------------------------------------------------------------------------------
    def resolve_files(self) -> None:
        """Every file's top-level lets, used or not, so an error in any of them is reported."""
        for key in self.sources.order:
            self.file_scope(key)

    def file_scope(self, key: str) -> Scope:
        """The lets a file's strings see: its own and, transitively, its includes'. Included
        files are resolved first (includes form no cycle: a cycle stopped the front end)."""
        visible = self._visible.get(key)
        if visible is not None:
            return visible
        self._visible[key] = {}   # a guard only: never read while `key` is resolved
        outer: dict[str, Var] = {}
        seen = {key}

        def visit(k: str) -> None:
            # as before the passes were split: depth first, an include's lets before its
            # includer's, a later include's over an earlier one's
            if k in seen or self.sources.files.get(k) is None:
                return
            seen.add(k)
            for t in self.sources.includes.get(k, ()):
                visit(t)
            self.file_scope(k)
            outer.update(self._own[k])

        for target in self.sources.includes.get(key, ()):
            visit(target)
        tree = self.sources.files.get(key)
        lets = [i for i in tree.items if isinstance(i, S.Let)] if tree is not None else []
        own = self._resolve(lets, outer, shadow_ok=True)
        self._own[key] = own
        visible = self._visible[key] = {**outer, **own}
        return visible

    def block_scope(self, key: str, items) -> Scope:
        """A policy's or ruleset's scope: its lets (`items` may hold other statements) over
        those of its file. A block let may not reuse a name the file sees (P015)."""
        outer = self.file_scope(key)
        lets = [i for i in items if isinstance(i, S.Let)]
        if not lets:
            return outer
        return ChainMap(self._resolve(lets, outer, shadow_ok=False), outer)

    def _resolve(self, lets: list[S.Let], outer: Scope, shadow_ok: bool) -> dict[str, Var]:
        own: dict[str, S.Let] = {}
        for let in lets:
            name = let.name.value
            first = own[name].name.span if name in own else \
                outer[name].span if not shadow_ok and name in outer else None
            if first is not None:
                self.diags.error("P015", let.name.span, f"`{name}` is already defined",
                                 notes=(Note(first, "first defined here"),))
                continue
            own[name] = let
        done: dict[str, Var] = {}
        scope = ChainMap(done, outer)
        for root in own:
            stack = [root]              # the lets being resolved, each using the next
            on_stack = {root}
            while stack:
                name = stack[-1]
                if name not in done:
                    dep = self._pending_dependency(own[name], own, done, stack, on_stack)
                    if dep is not None:
                        stack.append(dep)
                        on_stack.add(dep)
                        continue
                if name not in done:    # (a let that closed a cycle is done: without a value)
                    r = self.interpolate(own[name].value, scope)
                    done[name] = Var(name, r[0] if r is not None else None, own[name].name.span)
                stack.pop()
                on_stack.discard(name)
        for name in own:
            self.defined.append(done[name])
        return {name: done[name] for name in own}

    def _pending_dependency(self, let: S.Let, own, done, stack, on_stack) -> str | None:
        """The first let of this scope that `let` uses and that has no value yet; when it is
        one being resolved (on `stack`), the cycle is reported and every let on it poisoned."""
        for m in _VAR.finditer(let.value.value):
            dep = m.group(1)
            if dep not in own or dep in done:
                continue
            if dep not in on_stack:
                return dep
            cycle = stack[stack.index(dep):]
            path = " -> ".join(f"`{n}`" for n in (*cycle, dep))
            self.diags.error(
                "P005", let.value.span.at_offset(m.start() + 1, len(m.group(0))),
                f"`{dep}` is defined in terms of itself: {path}",
                hints=("a variable cannot contain itself; give one of them a plain value",),
                notes=tuple(Note(own[n].name.span, f"`{n}` is defined here") for n in cycle))
            for n in cycle:
                done[n] = Var(n, None, own[n].name.span)
            return None
        return None

    # --- strings -----------------------------------------------------------------------------
    def interpolate(self, s: S.Str, scope: Scope) -> tuple[str, Callable[[int], int]] | None:
        """`${name}` replaced by its value. Returns the text and a map from text offsets back
        to offsets in the literal (so a glob error inside an interpolated value still points
        near the right column); None after an error (reported, unless it was a let's own)."""
        value = s.value
        if "${" not in value:
            return value, _identity
        out: list[str] = []
        marks: list[tuple[int, int]] = []  # (text offset, source offset)
        size = 0
        pos = 0
        ok = True
        for m in _VAR.finditer(value):
            out.append(value[pos:m.start()])
            size += m.start() - pos
            name = m.group(1)
            var = scope.get(name)
            if var is None:
                ok = False
                self.diags.error("P014", s.span.at_offset(m.start() + 1, len(m.group(0))),
                                 f"undefined variable `{name}`", hints=did_you_mean(name, scope))
            else:
                self.used.add(var.span)
                if var.value is None:
                    ok = False
                elif ok:
                    marks.append((size, m.start()))
                    size += len(var.value)
                    if size > MAX_VALUE_CHARS:
                        self.diags.error(
                            "P005", s.span,
                            f"this string is longer than {MAX_VALUE_CHARS:,} characters once its "
                            "`${...}` are replaced",
                            hints=("no path is this long: variables that repeat each other "
                                   "double at every step",))
                        return None
                    out.append(var.value)
            pos = m.end()
        if "${" in value[pos:]:
            col = pos + value[pos:].find("${") + 1
            self.diags.error("P014", s.span.at_offset(col, 2), "unclosed `${`", hints=("write `${name}`",))
            ok = False
        if not ok:
            return None
        out.append(value[pos:])
        text = "".join(out)
        self._budget -= len(text)
        if self._budget < 0:
            if not self._over_budget:
                self._over_budget = True
                self.diags.error("P005", s.span,
                                 f"the strings of these files come to more than {MAX_TOTAL_CHARS:,} "
                                 "characters once their `${...}` are replaced",
                                 hints=("a long value used in many places: shorten it, or split the files",))
            return None

        def offset_map(i: int) -> int:
            src = i
            for t_off, s_off in marks:
                if i >= t_off:
                    src = s_off
            return src

        return text, offset_map

    # --- the end -----------------------------------------------------------------------------
    def report_unused(self) -> None:
        """W104 for each let no string refers to."""
        seen: set[Span] = set()
        for var in self.defined:
            if var.span in seen:
                continue
            seen.add(var.span)
            if var.span not in self.used and var.value is not None:   # (an error says enough)
                self.diags.warning("W104", var.span, f"`{var.name}` is defined but never used",
                                   hints=("remove it, or use it as `${" + var.name + "}`",))
