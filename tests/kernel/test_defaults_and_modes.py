"""`default deny` and `default allow` both hold; `mode audit` logs what it would deny and
denies nothing; a policy's subject is who it says."""

import shutil

import pytest

from .harness import Loaded, copy_true, tree

R = "/tmp/pk-defaults"


@pytest.fixture(scope="module", autouse=True)
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {"allowed": "a\n", "other": "o\n", "denied": "d\n"})
    yield


STRICT = f"""
policy strict {{
    subject exe "/nonexistent/strict"
    default deny
    allow file read "{R}/allowed"
}}"""

LAX = f"""
policy lax {{
    subject exe "/nonexistent/lax"
    default allow
    deny file read "{R}/denied"
}}"""

TRIAL = f"""
policy trial {{
    subject exe "/nonexistent/trial"
    mode audit
    default deny
    allow file read "{R}/allowed"
    deny file read "{R}/denied"
}}"""

APP = f"""
policy app {{
    subject exe "{R}/bin/appsh"
    default allow
    deny file read "{R}/denied"
}}"""


def test_default_deny_denies_what_no_rule_allows():
    pol = Loaded(STRICT, "strict")
    try:
        w = pol.worker()
        pol.drain()
        assert w.op("read", f"{R}/allowed")["ok"]
        assert w.op("read", f"{R}/other")["errno"] == "EACCES"
        assert w.op("write", f"{R}/allowed")["errno"] == "EACCES"
        evs = pol.drain()
        assert [(e.op, e.path, e.reason, e.rule_id) for e in evs] == [
            ("read", f"{R}/other", "default", 0), ("write", f"{R}/allowed", "default", 0)]
        w.close()
    finally:
        pol.close()


def test_default_allow_allows_what_no_rule_denies():
    pol = Loaded(LAX, "lax")
    try:
        w = pol.worker()
        pol.drain()
        assert w.op("read", f"{R}/other")["ok"]
        assert w.op("write", f"{R}/other")["ok"]
        assert w.op("read", f"{R}/denied")["errno"] == "EACCES"
        w.close()
    finally:
        pol.close()


def test_audit_mode_allows_and_logs_what_it_would_deny():
    pol = Loaded(TRIAL, "trial")
    try:
        w = pol.worker()
        pol.drain()
        assert w.op("read", f"{R}/denied")["ok"]
        assert w.op("read", f"{R}/other")["ok"]
        assert w.op("read", f"{R}/allowed")["ok"]
        evs = pol.drain()
        assert [(e.decision, e.mode, e.path, e.reason) for e in evs] == [
            ("audit", "audit", f"{R}/denied", "rule"), ("audit", "audit", f"{R}/other", "default")]
        assert evs[0].rule_id == pol.rule_id_of("deny file read")
        w.close()
    finally:
        pol.close()


def test_exe_subject_is_marked_at_exec_and_inherited():
    copy_true(f"{R}/bin/app")
    # the subject is a shell script's interpreter-free stand-in: a copy of sh
    import os
    from pathlib import Path
    Path(f"{R}/bin/appsh").write_bytes(Path("/bin/dash").read_bytes() if os.path.exists("/bin/dash") else Path("/bin/sh").read_bytes())
    os.chmod(f"{R}/bin/appsh", 0o755)
    pol = Loaded(APP, "app")
    try:
        import subprocess
        # an ungoverned shell is untouched...
        r = subprocess.run(["sh", "-c", f"cat {R}/denied"], capture_output=True, text=True)
        assert r.returncode == 0
        # ...the subject executable and its grandchildren are governed from its exec on
        r = subprocess.run([f"{R}/bin/appsh", "-c", f"cat {R}/denied; sh -c 'cat {R}/denied'"],
                           capture_output=True, text=True)
        assert r.stderr.count("Permission denied") == 2, r.stderr
        evs = [e for e in pol.drain() if e.path == f"{R}/denied"]
        assert len(evs) == 2 and all(e.decision == "deny" for e in evs)
    finally:
        pol.close()
