"""`policyc report`: what an audit log says, summed up: top rules, subjects, objects, per hour."""

from __future__ import annotations

from collections import Counter

from .logfile import Record
from .families import family
from .schema import iso_utc, process_view

TOP = 10
# `report --format json`'s layout: 2 added `version`, structured subjects (`exe`, `name`),
# objects (`fields`: the record's object) and rule locations (`location`: file, line, col)
REPORT_VERSION = 2


def location(text: str | None) -> dict | None:
    """`file:line:col` as {"file", "line", "col"} (the file may hold colons)."""
    if not text:
        return None
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return {"file": parts[0], "line": int(parts[1]), "col": int(parts[2])}
    return {"file": text, "line": None, "col": None}


def object_text(rec: dict) -> str:
    return family(rec["family"]).report_text(rec["object"])


def subject_text(rec: dict) -> str:
    s = process_view(rec)
    return s.get("exe") or f"comm {s.get('comm')}"


def summarize(records: list[Record], since_ns: int | None = None, top: int = TOP) -> dict:
    events = [r.data for r in records if r.data["type"] == "event" and (since_ns is None or r.data["time_ns"] >= since_ns)]
    drops = [r.data for r in records if r.data["type"] == "dropped" and (since_ns is None or r.data["time_ns"] >= since_ns)]
    held = [r.data for r in records if r.data["type"] == "suppressed"
            and (since_ns is None or r.data["time_ns"] >= since_ns)]
    rules: Counter = Counter()
    rule_info: dict = {}
    subjects: Counter = Counter()
    objects: Counter = Counter()
    hours: Counter = Counter()
    decisions: Counter = Counter()
    subject_fields: dict[str, dict] = {}
    object_fields: dict[tuple, dict] = {}
    for e in events:
        key = (e["policy"], e.get("rule"), e.get("rule_text") or (f"default {e['decision']}" if e["reason"] == "default"
                                                                 else e["reason"]))
        rules[key] += 1
        st = subject_text(e)
        subjects[st] += 1
        if st not in subject_fields:
            pv = process_view(e)
            subject_fields[st] = {"exe": pv.get("exe"), "name": pv.get("comm")}
        ok = (e["family"], e["op"], object_text(e))
        objects[ok] += 1
        object_fields.setdefault(ok, dict(e["object"]))
        hours[iso_utc(e["time_ns"])[:13] + ":00Z"] += 1
        decisions[e["decision"]] += 1
    dropped_rules: Counter = Counter()
    for d in drops:
        for r in d["rules"]:
            dropped_rules[(d["policy"], r.get("rule"))] += int(r.get("count", 0))
        if d.get("unattributed"):
            dropped_rules[(d["policy"], None)] += int(d["unattributed"])
    suppressed_rules: Counter = Counter()
    for d in held:
        for r in d["rules"]:
            suppressed_rules[(d["policy"], r.get("rule"), r.get("limit"))] += int(r.get("count", 0))
    times = [e["time_ns"] for e in events]
    return {
        "events": len(events),
        "decisions": dict(sorted(decisions.items())),
        "dropped": sum(d["count"] for d in drops),
        "suppressed": sum(d["count"] for d in held),
        "first": iso_utc(min(times)) if times else None,
        "last": iso_utc(max(times)) if times else None,
        "since": iso_utc(since_ns) if since_ns is not None else None,
        "version": REPORT_VERSION,
        "top_rules": [{"policy": p, "rule": loc, "location": location(loc), "text": text, "count": n}
                      for (p, loc, text), n in rules.most_common(top)],
        "top_subjects": [{"subject": s, **subject_fields[s], "count": n} for s, n in subjects.most_common(top)],
        "top_objects": [{"family": f, "op": op, "object": o, "fields": object_fields[(f, op, o)], "count": n}
                        for (f, op, o), n in objects.most_common(top)],
        "per_hour": [{"hour": h, "count": n} for h, n in sorted(hours.items())],
        "dropped_by_rule": [{"policy": p, "rule": loc, "count": n} for (p, loc), n in dropped_rules.most_common()],
        "suppressed_by_rule": [{"policy": p, "rule": loc, "limit": lim, "count": n}
                               for (p, loc, lim), n in suppressed_rules.most_common()],
    }


def render_tables(summary: dict, console) -> None:
    """The summary as rich tables on `console`."""
    from rich.table import Table

    dec = ", ".join(f"{k} {v}" for k, v in summary["decisions"].items()) or "none"
    span = f"{summary['first']} .. {summary['last']}" if summary["first"] else "no events"
    console.print(f"[bold]{summary['events']} events[/bold] ({dec}), {summary['dropped']} dropped, "
                  f"{summary['suppressed']} suppressed by limits; {span}")

    def table(title, cols, rows):
        t = Table(title=title, title_justify="left")
        for c in cols:
            t.add_column(c, justify="right" if c == "count" else "left", overflow="fold")
        for r in rows:
            t.add_row(*[str(x) if x is not None else "-" for x in r])
        console.print(t)

    table("top rules", ["count", "policy", "rule", "text"],
          [(r["count"], r["policy"], r["rule"], r["text"]) for r in summary["top_rules"]])
    table("top subjects", ["count", "subject"], [(r["count"], r["subject"]) for r in summary["top_subjects"]])
    table("top objects", ["count", "family", "op", "object"],
          [(r["count"], r["family"], r["op"], r["object"]) for r in summary["top_objects"]])
    table("per hour (UTC)", ["hour", "count"], [(r["hour"], r["count"]) for r in summary["per_hour"]])
    if summary["dropped_by_rule"]:
        table("dropped (ring buffer full)", ["count", "policy", "rule"],
              [(r["count"], r["policy"], r["rule"] or "unattributed/default") for r in summary["dropped_by_rule"]])
    if summary["suppressed_by_rule"]:
        table("suppressed (over the rule's limit)", ["count", "policy", "rule", "limit"],
              [(r["count"], r["policy"], r["rule"], r["limit"]) for r in summary["suppressed_by_rule"]])
