"""Small server-side SVG charts for the reports: no JavaScript, no CDN, allowed by the page's CSP.

Colours come from classes in static/portal.css (`series-0`, `series-1`, …), so the charts
follow the stylesheet and need no inline styles.
"""
from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, BAR_HEIGHT, GAP, LABEL_WIDTH, LEGEND = 640, 18, 6, 180, 22


def bars(rows: list[dict], label: str, series: list[tuple[str, str]], title: str) -> Markup:
    """Horizontal stacked bars, one per row: `series` is [(column, legend text), ...]."""
    if not rows:
        return Markup("")
    top = max(sum((r.get(col) or 0) for col, _ in series) for r in rows) or 1
    plot = WIDTH - LABEL_WIDTH - 60
    height = LEGEND + len(rows) * (BAR_HEIGHT + GAP) + GAP
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    parts += _legend(series)
    for i, row in enumerate(rows):
        y = LEGEND + GAP + i * (BAR_HEIGHT + GAP)
        parts.append(f'<text class="chart-label" x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT - 5}" '
                     f'text-anchor="end">{escape(str(row.get(label) if row.get(label) is not None else "—"))}</text>')
        x = LABEL_WIDTH
        for n, (col, name) in enumerate(series):
            value = row.get(col) or 0
            w = plot * value / top
            if w > 0:
                parts.append(f'<rect class="series-{n}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}">'
                             f'<title>{escape(name)}: {value}</title></rect>')
            x += w
        total = sum((row.get(col) or 0) for col, _ in series)
        parts.append(f'<text class="chart-value" x="{x + 4:.1f}" y="{y + BAR_HEIGHT - 5}">{total}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(rows: list[dict], label: str, series: list[tuple[str, str]], title: str) -> Markup:
    """A line per series over the rows in order (e.g. weeks)."""
    if not rows:
        return Markup("")
    height, left, bottom = 220, 40, 30
    plot_w, plot_h = WIDTH - left - 10, height - LEGEND - bottom
    top = max(max((r.get(col) or 0) for r in rows) for col, _ in series) or 1
    step = plot_w / max(len(rows) - 1, 1)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    parts += _legend(series)
    base = LEGEND + plot_h
    parts.append(f'<line class="chart-axis" x1="{left}" y1="{base}" x2="{WIDTH - 10}" y2="{base}"/>')
    parts.append(f'<text class="chart-value" x="{left - 4}" y="{LEGEND + 10}" text-anchor="end">{top}</text>')
    for n, (col, name) in enumerate(series):
        points = " ".join(f"{left + i * step:.1f},{base - plot_h * (r.get(col) or 0) / top:.1f}"
                          for i, r in enumerate(rows))
        parts.append(f'<polyline class="line series-{n}" points="{points}"><title>{escape(name)}</title></polyline>')
    for i, r in enumerate(rows):
        if len(rows) <= 12 or i % max(len(rows) // 12, 1) == 0:
            parts.append(f'<text class="chart-label" x="{left + i * step:.1f}" y="{height - 10}" '
                         f'text-anchor="middle">{escape(str(r.get(label)))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _legend(series: list[tuple[str, str]]) -> list[str]:
    out, x = [], LABEL_WIDTH
    for n, (_col, name) in enumerate(series):
        out.append(f'<rect class="series-{n}" x="{x}" y="4" width="12" height="12"/>'
                   f'<text class="chart-label" x="{x + 16}" y="14">{escape(name)}</text>')
        x += 24 + 8 * len(name)
    return out
