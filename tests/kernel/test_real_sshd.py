"""The shipped sshd policies run Debian's OpenSSH (issue #16): policies/sshd.policy, both of its
policies (`sshd` and `sshd-sessions`) loaded unchanged, over Debian's sshd with its own
configuration and host keys, on a loopback port. Under the policies: a key login that runs a
command, a login with a pty, scp (SFTP, the default of OpenSSH 9) and legacy scp (-O), an sftp
batch; each works and none is denied. Then what the policies are for (each probe first run
with no policy, to prove it works): a session cannot read a host key (EACCES), run a program it put in
/tmp (EACCES) or stop the daemon (EPERM), each with an event naming its rule, while the
control beside each (the public key, a program from /usr/bin, a signal to its own child) still
works.

openssh-server and openssh-client come from Debian's packages (scripts/setup.sh installs them on
the host, never starts them; the guest sees the host's files). The daemon's run directory is a
tmpfs in the guest; the login's key and authorized_keys live under /tmp (the guest's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .harness import Loaded
from .test_audit import REPO

# the shipped policies over real programs: on 6.1 and 6.12 (scripts/test.sh, README)
pytestmark = pytest.mark.real_software


SSHD = "/usr/sbin/sshd"
PORT = 2222
D = "/tmp/pk-sshd"
KEY = f"{D}/id_ed25519"
HOSTKEY = "/etc/ssh/ssh_host_ed25519_key"


@pytest.fixture
def debian_sshd():
    # the kernel suite never skips: a machine without OpenSSH fails here (scripts/setup.sh installs it)
    assert os.path.exists(SSHD) and os.path.exists(HOSTKEY), "openssh-server is not installed: run scripts/setup.sh"
    shutil.rmtree(D, ignore_errors=True)
    os.makedirs(D)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY], check=True)
    Path(f"{D}/authorized_keys").write_text(Path(f"{KEY}.pub").read_text())
    shutil.copy("/usr/bin/true", f"{D}/dropped")          # a program a session brings along
    Path(f"{D}/up.txt").write_text("uploaded\n")
    # sshd's privilege separation directory (the guest's /run is its own tmpfs)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    # root's shell start-up files are the host's (bash reads ~/.bashrc under sshd even for a
    # command): an empty one for the logins, as on a server
    Path(f"{D}/empty").write_text("")
    rc = [f for f in ("/root/.bashrc", "/root/.profile") if os.path.exists(f)]
    for f in rc:
        subprocess.run(["mount", "--bind", f"{D}/empty", f], check=True)
    yield
    for f in rc:
        subprocess.run(["umount", "-q", f], capture_output=True)
    subprocess.run(["pkill", "-f", f"{SSHD} -D -e -p {PORT}"], capture_output=True)
    shutil.rmtree(D, ignore_errors=True)


def _start() -> subprocess.Popen:
    """Debian's sshd with its own sshd_config (PAM, the sftp subsystem, its host keys), on a
    loopback port; the login's keys from /tmp."""
    proc = subprocess.Popen([SSHD, "-D", "-e", "-p", str(PORT), "-o", "ListenAddress=127.0.0.1",
                             "-o", f"AuthorizedKeysFile={D}/authorized_keys", "-o", "StrictModes=no"],
                            stdout=subprocess.DEVNULL, stderr=open(f"{D}/sshd.log", "ab"))
    for _ in range(300):
        if subprocess.run(["ssh-keyscan", "-p", str(PORT), "127.0.0.1"], capture_output=True).stdout:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"sshd did not start: {Path(f'{D}/sshd.log').read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


