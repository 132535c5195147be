"""Charts as inline SVG, rendered on the server: stacked bars, lines and sparklines from plain
series. Pure (numbers in, markup out) and self-contained: no script, no external file, no
inline `style` (the UI's CSP refuses it); colours come from `ui.css` classes and SVG
attributes.

Readable without colour: a failed bar is striped as well as red, the second line is dashed
with square markers, and every chart names itself (`role="img"` with a title) and has
`<title>` hover text on each bar or point; the pages put the same numbers in a table
(`data_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

__all__ = ["Bars", "Line", "bar_chart", "line_chart", "sparkline"]

WIDTH = 640
HEIGHT = 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 8, 22, 24


@dataclass(frozen=True, slots=True)
class Bars:
    """One stacked part of each bar: its name, its values, and whether it is striped."""

    name: str
    values: Sequence[int]
    striped: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    """One line; None leaves a gap. `dashed` lines get square markers."""

    name: str
    values: Sequence[float | None]
    dashed: bool = False


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _defs(chart_id: str) -> str:
    # The stripes are drawn in the bar's own colour (`currentColor` of the `.failed` class).
    return (
        f'<defs><pattern id="{chart_id}-stripes" width="5" height="5" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="5" height="5" fill="currentColor"/>'
        '<rect width="2" height="5" fill="#ffffff"/></pattern></defs>'
    )


def _svg_open(chart_id: str, title: str, width: int, height: int, css: str) -> str:
    return (
        f'<svg class="chart {css}" id="{chart_id}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{chart_id}-title" preserveAspectRatio="none">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
    )


def _axes(peak: float, unit: str, labels: Sequence[str]) -> list[str]:
    """The value axis (0, half and the peak, with grid lines) and a few time labels."""
    plot_h = HEIGHT - _TOP - _BOTTOM
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        y = _TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_number(peak * fraction))}</text>"
        )
    parts.append(f'<text class="axis" x="4" y="12" text-anchor="start">{escape(unit)}</text>')
    n = len(labels)
    if n:
        slot = (WIDTH - _LEFT - _RIGHT) / n
        for index in sorted({0, n // 2, n - 1}):
            x = _LEFT + slot * (index + 0.5)
            anchor = "start" if index == 0 else "end" if index == n - 1 else "middle"
            if index == 0:
                x = _LEFT
            elif index == n - 1:
                x = WIDTH - _RIGHT
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(labels[index])}</text>"
            )
    return parts


def bar_chart(
    chart_id: str, title: str, labels: Sequence[str], parts: Sequence[Bars], *, unit: str
) -> Markup:
    """Stacked bars, one per label, each part on top of the one before."""
    n = len(labels)
    totals = [sum(part.values[i] for part in parts) for i in range(n)]
    peak = max([*totals, 1])
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    gap = min(2.0, slot * 0.2)
    out = [_svg_open(chart_id, title, WIDTH, HEIGHT, "bars"), _defs(chart_id)]
    out += _axes(peak, unit, labels)
    for i in range(n):
        hover = f"{labels[i]}: " + ", ".join(
            f"{_number(part.values[i])} {part.name}" for part in parts
        )
        out.append(f"<g><title>{escape(hover)}</title>")
        # A transparent bar over the whole slot, so a zero still shows its hover text.
        x = _LEFT + slot * i
        out.append(
            f'<rect class="hit" x="{x:.1f}" y="{_TOP}" width="{slot:.1f}" height="{plot_h}"/>'
        )
        base = float(_TOP + plot_h)
        for index, part in enumerate(parts):
            value = part.values[i]
            if not value:
                continue
            height = plot_h * value / peak
            base -= height
            fill = f' fill="url(#{chart_id}-stripes)"' if part.striped else ""
            out.append(
                f'<rect class="part-{index}" x="{x + gap / 2:.1f}" y="{base:.1f}" '
                f'width="{max(slot - gap, 0.5):.1f}" height="{height:.1f}"{fill}/>'
            )
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


def line_chart(
    chart_id: str, title: str, labels: Sequence[str], lines: Sequence[Line], *, unit: str
) -> Markup:
    """Lines over the labels, each point marked (a circle, or a square on a dashed line)."""
    n = len(labels)
    values = [v for line in lines for v in line.values if v is not None]
    peak = max([*values, 1.0])
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    out = [_svg_open(chart_id, title, WIDTH, HEIGHT, "lines")]
    out += _axes(peak, unit, labels)
    for index, line in enumerate(lines):
        css = f"series-{index}" + (" dashed" if line.dashed else "")
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(line.values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append((_LEFT + slot * (i + 0.5), _TOP + plot_h * (1 - value / peak)))
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                out.append(f'<polyline class="{css}" points="{points}"/>')
        for i, value in enumerate(line.values):
            if value is None:
                continue
            x, y = _LEFT + slot * (i + 0.5), _TOP + plot_h * (1 - value / peak)
            hover = escape(f"{labels[i]}: {line.name} {_number(value)} {unit}")
            if line.dashed:
                marker = f'<rect x="{x - 2.5:.1f}" y="{y - 2.5:.1f}" width="5" height="5"/>'
            else:
                marker = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.8"/>'
            out.append(f'<g class="marker {css}"><title>{hover}</title>{marker}</g>')
    out.append("</svg>")
    return Markup("".join(out))


def sparkline(chart_id: str, title: str, ok: Sequence[int], failed: Sequence[int]) -> Markup:
    """A small bar per value: succeeded below, failed (striped) on top; one title for all."""
    width, height = 96, 24
    n = len(ok)
    peak = max([a + b for a, b in zip(ok, failed, strict=True)] + [1])
    slot = width / max(n, 1)
    out = [_svg_open(chart_id, title, width, height, "spark"), _defs(chart_id)]
    out.append(f'<line class="grid" x1="0" x2="{width}" y1="{height - 0.5}" y2="{height - 0.5}"/>')
    for i in range(n):
        base = float(height)
        for value, css, fill in (
            (ok[i], "part-0", ""),
            (failed[i], "part-1", f' fill="url(#{chart_id}-stripes)"'),
        ):
            if not value:
                continue
            bar = max(height * value / peak, 1.0)
            base -= bar
            out.append(
                f'<rect class="{css}" x="{slot * i:.2f}" y="{base:.2f}" '
                f'width="{max(slot - 0.4, 0.3):.2f}" height="{bar:.2f}"{fill}/>'
            )
    out.append("</svg>")
    return Markup("".join(out))
