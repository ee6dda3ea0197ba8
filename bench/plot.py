#!/usr/bin/env python3
"""Plots a `coraft-bench cluster --matrix` JSON file.

usage: plot.py MATRIX.json OUTDIR

Writes OUTDIR/cluster-throughput.png (entries/s against proposals in flight, one line per
entry size, three servers) and OUTDIR/cluster-latency.png (p50, p99 and p99.9 per cell).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = [r for r in json.load(open(sys.argv[1])) if not r.get("failed")]
    out = sys.argv[2]
    three = [r for r in rows if r["nodes"] == 3]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for size in sorted({r["payload"] for r in three}):
        cells = sorted((r for r in three if r["payload"] == size), key=lambda r: r["inflight"])
        ax.plot([r["inflight"] for r in cells], [r["ops_per_s"] for r in cells], marker="o",
                label=f"{size} B")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("proposals in flight")
    ax.set_ylabel("entries/s applied on the leader")
    ax.set_title("coraft, 3 servers, fsync on")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "cluster-throughput.png"), dpi=110)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [f"{r['nodes']}n {r['payload']}B C={r['inflight']}" for r in rows]
    xs = range(len(rows))
    for key, name in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
        ax.plot(xs, [r[key] for r in rows], marker="o", linestyle="", label=name)
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("propose -> applied on the leader (us)")
    ax.set_title("coraft latency per cell")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "cluster-latency.png"), dpi=110)
    print(f"plots in {out}")


if __name__ == "__main__":
    main()
