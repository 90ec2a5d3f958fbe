"""The shipped nginx policy runs Debian's nginx (issue #16): policies/nginx.policy, unchanged, over
Debian's own nginx package and its own configuration (/etc/nginx as the package installs it, the
default site in /var/www/html, port 80, www-data workers), through a fresh install's whole life:
`nginx -t`, the first start (the master makes and chowns its temp directories), the default
page, reload, logrotate (the log moved, the master reopens and chowns a new one), a binary
upgrade (USR2: the pid file renamed to .oldbin, the master re-executes itself; WINCH and QUIT to
the old one) and stop, under the policy, with no denial at all. Then what the policy is for: a page that would read a file outside
the policy is answered 403 (the denial is EACCES, which nginx reports as a permission problem;
EPERM made it a 500) with an event naming the `default deny` line and its suggestion, and a
proxy to the cloud metadata address is refused (502) with an event naming its deny rule.

nginx comes from Debian's package (scripts/setup.sh installs it on the host, never starts it;
the guest sees the host's files). The directories nginx writes are empty tmpfs mounts in the
guest, so each run is a fresh install and nothing reaches the host; one more configuration
file, in a tmpfs over the empty /etc/nginx/conf.d, adds a server on 127.0.0.1:443 (a port the
policy lets nginx bind) with the two locations the denials need."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .harness import Loaded
from .test_audit import REPO, wait_for

# the shipped policies over real programs: on 6.1 and 6.12 (scripts/test.sh, README)
pytestmark = pytest.mark.real_software


NGINX = "/usr/sbin/nginx"
PID = "/run/nginx.pid"
OLDBIN = "/run/nginx.pid.oldbin"
# What nginx writes, with the mode and owner Debian's package gives each: made empty for every
# life (a fresh install), never the host's. (The guest may have a tmpfs at /var/log already.)
ADM = 4
WRITTEN = {"/var/log/nginx": (0o755, 0, ADM), "/var/lib/nginx": (0o755, 0, 0), "/etc/nginx/conf.d": (0o755, 0, 0)}
SECRET = "/tmp/pk-real-nginx/secret.txt"
METADATA = "169.254.169.254"
EXTRA_SERVER = f"""server {{
    listen 127.0.0.1:443;
    location = /secret.txt {{ alias {SECRET}; }}
    location /meta/ {{ proxy_pass http://{METADATA}/; proxy_connect_timeout 5s; }}
}}
"""


def _mount_fresh() -> None:
    for d, (mode, uid, gid) in WRITTEN.items():
        subprocess.run(["umount", "-q", d], capture_output=True)
        os.makedirs(d, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode={mode:o},uid={uid},gid={gid}", "tmpfs", d], check=True)
    Path("/etc/nginx/conf.d/pk-denials.conf").write_text(EXTRA_SERVER)
    for p in (PID, OLDBIN):
        if os.path.exists(p):
            os.unlink(p)
    os.makedirs(os.path.dirname(SECRET), exist_ok=True)
    Path(SECRET).write_text("not for the web\n")
    os.chmod(SECRET, 0o644)   # readable by www-data: only the policy stands in the way


@pytest.fixture
def debian_nginx():
    # the kernel suite never skips: a machine without nginx fails here (scripts/setup.sh installs it)
    assert os.path.exists(NGINX), "nginx is not installed: run scripts/setup.sh"
    assert os.path.exists("/var/www/html/index.nginx-debian.html"), "Debian's default site is missing"
    yield
    subprocess.run(["pkill", "-x", "nginx"], capture_output=True)
    for d in WRITTEN:
        subprocess.run(["umount", "-q", d], capture_output=True)
    shutil.rmtree(os.path.dirname(SECRET), ignore_errors=True)


def _ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NGINX, *args], capture_output=True, text=True, timeout=120)


def _get(url: str) -> tuple[int, str]:
    for _ in range(150):
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            time.sleep(0.2)   # not listening yet
    return 0, ""



def _pid(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _page_ok(problems: list[str], step: str) -> None:
    code, body = _get("http://127.0.0.1/")
    if code != 200 or "Welcome to nginx" not in body:
        problems.append(f"GET / {step}: {code}")


def _life() -> list[str]:
    """Debian's nginx from a fresh install to stop; what went wrong, step by step (empty: all of
    it worked)."""
    problems: list[str] = []
    r = _ctl("-t")
    if r.returncode:
        problems.append(f"nginx -t: {r.stderr.strip()[-400:]}")
    r = _ctl()
    if r.returncode or not wait_for(lambda: _pid(PID) is not None, 60):
        problems.append(f"start: {r.stderr.strip()[-400:]}")
        return problems
    for temp in ("body", "proxy"):   # the master made its temp directories and gave them to www-data
        st = os.stat(f"/var/lib/nginx/{temp}") if os.path.isdir(f"/var/lib/nginx/{temp}") else None
        if st is None or st.st_uid != 33:
            problems.append(f"/var/lib/nginx/{temp}: {'missing' if st is None else f'owner {st.st_uid}'}")
    _page_ok(problems, "after start")
    r = _ctl("-s", "reload")
    if r.returncode:
        problems.append(f"reload: {r.stderr.strip()[-400:]}")
    time.sleep(1.0)
    _page_ok(problems, "after reload")
    # logrotate as Debian's /etc/logrotate.d/nginx does it: move the log away, make the new one
    # (`create 0640 www-data adm`), then USR1 (`invoke-rc.d nginx rotate`): the master reopens
    # its logs, chowns them to the workers' user, and the workers write the new one.
    os.rename("/var/log/nginx/access.log", "/var/log/nginx/access.log.1")
    r = _ctl("-s", "reopen")
    if r.returncode:
        problems.append(f"reopen: {r.stderr.strip()[-400:]}")
    time.sleep(1.0)
    _page_ok(problems, "after reopen")
    if not wait_for(lambda: os.path.exists("/var/log/nginx/access.log")
                 and os.path.getsize("/var/log/nginx/access.log") > 0, 20):
        problems.append("reopen: the new access.log was not written")
    # binary upgrade: USR2 to the master (renames the pid file to .oldbin, runs a new master),
    # WINCH (its workers stop), QUIT (it leaves); the new master serves on.
    old = _pid(PID)
    os.kill(old, signal.SIGUSR2)
    if not wait_for(lambda: _pid(OLDBIN) == old and _pid(PID) not in (None, old), 60):
        problems.append(f"upgrade: pid file {_pid(PID)}, oldbin {_pid(OLDBIN)} (old master {old})")
    else:
        os.kill(old, signal.SIGWINCH)
        time.sleep(1.0)
        os.kill(old, signal.SIGQUIT)
        if not wait_for(lambda: not _alive(old) and not os.path.exists(OLDBIN), 60):
            problems.append("upgrade: the old master did not leave")
        _page_ok(problems, "after upgrade")
    r = _ctl("-s", "quit")
    if r.returncode or not wait_for(lambda: not os.path.exists(PID), 60):
        problems.append(f"stop: {r.stderr.strip()[-400:]}")
    if subprocess.run(["pgrep", "-x", "nginx"], capture_output=True).returncode == 0:
        problems.append("stop: nginx processes are left")
        subprocess.run(["pkill", "-x", "nginx"], capture_output=True)
        wait_for(lambda: subprocess.run(["pgrep", "-x", "nginx"], capture_output=True).returncode != 0, 20)
    return problems




def test_the_shipped_nginx_policy_runs_debians_nginx(debian_nginx):
    # (no run without the policy first: every step passing under it, with no denial, is the
    # claim; the denial test below proves its probes without the policy)
    _mount_fresh()
    pol = Loaded("", "nginx", shipped=(str(REPO / "policies" / "nginx.policy"), "nginx"))
    try:
        problems = _life()
        evs = pol.drain()
        denials = [e for e in evs if e.decision == "deny"]
        assert problems == [] and denials == [], (problems, pol.audit_lines(denials))
        # the one `audit` rule of the policy saw the workers look www-data up
        assert any(e.decision == "audit" and e.path == "/etc/passwd" for e in evs), pol.audit_lines(evs)
    finally:
        pol.close()
        subprocess.run(["pkill", "-x", "nginx"], capture_output=True)


def test_the_shipped_nginx_policy_denies_what_it_names(debian_nginx):
    _mount_fresh()
    # the probes work with no policy: the file is served, the metadata proxy is tried (no route:
    # 502 or 504 from nginx itself)
    assert _ctl().returncode == 0 and wait_for(lambda: _pid(PID) is not None, 60)
    assert _get("http://127.0.0.1:443/secret.txt") == (200, "not for the web\n")
    meta_control, _ = _get("http://127.0.0.1:443/meta/latest")
    assert meta_control in (502, 504), meta_control
    _ctl("-s", "quit")
    assert wait_for(lambda: not os.path.exists(PID), 60)
    _mount_fresh()
    pol = Loaded("", "nginx", shipped=(str(REPO / "policies" / "nginx.policy"), "nginx"))
    try:
        assert _ctl().returncode == 0 and wait_for(lambda: _pid(PID) is not None, 60)
        pol.drain()
        # a file outside the policy: EACCES, which nginx answers with 403 (EPERM was a 500)
        assert _get("http://127.0.0.1:443/secret.txt")[0] == 403
        # the cloud metadata address: refused at connect, nginx answers 502 at once
        assert _get("http://127.0.0.1:443/meta/latest")[0] == 502
        # the control beside them: the default page
        assert _get("http://127.0.0.1/")[0] == 200
        wait_for(lambda: "13: Permission denied" in Path("/var/log/nginx/error.log").read_text(), 20)
        evs = [e for e in pol.drain() if e.decision == "deny"]
        secret = [e for e in evs if e.path == SECRET]
        assert secret and all(e.reason == "default" and e.family == "file" and e.op == "read" for e in secret), \
            pol.audit_lines(evs)
        # its record: the errno, the default line, and the rule that would allow exactly it
        (rec,) = pol.records(secret[:1])
        manifest = json.loads(Path(pol.manifest_path).read_text())
        assert rec["errno"] == "EACCES" and rec["rule"] == manifest["default_location"], rec
        assert rec["suggestion"] == f'allow file read "{SECRET}"', rec
        meta = [e for e in evs if e.family == "net" and e.op == "connect"]
        assert meta and all(pol.rule_line(e.rule_id) == pol.rule_line(pol.rule_id_of("169.254.169.254"))
                            for e in meta), pol.audit_lines(evs)
        assert "nginx.policy:" in pol.rule_line(meta[0].rule_id)
        log = Path("/var/log/nginx/error.log").read_text()
        assert f'open() "{SECRET}" failed (13: Permission denied)' in log, log[-2000:]
        assert "(13: Permission denied) while connecting to upstream" in log, log[-2000:]
        assert "(1: Operation not permitted)" not in log, log[-2000:]
        assert len(evs) == len(secret) + len(meta), pol.audit_lines(evs)
    finally:
        _ctl("-s", "quit")
        pol.close()
        subprocess.run(["pkill", "-x", "nginx"], capture_output=True)
