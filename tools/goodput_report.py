"""Table and chart of tools/measure_goodput.sh's raw results (standard library only).

    python3 tools/goodput_report.py docs/bench/goodput/raw.jsonl docs/bench/goodput

Writes table.md (median goodput over the rounds, as requests/s and as a share of capacity, and
the share of admitted requests that finished after their deadline) and goodput.svg.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

DEADLINES = ["none", "250ms", "50ms"]
SIDES = ["before", "after"]
COLOURS = {"none": "#4c72b0", "250ms": "#dd8452", "50ms": "#c44e52"}


def main() -> None:
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    rows = [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]
    capacity = {
        side: statistics.median(r["requests_per_s"] for r in rows if r["kind"] == "capacity" and r["side"] == side)
        for side in SIDES
    }
    base = capacity["after"]
    runs = defaultdict(list)
    for r in rows:
        if r["kind"] == "run":
            runs[(r["multiplier"], r["deadline"], r["side"])].append(r)
    multipliers = sorted({m for (m, _, _) in runs})
    rounds = max(len(v) for v in runs.values())

    lines = [
        f"Capacity (best closed-loop throughput at 32, 64 or 128 in flight, no deadline; median of {rounds} rounds): "
        f"before {capacity['before']:.1f}, after {capacity['after']:.1f} requests/s. Offered rates are "
        f"multiples of the after build's capacity. Goodput = successful requests/s as `bindery load` "
        f"counts them (median of {rounds} alternated rounds), and in brackets as a share of capacity. "
        "Late = admitted requests that did not finish before their deadline, as a share of admitted "
        "ones (after build, all rounds; the before build has no such counter).",
        "",
        "| offered | deadline | before goodput | after goodput | after late / admitted |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    series = defaultdict(list)
    for m in multipliers:
        for d in DEADLINES:
            cells = []
            for side in SIDES:
                goodput = statistics.median(r["requests_per_s"] for r in runs[(m, d, side)])
                series[(d, side)].append((m, goodput / base))
                cells.append(f"{goodput:.1f} ({100 * goodput / base:.0f}%)")
            after = runs[(m, d, "after")]
            late, admitted = sum(r["late"] for r in after), sum(r["admitted"] for r in after)
            share = f"{100 * late / admitted:.2f}% ({late}/{admitted})" if admitted else "-"
            lines.append(f"| {m:g}x ({after[0]['rate']:.0f}/s) | {d} | {cells[0]} | {cells[1]} | {share} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "goodput.svg").write_text(chart(series, multipliers))
    print("\n".join(lines))


def chart(series, multipliers) -> str:
    width, height, left, right, top, bottom = 720, 420, 70, 170, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max(multipliers)
    y_max = max(1.2, max(y for points in series.values() for _, y in points) * 1.05)

    def x(v):
        return left + plot_w * v / x_max

    def y(v):
        return top + plot_h * (1 - v / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15">Goodput vs offered load (image embeds, fixture model)</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
    ]
    for m in multipliers:
        parts.append(f'<text x="{x(m):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{m:g}x</text>')
    tick = 0.0
    while tick <= y_max:
        parts.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{100 * tick:.0f}%</text>')
        tick += 0.2
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">offered load (x capacity)</text>')
    parts.append(
        f'<text x="18" y="{top + plot_h / 2}" text-anchor="middle" transform="rotate(-90 18 {top + plot_h / 2})">'
        "goodput (share of capacity)</text>"
    )
    legend_y = top + 10
    for d in DEADLINES:
        for side in SIDES:
            points = series[(d, side)]
            dash = ' stroke-dasharray="6 4"' if side == "before" else ""
            path = " ".join(f"{x(m):.1f},{y(v):.1f}" for m, v in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[d]}" stroke-width="2"{dash}/>')
            for m, v in points:
                parts.append(f'<circle cx="{x(m):.1f}" cy="{y(v):.1f}" r="3" fill="{COLOURS[d]}"/>')
            lx = left + plot_w + 15
            parts.append(f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 25}" y2="{legend_y}" stroke="{COLOURS[d]}" stroke-width="2"{dash}/>')
            label = "no deadline" if d == "none" else f"{d} deadline"
            parts.append(f'<text x="{lx + 32}" y="{legend_y + 4}">{side}, {label}</text>')
            legend_y += 20
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
