"""Subjects in a real kernel: `subject all ... except exe` (a `#!` script counts as itself;
what it starts is governed again) and `subject cgroup` (a process moved into the cgroup, and
its children, are governed; others are not)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import Loaded, tree

R = "/tmp/pk-subjects"
CG = "/sys/fs/cgroup"

EXCEPT_POLICY = f"""
policy everyone-but {{
    subject all except exe "{R}/bin/reader"
    default allow
    deny file read "{R}/secret"
}}
"""

CGROUP_POLICY = f"""
policy jobs {{
    subject cgroup "/pk-jobs"
    default allow
    deny file read "{R}/secret"
}}
"""


@pytest.fixture(scope="module", autouse=True)
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {"secret": "s3cret\n"})
    os.makedirs(f"{R}/bin")
    # a script that reads with a shell builtin (no child process), then with cat (a child)
    Path(f"{R}/bin/reader").write_text(f"#!/bin/sh\nread x < {R}/secret && echo \"builtin $x\"\ncat {R}/secret\n")
    os.chmod(f"{R}/bin/reader", 0o755)
    yield


def test_subject_all_except_a_script():
    pol = Loaded(EXCEPT_POLICY, "except")
    try:
        r = subprocess.run([f"{R}/bin/reader"], capture_output=True, text=True)
        assert "builtin s3cret" in r.stdout, r.stdout + r.stderr       # the excepted script itself
        assert "Permission denied" in r.stderr                          # cat, its child: governed again
        r = subprocess.run(["sh", "-c", f"read x < {R}/secret && echo $x"], capture_output=True, text=True)
        assert "s3cret" not in r.stdout                                 # anybody else
        evs = [e for e in pol.drain() if e.path == f"{R}/secret"]
        assert len(evs) == 2 and {e.comm for e in evs} == {"cat", "sh"}
    finally:
        pol.close()


def test_cgroup_subject():
    if not os.path.exists(f"{CG}/cgroup.procs"):
        subprocess.run(["mount", "-t", "cgroup2", "none", CG], check=True)
    os.makedirs(f"{CG}/pk-jobs", exist_ok=True)
    pol = Loaded(CGROUP_POLICY, "cgroup")
    try:
        r = subprocess.run(["sh", "-c", f"echo $$ > {CG}/pk-jobs/cgroup.procs; cat {R}/secret; "
                                        f"sh -c 'cat {R}/secret'"], capture_output=True, text=True)
        assert r.stderr.count("Permission denied") == 2, r.stdout + r.stderr
        r = subprocess.run(["cat", f"{R}/secret"], capture_output=True, text=True)
        assert r.returncode == 0
        evs = [e for e in pol.drain() if e.path == f"{R}/secret"]
        assert len(evs) == 2 and all(e.cgroup_id == os.stat(f"{CG}/pk-jobs").st_ino for e in evs)
    finally:
        pol.close()
