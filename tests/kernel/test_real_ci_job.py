"""The shipped ci-runner policy runs a real CI job (issue #16): policies/ci-runner.policy,
unchanged, governs a job moved into /system.slice/ci-jobs.slice as a runner's systemd-run would
put it. The job does what CI jobs do, with Debian's own tools: clones a repository with git over
the file transport and over HTTP from a loopback server, builds a C program with make and cc
and runs it, creates a venv with Debian's python3 and pip-installs a wheel from the checkout,
and runs a test that binds a loopback port and talks to itself, under the policy, with no
denial at all. Then what the policy is
for, from inside the job: the host's secrets (/etc/shadow), the cloud metadata address, the
Docker socket and a way out of the job's cgroup are each refused with the family's errno and
an event naming its rule, while the control beside each (/etc/hostname, a loopback connect,
another Unix socket, a file written in /tmp) works.

git, make, gcc and python3-venv come from Debian's packages (scripts/setup.sh). The workspace
is the policy's own, /home/ci/builds, and the job's HOME /home/ci, as a runner sets it: /home is
a tmpfs in the guest (whose root is the host's, read-only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .harness import Loaded
from .test_audit import REPO
from .test_hardening import CG, UnixServer, ungoverned

# the shipped policies over real programs: on 6.1 and 6.12 (scripts/test.sh, README)
pytestmark = pytest.mark.real_software


JOBS = f"{CG}/system.slice/ci-jobs.slice"
WS = "/home/ci/builds"
HOME = "/home/ci"
SRC = "/tmp/pk-ci-src"
HTTP_PORT = 8080

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello from make"); return 0; }\n'
MAKEFILE = "hello: hello.c\n\tcc -O1 -o hello hello.c\n"
# a test that binds a loopback port (the kernel picks it) and talks to itself
SELF_TEST = """import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def serve():
    c, _ = srv.accept(); c.sendall(c.recv(64).upper()); c.close()
threading.Thread(target=serve).start()
cli = socket.create_connection(srv.getsockname(), timeout=10); cli.sendall(b"ping")
print("self-test", cli.recv(64).decode())
"""

JOB = f"""set -e
export HOME={HOME} PATH=/usr/bin:/bin
cd {WS}
git clone -q {SRC}/repo.git by-file
git clone -q http://127.0.0.1:{HTTP_PORT}/repo.git by-http
cmp by-file/hello.c by-http/hello.c
cd by-http
make -s
./hello
/usr/bin/python3 -m venv {WS}/venv
{WS}/venv/bin/pip install -q --no-index --no-deps --disable-pip-version-check pkdemo-1.0-py3-none-any.whl
{WS}/venv/bin/python -c 'import pkdemo; print(pkdemo.GREETING)'
{WS}/venv/bin/python self_test.py
echo job-done
"""

# From inside the job: each attack prints `NAME errno` (0: it worked).
ATTACKS = """import errno, os, socket, sys
def attempt(name, fn):
    try:
        fn(); print(name, 0)
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
def connect(addr):
    s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET); s.settimeout(3)
    try: s.connect(addr)
    except OSError as e:   # the connect was made: refused, timed out, or no route (the guest has only lo)
        if e.errno == errno.EACCES or e.errno == errno.EPERM: raise
    finally: s.close()
def unix(path):
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.close()
def move_to(cg):
    with open(cg + "/cgroup.procs", "w") as f: f.write(str(os.getpid()))
