"""Pass 2, names: the policies, rulesets and test blocks of the program, in program order.

Policy and ruleset names are global over all loaded files; a second definition is an error
pointing at the first (which one is first follows program order, policyc/lower/sources.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import Diagnostics, Note
from ..ir import syntax as S
from .sources import Sources


@dataclass
class Names:
    policies: dict[str, tuple[S.Policy, str]] = field(default_factory=dict)   # name -> (block, file)
    rulesets: dict[str, tuple[S.Ruleset, str]] = field(default_factory=dict)
    tests: list[tuple[S.TestBlock, str]] = field(default_factory=list)


def declare(sources: Sources, diags: Diagnostics) -> Names:
    names = Names()
    for item, key in sources.items:
        if isinstance(item, S.Policy):
            _declare(names.policies, item, key, "policy", diags)
        elif isinstance(item, S.Ruleset):
            _declare(names.rulesets, item, key, "ruleset", diags)
            for setting in (i for i in item.items if isinstance(i, S.Setting)):
                # the grammar takes `protect` in a ruleset only to say this (no syntax error)
                diags.error("P017", setting.span, f"`{setting.key}` belongs in a policy, not in ruleset "
                            f"`{item.name.value}`",
                            hints=(f"write `{setting.key} {setting.value.value}` in each policy that "
                                   "should have it (a `use` brings rules only)",))
        elif isinstance(item, S.TestBlock):
            names.tests.append((item, key))
    return names


def _declare(table: dict, item, key: str, what: str, diags: Diagnostics) -> None:
    name = item.name.value
    if name in table:
        prev = table[name][0]
        diags.error("P015", item.name.span, f"{what} `{name}` is defined twice",
                    notes=(Note(prev.name.span, "first defined here"),))
        return
    table[name] = (item, key)
