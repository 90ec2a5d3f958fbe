"""P051: a program the running kernel's verifier refuses is reported at each rule that needs
its hook (the mapping; tests/kernel/test_load_test.py loads real programs)."""

from policyc.checks import run_checks  # noqa: F401  (the pipeline's checks stay importable)
from policyc.diagnostics import Diagnostics
from policyc.load_test import Refusal, report

from _policyc_helpers import load

POLICY = '''policy p {
    subject exe "/usr/bin/app"
    default allow
    deny file read "/secret"
    deny exec "/usr/bin/curl"
    deny net connect any 10.0.0.0/8
}
'''


def test_a_refused_hook_is_reported_at_the_rules_that_need_it(tmp_path):
    program, diags = load(tmp_path, POLICY)
    (policy,) = program.policies
    out = Diagnostics()
    report(policy, [Refusal("p", "policyc_mmap_file", "mmap_file", "-EACCES: R3 pointer arithmetic")], out)
    found = sorted((d.code, d.span.line) for d in out.items)
    # mmap_file is exec-map: the exec rule needs it, the file and net rules do not
    assert found == [("P051", 5)], [str(d) for d in out.items]
    assert "policyc_mmap_file" in out.items[0].message


def test_a_refused_subject_hook_is_reported_at_the_subjects(tmp_path):
    program, diags = load(tmp_path, POLICY)
    (policy,) = program.policies
    out = Diagnostics()
    report(policy, [Refusal("p", "policyc_bprm_committing_creds", "bprm_committing_creds", "-EINVAL")], out)
    assert [(d.code, d.span.line) for d in out.items] == [("P051", 2)]
