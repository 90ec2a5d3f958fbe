"""The audit log end to end, in the kernel (issue 5): `policyc audit` started after the policy
was loaded gives exactly one line per denial naming the right rule and source line; a burst
far beyond a small ring buffer gives delivered + reported dropped == triggered, exactly;
`suggest` on an audit-mode run yields a policy that, enforced, allows the same workload and
still denies what the original denied; the journal gets structured fields."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyc.codegen import build_policy
from policyc.diagnostics import Diagnostics
from policyc.execute import Session
from policyc.lower import load_program

from .harness import Loaded, tree

R = "/tmp/pk-audit"
REPO = Path(__file__).resolve().parents[2]
POLICYC = [sys.executable, "-m", "policyc"]

AUDITED = f"""
policy audited {{
    subject exe "/nonexistent/audited"
    default allow
    deny file read "{R}/secret*"
    deny file write "{R}/w/**"
}}"""

BURST = f"""
policy burst {{
    subject exe "/nonexistent/burst"
    default allow
    deny file read "{R}/secret*"
}}"""

LIMITED = f"""
policy limited {{
    subject exe "/nonexistent/limited"
    default allow
    deny file read "{R}/secret1" limit 5/min
    deny file read "{R}/secret2"
}}"""

DEFAULT_LIMITED = f"""
policy default-limited {{
    subject exe "/nonexistent/default-limited"
    default deny limit 4/min
    allow file read, exec-map "/**"
    allow exec "/**"
    allow capability
}}"""

TRIAL = f"""
policy trial {{
    subject exe "/nonexistent/trial"
    mode audit
    default deny
    deny file read "{R}/forbidden/**"
}}"""

# opens PATH N times; prints how many were denied (EACCES, a file denial)
BURSTER = ("import errno, os, sys\n"
           "p, n, d = sys.argv[1], int(sys.argv[2]), 0\n"
           "for _ in range(n):\n"
           "    try:\n"
           "        os.close(os.open(p, os.O_RDONLY))\n"
           "    except PermissionError as e:\n"
           "        d += e.errno == errno.EACCES\n"
           "print(d)\n")


@pytest.fixture(scope="module", autouse=True)
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {"secret1": "s\n", "secret2": "s\n", "w": None, "w/x": "x\n", "open": "o\n",
             "app/data/a.txt": "a\n", "app/data/b.txt": "b\n", "app/data/c.txt": "c\n",
             "app/data/d.txt": "d\n", "app/conf/x.conf": "x\n", "forbidden/secret": "f\n"})
    yield


def audit_cmd(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([*POLICYC, "audit", *args], cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def read_into(log: str) -> None:
    """One `policyc audit --output LOG` run: what the ring buffers hold now."""
    proc = audit_cmd("--output", log)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err


def records(path: str, instance: str, typ: str | None = None) -> list[dict]:
    out = []
    if not os.path.exists(path):
        return out
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec["instance"] == instance and (typ is None or rec["type"] == typ):
            out.append(rec)
    return out


def wait_for(fn, timeout=90.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.2)
    return fn()


def burst(session: Session, path: str, n: int) -> int:
    proc = session.spawn([sys.executable, "-c", BURSTER, path, str(n)], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0
    return int(out.strip())


def test_n_denials_give_n_lines_naming_rule_and_line_reader_started_after_load(tmp_path):
    pol = Loaded(AUDITED, "audited")
    log = str(tmp_path / "audit.jsonl")
    try:
        name = pol.session.name
        read_rule, write_rule = pol.rule_id_of("file read"), pol.rule_id_of("file write")
        # denials while no reader runs: they wait in the ring buffer
        w = pol.worker()
        for i in range(25):
            assert w.op("read", f"{R}/secret{1 + i % 2}")["errno"] == "EACCES"
        for _ in range(15):
            assert w.op("write", f"{R}/w/x")["errno"] == "EACCES"
        assert w.op("read", f"{R}/open")["ok"]
        proc = audit_cmd("--follow", "--output", log)
        assert wait_for(lambda: len(records(log, name, "event")) >= 40), proc.stderr.read() if proc.poll() else ""
        # and while it follows
        for _ in range(10):
            assert w.op("read", f"{R}/secret1")["errno"] == "EACCES"
        assert wait_for(lambda: len(records(log, name, "event")) >= 50)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        evs = records(log, name, "event")
        assert len(evs) == 50
        assert records(log, name, "dropped") == []
        reads = [e for e in evs if e["rule_id"] == read_rule]
        writes = [e for e in evs if e["rule_id"] == write_rule]
        assert len(reads) == 35 and len(writes) == 15
        assert {e["errno"] for e in evs} == {"EACCES"}   # what each open returned: a file denial
        for e, rid in [(reads[0], read_rule), (writes[0], write_rule)]:
            assert e["rule"] == pol.rule_line(rid)
            assert e["policy"] == "audited" and e["decision"] == "deny" and e["mode"] == "enforce"
            assert e["hook"] in ("file_open", "path_truncate") and e["schema"] == 2
            assert e["process"]["pid"] == w.pid
            assert e["process"]["exe"] == os.path.realpath(sys.executable)
            assert e["process"]["parent"]["exe"] is not None
            assert e["process"]["cgroup"] is not None
            assert abs(e["time_ns"] - time.time_ns()) < 600 * 10**9
        assert {e["object"]["path"] for e in reads} == {f"{R}/secret1", f"{R}/secret2"}
        assert {(e["op"], e["object"]["path"]) for e in writes} == {("write", f"{R}/w/x")}
        times = [e["time_ns"] for e in evs]
        assert times == sorted(times)
        # a restarted reader neither repeats nor misses
        again = audit_cmd()
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert [json.loads(x) for x in out.splitlines() if json.loads(x)["instance"] == name] == []
        w.close()
    finally:
        pol.close()


def test_overload_delivered_plus_dropped_equals_triggered(tmp_path):
    d = tmp_path / "burst"
    d.mkdir()
    (d / "burst.policy").write_text(BURST)
    diags = Diagnostics()
    program = load_program([str(d / "burst.policy")], diags)
    (policy,) = program.policies
    res = build_policy(program, policy, d / "out", ringbuf_bytes=4096)
    session = Session(res.manifest_path, name=f"ktburst{os.getpid()}")
    try:
        name = session.name
        n = 3000
        denied = burst(session, f"{R}/secret1", n)
        assert denied == n
        log = str(tmp_path / "burst.jsonl")
        read_into(log)
        evs = records(log, name, "event")
        drops = records(log, name, "dropped")
        dropped = sum(r["count"] for r in drops)
        assert dropped > 0 and len(evs) > 0
        assert len(evs) + dropped == n, (len(evs), dropped)
        rid = next(r.id for r in policy.rules)
        assert {(x["rule_id"], x["rule"]) for r in drops for x in r["rules"]} == {(rid, str(policy.rules[0].span))}
        assert all(r["unattributed"] == 0 for r in drops)
        # the per-hook counters agree, and a second reader reports nothing again
        st = json.loads(subprocess.run([*POLICYC, "status", "--json"], cwd=str(REPO), capture_output=True,
                                       text=True, timeout=120).stdout)
        (mine,) = [p for p in st["policies"] if p["name"] == name]
        assert sum(c["dropped"] for c in mine["counters"].values()) == dropped
        proc = audit_cmd()
        out, err = proc.communicate(timeout=120)
        assert [x for x in out.splitlines() if json.loads(x)["instance"] == name] == []
        print(f"AUDIT-OVERLOAD triggered={n} delivered={len(evs)} dropped={dropped}")
    finally:
        session.close()


def test_rule_limit_sends_n_events_and_reports_the_rest_as_suppressed(tmp_path):
    pol = Loaded(LIMITED, "limited")
    try:
        name = pol.session.name
        limited, unlimited = pol.rule_id_of("secret1"), pol.rule_id_of("secret2")
        n = 200
        assert burst(pol.session, f"{R}/secret1", n) == n   # past the limit: still denied
        assert burst(pol.session, f"{R}/secret2", 20) == 20
        log = str(tmp_path / "limited.jsonl")
        read_into(log)
        evs = records(log, name, "event")
        held = records(log, name, "suppressed")
        # one window of a minute: exactly 5 events, the other 195 counted per rule
        assert len([e for e in evs if e["rule_id"] == limited]) == 5
        assert sum(r["count"] for r in held) == n - 5
        assert {(x["rule_id"], x["rule"], x["limit"]) for r in held for x in r["rules"]} == \
            {(limited, pol.rule_line(limited), "5/min")}
        assert len([e for e in evs if e["rule_id"] == unlimited]) == 20
        assert records(log, name, "dropped") == []
        st = json.loads(subprocess.run([*POLICYC, "status", "--json"], cwd=str(REPO), capture_output=True,
                                       text=True, timeout=120).stdout)
        (mine,) = [p for p in st["policies"] if p["name"] == name]
        (entry,) = mine["suppressed"]
        assert (entry["rule_id"], entry["rule"], entry["limit"], entry["count"]) == \
            (limited, pol.rule_line(limited), "5/min", n - 5)
        # reported once: a second reader finds nothing new
        again = audit_cmd()
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert [x for x in out.splitlines() if json.loads(x)["instance"] == name] == []
    finally:
        pol.close()


WRITER = ("import errno, os, sys\n"
          "p, n, d = sys.argv[1], int(sys.argv[2]), 0\n"
          "for _ in range(n):\n"
          "    try:\n"
          "        os.close(os.open(p, os.O_WRONLY))\n"
          "    except PermissionError as e:\n"
          "        d += e.errno == errno.EACCES\n"
          "print(d)\n")


def test_default_limit_limits_the_defaults_events(tmp_path):
    pol = Loaded(DEFAULT_LIMITED, "default-limited")
    try:
        name = pol.session.name
        n = 100
        proc = pol.session.spawn([sys.executable, "-B", "-c", WRITER, f"{R}/w/x", str(n)], stdout=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
        out, _ = proc.communicate(timeout=600)
        assert int(out.strip()) == n   # the default still decides every one
        log = str(tmp_path / "default.jsonl")
        read_into(log)
        evs = [e for e in records(log, name, "event") if e["reason"] == "default"]
        held = records(log, name, "suppressed")
        assert len(evs) == 4 and {e["object"]["path"] for e in evs} == {f"{R}/w/x"}
        assert [(x["rule_id"], x["limit"]) for r in held for x in r["rules"]] == [(None, "4/min")]
        assert len(evs) + sum(r["count"] for r in held) == n
    finally:
        pol.close()


def _run(session: Session, argv: list[str]) -> subprocess.CompletedProcess:
    proc = session.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())


WORKLOAD = ["/bin/sh", "-c", f"cat {R}/app/data/a.txt {R}/app/data/b.txt {R}/app/data/c.txt "
            f"{R}/app/data/d.txt {R}/app/conf/x.conf"]
FORBIDDEN = ["/bin/cat", f"{R}/forbidden/secret"]


@pytest.mark.oldest_only   # userspace (suggest, journald) over events the rest proves on each kernel
def test_suggest_from_audit_run_allows_workload_and_keeps_denials(tmp_path):
    pol = Loaded(TRIAL, "trial")
    try:
        name = pol.session.name
        first = _run(pol.session, WORKLOAD)
        assert first.returncode == 0 and first.stdout == "a\nb\nc\nd\nx\n", first
        assert _run(pol.session, FORBIDDEN).returncode == 0  # audit mode: allowed, logged
        log = str(tmp_path / "trial.jsonl")
        read_into(log)
        evs = records(log, name, "event")
        assert evs and all(e["decision"] == "audit" and e["mode"] == "audit" and e["errno"] is None for e in evs)
        sug = subprocess.run([*POLICYC, "suggest", log, "--policy", name], cwd=str(REPO), capture_output=True,
                             text=True, timeout=120)
        assert sug.returncode == 0, sug.stderr
        assert "ruleset trial-suggested" in sug.stdout
        assert f"{R}/app/data/*" in sug.stdout  # four siblings collapsed
        assert "kept:" in sug.stdout and "forbidden" not in sug.stdout.split("ruleset", 1)[1]
    finally:
        pol.close()
    d = tmp_path / "enforced"
    d.mkdir()
    (d / "suggested.policy").write_text(sug.stdout)
    chk = subprocess.run([*POLICYC, "check", str(d / "suggested.policy")], cwd=str(REPO), capture_output=True,
                         text=True, timeout=120)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    enforced = ('include "suggested.policy"\n'
                + TRIAL.replace("mode audit", "mode enforce").replace("default deny", "default deny\n    use trial-suggested"))
    (d / "enforced.policy").write_text(enforced)
    diags = Diagnostics()
    program = load_program([str(d / "enforced.policy")], diags)
    assert program is not None, [str(x) for x in diags.items]
    (policy,) = program.policies
    res = build_policy(program, policy, d / "out")
    session = Session(res.manifest_path, name=f"kttrial{os.getpid()}")
    try:
        again = _run(session, WORKLOAD)
        assert again.returncode == 0 and again.stdout == "a\nb\nc\nd\nx\n", (again, sug.stdout)
        denied = _run(session, FORBIDDEN)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        evs = session.drain()
        assert [e.path for e in evs if e.decision == "deny"] == [f"{R}/forbidden/secret"], \
            [(e.op, e.path, e.reason) for e in evs]
    finally:
        session.close()


def _parse_journal(data: bytes) -> dict[str, str]:
    """The journal's native protocol: KEY=value lines, or KEY\\n<le64 size>value\\n."""
    out, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            out[k.decode()] = v.decode()
            i = nl + 1
        else:
            size = int.from_bytes(data[nl + 1:nl + 9], "little")
            out[line.decode()] = data[nl + 9:nl + 9 + size].decode()
            i = nl + 9 + size + 1
    return out


