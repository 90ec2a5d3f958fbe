"""`policyc status [--format text|json|prometheus] [-o FILE]`: loaded policies, their mode,
rule count, when they were loaded and from what (object hash), per-hook counters and the
events rule limits held back.

The counters count from the policy's first load: a replace (`load --replace`, `load --sync`)
keeps the counters map, an unload drops it. `--format prometheus` writes the node_exporter
textfile format (HELP/TYPE lines, `policyc_<counter>_total{policy,hook}` counters); with
`-o FILE` the file is replaced atomically (written beside it, then renamed), as the textfile
collector needs. `--json` is `--format json`: `{"version": 1, "policies": [...]}`, its field
names a contract (only added to); each `suppressed` entry names its rule both as `rule`, the
`file:line:col` string, and as `location`, the object `{"file", "line", "col"}`."""

from __future__ import annotations

import json
import sys
from typing import Optional, TextIO

import typer

from .. import abi
from ..deploy import DeployError, status
from ..fsutil import write_atomically
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded
from .kernel_common import print_deploy_error

FORMATS = ("text", "json", "prometheus")
JSON_VERSION = 1   # `version` of the json format's object: raised when a field changes meaning

# the per-hook counters (struct policyc_counters), as Prometheus counters
COUNTER_HELP = {
    "checked": "Events of governed processes the policy decided at the hook, since its first load.",
    "denied": "Events the policy denied at the hook, since its first load.",
    "audited": "Events the policy let through and logged (mode audit, audit rules), since its first load.",
    "failed_closed": "Events denied because the policy could not decide them (a path too long, a full map), "
                     "since its first load.",
    "dropped": "Event records lost because the policy's ring buffer was full, since its first load.",
}


def _label(value) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return str(value if value is not None else "").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kv) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in kv.items()) + "}"


def format_prometheus(rows: list[dict]) -> str:
    """The node_exporter textfile of `status()` rows: one HELP and TYPE line per metric family,
    then its samples. Every counted hook of a policy has a sample (zero included), so series
    exist from the first scrape."""
    lines: list[str] = []

    def family(name: str, typ: str, help_: str, samples: list[tuple[str, object]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {typ}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value}")

    family("policyc_policies_loaded", "gauge", "Policies loaded (pinned under the pin root).",
           [("", len(rows))])
    family("policyc_policy_info", "gauge", "A loaded policy: its mode, default and object hash (always 1).",
           [(_labels(policy=r["name"], mode=r.get("mode"), default=r.get("default"),
                     object_sha256=r.get("object_sha256")), 1) for r in rows])
    family("policyc_policy_rules", "gauge", "Rules of the loaded policy.",
           [(_labels(policy=r["name"]), r.get("rules", 0)) for r in rows])
    family("policyc_policy_loaded_timestamp_seconds", "gauge",
           "When the version of the policy now loaded went in (Unix time).",
           [(_labels(policy=r["name"]), _num(r["loaded_at_unix"])) for r in rows
            if r.get("loaded_at_unix") is not None])
    family("policyc_policy_counters_since_timestamp_seconds", "gauge",
           "When the policy's counters started: its first load (a replace keeps them; Unix time).",
           [(_labels(policy=r["name"]), _num(r["counters_since_unix"])) for r in rows
            if r.get("counters_since_unix") is not None])
    counted = set(abi.HOOKS)
    for counter in abi.POLICYC_COUNTERS.names:
        samples = []
        for r in rows:
            hooks = [h for h in dict.fromkeys([*r.get("hooks", []), *sorted(r["counters"])]) if h in counted]
            for h in hooks:
                samples.append((_labels(policy=r["name"], hook=h), r["counters"].get(h, {}).get(counter, 0)))
        family(f"policyc_{counter}_total", "counter", COUNTER_HELP.get(counter, f"`{counter}` events."), samples)
    family("policyc_rule_suppressed_total", "counter",
           "Events a rule's `limit` held back, since the policy's first load.",
           [(_labels(policy=r["name"], rule_id=s["rule_id"], rule=s.get("rule")), s["count"])
            for r in rows for s in r.get("suppressed", ())])
    return "\n".join(lines) + "\n"


def _num(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def format_text(rows: list[dict]) -> str:
    if not rows:
        return "no policyc policies are loaded\n"
    out = []
    for r in rows:
        out.append(f"{r['name']}: mode {r['mode']}, default {r['default']}, {r['rules']} rules, "
                   f"{len(r['hooks'])} hooks ({r['pin_dir']})\n")
        loaded = r.get("loaded_at") or "unknown (no load record)"
        since = r.get("counters_since") or "unknown"
        out.append(f"  loaded {loaded}, counters since {since}\n")
        out.append(f"  object {r.get('object_sha256') or 'unknown'}"
                   + (f" from {r['loaded_from']}" if r.get("loaded_from") else "") + "\n")
        for hook, c in sorted(r["counters"].items()):
            out.append(f"  {hook:<22} checked {c['checked']:>8}  denied {c['denied']:>6}  audited {c['audited']:>6}"
                       f"  failed-closed {c['failed_closed']:>4}  dropped {c['dropped']:>4}\n")
        for s in r.get("suppressed", ()):
            out.append(f"  suppressed by `limit {s['limit'] or '?'}` of {s['rule'] or 'rule ' + str(s['rule_id'])}: "
                       f"{s['count']}\n")
    return "".join(out)


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"version": JSON_VERSION, "policies": [_located(r) for r in rows]},
                          indent=2, sort_keys=True) + "\n"
    if fmt == "prometheus":
        return format_prometheus(rows)
    return format_text(rows)


def _located(row: dict) -> dict:
    """A status row with a `location` object beside each suppressed entry's `rule` string."""
    if not row.get("suppressed"):
        return row
    from ..audit.report import location

    return {**row, "suppressed": [{**s, "location": location(s.get("rule"))} for s in row["suppressed"]]}


def run_status(as_json: bool, out: TextIO, err: TextIO, fmt: str | None = None, output: str | None = None) -> int:
    fmt = fmt or ("json" if as_json else "text")
    if fmt not in FORMATS:
        err.write(f"policyc: error: unknown format `{fmt}` (use: {', '.join(FORMATS)})\n")
        return EXIT_BAD_INPUT
    if as_json and fmt != "json":
        err.write("policyc: error: --json is --format json: give one of them\n")
        return EXIT_BAD_INPUT
    try:
        rows = status()
    except DeployError as e:
        return print_deploy_error(e, err)
    text = render(rows, fmt)
    if output is None:
        out.write(text)
        return EXIT_OK
    try:
        write_atomically(output, text, 0o644)
    except OSError as e:
        err.write(f"policyc: error: cannot write `{output}`: {e.strerror or e}\n")
        return EXIT_BAD_INPUT
    return EXIT_OK


def command(
    as_json: bool = typer.Option(False, "--json", help="one JSON document (as --format json)"),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="text|json|prometheus",
                                      help="text (default), json, or prometheus (node_exporter textfile)"),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="replace FILE atomically instead of writing to stdout"),
) -> None:
    """Show loaded policies: load time, object hash, per-hook counters since the first load."""
    guarded(run_status, as_json, out=sys.stdout, err=sys.stderr, fmt=fmt, output=output)
