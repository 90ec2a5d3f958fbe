"""Learning a policy for real software (issue 17): Debian's nginx runs its whole life in audit
mode (start from scratch, requests, reload, log reopen, stop), `policyc suggest --widen` turns
the log into rules, and the enforced policy then runs the same life again from scratch, with a
page that was never requested while learning, and still keeps what it denied.

nginx comes from Debian's package (scripts/setup.sh installs it on the host, never starts it;
the VM sees the host's files). It runs with its own configuration under R, on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .harness import Loaded
from .test_audit import POLICYC, REPO, read_into, records, wait_for

NGINX = "/usr/sbin/nginx"
R = "/tmp/pk-nginx"
PORT = 8089
CONF = f"{R}/nginx.conf"

LEARN = """
policy weblearn {
    subject exe "/usr/sbin/nginx"
    mode audit
    default deny
    deny net connect any 169.254.169.254
}"""

# userspace over the kernel: on the oldest kernel only (scripts/test.sh, README)
# long: learning (policyc suggest) over nginx, 49 s; test_real_nginx runs Debian's nginx under
# the shipped policy in every CI run (POLICYC_LONG=1 runs this one)
pytestmark = [pytest.mark.oldest_only, pytest.mark.long]


def _fresh() -> None:
    """nginx's tree as a fresh install has it: configuration and pages, no pid file, no logs,
    no temp directories (nginx makes and chowns those at its first start)."""
    shutil.rmtree(R, ignore_errors=True)
    for d in ("www", "log", "run", "tmp"):   # Debian ships /var/lib/nginx: nginx makes the temp dirs in it
        os.makedirs(f"{R}/{d}")
    for page in ("index.html", "a.html", "b.html"):
        Path(f"{R}/www/{page}").write_text(f"<p>{page}</p>\n")
    temps = "\n".join(f"    {k}_temp_path {R}/tmp/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    Path(CONF).write_text(f"""user www-data;
worker_processes 1;
pid {R}/run/nginx.pid;
error_log {R}/log/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {R}/log/access.log;
{temps}
    server {{
        listen 127.0.0.1:{PORT};
        root {R}/www;
    }}
}}
""")


def _ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NGINX, "-c", CONF, *args], capture_output=True, text=True, timeout=120)


def _get(page: str) -> int:
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/{page}", timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            time.sleep(0.2)   # not listening yet
    return 0



def _life(pages: list[str]) -> list[str]:
    """nginx's whole life; what went wrong, step by step (empty: all of it worked)."""
    problems = []
    r = _ctl("-t")
    if r.returncode:
        problems.append(f"nginx -t: {r.stderr.strip()[-300:]}")
    r = _ctl()
    if r.returncode or not wait_for(lambda: os.path.exists(f"{R}/run/nginx.pid"), 60):
        problems.append(f"start: {r.stderr.strip()[-300:]}")
        return problems
    for p in pages:
        if (code := _get(p)) != 200:
            problems.append(f"GET /{p}: {code}")
    r = _ctl("-s", "reload")
    if r.returncode:
        problems.append(f"reload: {r.stderr.strip()[-300:]}")
    time.sleep(1.0)
    if (code := _get(pages[0])) != 200:
        problems.append(f"GET /{pages[0]} after reload: {code}")
    # logrotate: move the log away, reopen: the master makes a new one the workers write
    os.rename(f"{R}/log/access.log", f"{R}/log/access.log.1")
    r = _ctl("-s", "reopen")
    if r.returncode or not wait_for(lambda: os.path.exists(f"{R}/log/access.log"), 60):
        problems.append(f"reopen: {r.stderr.strip()[-300:]}")
    if (code := _get(pages[-1])) != 200:
        problems.append(f"GET /{pages[-1]} after reopen: {code}")
    r = _ctl("-s", "quit")
    if r.returncode or not wait_for(lambda: not os.path.exists(f"{R}/run/nginx.pid"), 60):
        problems.append(f"stop: {r.stderr.strip()[-300:]}")
        subprocess.run(["pkill", "-f", f"nginx -c {CONF}"])
    return problems


def test_a_learned_policy_runs_nginx_through_its_life(tmp_path):
    # the kernel suite never skips: a machine without nginx fails here (scripts/setup.sh installs it)
    assert os.path.exists(NGINX), "nginx is not installed: run scripts/setup.sh"
    _fresh()
    assert _life(["index.html", "a.html"]) == []        # the control: no policy
    _fresh()
    pol = Loaded(LEARN, "weblearn")
    log = str(tmp_path / "learn.jsonl")
    try:
        assert _life(["index.html", "a.html"]) == []    # audit mode: everything is let through, and logged
        read_into(log)
        evs = records(log, pol.session.name, "event")
        assert evs and all(e["decision"] == "audit" and e["errno"] is None for e in evs)   # nothing denied
        assert all(e["process"]["exe"] == NGINX for e in evs)
        sug = subprocess.run([*POLICYC, "suggest", log, "--policy", pol.session.name, "--widen", f"{R}/www"],
                             cwd=str(REPO), capture_output=True, text=True, timeout=300)
        assert sug.returncode == 0, sug.stderr
    finally:
        pol.close()
    text = sug.stdout
    assert "ruleset weblearn-suggested" in text
    assert f'"{R}/www/**"' in text                       # --widen: the served tree, not the pages seen
    rules = [ln.strip() for ln in text.split("ruleset weblearn-suggested", 1)[1].splitlines()
             if ln.strip().startswith("allow")]
    # no glob over a host essential (the refusal is said in a comment), no metadata address
    assert not [r for r in rules if '"/etc/*"' in r or "/etc/shadow" in r or "169.254.169.254" in r], rules
    assert '# not collapsed to "/etc/*"' in text
    d = tmp_path / "enforced"
    d.mkdir()
    (d / "suggested.policy").write_text(text)
    enforced = ('include "suggested.policy"\n' + LEARN.replace("mode audit", "mode enforce")
                .replace("default deny", "default deny\n    use weblearn-suggested").replace("weblearn {", "webenf {"))
    (d / "enforced.policy").write_text(enforced)
    chk = subprocess.run([*POLICYC, "check", str(d / "enforced.policy")], cwd=str(REPO), capture_output=True,
                         text=True, timeout=300)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    _fresh()
    enf = Loaded(enforced.replace('include "suggested.policy"\n', text + "\n"), "webenf")
    try:
        # from scratch again, and b.html was never requested while learning
        problems = _life(["index.html", "b.html"])
        denials = [e for e in enf.drain() if e.decision == "deny"]
        assert problems == [], (problems, [(e.family, e.op, e.path) for e in denials][:20], text)
        assert denials == [], [(e.family, e.op, e.path) for e in denials][:20]
    finally:
        enf.close()
        subprocess.run(["pkill", "-f", f"nginx -c {CONF}"])