CLIENT_OPTS = ["-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


def ssh(*cmd: str, tty: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", *CLIENT_OPTS, "-p", str(PORT), *(["-tt"] if tty else []), "root@127.0.0.1", *cmd],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _sessions() -> list[str]:
    """Key login, pty, scp both ways, legacy scp, sftp; what went wrong (empty: all of it worked)."""
    problems = []
    r = ssh("echo", "logged-in")
    if r.returncode or r.stdout.strip() != "logged-in":
        problems.append(f"key login: {r.returncode} {r.stdout!r} {r.stderr.strip()[-300:]}")
    r = ssh("tty", tty=True)
    if r.returncode or not r.stdout.strip().splitlines()[-1:] or not r.stdout.strip().splitlines()[-1].startswith("/dev/pts/"):
        problems.append(f"pty: {r.returncode} {r.stdout!r} {r.stderr.strip()[-300:]}")
    for flags, name in (([], "scp"), (["-O"], "scp -O")):
        dest = f"{D}/down-{len(flags)}.txt"
        r = subprocess.run(["scp", *flags, *CLIENT_OPTS, "-P", str(PORT), f"{D}/up.txt", f"root@127.0.0.1:{dest}"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode or not os.path.exists(dest) or Path(dest).read_text() != "uploaded\n":
            problems.append(f"{name} upload: {r.returncode} {r.stderr.strip()[-300:]}")
        back = f"{D}/back-{len(flags)}.txt"
        r = subprocess.run(["scp", *flags, *CLIENT_OPTS, "-P", str(PORT), f"root@127.0.0.1:{dest}", back],
                           capture_output=True, text=True, timeout=120)
        if r.returncode or not os.path.exists(back):
            problems.append(f"{name} download: {r.returncode} {r.stderr.strip()[-300:]}")
    Path(f"{D}/batch").write_text(f"put {D}/up.txt {D}/sftp.txt\nget {D}/sftp.txt {D}/sftp-back.txt\nls {D}\n")
    r = subprocess.run(["sftp", *CLIENT_OPTS, "-P", str(PORT), "-b", f"{D}/batch", "root@127.0.0.1"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode or not os.path.exists(f"{D}/sftp-back.txt"):
        problems.append(f"sftp: {r.returncode} {r.stderr.strip()[-300:]}")
    for f in Path(D).glob("*"):
        if f.name.startswith(("down-", "back-", "sftp")):
            f.unlink()
    return problems


# a session's three attacks and their controls, one login: each prints `NAME errno` (0: done)
ATTACKS = f"""
try() {{ name=$1; shift; if "$@" >/dev/null 2>{D}/err; then echo "$name 0"; else echo "$name $(cat {D}/err | tr -d '\\n')"; fi; }}
try hostkey cat {HOSTKEY}
try hostkey-pub cat {HOSTKEY}.pub
try dropped {D}/dropped
try usr-bin /usr/bin/true
sleep 60 & child=$!
try child kill -STOP $child
kill -KILL $child
try daemon kill -STOP $PPID_SSHD
kill -CONT $PPID_SSHD 2>/dev/null
"""


def _attack(daemon_pid: int) -> dict[str, str]:
    r = ssh(f"PPID_SSHD={daemon_pid}; " + ATTACKS)
    assert r.returncode == 0, r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())


def test_the_shipped_sshd_policies_run_debians_openssh(debian_sshd):
    proc = _start()
    try:
        got = _attack(proc.pid)
        # with no policy every probe works (root in the guest): the attacks are real
        assert got == {"hostkey": "0", "hostkey-pub": "0", "dropped": "0", "usr-bin": "0", "child": "0",
                       "daemon": "0"}, got
    finally:
        _stop(proc)
    shipped = str(REPO / "policies" / "sshd.policy")
    daemon = Loaded("", "sshd", shipped=(shipped, "sshd"))
    sessions = Loaded("", "sshd-sessions", shipped=(shipped, "sshd-sessions"))
    try:
        proc = _start()
        try:
            problems = _sessions()
            denied = [e for pol in (daemon, sessions) for e in pol.drain() if e.decision == "deny"]
            assert problems == [] and denied == [], (problems, [(e.family, e.op, e.path, e.exe) for e in denied])
            got = _attack(proc.pid)
            assert got["hostkey"].endswith("Permission denied"), got          # EACCES: a file
            assert got["dropped"].endswith("Permission denied"), got          # EACCES: an exec
            assert got["daemon"].endswith("Operation not permitted"), got     # EPERM: a signal
            assert (got["hostkey-pub"], got["usr-bin"], got["child"]) == ("0", "0", "0"), got
            assert proc.poll() is None                                        # the daemon lives on
            d_evs = [e for e in daemon.drain() if e.decision == "deny"]
            s_evs = [e for e in sessions.drain() if e.decision == "deny"]
            assert [(e.family, e.op, e.path) for e in d_evs] == [("exec", "exec", f"{D}/dropped")], d_evs
            assert next(r.text for r in daemon.policy.rules if r.id == d_evs[0].rule_id) == 'deny exec "${tmpdirs}/**"'
            fams = sorted((e.family, e.op, e.path if e.family == "file" else e.target_pid) for e in s_evs)
            assert fams == [("file", "read", HOSTKEY), ("signal", "signal", proc.pid)], fams
            for e in s_evs:
                text = next(r.text for r in sessions.policy.rules if r.id == e.rule_id)
                assert ("ssh_host_" in text) if e.family == "file" else text.startswith("deny signal"), text
        finally:
            _stop(proc)
    finally:
        daemon.close()
        sessions.close()
