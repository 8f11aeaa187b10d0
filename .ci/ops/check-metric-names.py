#!/usr/bin/env python3
"""Every metric that the dashboard and the alerting/recording rules query must
exist in what the processes really export.

    check-metric-names.py --scrape gw.prom --scrape settlement.prom \
        --dashboard helm/callauth/dashboards/callauth.json \
        --rules helm/callauth/rules/callauth-rules.yaml \
        --runbook docs/runbook.md --declared src/metrics.rs

* Names are taken from the scrapes' `# TYPE` lines and samples; a histogram
  family `x` provides exactly `x_bucket`, `x_sum` and `x_count` (the suffixes
  are only accepted on histogram and summary families).
* A name with a colon is a recording rule: it must be defined in the rules
  file (and is not looked for in the scrapes).
* The runbook must have a section for each alert's runbook_url anchor, and its
  metric reference must list every family the processes export or
  src/metrics.rs declares.
* Families declared in src/metrics.rs but absent from the scrapes are listed
  (they appear on /metrics only once touched, unless pre-registered).
Standard library only (the rules file is read with a small YAML subset reader:
`record:`, `alert:`, `expr:` blocks and `runbook_url:` lines).
"""
import argparse
import json
import os
import re
import sys

NAME = re.compile(r"\bcallauth[_:][A-Za-z0-9_:]*")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def scrape_names(paths):
    families, samples = {}, set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("# TYPE "):
                    _, _, name, kind = line.split(None, 3)
                    families[name] = kind
                elif line and not line.startswith("#"):
                    samples.add(re.split(r"[{\s]", line, 1)[0])
    provided = set()
    for name, kind in families.items():
        if kind in ("histogram", "summary"):
            provided |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {
                name, f"{name}_sum", f"{name}_count"}
        else:
            provided.add(name)
    provided |= samples
    return families, provided


def names_in(expr):
    return set(NAME.findall(QUOTED.sub('""', expr)))


def read_rules(path):
    """Returns (records, alerts{name: {expr, annotations}}, exprs) from a
    Prometheus rules file, reading only what is needed."""
    records, alerts, exprs = set(), {}, []
    current = None
    lines = open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*- (record|alert): (\S+)", line)
        if m:
            kind, name = m.groups()
            if kind == "record":
                records.add(name)
                current = None
            else:
                current = alerts.setdefault(name, {"annotations": set(), "runbook_url": None})
        m = re.match(r"^(\s*)expr: ?(.*)$", line)
        if m:
            indent, rest = len(m.group(1)), m.group(2)
            if rest.strip() in ("|", ">", "|-", ">-"):
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    body.append(lines[i])
                    i += 1
                exprs.append("\n".join(body))
                continue
            exprs.append(rest)
        m = re.match(r"^\s*(summary|description|runbook_url):\s*(.*)$", line)
        if m and current is not None:
            current["annotations"].add(m.group(1))
            if m.group(1) == "runbook_url":
                current["runbook_url"] = m.group(2).strip()
        i += 1
    return records, alerts, exprs


def dashboard_exprs(path):
    dash = json.load(open(path, encoding="utf-8"))
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if isinstance(q, str) and "callauth" in q:
            out.append((f"variable ${v['name']}", q))
    return out


def github_anchor(heading):
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrape", action="append", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--runbook")
    ap.add_argument("--declared", help="src/metrics.rs")
    args = ap.parse_args()

    failures = []
    families, provided = scrape_names(args.scrape)
    records, alerts, rule_exprs = read_rules(args.rules)

    used = {}
    for title, expr in dashboard_exprs(args.dashboard):
        for n in names_in(expr):
            used.setdefault(n, set()).add(f"dashboard: {title}")
    for expr in rule_exprs:
        for n in names_in(expr):
            used.setdefault(n, set()).add("rules")
    missing = {}
    for n, where in sorted(used.items()):
        if ":" in n:
            if n not in records:
                failures.append(f"{n} is not a recording rule of {args.rules} (used by {', '.join(sorted(where))})")
        elif n not in provided:
            missing[n] = where
    for n, where in missing.items():
        failures.append(f"{n} is not exported by the scraped processes (used by {', '.join(sorted(where))})")
    raw = {n for n in used if ":" not in n}
    print(f"    {len(raw)} metric names queried by {len(dashboard_exprs(args.dashboard))} dashboard queries "
          f"and {len(rule_exprs)} rule expressions; {len(raw) - len(missing)} found in the scrapes "
          f"({len(families)} families), {len(records)} recording rules")

    declared = set()
    if args.declared:
        declared = set(re.findall(r'"(callauth_[a-z0-9_]+)"', open(args.declared, encoding="utf-8").read()))
        absent = sorted(declared - set(families))
        if absent:
            print(f"    NOTE declared in {args.declared} but not on /metrics after start: {', '.join(absent)}")
        unknown = sorted(set(families) - declared)
        if unknown:
            failures.append(f"exported but not declared in {args.declared}: {', '.join(unknown)}")
        unused = sorted(declared - {re.sub(r'_(bucket|sum|count)$', '', n) for n in raw} - {"callauth_build_info"})
        unused = [u for u in unused if u not in raw]
        if unused:
            print(f"    NOTE declared metrics no panel or rule uses: {', '.join(unused)}")

    if args.runbook and not os.path.exists(args.runbook):
        failures.append(f"{args.runbook} does not exist")
    elif args.runbook:
        text = open(args.runbook, encoding="utf-8").read()
        anchors = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}
        for name, a in sorted(alerts.items()):
            missing_ann = {"summary", "description", "runbook_url"} - a["annotations"]
            if missing_ann:
                failures.append(f"alert {name} lacks {', '.join(sorted(missing_ann))}")
            url = a["runbook_url"] or ""
            anchor = url.split("#", 1)[1] if "#" in url else ""
            if not url.startswith("docs/runbook.md#") or anchor not in anchors:
                failures.append(f"alert {name}: runbook_url {url!r} has no section in {args.runbook}")
        listed = set(re.findall(r"^\|\s*`(callauth_[a-z0-9_]+)`", text, re.M))
        for n in sorted((set(families) | declared) - listed):
            failures.append(f"{n} is missing from the metric reference in {args.runbook}")
        print(f"    runbook: {len(alerts)} alerts with sections, {len(listed)} metrics in the reference table")

    for f in failures:
        print(f"    FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
