"""`use NAME`: a ruleset's rules spliced in where the `use` stands, as if written there.

A ruleset's strings are resolved in the ruleset's own scope (its file's lets and its own),
not where it is used; that scope is resolved once, at the first `use`. A ruleset never used
is not lowered. Uses nest at most MAX_USE_DEPTH deep, a ruleset that uses itself (through
others) is an error, and the program takes at most MAX_SPLICED_RULES rules from rulesets
in all: a ruleset that uses another twice, which uses another twice, ... doubles at every
level, and thirty levels would ask for a billion rules.
"""

from __future__ import annotations

from ..diagnostics import did_you_mean
from ..ir import syntax as S
from ..span import Span
from .context import Context
from .lets import Scope
from .sources import MAX_INCLUDE_DEPTH

MAX_USE_DEPTH = MAX_INCLUDE_DEPTH
MAX_SPLICED_RULES = 250_000

Spliced = tuple[S.Rule, tuple[Span, ...], Scope]   # a rule, the `use`s that brought it, its scope


class Rulesets:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._scopes: dict[str, Scope] = {}
        self._budget = MAX_SPLICED_RULES   # rules all `use`s may still bring
        self._active: set[int] = set()      # the `use` statements being expanded (ids)

    @property
    def exhausted(self) -> bool:
        """The bound was passed (and said): the program is in error, its rules not worth lowering."""
        return self._budget < 0

    def splice(self, use: S.Use) -> list[Spliced]:
        """The rules `use` brings into a policy, in order."""
        return self._use(use, (), 0)

    def _use(self, use: S.Use, chain: tuple[Span, ...], depth: int) -> list[Spliced]:
        diags = self.ctx.diags
        rulesets = self.ctx.names.rulesets
        name = use.name.value
        if name not in rulesets:
            diags.error("P021", use.name.span, f"unknown ruleset `{name}`", hints=did_you_mean(name, rulesets))
            return []
        if depth > MAX_USE_DEPTH or id(use) in self._active:
            diags.error("P005", use.span, f"ruleset `{name}` uses itself")
            return []
        rs, key = rulesets[name]
        if name not in self._scopes:
            self._scopes[name] = self.ctx.vars.block_scope(key, rs.items)
        here = chain + (use.span,)
        out: list[Spliced] = []
        self._active.add(id(use))
        try:
            self._items(rs, name, here, depth, out)
        finally:
            self._active.discard(id(use))
        return out

    def _items(self, rs: S.Ruleset, name: str, here: tuple[Span, ...], depth: int, out: list[Spliced]) -> None:
        diags = self.ctx.diags
        scope = self._scopes[name]
        for item in rs.items:
            if self._budget < 0:
                break       # said once, below
            if isinstance(item, S.Rule):
                self._budget -= 1
                if self._budget < 0:
                    diags.error("P005", here[0], f"`use` brings more than {MAX_SPLICED_RULES:,} rules "
                                "from rulesets into these policies",
                                hints=("a ruleset that uses another twice doubles its rules at every level",))
                    break
                out.append((item, here, scope))
            elif isinstance(item, S.Use):
                if item.name.value == name or depth > MAX_USE_DEPTH:
                    diags.error("P005", item.span, f"ruleset `{item.name.value}` uses itself")
                    continue
                out.extend(self._use(item, here, depth + 1))
