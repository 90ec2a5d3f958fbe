"""Kernel tests load BPF LSM programs: they run only inside a VM, never on the host.

`python tests/kernel/run_suite.py --kernel 6.1 --kernel 6.12` boots each kernel once and runs
this directory there with POLICYC_IN_VM=1. On the host, collecting this directory is an error
(exit 4), not a skip, so a kernel suite that did not run can never look green.
"""

import os
import sys

import pytest

IN_VM = os.environ.get("POLICYC_IN_VM") == "1"

if not IN_VM:
    collect_ignore_glob = ["*"]  # do not even import the test modules on the host


def point_hypothesis_at_guest_tmp(config, importing: bool) -> None:
    """The repo is read-only in the guest: keep hypothesis' example database in guest /tmp.

    Only once hypothesis is (about to be) imported: importing it costs ~8 s under TCG.
    """
    if IN_VM and config.pluginmanager.hasplugin("hypothesispytest"):
        if importing or "hypothesis" in sys.modules:
            from hypothesis.configuration import set_hypothesis_home_dir

            set_hypothesis_home_dir("/tmp/hypothesis")


@pytest.hookimpl(tryfirst=True)
def pytest_report_header(config):
    # hypothesis' own header hook imports it and shows its database when verbose
    point_hypothesis_at_guest_tmp(config, importing=config.option.verbose >= 1)


def pytest_collection_modifyitems(config, items):
    if not IN_VM:
        raise pytest.UsageError(
            "tests/kernel runs only inside a VM (POLICYC_IN_VM is not set): use "
            "`python tests/kernel/run_suite.py --kernel 6.1 --kernel 6.12`; "
            "unit tests: `pytest tests/unit`"
        )
    point_hypothesis_at_guest_tmp(config, importing=False)  # test modules may import it
