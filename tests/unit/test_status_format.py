"""`policyc status`: the load record's fields (load time, object hash, counters since), the text
and JSON shapes, and `--format prometheus` (the node_exporter textfile format, held against
prometheus_client's own parser)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from policyc import deploy
from policyc.cli import status as st
from policyc.cli.status import format_prometheus, run_status

ROW = {
    "name": "nginx", "policy": "nginx", "mode": "enforce", "default": "deny", "rules": 12,
    "hooks": ["file_open", "bprm_check_security", "socket_bind", "bprm_creds_for_exec"],
    "counters": {"file_open": {"checked": 1000, "denied": 7, "audited": 0, "failed_closed": 1, "dropped": 2}},
    "suppressed": [{"rule_id": 3, "rule": 'etc/policyc/policies.d/nginx.policy:9:5', "limit": "10/s", "count": 4}],
    "pin_dir": "/sys/fs/bpf/policyc/nginx",
    "loaded_at": "2026-01-02T03:04:05Z", "loaded_at_unix": 1767323045.5,
    "counters_since": "2026-01-01T00:00:00Z", "counters_since_unix": 1767225600.0,
    "object_sha256": "sha256:" + "ab" * 32, "manifest_digest": "sha256:" + "cd" * 32,
    "loaded_from": "/var/lib/policyc/nginx.manifest.json",
}
ODD = dict(ROW, name='we"ird\\name', counters={}, suppressed=[], hooks=["task_kill"], loaded_at=None,
           loaded_at_unix=None, counters_since=None, counters_since_unix=None, object_sha256=None)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fam, **labels) -> list:
    return [s for s in fam.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_prometheus_text_parses_and_carries_every_counter():
    text = format_prometheus([ROW, ODD])
    fams = families(text)
    for counter in ("checked", "denied", "audited", "failed_closed", "dropped"):
        f = fams[f"policyc_{counter}"]                  # the parser drops `_total` from a counter's name
        assert f.type == "counter"
        assert {s.name for s in f.samples} == {f"policyc_{counter}_total"}
    denied = fams["policyc_denied"]
    assert samples(denied, policy="nginx", hook="file_open")[0].value == 7
    # every counted hook of a policy has a series, zero included; hooks the kernel does not count do not
    assert {s.labels["hook"] for s in samples(denied, policy="nginx")} == {"file_open", "bprm_check_security",
                                                                            "socket_bind"}
    assert samples(denied, policy="nginx", hook="socket_bind")[0].value == 0
    assert samples(fams["policyc_failed_closed"], policy="nginx", hook="file_open")[0].value == 1
    assert samples(fams["policyc_dropped"], policy="nginx", hook="file_open")[0].value == 2
    # label values escaped: the odd name round-trips
    assert samples(denied, policy='we"ird\\name', hook="task_kill")[0].value == 0
    assert fams["policyc_policies_loaded"].samples[0].value == 2
    info = samples(fams["policyc_policy_info"], policy="nginx")[0]
    assert info.labels == {"policy": "nginx", "mode": "enforce", "default": "deny", "object_sha256": ROW["object_sha256"]}
    assert samples(fams["policyc_policy_loaded_timestamp_seconds"], policy="nginx")[0].value == 1767323045.5
    assert samples(fams["policyc_policy_counters_since_timestamp_seconds"], policy="nginx")[0].value == 1767225600
    assert samples(fams["policyc_policy_loaded_timestamp_seconds"], policy='we"ird\\name') == []
    sup = samples(fams["policyc_rule_suppressed"], policy="nginx")[0]
    assert sup.labels["rule_id"] == "3" and sup.value == 4


def test_prometheus_text_has_one_help_and_type_per_family_before_its_samples():
    lines = format_prometheus([ROW]).splitlines()
    helps = [ln.split()[2] for ln in lines if ln.startswith("# HELP ")]
    types = [ln.split()[2] for ln in lines if ln.startswith("# TYPE ")]
    assert helps == types and len(set(helps)) == len(helps)
    current = None
    for ln in lines:
        if ln.startswith("# TYPE "):
            current = ln.split()[2]
        elif not ln.startswith("#"):
            assert ln.split("{")[0].split(" ")[0] == current, ln   # samples follow their own TYPE
    assert "policyc_denied_total" in types and format_prometheus([ROW]).endswith("\n")


def test_prometheus_with_nothing_loaded_is_still_a_valid_file():
    fams = families(format_prometheus([]))
    assert fams["policyc_policies_loaded"].samples[0].value == 0
    assert fams["policyc_denied"].samples == []


def test_prometheus_parser_would_reject_a_broken_file():
    """The parser checks what these tests rely on (it is not lenient about the format)."""
    with pytest.raises(ValueError):
        list(text_string_to_metric_families('policyc_denied_total{policy="a} 1\n'))


# ---- the command -------------------------------------------------------------------------------------

def run(monkeypatch, rows, *args, **kw):
    monkeypatch.setattr(st, "status", lambda: rows)
    out, err = io.StringIO(), io.StringIO()
    code = run_status(*args, out, err, **kw)
    return code, out.getvalue(), err.getvalue()


def test_json_keeps_its_fields_and_adds_the_load_record(monkeypatch):
    code, out, _ = run(monkeypatch, [ROW], True)
    assert code == 0
    (p,) = json.loads(out)["policies"]
    contract = {"name", "policy", "mode", "default", "rules", "hooks", "counters", "suppressed", "pin_dir"}
    assert contract <= set(p)
    assert {"loaded_at", "counters_since", "object_sha256", "manifest_digest", "loaded_from"} <= set(p)
    assert run(monkeypatch, [ROW], False, fmt="json")[1] == out


def test_text_shows_load_time_counters_start_and_object(monkeypatch):
    code, out, _ = run(monkeypatch, [ROW, ODD], False)
    assert code == 0
    assert "  loaded 2026-01-02T03:04:05Z, counters since 2026-01-01T00:00:00Z\n" in out
    assert f"  object {ROW['object_sha256']} from /var/lib/policyc/nginx.manifest.json\n" in out
    assert "  loaded unknown (no load record), counters since unknown\n" in out
    assert "file_open" in out and "denied      7" in out


def test_format_errors_are_exit_2(monkeypatch):
    code, _, err = run(monkeypatch, [ROW], False, fmt="yaml")
    assert code == 2 and "unknown format" in err
    code, _, err = run(monkeypatch, [ROW], True, fmt="prometheus")
    assert code == 2 and "--json is --format json" in err


def test_output_file_is_replaced_atomically(monkeypatch, tmp_path):
    target = tmp_path / "policyc.prom"
    target.write_text("old\n")
    code, out, _ = run(monkeypatch, [ROW], False, fmt="prometheus", output=str(target))
    assert code == 0 and out == ""
    assert target.read_text() == format_prometheus([ROW])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policyc.prom"]     # no temporary file left
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    code, _, err = run(monkeypatch, [ROW], False, fmt="prometheus", output=str(tmp_path / "no" / "such.prom"))
    assert code == 2 and "cannot write" in err


def test_status_command_accepts_format_and_output(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from policyc.cli.main import app

    monkeypatch.setattr(st, "status", lambda: [ROW])
    r = CliRunner().invoke(app, ["status", "--format", "prometheus", "-o", str(tmp_path / "p.prom")])
    assert r.exit_code == 0, r.output
    assert "policyc_denied_total" in (tmp_path / "p.prom").read_text()


# ---- deploy.status() reads the load record -------------------------------------------------------------

def test_status_rows_carry_the_load_record(tmp_path, monkeypatch):
    pins, state = tmp_path / "pins", tmp_path / "state"
    (pins / "a" / "links").mkdir(parents=True)
    (pins / "old" / "links").mkdir(parents=True)
    state.mkdir()
    monkeypatch.setattr(deploy, "PIN_ROOT", str(pins))
    monkeypatch.setenv("POLICYC_STATE_DIR", str(state))
    monkeypatch.setattr(deploy, "hook_counters", lambda n: {"file_open": {"checked": 3, "denied": 1, "audited": 0,
                                                                          "failed_closed": 0, "dropped": 0}})
    monkeypatch.setattr(deploy, "rule_suppressed", lambda n, m: [])
    man = {"format": 1, "policy": "a", "mode": "enforce", "default": "allow", "rules": [{}], "hooks": ["file_open"],
           "object_sha256": "sha256:built"}
    for n in ("a", "old"):
        (state / f"{n}.manifest.json").write_text(json.dumps(dict(man, policy=n)))
    (state / "a.load.json").write_text(json.dumps({
        "format": 1, "policy": "a", "manifest": "/var/lib/policyc/a.manifest.json", "manifest_digest": "sha256:d",
        "object_sha256": "sha256:loaded", "loaded_at": 86400.25, "counters_since": 0}))
    rows = {r["name"]: r for r in deploy.status()}
    a, old = rows["a"], rows["old"]
    assert a["loaded_at"] == "1970-01-02T00:00:00Z" and a["loaded_at_unix"] == 86400.25
    assert a["counters_since"] == "1970-01-01T00:00:00Z" and a["counters_since_unix"] == 0
    assert a["object_sha256"] == "sha256:loaded" and a["manifest_digest"] == "sha256:d"
    assert a["loaded_from"] == "/var/lib/policyc/a.manifest.json"
    # no record (an older policyc loaded it): the manifest's own hash, the times unknown
    assert old["object_sha256"] == "sha256:built" and old["loaded_at"] is None and old["counters_since"] is None
    assert families(format_prometheus(list(rows.values())))["policyc_denied"].samples[0].value == 1
    assert os.path.isdir(pins)


def test_a_load_record_of_another_format_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYC_STATE_DIR", str(tmp_path))
    (tmp_path / "a.load.json").write_text(json.dumps({"format": 2, "loaded_at": 1}))
    assert deploy.load_info("a") is None
    (tmp_path / "a.load.json").write_text("{garbage")
    assert deploy.load_info("a") is None
    assert Path(tmp_path / "a.load.json").exists()
