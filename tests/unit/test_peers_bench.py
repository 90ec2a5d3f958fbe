"""bench/peers.py, host side only: the generated policies never match a probe, the probe paths
have the depth they claim, and the analysis computes what the table says. No timing here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from policyc import pipeline
from policyc.cli.test_cmd import evaluate_tests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "bench" / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_probe_paths_have_their_depth(peers):
    assert peers.DEPTH2.count("/") - 1 == 2
    deep = peers.deep_path(32)
    assert deep.count("/") - 1 == 32
    assert deep.startswith(peers.BASE + "/")


def test_rule_split(peers):
    assert peers.split_rules(1) == (1, 1, 1)
    assert peers.split_rules(10000) == (8000, 1000, 1000)
    assert sum(peers.split_rules(1000)) == 1000


@pytest.mark.parametrize("n", [1, 1000])
def test_generated_policy_allows_every_probe(peers, tmp_path, n):
    text = peers.generate(n)
    probes = [f'expect allow file read "{p}"' for lb, cmd, p, *_ in peers.OPS if cmd == "open"]
    probes += [f'expect allow exec "{peers.BASE}/true"',
               f"expect allow net connect tcp 127.0.0.1 port {peers.PORT}"]
    text += ("test bench {\n    exe \"/usr/local/bin/policyc-bench-subject\"\n"
             + "".join(f"    {p}\n" for p in probes) + "}\n")
    src = tmp_path / "bench.policy"
    src.write_text(text)
    front = pipeline.front_end([str(src)])
    assert front.ok, [str(x) for x in front.diags.items][:3]
    (policy,) = front.program.policies
    assert len(policy.rules) == n if n > 1 else len(policy.rules) == 3
    results = evaluate_tests(front.program)
    assert len(results) == len(probes)
    assert all(r.passed for r in results), [r.explanation for r in results if not r.passed]


def _guest(peers, ns: dict[str, float], progs: dict[str, dict[str, list[int]]]) -> dict:
    variants = {}
    for v in peers.VARIANTS:
        ops = {}
        for label, cmd, *_ in peers.OPS:
            p = progs.get(v["label"], {})
            ops[label] = {"ns_per_op": [ns[v["label"]]] * 3, "fails": 0,
                          "programs": [{k: list(x) for k, x in p.items() if k.endswith(("file_open", "bprm_check",
                                                                                       "bprm_check_security",
                                                                                       "socket_connect"))}] * 3
                          if p else []}
        variants[v["label"]] = {"kind": v["kind"], "rules": v.get("rules"), "load_seconds": [], "ops": ops}
    return {"variants": variants, "landlock_proofs": {"landlock 1": [{"mkfifo_denied": True, "connect_denied": True}]}}


def test_landlock_abi_is_read_from_the_helper_line(peers):
    assert peers.landlock_abi("x\nlandlock abi=6 fs_rules=1 net_rules=1\n") == 6
    assert peers.landlock_abi("nothing") is None


def test_analysis_ratios_and_probe_check(peers):
    n = {label: 10 for label, *_ in peers.OPS}
    ns = {"none": 1000, "floor": 1100, "landlock 1": 1200, "landlock 100": 1250,
          "policyc 1": 1500, "policyc 10000": 1500}
    progs = {"floor": {"floor_file_open": [1000, 10], "floor_bprm_check": [500, 10],
                       "floor_socket_connect": [300, 10]},
             "policyc 1": {"file_open": [4000, 10], "bprm_check_security": [2000, 10],
                           "socket_connect": [600, 10]},
             "policyc 10000": {"file_open": [4000, 9], "bprm_check_security": [2000, 10],
                               "socket_connect": [600, 10]}}
    a = peers.analyse(_guest(peers, ns, progs), n, landlock_abi=2)
    row = a["ops"]["open d2"]["variants"]["policyc 1"]
    assert row["x_none"] == 1.5 and row["overhead"] == 500
    assert row["overhead_x_landlock1"] == 2.5 and row["overhead_x_floor"] == 5.0
    assert row["overhead_x_floor_reliable"]  # every round the same: no noise
    assert row["probe_program"] == "file_open" and row["probe_x_floor"] == 4.0
    assert a["ops"]["exec"]["variants"]["floor"]["probe_program"] == "floor_bprm_check"
    # Landlock ABI 2 (6.1) does not govern connect: no ratio to it
    assert a["ops"]["connect"]["variants"]["policyc 1"]["overhead_x_landlock1"] is None
    assert not a["ops"]["connect"]["landlock_governs"]
    assert "no policy" not in peers.table(a)
    # 9 runs where 10 opens were made: said
    assert any("policyc 10000 open d2" in p for p in a["problems"])
    assert not any("policyc 1 " in p for p in a["problems"])


def test_overhead_within_noise_is_marked(peers):
    n = {label: 10 for label, *_ in peers.OPS}
    ns = {"none": 1000, "floor": 1010, "landlock 1": 1200, "landlock 100": 1250,
          "policyc 1": 1500, "policyc 10000": 1500}
    g = _guest(peers, ns, {})
    g["variants"]["none"]["ops"]["stat"]["ns_per_op"] = [990, 1000, 1010]  # 20 ns of noise
    a = peers.analyse(g, n, landlock_abi=6)
    row = a["ops"]["stat"]["variants"]["policyc 1"]
    assert a["ops"]["stat"]["noise_ns"] == 20
    assert row["overhead_x_landlock1_reliable"] and not row["overhead_x_floor_reliable"]
    assert a["ops"]["connect"]["landlock_governs"]


def test_result_is_written_into_an_out_dir_that_does_not_exist_yet(peers, tmp_path):
    """`--out-dir` names a directory that need not exist: the result is written, not lost
    after a boot of half an hour (the directory used to be assumed)."""
    import json

    out_dir = tmp_path / "new" / "results"
    path = peers.write_result(out_dir, "6.1", {"kernel": "6.1.0", "problems": []})
    assert path == out_dir / "peers-6.1.json"
    assert json.loads(path.read_text()) == {"kernel": "6.1.0", "problems": []}
    peers.write_result(out_dir, "6.1", {"kernel": "again"})   # an existing directory is fine
    assert json.loads(path.read_text()) == {"kernel": "again"}
