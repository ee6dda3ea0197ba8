#!/usr/bin/env python3
"""coraft beside the best peer, cell by cell, from one run of ../shared/peers/run-all.sh.

    bench/peer_ratios.py OUTDIR/results.jsonl

Prints a markdown table: per cell (nodes, size, in flight), coraft's entries/s, the fastest
peer and its entries/s, the ratio, coraft's p50 / p99, and the CPU seconds each spent in the
measured window per 1,000 operations (coraft's, and the lowest peer's). Only cells without
errors, not contaminated and with a zero exit status count. Standard library only.
"""
import json
import sys


def load(path):
    cells = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("nodes") is None or r.get("ops_s") is None:
                continue  # floors, and cells that printed no result
            if r.get("rc") != 0 or r.get("contaminated") or (r.get("errors") or 0) != 0:
                continue
            key = (int(r["nodes"]), int(r["size"]), int(r["conc"]))
            # A retried cell: the last attempt stands.
            cells.setdefault(key, {})[r["peer_label"]] = r
    return cells


def cpu_per_1000(r):
    ops = r["ops_s"] * r.get("window_s", 8.0)
    # CPU milliseconds per 1,000 operations.
    return 1e6 * r["cpu_window_s"] / ops if ops > 0 else float("inf")


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        cells = load(argv[1])
    except (OSError, ValueError, KeyError) as e:
        print(f"peer_ratios: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 1
    print("| N | S B | C | coraft ops/s | best peer (ops/s) | ratio | coraft p50 / p99 us "
          "| coraft CPU ms per 1,000 ops | lowest peer CPU ms per 1,000 ops |")
    print("|---:|---:|---:|---:|---|---:|---|---:|---|")
    rows = 0
    for key in sorted(cells):
        peers = cells[key]
        ours = peers.get("coraft")
        others = [r for label, r in peers.items() if label != "coraft"]
        if ours is None or not others:
            continue
        best = max(others, key=lambda r: r["ops_s"])
        thrifty = min(others, key=cpu_per_1000)
        n, s, c = key
        print(f"| {n} | {s} | {c} | {ours['ops_s']:,.0f} | {best['peer_label']} "
              f"({best['ops_s']:,.0f}) | {ours['ops_s'] / best['ops_s']:.2f}x "
              f"| {ours['p50_us']:,.0f} / {ours['p99_us']:,.0f} | {cpu_per_1000(ours):.1f} "
              f"| {cpu_per_1000(thrifty):.1f} ({thrifty['peer_label']}) |")
        rows += 1
    if rows == 0:
        print("peer_ratios: no cell has both coraft and a peer", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
