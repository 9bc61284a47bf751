#!/usr/bin/env python3
"""Plot throughput and p99 send latency against requests in flight for one sitting of
tools/bench-suite/run.sh.

Reads OUT_DIR/index.jsonl and the rockshard-bench reports it names (shape documented in
tools/bench/src/report.rs); uses the produce runs with JSON headers. One series per
(message size, batch, flush) that has runs at two or more in-flight counts; each point is
the median over the rounds, with a bar from the lowest to the highest round. One column
of panels per message size: throughput above, p99 send latency below. Requests in
flight = producer connections × --inflight.

Usage: plot.py OUT_DIR [--out FILE.png]   (default FILE: OUT_DIR/throughput-vs-inflight.png)

Needs matplotlib (run.sh installs it into a venv under target/); draws with the Agg
backend, so no display is needed.
"""

import argparse
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FuncFormatter  # noqa: E402

FLUSH_COLORS = {"async": "tab:blue", "sync": "tab:orange"}
BATCH_MARKERS = {1: "o", 32: "s"}
BATCH_STYLES = {1: "-", 32: "--"}
# Issue 4's throughput target, drawn on the panel of its message size.
TARGET_SIZE = 1024
TARGET_MSGS_PER_S = 400_000


def load_points(out_dir):
    """(size, batch, flush) -> {in_flight: [(msgs_per_s, p99_us), ...]}"""
    series = {}
    with open(os.path.join(out_dir, "index.jsonl")) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row["kind"] != "produce" or row["exit"] != 0:
                continue
            try:
                with open(os.path.join(out_dir, row["json"])) as rf:
                    report = json.load(rf)
            except (OSError, ValueError):
                continue
            cfg = report["config"]
            side = report["produce"]
            if cfg["header"] != "json" or side is None or side["messages"] == 0:
                continue
            key = (cfg["size_bytes"], cfg["batch"], cfg.get("flush") or "default")
            in_flight = cfg["producers"] * cfg["inflight"]
            series.setdefault(key, {}).setdefault(in_flight, []).append(
                (side["msgs_per_s"], side["latency_us"]["p99"])
            )
    return {k: v for k, v in series.items() if len(v) >= 2}


def spread(values):
    """Median, and the distances down to the lowest and up to the highest value."""
    mid = statistics.median(values)
    return mid, mid - min(values), max(values) - mid


def subtitle(out_dir):
    try:
        with open(os.path.join(out_dir, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return os.path.basename(os.path.normpath(out_dir))
    m, s, g = meta.get("machine", {}), meta.get("settings", {}), meta.get("git", {})
    dirty = " + uncommitted changes" if g.get("dirty_paths") else ""
    return (
        f"{m.get('cores')} cores ({m.get('cpu', '')}), {s.get('shards')} shards; "
        f"commit {g.get('commit', '?')[:10]}{dirty}; {meta.get('started_at', '')}; "
        f"median of {s.get('repeats')} × {s.get('duration')}, bars: lowest–highest round"
    )


def main():
    parser = argparse.ArgumentParser(description="throughput and p99 against requests in flight")
    parser.add_argument("out_dir", help="the directory run.sh wrote (holds index.jsonl)")
    parser.add_argument("--out", help="PNG to write (default: OUT_DIR/throughput-vs-inflight.png)")
    args = parser.parse_args()
    out = args.out or os.path.join(args.out_dir, "throughput-vs-inflight.png")

    series = load_points(args.out_dir)
    if not series:
        sys.exit("plot.py: no produce runs at two or more in-flight counts to plot")

    sizes = sorted({size for size, _, _ in series}, reverse=True)
    fig, axes = plt.subplots(2, len(sizes), figsize=(7 * len(sizes), 9), sharex=True, sharey="row", squeeze=False)
    for col, size in enumerate(sizes):
        ax_rate, ax_p99 = axes[0][col], axes[1][col]
        for (_, batch, flush), points in sorted((k, v) for k, v in series.items() if k[0] == size):
            xs = sorted(points)
            rate = [spread([r for r, _ in points[x]]) for x in xs]
            p99 = [spread([p / 1000 for _, p in points[x]]) for x in xs]
            style = dict(
                color=FLUSH_COLORS.get(flush, "tab:gray"),
                marker=BATCH_MARKERS.get(batch, "^"),
                linestyle=BATCH_STYLES.get(batch, ":"),
                capsize=3,
                label=f"{'single sends' if batch == 1 else f'batches of {batch}'}, {flush} flush",
            )
            for ax, values in ((ax_rate, rate), (ax_p99, p99)):
                ax.errorbar(
                    xs,
                    [m for m, _, _ in values],
                    yerr=[[lo for _, lo, _ in values], [hi for _, _, hi in values]],
                    **style,
                )
        if size == TARGET_SIZE:
            ax_rate.axhline(TARGET_MSGS_PER_S, color="gray", linestyle=":", linewidth=1)
            ax_rate.annotate(
                f"target {TARGET_MSGS_PER_S:,}/s (single sends, async, 256 in flight)",
                (1, TARGET_MSGS_PER_S),
                xytext=(2, 3),
                textcoords="offset points",
                fontsize=7,
                color="dimgray",
            )
        ax_rate.set_title(f"{size} B messages: throughput")
        ax_p99.set_title(f"{size} B messages: p99 send latency (request → answer)")
        ax_p99.set_xlabel("requests in flight (connections × in flight per connection)")
        ax_rate.legend(fontsize=8, loc="best")
    # The x axis is shared: one set of ticks, every in-flight count of any series.
    ticks = sorted({x for points in series.values() for x in points})
    axes[1][0].set_xscale("log", base=2)
    axes[1][0].set_xticks(ticks)
    axes[1][0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[1][0].xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    axes[0][0].set_yscale("log")
    axes[0][0].set_ylabel("messages per second")
    axes[0][0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    axes[1][0].set_yscale("log")
    axes[1][0].set_ylabel("p99 send latency (ms)")
    axes[1][0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    for ax in axes.flat:
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.15)
    fig.suptitle("rockshard-bench against a Rockshard broker", fontsize=13)
    fig.text(0.5, 0.005, subtitle(args.out_dir), ha="center", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.02, 1, 0.98))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot.py: wrote {out}")


if __name__ == "__main__":
    main()
