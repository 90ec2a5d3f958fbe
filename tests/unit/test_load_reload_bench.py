"""bench/load_reload.py, host side only: the two versions of a generated policy differ in one
rule and deny the probe file, and `--report` re-analyses a saved result (a gap, a prober that
never ran and a replace that did not replace are problems). No VM, no timing here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from policyc import pipeline

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_load_reload", ROOT / "bench" / "load_reload.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_load_reload"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_versions_differ_in_one_rule_and_deny_the_probe(bench, tmp_path):
    v1, v2 = bench.generate(10, 1).splitlines(), bench.generate(10, 2).splitlines()
    assert len(v1) == len(v2)
    assert [(a, b) for a, b in zip(v1, v2) if a != b] == [
        (f'    deny file write "{bench.PROBE_DIR}/version-1"', f'    deny file write "{bench.PROBE_DIR}/version-2"')]
    assert f'    deny file read "{bench.SECRET}"' in v1
    src = tmp_path / "lr.policy"
    src.write_text(bench.generate(10, 1))
    front = pipeline.front_end([str(src)])
    assert front.ok, [str(x) for x in front.diags.items]
    assert [p.name for p in front.program.policies] == [bench.policy_name(10)]


def counts(ok=0, eacces=0, other=0) -> dict:
    return {"attempts": ok + eacces + other, "ok": ok, "eacces": eacces, "other": other}


def a_round(gap: int = 0, before_denied: int = 20, replaced: bool = True) -> dict:
    reps = [{"version": v, "wall": w, "cpu": w / 2, "replaced": replaced, "during": counts(ok=gap if i == 1 else 0,
                                                                                         eacces=100 + i)}
            for i, (v, w) in enumerate([("v2", 2.0), ("v1", 3.0), ("v2", 4.0)])]
    return {"load": {"wall": 1.5, "cpu": 1.0}, "unload": {"wall": 0.1, "cpu": 0.05},
            "cli_load": {"wall": 5.0, "cpu": 4.0, "returncode": 0, "stderr": ""},
            "fire": {"settled": True, "after_reached": True, "before": counts(eacces=before_denied),
                     "replaces": reps, "after": counts(eacces=20),
                     "total": counts(ok=gap, eacces=before_denied + 303 + 20)}}


def saved(rounds: list[dict]) -> dict:
    guest = {"kernel": "6.1.0-test", "rounds": len(rounds), "replaces": 3, "pause_s": 0.001,
             "sizes": {"10": {"name": "loadreload10", "rounds": rounds}}}
    return {"kernel": guest["kernel"], "rounds": len(rounds), "replaces": 3,
            "machine": {"node": "host", "cpu": "cpu"}, "date": "2025-01-01T00:00:00Z",
            "results": {}, "problems": [], "guest": guest}


def test_report_of_a_clean_run(bench, tmp_path, capsys):
    path = tmp_path / "load_reload-6.1.json"
    path.write_text(json.dumps(saved([a_round(), a_round()])))
    assert bench.main(["--report", str(path)]) == 0
    s = json.loads(path.read_text())["results"]["10"]
    assert s["load_wall_s"]["median"] == 1.5 and s["replace_wall_s"]["median"] == 3.0
    assert s["replaces"] == 6 and s["attempts_during_replaces"] == 2 * 303
    assert s["fewest_attempts_in_one_replace"] == 100 and s["got_through"] == 0
    assert "no open of the denied file got through" in capsys.readouterr().out


@pytest.mark.parametrize("bad,says", [
    (dict(gap=2), "2 opens of the denied file got through"),
    (dict(before_denied=0), "no probe ran"),
    (dict(replaced=False), "did not replace"),
])
def test_report_flags_problems(bench, tmp_path, bad, says):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(saved([a_round(), a_round(**bad)])))
    assert bench.main(["--report", str(path)]) == 1
    problems = json.loads(path.read_text())["problems"]
    assert any(says in p and "round 2" in p for p in problems), problems
