"""`policyc audit --format ecs`: every document is made of ECS fields of the right types and
categorization values, checked against ECS 9.4's own field set (tests/unit/data/ecs-fields-9.4.0.json,
extracted from github.com/elastic/ecs generated/csv/fields.csv and ecs_flat.yml, Apache-2.0)."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest

from policyc.audit.ecs import ECS_VERSION, to_ecs
from policyc.audit.schema import dropped_record, suppressed_record
from policyc.audit.sinks import render

from _audit_helpers import record

ECS = json.loads((Path(__file__).parent / "data" / "ecs-fields-9.4.0.json").read_text())
ADDR = bytes(10) + b"\xff\xff" + bytes([169, 254, 169, 254])


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not (prefix + k) in ECS["fields"]:
            out.update(_flat(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def _records():
    return [
        record(),
        record(rule_id=0, reason=1, path="/srv/www/index.html", decision=1, mode=1, args=["cat", "x"], id_flags=0),
        record(family="exec", hook="bprm_check_security", op=6, path="/usr/bin/curl"),
        record(family="net", hook="socket_connect", rule_id=2, port=80, proto=1, addr=ADDR, path=""),
        record(family="net", hook="socket_bind", op=1, rule_id=0, reason=1, port=8080, proto=2, path=""),
        record(family="capability", hook="capable", aux=21, rule_id=0, reason=1, path=""),
        record(family="signal", hook="task_kill", aux=9, target_pid=5, path="/usr/sbin/x", rule_id=0, reason=1),
        record(family="module", hook="kernel_module_request", path="net-pf-38", rule_id=0, reason=1),
        record(family="bpf", hook="bpf", path="", rule_id=0, reason=1),
        record(rule_id=0, reason=2, path="", exe=None, parent_exe=None),
        dropped_record(policy="web", instance="web", host="h1", unattributed=1,
                       rules=[{"rule_id": 1, "rule": "p.policy:6:5", "rule_text": "t", "count": 4}]),
        suppressed_record(policy="web", instance="web", host="h1",
                          rules=[{"rule_id": 2, "rule": "p.policy:7:5", "rule_text": "u", "limit": "5/s", "count": 9}]),
    ]


def _type_ok(ecs_type: str, v) -> bool:
    vals = v if isinstance(v, list) else [v]
    for x in vals:
        if ecs_type in ("keyword", "wildcard", "match_only_text", "text", "constant_keyword"):
            ok = isinstance(x, str)
        elif ecs_type in ("long", "integer", "short", "byte", "unsigned_long"):
            ok = isinstance(x, int) and not isinstance(x, bool)
        elif ecs_type == "date":
            ok = isinstance(x, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", x) is not None
        elif ecs_type == "ip":
            ok = isinstance(x, str) and ipaddress.ip_address(x) is not None
        elif ecs_type == "boolean":
            ok = isinstance(x, bool)
        else:
            ok = False
        if not ok:
            return False
    return True


@pytest.mark.parametrize("i", range(len(_records())))
def test_every_field_is_an_ecs_field_of_its_type(i):
    doc = to_ecs(_records()[i])
    flat = _flat({k: v for k, v in doc.items() if k != "policyc"})
    assert flat, doc
    for name, value in flat.items():
        assert name in ECS["fields"], f"`{name}` is not an ECS {ECS['ecs_version']} field"
        assert _type_ok(ECS["fields"][name], value), f"`{name}`: {value!r} is not an ECS {ECS['fields'][name]}"
    for name in ("event.category", "event.type", "event.kind", "event.outcome"):
        if name in flat:
            vals = flat[name] if isinstance(flat[name], list) else [flat[name]]
            assert set(vals) <= set(ECS["allowed_values"][name]), (name, vals)
    assert doc["ecs"]["version"] == ECS_VERSION == ECS["ecs_version"]


def test_process_and_rule_mapping():
    doc = to_ecs(record(pid=101, tgid=100, uid=1000, euid=0, args=["cat", "/etc/shadow"], id_flags=0))
    p = doc["process"]
    assert (p["pid"], p["thread"]["id"], p["executable"], p["parent"]["executable"]) == \
        (100, 101, "/usr/bin/cat", "/usr/bin/bash")
    assert p["user"]["id"] == "0" and p["real_user"]["id"] == "1000"
    assert p["args"] == ["cat", "/etc/shadow"] and p["args_count"] == 2
    assert re.fullmatch(r"[0-9a-f]{32}", p["entity_id"])
    assert doc["rule"] == {"id": "1", "name": 'deny file read "/etc/shadow"', "reference": "p.policy:6:5",
                           "ruleset": "web"}
    assert doc["event"]["outcome"] == "failure" and doc["event"]["type"] == ["access", "denied"]
    assert doc["event"]["kind"] == "alert" and doc["file"]["path"] == "/etc/shadow"
    assert doc["policyc"]["process"]["loginuid"] == 1000


def test_net_connect_maps_to_destination():
    doc = to_ecs(record(family="net", hook="socket_connect", rule_id=2, port=80, proto=1, addr=ADDR, path=""))
    assert doc["destination"] == {"ip": "169.254.169.254", "port": 80}
    assert doc["network"] == {"transport": "tcp", "type": "ipv4"} and doc["event"]["category"] == ["network"]


def test_render_ecs_is_one_json_line():
    line = render(record(), "ecs")
    assert "\n" not in line and json.loads(line)["event"]["module"] == "policyc"