attempt("shadow", lambda: open("/etc/shadow").read())
attempt("hostname", lambda: open("/etc/hostname").read())
attempt("metadata", lambda: connect(("169.254.169.254", 80)))
attempt("loopback", lambda: connect(("127.0.0.1", 9)))
attempt("docker", lambda: unix("/run/docker.sock"))
attempt("other-sock", lambda: unix(sys.argv[2]))
attempt("tmp-write", lambda: open(sys.argv[1], "w").write("x"))
attempt("escape", lambda: move_to(sys.argv[3]))
"""


def _wheel(path: Path) -> None:
    """A wheel as `pip wheel` makes it, by hand: one module and its metadata."""
    info = "pkdemo-1.0.dist-info"
    files = {"pkdemo/__init__.py": 'GREETING = "hello from a wheel"\n',
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: pkdemo\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: pk\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)


@pytest.fixture
def ci_host():
    for tool in ("/usr/bin/git", "/usr/bin/make", "/usr/bin/cc"):
        assert os.path.exists(tool), f"{tool} is missing: run scripts/setup.sh"
    assert subprocess.run(["/usr/bin/python3", "-c", "import ensurepip"]).returncode == 0, \
        "Debian's python3-venv is missing: run scripts/setup.sh"
    if not os.path.exists(f"{CG}/cgroup.procs"):
        subprocess.run(["mount", "-t", "cgroup2", "none", CG], check=True)
    os.makedirs(JOBS, exist_ok=True)
    # the repository the job clones, served over HTTP by a server outside the job
    shutil.rmtree(SRC, ignore_errors=True)
    work = Path(SRC) / "work"
    work.mkdir(parents=True)
    (work / "hello.c").write_text(HELLO_C)
    (work / "Makefile").write_text(MAKEFILE)
    (work / "self_test.py").write_text(SELF_TEST)
    _wheel(work / "pkdemo-1.0-py3-none-any.whl")
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.org", "-c", "init.defaultBranch=main"]
    for argv in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "job"]):
        subprocess.run([*git, *argv], cwd=work, check=True)
    subprocess.run([*git, "clone", "-q", "--bare", str(work), f"{SRC}/repo.git"], check=True)
    subprocess.run(["git", "update-server-info"], cwd=f"{SRC}/repo.git", check=True)   # the dumb HTTP transport
    httpd = ThreadingHTTPServer(("127.0.0.1", HTTP_PORT), partial(QuietHandler, directory=SRC))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    docker = UnixServer("/run/docker.sock")
    other = UnixServer(f"{SRC}/other.sock")
    try:
        yield
    finally:
        httpd.shutdown()
        for s in (docker, other):
            s.sock.close()
        shutil.rmtree(SRC, ignore_errors=True)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _fresh_workspace() -> None:
    """An empty /home (a tmpfs of the guest's: its root is the host's, read-only) with the
    runner user's home and workspace in it."""
    subprocess.run(["umount", "-q", "/home"], capture_output=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/home"], check=True)
    os.makedirs(WS)


def in_job(argv: list[str]) -> subprocess.CompletedProcess:
    """Run argv as a CI job: moved into the job slice first (as systemd-run would)."""
    return subprocess.run(["sh", "-c", f'echo $$ > {JOBS}/cgroup.procs && exec "$@"', "job", *argv],
                          capture_output=True, text=True, timeout=900, cwd=SRC)


def _job() -> subprocess.CompletedProcess:
    return in_job(["/bin/bash", "-c", JOB])




def test_the_shipped_ci_runner_policy_runs_a_ci_job(ci_host):
    # (no run without the policy first: the whole job passing under it, with no denial, is the
    # claim; the denial test below proves its probes without the policy)
    _fresh_workspace()
    try:
        pol = Loaded("", "ci-runner", shipped=(str(REPO / "policies" / "ci-runner.policy"), "ci-runner"))
        try:
            r = _job()
            denied = [e for e in pol.drain() if e.decision == "deny"]
            assert r.returncode == 0 and r.stdout.splitlines()[-1:] == ["job-done"] and not denied, \
                (r.stdout[-2000:], r.stderr[-3000:], pol.audit_lines(denied))
            for line in ("hello from make", "hello from a wheel", "self-test PING"):
                assert line in r.stdout, r.stdout
        finally:
            pol.close()
    finally:
        subprocess.run(["umount", "-q", "/home"], capture_output=True)


def _attacks(job: bool) -> dict[str, str]:
    argv = ["/usr/bin/python3", "-c", ATTACKS, f"{SRC}/written", f"{SRC}/other.sock", CG]
    r = in_job(argv) if job else ungoverned(argv, cwd=SRC)
    assert r.returncode == 0, r.stdout + r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())


def test_the_shipped_ci_runner_policy_denies_what_it_names(ci_host):
    # with no policy every probe works: the attacks are real (the metadata address only times
    # out or is refused here: the connect itself was made)
    assert set(_attacks(job=True).values()) == {"0"}
    pol = Loaded("", "ci-runner", shipped=(str(REPO / "policies" / "ci-runner.policy"), "ci-runner"))
    try:
        pol.drain()
        got = _attacks(job=True)
        assert got == {"shadow": "EACCES", "hostname": "0", "metadata": "EACCES", "loopback": "0",
                       "docker": "EACCES", "other-sock": "0", "tmp-write": "0", "escape": "EACCES"}, got
        evs = [e for e in pol.drain() if e.decision == "deny"]
        want = {"shadow": ("file", "/etc/shadow", '"/etc/shadow"'),
                "docker": ("file", "/run/docker.sock", '"/run/docker.sock"'),
                "escape": ("file", f"{CG}/cgroup.procs", "/sys/fs/cgroup"),
                "metadata": ("net", None, "169.254.169.254")}
        for name, (family, path, fragment) in want.items():
            hit = [e for e in evs if e.family == family and (path is None or e.path == path)]
            assert hit, (name, pol.audit_lines(evs))
            text = next(r.text for r in pol.policy.rules if r.id == hit[0].rule_id)
            assert fragment in text and "ci-runner.policy:" in pol.rule_line(hit[0].rule_id), (name, text)
        assert len(evs) == 4, pol.audit_lines(evs)
    finally:
        pol.close()
