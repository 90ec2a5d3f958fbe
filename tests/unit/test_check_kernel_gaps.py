"""P054 mount-api-without-hook: warnings about what a rule
cannot reach on the kernels policyc supports (policyc/checks/kernel_gaps.py)."""

from policyc.checks.kernel_gaps import KERNELS
from policyc.diagnostics import Severity

from _policyc_helpers import ROOT, check, found


def policy(*rules: str, default: str = "allow", subject: str = 'exe "/usr/bin/app"') -> str:
    body = "".join(f"    {r}\n" for r in rules)
    return f"policy p {{\n    subject {subject}\n    default {default}\n{body}}}\n"


# --- P054 ------------------------------------------------------------------------------------
def test_path_scoped_deny_mount_under_default_allow(tmp_path):
    diags = check(tmp_path, policy('deny mount "/mnt/**"'))
    assert found(diags, {"P054"}) == [("P054", 4, 5)]
    (d,) = [d for d in diags.items if d.code == "P054"]
    assert d.severity is Severity.WARNING and not diags.has_errors
    assert "Debian 6.1, 6.12 and 7.2" in d.message and "mount_setattr(2)" in d.message
    assert [(n.span.line, n.span.col) for n in d.notes] == [(3, 5)]   # the `default allow`


def test_path_scoped_audit_mount(tmp_path):
    assert found(check(tmp_path, policy('audit mount "/mnt/**"')), {"P054"}) == [("P054", 4, 5)]


def test_every_path_glob_is_still_path_scoped(tmp_path):
    # the new mount API is decided as the empty path, which "/**" does not match
    assert found(check(tmp_path, policy('deny mount "/**"')), {"P054"}) == [("P054", 4, 5)]


def test_pathless_deny_mount_is_not_reported(tmp_path):
    assert found(check(tmp_path, policy("deny mount")), {"P054"}) == []


def test_default_deny_is_not_reported(tmp_path):
    assert found(check(tmp_path, policy('deny mount "/mnt/**"', default="deny")), {"P054"}) == []


def test_allow_and_audit_rules_with_paths(tmp_path):
    # an allow rule is never reported; the deny and the audit rule are (nothing closes the gap)
    diags = check(tmp_path, policy('allow mount "/srv/**"', 'deny mount "/mnt/**"', 'audit mount "/media/**"'))
    assert found(diags, {"P054"}) == [("P054", 5, 5), ("P054", 6, 5)]


def test_policy_that_closes_the_gap_elsewhere(tmp_path):
    for closer in ("deny mount", "deny capability sys_admin", "deny capability"):
        diags = check(tmp_path, policy('deny mount "/mnt/**"', closer))
        assert found(diags, {"P054"}) == [], closer


def test_a_less_severe_closer_does_not_count(tmp_path):
    diags = check(tmp_path, policy('deny mount "/mnt/**"', "audit mount", "audit capability sys_admin"))
    assert found(diags, {"P054"}) == [("P054", 4, 5)]
    # ... but it does for an audit rule
    diags = check(tmp_path, policy('audit mount "/mnt/**"', "audit capability sys_admin"))
    assert found(diags, {"P054"}) == []


# --- the kernels named ------------------------------------------------------------------------
def test_kernels_named_are_the_supported_ones():
    shipped = sorted(p.stem for p in (ROOT / "policyc" / "kernels").glob("*.json"))
    assert shipped == ["6.1", "6.12", "7.2"], "a new kernel: check P054 still holds on it, then update KERNELS"
    assert KERNELS.startswith("Debian 6.1, 6.12 and 7.2 ")
