"""Small server-rendered SVG charts (no JavaScript, no CDN: plant networks are offline)."""
from __future__ import annotations

from markupsafe import Markup, escape


def bar_chart(items: list[tuple[str, float]], *, title: str, unit: str = "", width: int = 520,
              bar_h: int = 22, label_w: int = 140, color: str = "#4f8fd6") -> Markup:
    """Horizontal bars, one per (label, value)."""
    height = 26 + max(1, len(items)) * (bar_h + 6)
    top = max((v for _, v in items), default=0) or 1
    room = width - label_w - 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><text x="0" y="14" font-weight="bold">{escape(title)}</text>']
    if not items:
        parts.append('<text x="0" y="40">no data yet</text>')
    for i, (label, value) in enumerate(items):
        y = 24 + i * (bar_h + 6)
        w = max(1, int(room * value / top))
        fits = max(4, label_w // 7)  # characters of 12 px text in the label column
        shown = label if len(label) <= fits else label[:fits - 1] + "\u2026"
        parts.append(f'<text x="0" y="{y + bar_h - 6}"><title>{escape(label)}</title>{escape(shown)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{color}"/>'
                     f'<text x="{label_w + w + 6}" y="{y + bar_h - 6}">{_fmt(value)}{escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(items: list[tuple[str, float]], *, title: str, width: int = 640, height: int = 200,
                 color: str = "#6abf69") -> Markup:
    """Vertical columns over time (e.g. reviews per hour)."""
    top = max((v for _, v in items), default=0) or 1
    n = max(1, len(items))
    plot_h = height - 44
    col_w = max(2, (width - 10) // n - 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><text x="0" y="14" font-weight="bold">{escape(title)}</text>'
             f'<text x="{width - 4}" y="14" text-anchor="end">max {_fmt(top)}</text>']
    for i, (label, value) in enumerate(items):
        h = int(plot_h * value / top)
        x = 5 + i * (col_w + 2)
        parts.append(f'<rect x="{x}" y="{22 + plot_h - h}" width="{col_w}" height="{h}" fill="{color}">'
                     f'<title>{escape(label)}: {_fmt(value)}</title></rect>')
        if i % max(1, n // 6) == 0:
            parts.append(f'<text x="{x}" y="{height - 6}">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() or abs(v) >= 100 else f"{v:.2f}"


#: Colours of the lines of a line chart, one per series, in order.
SERIES_COLORS = ("#4f8fd6", "#c98a2e", "#6abf69", "#d65f5f", "#a77bd6", "#5fc4c4")


def line_chart(series: dict[str, list[tuple[float, float | None]]], *, title: str, x_labels: dict[float, str],
               width: int = 640, height: int = 220, percent: bool = True) -> Markup:
    """One line per named series of (x, y) points (y None: no figure there, a gap), a legend, a shared y axis."""
    xs = sorted({x for pts in series.values() for x, _ in pts})
    ys = [y for pts in series.values() for _, y in pts if y is not None]
    top = max(ys, default=0.0) or 1.0
    left, plot_w, plot_h, top_px = 50, width - 80, height - 70, 24
    if not ys:
        xs = []  # nothing to draw: say so instead of an empty axis
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><text x="0" y="14" font-weight="bold">{escape(title)}</text>',
             f'<text x="{left - 4}" y="{top_px + 8}" text-anchor="end">{_axis(top, percent)}</text>',
             f'<text x="{left - 4}" y="{top_px + plot_h}" text-anchor="end">0</text>',
             f'<line x1="{left}" y1="{top_px + plot_h}" x2="{left + plot_w}" y2="{top_px + plot_h}" stroke="#666"/>']
    if not xs:
        parts.append(f'<text x="{left + 10}" y="{top_px + plot_h // 2}">no figures yet</text></svg>')
        return Markup("".join(parts))
    span = (xs[-1] - xs[0]) or 1.0

    def px(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * (x - xs[0]) / span, top_px + plot_h - plot_h * y / top

    for i, (name, pts) in enumerate(series.items()):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        run: list[str] = []
        for x, y in sorted(pts) + [(float("inf"), None)]:
            if y is None:  # a gap ends the line drawn so far
                if len(run) > 1:
                    parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(run)}"/>')
                run = []
                continue
            cx, cy = px(x, y)
            run.append(f"{cx:.1f},{cy:.1f}")
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}"><title>{escape(name)} '
                         f'{escape(x_labels.get(x, ""))}: {_axis(y, percent)}</title></circle>')
        parts.append(f'<rect x="{left + 110 * i}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + 110 * i + 14}" y="{height - 5}">{escape(name)}</text>')
    for x in xs[:: max(1, len(xs) // 6)]:
        cx, _ = px(x, 0)
        parts.append(f'<text x="{cx:.1f}" y="{top_px + plot_h + 16}" text-anchor="middle">'
                     f'{escape(x_labels.get(x, ""))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _axis(v: float, percent: bool) -> str:
    return f"{v * 100:.1f} %" if percent else _fmt(v)
