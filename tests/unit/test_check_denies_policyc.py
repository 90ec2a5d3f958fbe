from _check_cases import fixture_findings
from _policyc_helpers import check, found


def test_fixture():
    got, want, diags = fixture_findings("W112", {"W112"})
    assert got == want
    by_line = {d.span.line: d for d in diags.items if d.code == "W112"}
    # what is denied, and the exception that fixes it, are named
    assert "loader its bpf(2)" in by_line[5].message and "systemd its cgroup writes" in by_line[5].message
    assert by_line[5].hints == ('leave them out: `except cgroup "/policyc.slice", exe "/usr/lib/systemd/systemd"`',)
    assert "systemd" not in by_line[19].message           # python3*: the loader, not systemd


def test_policies_that_do_not_reach_policyc_are_quiet(tmp_path):
    for subject in ('subject exe "/usr/sbin/nginx"', 'subject cgroup "/system.slice/web.service"',
                    'subject all except cgroup "/policyc.slice", exe "/usr/lib/systemd/systemd"'):
        diags = check(tmp_path, f"policy p {{\n    {subject}\n    default deny\n    protect policyc\n"
                                "    allow exec \"/**\"\n    allow file read, exec-map \"/**\"\n}\n")
        assert found(diags, {"W112"}) == [], subject


def test_the_shipped_policies_leave_policyc_alone():
    from pathlib import Path

    from policyc.checks import run_checks
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    for path in sorted((Path(__file__).parents[2] / "policies").glob("*.policy")):
        diags = Diagnostics()
        program = load_program([str(path)], diags)
        run_checks(program, diags)
        assert [d for d in diags.items if d.code == "W112"] == [], path
