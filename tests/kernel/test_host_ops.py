"""Host operations in the kernel (issue #15), through the command line as policyc.service runs
it: `policyc load --sync DIR` loads a build directory, a second sync changes nothing (the
programs are the very same), a changed one is replaced and a removed one stays until
`--prune`; enforcement outlives the loader process; a failing object among good ones is
reported while the good ones load, and the command exits 1; `status --format prometheus`
counts a denial; the audit reader works with only the capabilities policyc-audit.service
leaves it (CAP_BPF alone) and with bpffs read-only.

Each governed program is a copy of cat or sh under R (the `exe` of its rules' owner), so
nothing else the VM runs is governed. The commands run with their own pin root and state
directory, and every test unloads what it loaded. (No module-level text but the POLICY_*
ones may hold both words tests/kernel/prebuild.py looks for.)"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyc import runtime

from .harness import tree

# userspace over the kernel (the CLI, units, sync): on the oldest kernel only (scripts/test.sh, README)
pytestmark = [pytest.mark.kernel, pytest.mark.oldest_only]

R = "/tmp/pk-hostops"
REPO = Path(__file__).resolve().parents[2]
PIN_ROOT = "/sys/fs/bpf/policyc-hostops"
STATE = f"{R}/state"
POLICYC = [sys.executable, "-m", "policyc"]


def _policy(name: str, letter: str, extra: str = "") -> str:
    return (f'policy {name} {{\n    subject exe "{R}/bin/cat-{letter}"\n    default allow\n'
            f'    deny file read "{R}/secret-{letter}"\n{extra}}}\n')


# module-level texts: tests/kernel/prebuild.py compiles their objects on the host
POLICY_A = _policy("hostops-a", "a")
POLICY_A2 = _policy("hostops-a", "a", f'    deny file read "{R}/secret-a2"\n')
POLICY_B = _policy("hostops-b", "b")
POLICY_C = _policy("hostops-c", "c")
POLICY_D = _policy("hostops-d", "d")
POLICY_E = (f'policy hostops-e {{\n    subject exe "{R}/bin/sh-e"\n    default allow\n'
            f'    deny file read "{R}/secret-e"\n}}\n')


def env() -> dict[str, str]:
    return {**os.environ, "POLICYC_PIN_ROOT": PIN_ROOT, "POLICYC_STATE_DIR": STATE,
            "PYTHONDONTWRITEBYTECODE": "1"}


def policyc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([*POLICYC, *args], cwd=str(REPO), env=env(), capture_output=True, text=True, timeout=600)
    if check:
        assert p.returncode == 0, f"policyc {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def sources(**texts: str) -> Path:
    """Write SRC/<name>.policy for each text (and remove the others): the policies of a build."""
    src = Path(f"{R}/src")
    src.mkdir(parents=True, exist_ok=True)
    for old in src.glob("*.policy"):
        old.unlink()
    for name, text in texts.items():
        (src / f"{name}.policy").write_text(text)
    return src


def build(**texts: str) -> Path:
    out = Path(f"{R}/out")
    policyc("build", str(sources(**texts)), "-o", str(out))
    return out


def sync(out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return policyc("load", "--sync", str(out), *extra, check=check)


def lines(p: subprocess.CompletedProcess) -> list[str]:
    """stdout lines without the description in parentheses."""
    return [ln.split(" (")[0] for ln in p.stdout.splitlines()]


def read_as(letter: str, what: str) -> subprocess.CompletedProcess:
    """`cat-LETTER R/WHAT`: the subject of policy LETTER reads a file."""
    return subprocess.run([f"{R}/bin/cat-{letter}", f"{R}/{what}"], capture_output=True, text=True, timeout=60)


def denied(letter: str, what: str) -> bool:
    p = read_as(letter, what)
    if p.returncode == 0:
        assert p.stdout == f"{what}\n", p.stdout   # the file's content: really read
        return False
    assert "Permission denied" in p.stderr, p.stderr   # EACCES: a policy's file denial (root passes DAC)
    return True


def loaded() -> list[str]:
    return runtime.list_loaded(PIN_ROOT)


def prog_ids(name: str) -> set[int]:
    return {p["id"] for p in runtime.prog_stats(PIN_ROOT, name)}


@pytest.fixture(autouse=True)
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {f"secret-{x}": f"secret-{x}\n" for x in ("a", "a2", "b", "c", "d", "e")})
    Path(f"{R}/bin").mkdir()
    cat = shutil.which("cat")
    for x in "abcd":
        shutil.copy(cat, f"{R}/bin/cat-{x}")
        os.chmod(f"{R}/bin/cat-{x}", 0o755)
    shutil.copy(os.path.realpath("/bin/sh"), f"{R}/bin/sh-e")
    os.chmod(f"{R}/bin/sh-e", 0o755)
    # with no policy loaded, every subject reads every file
    for x in "abcd":
        assert not denied(x, f"secret-{x}")
    yield
    policyc("unload", "--all", check=False)
    leftovers = loaded()
    if os.path.isdir(PIN_ROOT) and not leftovers:
        os.rmdir(PIN_ROOT)
    assert leftovers == [], f"the test left policies loaded: {leftovers}"


def prometheus_samples(text: str) -> dict[tuple[str, tuple], float]:
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:   # the regular expression below reads the same samples
        found = {}
        for m in re.finditer(r'^(\w+)\{(.*?)\} (\S+)$', text, re.M):
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2))))
            found[(m.group(1), labels)] = float(m.group(3))
        return found
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


# long: 73 s of userspace (sync's record and prune) over loads the rest of the suite proves;
# a CI run stays under 50 minutes without it (POLICYC_LONG=1 runs it)
@pytest.mark.long
def test_sync_outlives_its_loader_changes_nothing_counts_replaces_and_prunes():
    # One load of two policies, then each step as policyc.service would meet it (these were
    # four tests, which loaded the same policies four times: a third of this file's run).
    out = build(a=POLICY_A, b=POLICY_B)
    # the loader as the unit runs it, in a session of its own, which is gone when it returns
    proc = subprocess.Popen([*POLICYC, "load", "--sync", str(out)], cwd=str(REPO), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert [ln.split(" (")[0] for ln in stdout.splitlines()] == ["loaded hostops-a", "loaded hostops-b",
                                                                 "sync: 2 loaded"], stdout
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(1)
    assert loaded() == ["hostops-a", "hostops-b"]
    # the pins alone hold the programs: every link is pinned, none is an fd of a live process
    assert sorted(os.listdir(f"{PIN_ROOT}/hostops-a/links")), "no pinned links"
    for _ in range(3):
        assert denied("a", "secret-a")
    assert denied("b", "secret-b")
    assert not denied("a", "secret-b") and not denied("b", "secret-a")     # each policy its own subject

    # a second sync changes nothing: the very same programs
    ids = {n: prog_ids(n) for n in loaded()}
    second = sync(out)
    assert second.stdout.splitlines() == ["unchanged hostops-a", "unchanged hostops-b",
                                          "nothing to do: 2 policies up to date"], second.stdout
    assert {n: prog_ids(n) for n in loaded()} == ids
    # a rebuild of the same sources is byte-identical: still nothing to do
    out = build(a=POLICY_A, b=POLICY_B)
    assert sync(out).stdout.endswith("nothing to do: 2 policies up to date\n")
    st = {p["name"]: p for p in json.loads(policyc("status", "--json").stdout)["policies"]}
    for n in ("hostops-a", "hostops-b"):
        built = json.loads((out / f"{n}.manifest.json").read_text())
        assert st[n]["object_sha256"] == built["object_sha256"]
        assert st[n]["loaded_from"] == str(out / f"{n}.manifest.json")
        assert st[n]["loaded_at"] and st[n]["counters_since"]

    # the node_exporter textfile counts the denials, written whole (no temporary file left)
    prom = Path(f"{R}/policyc.prom")
    policyc("status", "--format", "prometheus", "-o", str(prom))
    s = prometheus_samples(prom.read_text())
    key = (("hook", "file_open"), ("policy", "hostops-a"))
    assert s[("policyc_denied_total", key)] >= 3
    assert s[("policyc_checked_total", key)] >= 4
    assert s[("policyc_failed_closed_total", key)] == 0
    assert s[("policyc_policies_loaded", ())] == 2
    assert sorted(os.listdir(R)).count("policyc.prom") == 1 and not any(
        n.startswith(".policyc.prom") for n in os.listdir(R))

    # a changed policy is replaced, the other left alone
    assert not denied("a", "secret-a2")
    before = st
    b_ids = prog_ids("hostops-b")
    out = build(a=POLICY_A2, b=POLICY_B)
    p = sync(out)
    assert lines(p) == ["replaced hostops-a", "unchanged hostops-b", "sync: 1 replaced, 1 unchanged"], p.stdout
    assert p.stdout.startswith("replaced hostops-a (manifest changed;")
    assert denied("a", "secret-a2") and denied("a", "secret-a")         # the new rule, and the old one
    assert prog_ids("hostops-b") == b_ids
    after = {p["name"]: p for p in json.loads(policyc("status", "--json").stdout)["policies"]}
    # the counters went on (the replace reused the map): since the first load, not the replace
    assert after["hostops-a"]["counters_since"] == before["hostops-a"]["counters_since"]
    assert after["hostops-a"]["loaded_at_unix"] > before["hostops-a"]["loaded_at_unix"]
    assert after["hostops-a"]["counters"]["file_open"]["denied"] > before["hostops-a"]["counters"]["file_open"]["denied"]

    # b's source goes: the build drops its outputs, a sync keeps it loaded, --prune unloads it
    out = build(a=POLICY_A2)
    assert not (out / "hostops-b.manifest.json").exists() and not (out / "hostops-b.bpf.o").exists()
    p = sync(out)
    assert lines(p) == ["unchanged hostops-a", "kept hostops-b", "nothing to do: 1 policy up to date"], p.stdout
    assert denied("b", "secret-b")
    p = sync(out, "--prune")
    assert lines(p) == ["unchanged hostops-a", "unloaded hostops-b", "sync: 1 unchanged, 1 unloaded"], p.stdout
    assert loaded() == ["hostops-a"]
    assert not denied("b", "secret-b") and denied("a", "secret-a")


def test_a_failing_object_among_good_ones_is_reported_and_the_good_ones_load():
    out = build(a=POLICY_A, b=POLICY_B, c=POLICY_C, d=POLICY_D)
    # c: an object the kernel side cannot take, whose manifest says it is the one built
    garbage = b"\x7fELF not a BPF object"
    (out / "hostops-c.bpf.o").write_bytes(garbage)
    man = json.loads((out / "hostops-c.manifest.json").read_text())
    man["object_sha256"] = "sha256:" + hashlib.sha256(garbage).hexdigest()
    (out / "hostops-c.manifest.json").write_text(json.dumps(man))
    # d: an object that is not the one its manifest was built with (a half-copied directory)
    (out / "hostops-d.bpf.o").write_bytes((out / "hostops-a.bpf.o").read_bytes() + b"\0")
    p = sync(out, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert lines(p) == ["loaded hostops-a", "loaded hostops-b", "sync: 2 loaded, 2 failed"], p.stdout
    assert re.search(r"^failed hostops-c: loading policy `hostops-c` failed: ", p.stderr, re.M), p.stderr
    assert re.search(r"^failed hostops-d: object .* is not the one `hostops-d.manifest.json` was built with",
                     p.stderr, re.M), p.stderr
    assert loaded() == ["hostops-a", "hostops-b"]
    assert denied("a", "secret-a") and denied("b", "secret-b")
    assert not denied("c", "secret-c") and not denied("d", "secret-d")
    # fixed and synced again: only those two load, the others are left alone
    out = build(a=POLICY_A, b=POLICY_B, c=POLICY_C, d=POLICY_D)
    p = sync(out)
    assert lines(p) == ["unchanged hostops-a", "unchanged hostops-b", "loaded hostops-c", "loaded hostops-d",
                        "sync: 2 loaded, 2 unchanged"], p.stdout
    assert denied("c", "secret-c") and denied("d", "secret-d")


def audit_under(caps: str, log: str) -> list[dict]:
    """One `policyc audit --output LOG` run with the bounding set CAPS (setpriv, no new
    privileges), bpffs remounted read-only in its own mount namespace: what
    policyc-audit.service gives the reader (CapabilityBoundingSet=, NoNewPrivileges=,
    ProtectKernelTunables=)."""
    for tool in ("unshare", "setpriv"):
        assert shutil.which(tool), f"{tool} (util-linux) is needed"
    script = 'mount -o remount,bind,ro /sys/fs/bpf && exec "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sandbox",
           "setpriv", "--no-new-privs", "--bounding-set", f"-all,{caps}", "--inh-caps", "-all", "--",
           *POLICYC, "audit", "--no-journal", "--output", log]
    p = subprocess.run(cmd, cwd=str(REPO), env=env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return [json.loads(x) for x in Path(log).read_text().splitlines()] if os.path.exists(log) else []


def start_denied_shell() -> subprocess.Popen:
    """The subject of hostops-e, alive: its own `read` of the secret is denied, then it waits."""
    sh = subprocess.Popen([f"{R}/bin/sh-e", "-c", 'read x < "$1"; echo "read:$?"; sleep 120', "sh-e",
                           f"{R}/secret-e"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert sh.stdout.readline().strip() != "read:0"
    return sh


def test_the_audit_reader_needs_only_cap_bpf():
    out = build(e=POLICY_E)
    sync(out)
    shells = []
    try:
        # with CAP_BPF alone (the unit's bounding set) the reader reads every event, and the
        # record names the executable: the kernel sent it with the event (schema 2), no
        # /proc/PID/exe to read (which a process with capabilities the reader lacks would refuse)
        shells.append(start_denied_shell())
        recs = [r for r in audit_under("+bpf", f"{R}/audit-1.jsonl") if r["type"] == "event"]
        assert [(r["policy"], r["decision"], r["errno"], r["object"]["path"]) for r in recs] == [
            ("hostops-e", "deny", "EACCES", f"{R}/secret-e")]
        assert recs[0]["process"]["pid"] == shells[0].pid
        assert recs[0]["process"]["exe"] == f"{R}/bin/sh-e"
        assert recs[0]["rule"].endswith(":4:5") and recs[0]["hook"] == "file_open"
    finally:
        for sh in shells:
            sh.kill()
            sh.wait()
