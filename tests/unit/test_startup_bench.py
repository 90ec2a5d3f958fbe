"""bench/startup.py: its children write bytecode (what is measured is start-up, not
compiling), `--against DIR` pairs each run with one of DIR's, alternating which goes first,
and runs DIR's `python -m policyc` in DIR (so DIR's policyc is the one imported)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench():
    spec = importlib.util.spec_from_file_location("startup_bench", ROOT / "bench" / "startup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_children_write_bytecode_and_find_the_other_tree(monkeypatch, tmp_path):
    b = bench()
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPATH", "/x")
    assert "PYTHONDONTWRITEBYTECODE" not in b.child_env()
    assert b.child_env(tmp_path)["PYTHONPATH"].split(":") == [str(tmp_path), "/x"]


def test_pairs_alternate_and_run_the_other_tree_in_it(monkeypatch, tmp_path):
    b = bench()
    calls = []

    def fake(argv, env, cwd=None, cpu=None):
        calls.append(("mine" if cwd == ROOT else "other", argv, cwd, env["PYTHONPATH"].split(":")[0]))
        cpu.append(0.5 if cwd == ROOT else 1.0)
        return 1.0 if cwd == ROOT else 2.0

    monkeypatch.setattr(b, "run_once", fake)
    mine, theirs = b.time_pairs(tmp_path, ["check", "x"], runs=3, warmup=1)
    assert (mine, theirs) == ([1.0] * 3, [2.0] * 3)
    assert [c[0] for c in calls] == ["mine", "other", "other", "mine", "mine", "other", "other", "mine"]
    for who, argv, cwd, path in calls:      # both the same way, each in its own tree
        assert argv == [sys.executable, "-m", "policyc", "check", "x"]
        assert cwd == path_of(who, tmp_path) and path == str(path_of(who, tmp_path))
    assert (b.CPU[id(mine)], b.CPU[id(theirs)]) == (0.5, 1.0)


def path_of(who, other):
    return ROOT if who == "mine" else other


def test_it_runs(tmp_path):
    """One measured run of each command, for real (the numbers are not checked)."""
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "bench" / "startup.py"), "--runs", "1", "--warmup", "0",
                        "--output", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "policyc check (10 rules)" in r.stdout and (tmp_path / "s.json").is_file()
    # a run on a loaded machine can be told from a slower policyc: the load average and the
    # floor (the interpreter, and importing typer) are recorded with it
    import json

    d = json.loads((tmp_path / "s.json").read_text())
    assert len(d["load_average"]["before"]) == 3 and len(d["load_average"]["after"]) == 3
    assert set(d["baseline"]) == {"python -c pass", "python -c 'import typer.main'"}
    for r_ in d["results"].values():
        floor = d["baseline"]["python -c 'import typer.main'"]["median_s"]
        assert r_["x_typer_import"] == r_["median_s"] / floor
    assert "load average (1, 5, 15 min) before" in r.stdout
