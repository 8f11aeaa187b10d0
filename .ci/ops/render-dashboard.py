#!/usr/bin/env python3
"""Draws the Grafana dashboard (helm/callauth/dashboards/callauth.json) as an
SVG picture, docs/dashboard.svg, so that a reader sees its layout, panels,
queries, units and objective lines without a Grafana.

Standard library only; the output is deterministic (CI regenerates it and
fails when the committed file differs):

    python3 .ci/ops/render-dashboard.py                 # rewrite docs/dashboard.svg
    python3 .ci/ops/render-dashboard.py --check         # exit 1 when it is stale

It draws no data: each panel shows its title, kind, unit, its queries (the
`namespace=~"$namespace"` filter that every query carries is left out), and
for time series an empty plot with the objective line where one is set.
"""
import argparse
import html
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "helm/callauth/dashboards/callauth.json"
TARGET = ROOT / "docs/dashboard.svg"

COL = 60          # px per grid column (Grafana has 24)
ROW = 34          # px per grid row unit
GAP = 6           # px between panels
MARGIN = 16
HEADER = 64
CHAR = 6.0        # px per character of the 10 px monospace font
LINE = 12         # px per query line

BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#d8d9da"
DIM = "#8e8e8e"
ACCENT = "#73bf69"
RED = "#f2495c"
QUERY = "#a8c7fa"


def esc(s):
    return html.escape(str(s), quote=True)


def simplify(expr):
    """Drops the namespace filter every query carries, for legibility."""
    expr = expr.replace('{namespace=~"$namespace"}', "")
    expr = expr.replace('namespace=~"$namespace",', "")
    expr = re.sub(r"\s+", " ", expr)
    return expr.strip()


def wrap(text, width):
    """Breaks a query into lines of at most `width` characters, preferring
    breaks after spaces, commas and closing parentheses."""
    lines = []
    while len(text) > width:
        cut = max(text.rfind(c, 0, width) for c in " ,)")
        if cut < width // 2:
            cut = width - 1
        lines.append(text[: cut + 1].rstrip())
        text = text[cut + 1 :].lstrip()
    if text:
        lines.append(text)
    return lines


def objective(panel):
    """The first non-base threshold step of a panel drawn as a line, if any."""
    d = panel.get("fieldConfig", {}).get("defaults", {})
    style = d.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
    steps = d.get("thresholds", {}).get("steps", [])
    values = [s["value"] for s in steps if s.get("value") is not None]
    if panel.get("type") == "timeseries" and style != "off" and values:
        return values[0]
    return None


def fmt_value(value, unit):
    if unit == "s":
        if value < 1:
            return f"{value * 1000:g} ms"
        return f"{value:g} s"
    if unit == "percentunit":
        return f"{value * 100:g} %"
    return f"{value:g}"


