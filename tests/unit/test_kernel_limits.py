"""P041: what `policyc build` would refuse for the kernel object's table sizes, `policyc check`
reports at the first rule past the limit (file:line:col, a code), and build says the same."""

from __future__ import annotations

import pytest

from policyc import abi, pipeline
from policyc.codegen import BuildError


def _write(tmp_path, rules: list[str]) -> str:
    p = tmp_path / "big.policy"
    p.write_text("policy big {\n    subject exe \"/usr/bin/x\"\n" + "".join(f"    {r}\n" for r in rules) + "}\n")
    return str(p)


@pytest.mark.parametrize("make, limit", [
    (lambda i: f'deny signal kill to exe "/usr/bin/t{i}"', abi.MAX_TARGET_PATTERNS),
    (lambda i: f'deny signal kill to cgroup "/c{i}"', abi.MAX_TASK_RULES),
])
def test_a_policy_past_a_kernel_table_is_p041_at_the_first_rule_past_it(tmp_path, make, limit):
    path = _write(tmp_path, [make(i) for i in range(limit + 1)])
    front = pipeline.front_end([path])
    p041 = [d for d in front.diags.sorted() if d.code == "P041"]
    assert len(p041) == 1
    # line 1 is `policy`, line 2 the subject: rule number limit+1 stands on line limit + 3
    assert p041[0].span.line == limit + 3 and p041[0].span.file == path
    assert f"more than {limit:,}" in p041[0].message


def test_at_the_limit_it_checks_clean(tmp_path):
    path = _write(tmp_path, [f'deny signal kill to exe "/usr/bin/t{i}"' for i in range(abi.MAX_TARGET_PATTERNS)])
    front = pipeline.front_end([path])
    assert not [d for d in front.diags.sorted() if d.code == "P041"]


def test_build_refuses_what_check_reports(tmp_path):
    from policyc.codegen import build_policy
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    path = _write(tmp_path, [f'deny signal kill to exe "/usr/bin/t{i}"' for i in range(abi.MAX_TARGET_PATTERNS + 1)])
    program = load_program([path], Diagnostics())
    with pytest.raises(BuildError, match="more than 64 signal/ptrace rules with `to exe` targets"):
        build_policy(program, program.policies[0], tmp_path / "out")
