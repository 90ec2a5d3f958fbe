"""Every layer has an entry for every rule family the language knows: a family (or a layer)
forgotten is a failing unit test here, not a surprise in a VM."""

from __future__ import annotations

import pytest

from policyc import abi
from policyc.audit import families as audit_families
from policyc.codegen import families as codegen_families
from policyc.evaluate import families as evaluate_families
from policyc.ir.vocab import FAMILIES
from policyc import kernel_test

LANGUAGE = set(FAMILIES)

REGISTRIES = {
    "the ABI's family enum (policyc/abi.py)": set(abi.FAMILIES.values()),
    "the evaluator (policyc/evaluate/families.py)": set(evaluate_families.OP_MATCHERS),
    "the code generator (policyc/codegen/families.py)": set(codegen_families.FAMILIES),
    "the audit log (policyc/audit/families.py)": set(audit_families.FAMILIES),
    "the kernel test's performer (policyc/kernel_test.py PERFORM)": set(kernel_test.PERFORM),
}


@pytest.mark.parametrize("layer", sorted(REGISTRIES))
def test_every_layer_knows_every_family(layer):
    keys = REGISTRIES[layer]
    assert keys == LANGUAGE, (f"{layer}: missing {sorted(LANGUAGE - keys)}, "
                              f"unknown {sorted(keys - LANGUAGE)}")


def test_every_template_a_family_needs_exists():
    for name, fam in codegen_families.FAMILIES.items():
        for t in fam.templates:
            assert t in codegen_families.TEMPLATE_FAMILIES, (name, t)


def test_every_template_hook_is_in_the_abi():
    hooks = set(abi.HOOKS)
    for name, t in codegen_families.TEMPLATE_FAMILIES.items():
        missing = set(t.hooks) - hooks - codegen_families.STATE_ONLY_HOOKS
        assert not missing, f"template {name}: hooks {sorted(missing)} have no HOOK_ value in policyc/abi.py"


def test_every_file_op_has_a_verdict_column():
    from policyc.ir.vocab import FILE_OPS

    for op in FILE_OPS:
        assert op in abi.OP.index, f"file op {op} has no column in enum policyc_op"


def test_every_net_op_has_an_abi_value_and_a_performer():
    from policyc.ir.vocab import NET_OPS

    class Ev:
        proto, addr, port = "tcp", "127.0.0.1", 80

    for op in NET_OPS:
        assert op in abi.NET_OP.index, op
        req, _ = kernel_test.PERFORM["net"](Ev, op)
        assert req["op"] in ("connect", "bind", "net-create"), (op, req)


def test_an_unknown_net_op_is_refused_not_performed_as_another():
    class Ev:
        proto, addr, port = "tcp", "127.0.0.1", 80

    with pytest.raises(kernel_test._Unsupported):
        kernel_test.PERFORM["net"](Ev, "listen")
