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