@pytest.mark.oldest_only   # userspace (suggest, journald) over events the rest proves on each kernel
def test_journal_gets_structured_fields(tmp_path):
    sock_path = "/run/systemd/journal/socket"  # guest /run is a private tmpfs
    os.makedirs(os.path.dirname(sock_path), exist_ok=True)
    # the guest runs no journald; a socket here would make this test read someone else's
    assert not os.path.exists(sock_path), f"a journal already listens at {sock_path} in this guest"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(60)
    pol = Loaded(AUDITED, "journal")
    try:
        w = pol.worker()
        assert w.op("read", f"{R}/secret1")["errno"] == "EACCES"
        w.close()
        proc = audit_cmd("--journal", "--output", str(tmp_path / "j.jsonl"))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        fields = None
        while True:
            f = _parse_journal(sock.recv(1 << 20))
            if f.get("POLICYC_INSTANCE") == pol.session.name:
                fields = f
                break
        rid = pol.rule_id_of("file read")
        assert fields["POLICYC_RULE"] == pol.rule_line(rid)
        assert fields["POLICYC_DECISION"] == "deny" and fields["POLICYC_OBJECT_PATH"] == f"{R}/secret1"
        assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "policyc-audit"
        assert "DENY" in fields["MESSAGE"]
    finally:
        pol.close()
        sock.close()
        os.unlink(sock_path)
