"""Receive-side rules (`allow|deny signal ... from exe ...`, `ptrace from ...`) in a real kernel:
decided when the process signalled or traced is governed, whoever the sender is (here: never
governed). A denial is EPERM with an event that names the receive rule and says the receiving
side decided (EVENT_RECEIVE, `object.side: "receive"`); an allowed sender works; a process the
policy does not govern is untouched.

The receiver is a harness worker (python, marked governed through its pidfd). The signal is
SIGWINCH, whose default action is to ignore it: a delivered one changes nothing. Tracing is
PTRACE_SEIZE, which checks the same PTRACE_MODE_ATTACH as PTRACE_ATTACH but does not stop
the tracee (the worker goes on answering after an allowed tracer exits)."""

import os
import signal
import subprocess
import time

import pytest

from .harness import Loaded, Worker

POLICY = """
policy receive {
    subject exe "/nonexistent/receive"
    default allow
    allow signal winch, usr2 from exe "/usr/bin/python3*"
    deny signal from all
    allow ptrace from exe "/usr/bin/python3*"
    deny ptrace from all
}
"""

# an ungoverned bash's builtin kill: EPERM prints "Operation not permitted" and exits 1
BASH_KILL = "kill -WINCH {pid}; echo kill $?"
PY_KILL = ("import os, signal, sys\ntry:\n    os.kill(int(sys.argv[1]), signal.SIGWINCH)\n    print('kill ok')\n"
           "except OSError as e:\n    print('kill', e.errno)\n")
# PTRACE_SEIZE (0x4206); the tracer's exit detaches
PY_SEIZE = ("import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.ptrace(0x4206, int(sys.argv[1]), 0, 0)\n"
            "print('ptrace', 'ok' if r == 0 else ctypes.get_errno())\n")
# the same from perl (/usr/bin/perl, Debian's perl-base): a tracer no `from exe` rule allows
# ($ARGV[0] + 0: perl's syscall passes a string argument as a pointer)
PERL_SEIZE = ('$r = syscall(101, 0x4206, $ARGV[0] + 0, 0, 0); '
              'print $r == 0 ? "ptrace ok\\n" : "ptrace " . ($! + 0) . "\\n";')