def render(dash):
    panels = dash["panels"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width = MARGIN * 2 + 24 * COL
    height = HEADER + bottom * ROW + MARGIN
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="{BG}"/>',
        f'<text x="{MARGIN}" y="28" font-size="20" font-weight="bold" fill="{TEXT}">'
        f'Grafana dashboard: {esc(dash["title"])}</text>',
    ]
    variables = ", ".join(f'${v["name"]}' for v in dash.get("templating", {}).get("list", []))
    out.append(
        f'<text x="{MARGIN}" y="48" font-size="11" fill="{DIM}">'
        f"Drawn from helm/callauth/dashboards/callauth.json by .ci/ops/render-dashboard.py "
        f"(layout, queries, units, objective lines; no data). Variables: {esc(variables)}; "
        f'every query is also filtered by namespace=~"$namespace".</text>'
    )
    for p in panels:
        g = p["gridPos"]
        x = MARGIN + g["x"] * COL
        y = HEADER + g["y"] * ROW
        w = g["w"] * COL - GAP
        h = g["h"] * ROW - GAP
        if p["type"] == "row":
            out.append(f'<rect x="{x}" y="{y + 4}" width="{w}" height="{ROW - 10}" fill="{BG}"/>')
            out.append(
                f'<text x="{x + 2}" y="{y + 20}" font-size="14" font-weight="bold" fill="{ACCENT}">'
                f'▾ {esc(p["title"])}</text>'
            )
            out.append(f'<line x1="{x}" y1="{y + 26}" x2="{x + w}" y2="{y + 26}" stroke="{BORDER}"/>')
            continue
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        out.append(f'<g id="panel-{p["id"]}">')
        out.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="{PANEL}" stroke="{BORDER}"/>'
        )
        kind = p["type"] + (" · " + unit if unit else "")
        # Narrow stat panels name their kind in the footer instead.
        corner = "" if p["type"] == "stat" else kind
        title_chars = int((w - 24 - len(corner) * 5.5) / 7)
        title = p["title"] if len(p["title"]) <= title_chars else p["title"][: title_chars - 1] + "…"
        out.append(
            f'<text x="{x + 8}" y="{y + 17}" font-size="12" font-weight="bold" fill="{TEXT}">{esc(title)}</text>'
        )
        out.append(
            f'<text x="{x + w - 8}" y="{y + 17}" font-size="10" fill="{DIM}" text-anchor="end">'
            f"{esc(corner)}</text>"
        )
        # The plot area of a time series takes the lower part of the panel.
        plot_h = int(h * 0.32) if p["type"] == "timeseries" and h >= 6 * ROW else 0
        text_bottom = y + h - plot_h - (22 if p["type"] == "stat" else 6)
        ty = y + 32
        width_chars = max(10, int((w - 20) / CHAR))
        for t in p.get("targets", []):
            lines = wrap(simplify(t.get("expr", "")), width_chars - 3)
            legend = t.get("legendFormat") or ""
            for i, line in enumerate(lines):
                if ty > text_bottom:
                    break
                prefix = t["refId"] + "  " if i == 0 else "   "
                out.append(
                    f'<text x="{x + 8}" y="{ty}" font-family="DejaVu Sans Mono, Menlo, monospace" '
                    f'font-size="10" fill="{QUERY}" xml:space="preserve">{esc(prefix + line)}</text>'
                )
                ty += LINE
            if legend and ty <= text_bottom:
                out.append(
                    f'<text x="{x + 26}" y="{ty}" font-size="10" fill="{DIM}">legend: {esc(legend)}</text>'
                )
                ty += LINE
            ty += 3
        if plot_h:
            px, py, pw, ph = x + 40, y + h - plot_h - 2, w - 52, plot_h - 14
            out.append(f'<line x1="{px}" y1="{py}" x2="{px}" y2="{py + ph}" stroke="{BORDER}"/>')
            out.append(f'<line x1="{px}" y1="{py + ph}" x2="{px + pw}" y2="{py + ph}" stroke="{BORDER}"/>')
            out.append(f'<text x="{px + 4}" y="{py + 8}" font-size="9" fill="{DIM}">{esc(unit)}</text>')
            out.append(
                f'<text x="{px + pw}" y="{py + ph + 11}" font-size="9" fill="{DIM}" text-anchor="end">time →</text>'
            )
            value = objective(p)
            if value is not None:
                oy = py + ph * 0.35
                out.append(
                    f'<line x1="{px}" y1="{oy:.0f}" x2="{px + pw}" y2="{oy:.0f}" stroke="{RED}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"/>'
                )
                out.append(
                    f'<text x="{px + pw - 2}" y="{oy - 4:.0f}" font-size="10" fill="{RED}" text-anchor="end">'
                    f"objective / alert line: {esc(fmt_value(value, unit))}</text>"
                )
        elif p["type"] == "stat":
            steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
            marks = [s for s in steps if s.get("value") is not None]
            out.append(f'<text x="{x + 8}" y="{y + h - 8}" font-size="10" fill="{DIM}">{esc(kind)}</text>')
            if marks:
                label = f'{marks[-1]["color"]} from {fmt_value(marks[-1]["value"], unit)}'
                out.append(
                    f'<text x="{x + w - 8}" y="{y + h - 8}" font-size="10" fill="{RED}" text-anchor="end">'
                    f"{esc(label)}</text>"
                )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/dashboard.svg is stale")
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--target", type=Path, default=TARGET)
    args = ap.parse_args()
    svg = render(json.loads(args.source.read_text(encoding="utf-8")))
    if args.check:
        current = args.target.read_text(encoding="utf-8") if args.target.exists() else ""
        if current != svg:
            print(f"{args.target} is stale: run python3 .ci/ops/render-dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.target.write_text(svg, encoding="utf-8")
    print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
