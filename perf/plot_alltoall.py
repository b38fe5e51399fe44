#!/usr/bin/env python3
"""Plots lshmoe_alltoall_perf results: bus bandwidth against size for the raw
and the compressed half (top), and the speedup with 1/ratio for reference
(bottom); one colour per result file (a link rate, or loopback), labelled by
--label or by the file's name.

usage: perf/plot_alltoall.py RESULT.json [RESULT.json ...] -o FILE.png
                             [--label NAME ...] [--title TEXT]
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path) as f:
        doc = json.load(f)
    rows = doc.get("results") or []
    if not rows:
        raise ValueError(f"{path}: no results")
    return doc, rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--title", default="lshmoe_alltoall_perf")
    a = p.parse_args()
    if a.label and len(a.label) != len(a.results):
        sys.exit("plot_alltoall: give one --label per result file")
    fig, (bw, speed) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    doc = {}
    for i, path in enumerate(a.results):
        try:
            doc, rows = load(path)
        except (OSError, ValueError) as e:
            sys.exit(f"plot_alltoall: {e}")
        label = a.label[i] if a.label else os.path.splitext(os.path.basename(path))[0]
        color = colors[i % len(colors)]
        size = [r["size"] / 2**20 for r in rows]
        bw.plot(size, [r["raw"]["bus_bw"] for r in rows], "--o", color=color, label=f"{label}, raw")
        bw.plot(size, [r["lshmoe"]["bus_bw"] for r in rows], "-o", color=color,
                label=f"{label}, lshmoe")
        speed.plot(size, [r["speedup"] for r in rows], "-x", color=color, label=label)
    ratio = doc.get("config", {}).get("ratio")
    if ratio:
        speed.axhline(1.0 / ratio, color="gray", linestyle=":", label=f"1/ratio = {1.0 / ratio:.3g}")
    speed.axhline(1.0, color="black", linewidth=0.5)
    speed.set_xscale("log", base=2)
    speed.set_xlabel("size per rank (MiB)")
    bw.set_ylabel("bus bandwidth (GB/s)")
    speed.set_ylabel("speedup (raw / lshmoe time)")
    config = doc.get("config", {})
    bw.set_title(f"{a.title}: {config.get('nranks', '?')} ranks, H={config.get('hidden', '?')} "
                 f"{config.get('datatype', '')}, ratio {config.get('ratio', '?')}, "
                 f"op {config.get('op', '?')}")
    bw.legend(fontsize=7, ncol=2, loc="best")
    speed.legend(fontsize=7, ncol=3, loc="best")
    for ax in (bw, speed):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.output, dpi=120)
    print(f"plot_alltoall: wrote {a.output}")


if __name__ == "__main__":
    main()