def bash_kill(pid: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", BASH_KILL.format(pid=pid)], capture_output=True, text=True)


def py(code: str, *args) -> subprocess.CompletedProcess:
    # Debian's python (the `from exe` rule's), not whichever python3 is first on PATH
    return subprocess.run(["/usr/bin/python3", "-c", code, *map(str, args)], capture_output=True, text=True)


def perl_seize(pid: int) -> subprocess.CompletedProcess:
    return subprocess.run(["perl", "-e", PERL_SEIZE, str(pid)], capture_output=True, text=True)


def test_without_a_policy_every_sender_reaches_the_worker():
    # the control for everything below: no policy loaded, both senders signal and trace it
    w = Worker()
    try:
        assert "kill 0" in bash_kill(w.pid).stdout
        assert py(PY_KILL, w.pid).stdout.strip() == "kill ok"
        assert py(PY_SEIZE, w.pid).stdout.strip() == "ptrace ok"
        assert perl_seize(w.pid).stdout.strip() == "ptrace ok"
        assert w.op("pid")["pid"] == w.pid  # still answering: neither SIGWINCH nor a seize stopped it
    finally:
        w.close()


@pytest.fixture(scope="module")
def pol():
    p = Loaded(POLICY, "receive")
    yield p
    p.close()


@pytest.fixture()
def receiver(pol):
    w = pol.worker()
    pol.drain()
    yield w
    w.close()


def test_a_sender_no_rule_allows_gets_eperm_and_the_receive_rule_is_named(pol, receiver):
    res = bash_kill(receiver.pid)
    assert "kill 1" in res.stdout, res.stdout + res.stderr
    assert "Operation not permitted" in res.stderr, res.stderr
    evs = [e for e in pol.drain() if e.family == "signal" and e.target_pid == receiver.pid]
    assert evs, "no event for the denied signal"
    e = evs[0]
    assert e.decision == "deny" and e.aux == signal.SIGWINCH and e.hook == "task_kill"
    assert e.rule_id == pol.rule_id_of("deny signal from all")
    assert e.flags & 0x1  # EVENT_RECEIVE: the receiver's policy decided
    assert e.exe and e.exe.endswith("/bash"), e.exe   # the event's process is the sender
    (rec,) = pol.records([e])
    assert rec["object"]["side"] == "receive" and rec["object"]["target_pid"] == receiver.pid
    assert rec["object"]["signal"] == "winch"
    pol.audit_lines([e])


def test_the_sender_a_from_exe_rule_allows_gets_through(pol, receiver):
    res = py(PY_KILL, receiver.pid)
    assert res.stdout.strip() == "kill ok", res.stdout + res.stderr
    assert not [e for e in pol.drain() if e.family == "signal" and e.target_pid == receiver.pid]
    assert receiver.op("pid")["pid"] == receiver.pid


def test_a_signal_the_allowed_sender_is_not_allowed_falls_to_from_all(pol, receiver):
    # python may send winch and usr2, not term: `deny signal from all` decides
    code = PY_KILL.replace("SIGWINCH", "SIGTERM")
    res = py(code, receiver.pid)
    assert res.stdout.strip() == "kill 1", res.stdout + res.stderr
    evs = [e for e in pol.drain() if e.family == "signal" and e.target_pid == receiver.pid]
    assert evs and evs[0].aux == signal.SIGTERM
    assert evs[0].rule_id == pol.rule_id_of("deny signal from all")
    assert receiver.op("pid")["pid"] == receiver.pid   # not terminated


def test_ptrace_by_an_outsider_no_rule_allows_is_denied(pol, receiver):
    res = perl_seize(receiver.pid)
    assert res.stdout.strip() == "ptrace 1", res.stdout + res.stderr   # EPERM
    evs = [e for e in pol.drain() if e.family == "ptrace" and e.target_pid == receiver.pid]
    assert evs and evs[0].decision == "deny" and evs[0].hook == "ptrace_access_check"
    assert evs[0].rule_id == pol.rule_id_of("deny ptrace from all")
    assert evs[0].flags & 0x1
    assert pol.records(evs[:1])[0]["object"]["side"] == "receive"


def test_ptrace_by_the_allowed_tracer_works(pol, receiver):
    res = py(PY_SEIZE, receiver.pid)
    assert res.stdout.strip() == "ptrace ok", res.stdout + res.stderr
    assert not [e for e in pol.drain() if e.family == "ptrace" and e.target_pid == receiver.pid]
    assert receiver.op("pid")["pid"] == receiver.pid


def test_a_process_the_policy_does_not_govern_is_untouched(pol):
    other = Worker()   # not governed
    try:
        pol.drain()
        assert "kill 0" in bash_kill(other.pid).stdout
        assert perl_seize(other.pid).stdout.strip() == "ptrace ok"
        assert not [e for e in pol.drain() if e.target_pid == other.pid]
        assert other.op("pid")["pid"] == other.pid
    finally:
        other.close()


# A receiver that counts the SIGUSR2s it gets (in a file), and a sender that makes the kernel
# send one through a file's owner: F_SETOWN(receiver) + F_SETSIG(SIGUSR2) + O_ASYNC on a pipe,
# then a write makes it readable (send_sigio: no kill(2), no task_kill).
RECEIVER = ("import os, signal, sys, time\nout = sys.argv[1]\n"
            "signal.signal(signal.SIGUSR2, lambda *a: open(out, 'a').write('got\\n'))\n"
            "print('ready', flush=True)\nwhile True:\n    time.sleep(0.05)\n")
SIGIO_SEND = ("import fcntl, os, signal, sys, time\nr, w = os.pipe()\n"
              "fcntl.fcntl(r, fcntl.F_SETOWN, int(sys.argv[1]))\nfcntl.fcntl(r, 10, signal.SIGUSR2)  # F_SETSIG\n"
              "fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)\n"
              "os.write(w, b'x')\ntime.sleep(0.3)\nprint('sent')\n")


def sigio_round(pid: int, log: str) -> int:
    before = open(log).read().count("got") if os.path.exists(log) else 0
    res = py(SIGIO_SEND, pid)
    assert res.stdout.strip() == "sent", res.stdout + res.stderr
    time.sleep(0.3)
    return (open(log).read().count("got") if os.path.exists(log) else 0) - before


def start_receiver(log: str) -> subprocess.Popen:
    proc = subprocess.Popen(["/usr/bin/python3", "-c", RECEIVER, log], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_signal_through_a_files_owner_is_decided_by_the_receive_rules(tmp_path):
    """An ungoverned process's F_SETOWN + O_ASYNC reaches a governed process without kill(2):
    its signal is decided by the receive rules as from an unknown sender (only `from all`
    matches: the process that set the owner is not the one running when it is sent)."""
    log = str(tmp_path / "got")
    # the probe with no policy: the signal arrives
    proc = start_receiver(log)
    try:
        # readable, then the sender's exit closes the pipe (a hang-up): one or two signals
        assert sigio_round(proc.pid, log) >= 1
    finally:
        proc.kill()
        proc.wait()
    p = Loaded(POLICY, "receive-sigio")
    proc = start_receiver(log)
    try:
        p.session.govern(proc.pid)
        p.drain()
        assert sigio_round(proc.pid, log) == 0          # not delivered
        evs = [e for e in p.drain() if e.family == "signal" and e.target_pid == proc.pid]
        assert evs, "no event for the denied signal"
        e = evs[0]
        assert e.decision == "deny" and e.hook == "file_send_sigiotask" and e.aux == signal.SIGUSR2
        assert e.flags & 0x1 and e.rule_id == p.rule_id_of("deny signal from all")
        assert p.records([e])[0]["errno"] == "EPERM"
        # the control beside it: the same sender's kill(2) of usr2 is allowed by `from exe`
        before = open(log).read().count("got")
        res = py(PY_KILL.replace("SIGWINCH", "SIGUSR2"), proc.pid)
        assert res.stdout.strip() == "kill ok", res.stdout + res.stderr
        time.sleep(0.3)
        assert open(log).read().count("got") == before + 1
    finally:
        p.close()   # first: the policy denies this test's own kill of the receiver
        proc.kill()
        proc.wait()
