#!/usr/bin/env python3
"""Draws bench row 15's curve: peak RSS against the number of files, one line per tool and
pass, as a small self-contained SVG (no plotting library needed on a fresh machine).

    plot_scale.py TSV SVG

TSV lines: `files<TAB>series<TAB>rss_bytes<TAB>seconds` (series e.g. "oneway first mirror").
"""

import math
import sys
from collections import defaultdict
from xml.sax.saxutils import escape

W, H = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 250, 30, 50
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def main(tsv, svg):
    series = defaultdict(list)
    with open(tsv) as f:
        for line in f:
            if not line.strip():
                continue
            files, name, rss, _secs = line.rstrip("\n").split("\t")
            series[name].append((int(files), int(rss) / 1048576))
    if not series:
        sys.exit("plot_scale.py: no points in " + tsv)
    max_files = max(x for pts in series.values() for x, _ in pts)
    lows = [y for pts in series.values() for _, y in pts]
    # A logarithmic axis in powers of two: unison's hundreds of MiB and our ten fit together.
    lo = 2 ** math.floor(math.log2(max(min(lows), 1) * 0.9))
    hi = 2 ** math.ceil(math.log2(max(max(lows), 96) * 1.05))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):
        return LEFT + pw * x / max_files

    def py(y):
        return TOP + ph * (1 - (math.log2(y) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="14">Peak RSS against files (100 files per directory; log scale)</text>',
    ]
    y = lo
    while y <= hi:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g} MiB</text>')
        y *= 2
    for target, label in ((64, "oneway target (64 MiB)"), (96, "twoway target (96 MiB)")):
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(target):.1f}" y2="{py(target):.1f}" '
            f'stroke="#999" stroke-dasharray="2,3"/>'
        )
        out.append(f'<text x="{LEFT + 6}" y="{py(target) - 4:.1f}" fill="#666">{label}</text>')
    xs = sorted({x for pts in series.values() for x, _ in pts})
    for x in [0] + xs:
        out.append(f'<text x="{px(x):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{x // 1000}k</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">files in the tree</text>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + ph}" stroke="black"/>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{TOP + ph}" y2="{TOP + ph}" stroke="black"/>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        dash = "" if name.startswith(("oneway", "twoway")) else ' stroke-dasharray="5,4"'
        pts.sort()
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        ly = TOP + 10 + 18 * i
        out.append(f'<line x1="{W - RIGHT + 15}" x2="{W - RIGHT + 40}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{W - RIGHT + 46}" y="{ly + 4}">{escape(name)}</text>')
    out.append("</svg>")
    with open(svg, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
