#!/usr/bin/env python3
"""Summarize one sitting of tools/bench-suite/run.sh as markdown for BENCHMARKS.md.

Reads OUT_DIR/meta.json, OUT_DIR/index.jsonl, the iperf3 and fio reports in
OUT_DIR/limits/ and the rockshard-bench reports in OUT_DIR/runs/ (shape documented in
tools/bench/src/report.rs), and prints to stdout:

  - the sitting (machine, commit, settings, load average),
  - the machine limits (median of the rounds, with every round listed),
  - one table row per configuration: median msgs/s, MB/s and latency percentiles over
    the rounds, every round's msgs/s, and each figure as a fraction of its limit from the
    same sitting,
  - the issue's targets, met or not, and by how much,
  - the exact commands.

Units: MB/s is 10^6 bytes per second of message bodies (the tool's `mb_per_s`); iperf3
and fio are converted to the same unit. Latencies are shown in ms.

Which limit a figure is set against:
  - single sends (batch 1): iperf3 loopback with 1 KiB writes; batches: iperf3 with
    large (128 KiB) writes; hot consume: iperf3 large writes (a pull answer is one large
    write of up to 32 messages); cold consume: fio O_DIRECT sequential read;
  - sync flush in addition: requests per second against fio's 4 KiB write+fdatasync rate
    (above 1× means group commit lets one fdatasync answer several requests).

Only the standard library: this runs where matplotlib is not installed.
"""

import argparse
import json
import os
import statistics
import sys

MB = 1_000_000.0

# The targets (issue 4), checked against the medians of this sitting.
TARGET_SINGLE_ASYNC_MSGS_PER_S = 400_000
TARGET_BATCH_ASYNC_MB_PER_S = 1_500
TARGET_SYNC_SHARE_OF_ASYNC = 0.60
TARGET_E2E_P99_US = 2_000
TARGET_E2E_P99_9_US = 10_000
TARGET_COLD_CONSUME_MB_PER_S = 1_000

# Command-line options left out of the table's short command: they are the same for
# every run, or named elsewhere in the row.
OPTIONS_LEFT_OUT = ("--namesrv", "--json", "--topic")


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median(values):
    return statistics.median(values) if values else None


# ----------------------------------------------------------------------------- limits


def iperf_mb_per_s(report):
    return report["end"]["sum_received"]["bits_per_second"] / 8 / MB


def fio_job(report):
    return report["jobs"][0]


LIMITS = {
    # key: (file prefix, description, extractor)
    "iperf3_large": ("iperf3-large", "iperf3 loopback TCP, 128 KiB writes", iperf_mb_per_s),
    "iperf3_1k": ("iperf3-1k", "iperf3 loopback TCP, 1 KiB writes (`-l 1K`)", iperf_mb_per_s),
    "fio_seqw64": (
        "fio-seqw64",
        "fio buffered sequential write, 1 MiB, fdatasync every 64 MiB, final fsync timed",
        lambda r: fio_job(r)["write"]["bw_bytes"] / MB,
    ),
    "fio_fsync_per_s": (
        "fio-fsync4k",
        "fio 4 KiB write + fdatasync, fresh file (syncs/s)",
        lambda r: fio_job(r)["write"]["iops"],
    ),
    "fio_fsync_p50_us": (
        "fio-fsync4k",
        "fio fdatasync latency p50 (µs)",
        lambda r: fio_job(r)["sync"]["lat_ns"]["percentile"]["50.000000"] / 1000,
    ),
    "fio_fsync_p99_us": (
        "fio-fsync4k",
        "fio fdatasync latency p99 (µs)",
        lambda r: fio_job(r)["sync"]["lat_ns"]["percentile"]["99.000000"] / 1000,
    ),
    "fio_dread": (
        "fio-dread",
        "fio O_DIRECT sequential read, 1 MiB, 8 in flight",
        lambda r: fio_job(r)["read"]["bw_bytes"] / MB,
    ),
}


def read_limits(out, rounds):
    """key -> list of per-round values (rounds whose report is missing are skipped)."""
    found = {}
    for key, (prefix, _, extract) in LIMITS.items():
        values = []
        for r in range(1, rounds + 1):
            report = load_json(os.path.join(out, "limits", f"{prefix}-r{r}.json"))
            if report is None:
                continue
            try:
                values.append(extract(report))
            except (KeyError, IndexError, TypeError):
                continue
        found[key] = values
    return found


# ----------------------------------------------------------------------------- runs


class Case:
    """Every round of one configuration."""

    def __init__(self, case_id, kind):
        self.id = case_id
        self.kind = kind
        self.rows = []  # index rows, in run order
        self.reports = []  # successful reports

    @property
    def first(self):
        return self.reports[0] if self.reports else None

    def side(self, report):
        return report["consume"] if self.kind.startswith("consume") else report["produce"]

    def values(self, get):
        out = []
        for r in self.reports:
            try:
                v = get(r)
            except (KeyError, TypeError):
                continue
            if v is not None:
                out.append(v)
        return out

    def median_of(self, get):
        return median(self.values(get))

    def msgs_per_s(self):
        return self.median_of(lambda r: self.side(r)["msgs_per_s"])

    def mb_per_s(self):
        return self.median_of(lambda r: self.side(r)["mb_per_s"])

    def requests_per_s(self):
        def rate(r):
            s = self.side(r)
            return s["requests"] / s["active_s"] if s["active_s"] > 0 else None

        return self.median_of(rate)

    def latency(self, pct):
        if self.kind == "e2e":
            return self.median_of(lambda r: r["e2e_latency_us"][pct])
        return self.median_of(lambda r: self.side(r)["latency_us"][pct])

    def errors(self):
        """Errors of every successful round, both sides (a run that failed is counted apart)."""
        produce = self.values(lambda r: (r["produce"] or {}).get("errors_total", 0))
        consume = self.values(lambda r: (r["consume"] or {}).get("errors_total", 0))
        return sum(produce) + sum(consume)


def read_cases(out):
    cases = {}
    order = []
    path = os.path.join(out, "index.jsonl")
    if not os.path.exists(path):
        sys.exit(f"summarize.py: no {path}: not a bench-suite output directory")
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            case = cases.get(row["case"])
            if case is None:
                case = cases[row["case"]] = Case(row["case"], row["kind"])
                order.append(case)
            case.rows.append(row)
            if row["exit"] == 0:
                report = load_json(os.path.join(out, row["json"]))
                if report is not None:
                    case.reports.append(report)
    return order


# ----------------------------------------------------------------------------- formatting


def fmt_int(x):
    return "—" if x is None else f"{round(x):,}"


def fmt_mb(x):
    return "—" if x is None else f"{x:,.1f}"


def fmt_ms(us):
    return "—" if us is None else f"{us / 1000:.3f}"


def fmt_pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def short_command(report):
    """The tool's command line without the binary's path and the options every run shares."""
    args = report["command_line"][1:]
    kept = ["rockshard-bench"]
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in OPTIONS_LEFT_OUT:
            skip = True
            continue
        if any(a.startswith(o + "=") for o in OPTIONS_LEFT_OUT):
            continue
        kept.append(a)
    return " ".join(kept)


def full_command(report):
    return " ".join(["rockshard-bench"] + report["command_line"][1:])


def share(figure, limit):
    if figure is None or not limit:
        return None
    return figure / limit


def limit_text(case, lim):
    """Each figure as a fraction of its machine limit, naming the limit."""
    cfg = case.first["config"]
    parts = []
    mb = case.mb_per_s()
    if case.kind == "consume-cold":
        parts.append(f"{fmt_pct(share(mb, lim.get('fio_dread')))} of fio O_DIRECT read")
    elif case.kind == "consume-hot":
        parts.append(f"{fmt_pct(share(mb, lim.get('iperf3_large')))} of iperf3 large")
    elif cfg["batch"] > 1:
        parts.append(f"{fmt_pct(share(mb, lim.get('iperf3_large')))} of iperf3 large")
    else:
        parts.append(f"{fmt_pct(share(mb, lim.get('iperf3_1k')))} of iperf3 1 KiB")
    if cfg.get("flush") == "sync" and not case.kind.startswith("consume"):
        ratio = share(case.requests_per_s(), lim.get("fio_fsync_per_s"))
        if ratio is not None:
            parts.append(f"requests/s {ratio:.2f}× fio fdatasync/s")
    return "; ".join(parts)


def shape_text(case):
    cfg = case.first["config"]
    if case.kind.startswith("consume"):
        return f"{cfg['consumers']} consumers, 1 pull/queue"
    return f"{cfg['producers']} × {cfg['inflight']} = {cfg['producers'] * cfg['inflight']}"


def what_text(case):
    if case.kind == "produce":
        return "produce"
    if case.kind == "consume-hot":
        return "consume catch-up, hot"
    if case.kind == "consume-cold":
        return "consume catch-up, cold (O_DIRECT)"
    # Each round's rate is half the median peak measured up to that round.
    rates = sorted({r["config"]["rate"] for r in case.reports if r["config"].get("rate")})
    shown = " – ".join(fmt_int(r) for r in (rates[:1] + rates[-1:] if len(rates) > 1 else rates))
    return f"e2e at 50% of peak: {shown} msgs/s"


# ----------------------------------------------------------------------------- sections


def print_sitting(meta):
    m = meta.get("machine", {})
    s = meta.get("settings", {})
    g = meta.get("git", {})
    print("## The sitting\n")
    print("| | |\n| --- | --- |")
    print(f"| taken | {meta.get('started_at', '?')} – {meta.get('ended_at', '(unfinished)')} |")
    print(
        f"| load average (1, 5, 15 min) | at start {' '.join(meta.get('load_at_start', []))}, "
        f"at end {' '.join(meta.get('load_at_end', []))} |"
    )
    print(f"| machine | {m.get('cores')} cores, {m.get('cpu')}, {m.get('memory_gib')} GiB, kernel {m.get('kernel')} |")
    fs = " ".join(" ".join(m.get("filesystem", [])).split())
    print(f"| data directory | {s.get('data_dir')} on {fs} ({m.get('mount_options')}) |")
    dirty = g.get("dirty_paths") or []
    tree = "clean" if not dirty else f"**{len(dirty)} uncommitted changes** ({', '.join(p.split()[-1] for p in dirty)})"
    tree += f"; binaries {s.get('binaries', '?')}"
    print(f"| code | commit {g.get('commit', '?')[:10]} ({g.get('subject', '')}); tree {tree} |")
    v = meta.get("versions", {})
    print(f"| tools | {v.get('rustc')}; {' '.join(v.get('iperf3') or [])}; {v.get('fio')} |")
    print(
        f"| broker | {s.get('shards')} shards, pin-cores {str(s.get('pin_cores')).lower()}, "
        f"segments {s.get('segment_size_bytes', 0) / 2**20:.0f} MiB, fresh data directory per run, "
        f"{s.get('settle_s')} s pause after `ready:` |"
    )
    print(
        f"| runs | rounds: {s.get('repeats')}, {s.get('duration')} each, configurations alternating "
        f"(reverse order in even rounds); consume backlog {s.get('consume_messages', 0):,} messages hot, "
        f"{s.get('cold_messages', 0):,} cold, {s.get('consumers')} consumers |"
    )
    print()


def print_limits(lim_runs):
    print("## Machine limits (same sitting)\n")
    print("| limit | rounds | median |\n| --- | --- | --- |")
    for key, (_, desc, _) in LIMITS.items():
        values = lim_runs.get(key, [])
        unit = "" if key.startswith("fio_fsync") else " MB/s"
        runs = ", ".join(f"{v:,.0f}" for v in values) or "—"
        med = median(values)
        print(f"| {desc} | {runs} | {'—' if med is None else f'{med:,.0f}{unit}'} |")
    print()


def print_table(cases, lim):
    print("## Figures\n")
    print(
        "Median over the rounds. Latency: send round trip for produce, pull round trip (pulls that "
        "delivered) for consume, born timestamp → delivery for e2e (ms resolution). MB/s counts "
        "message bodies.\n"
    )
    print(
        "| workload | command | msg size | batch | connections × in flight | flush | header "
        "| msgs/s | MB/s | p50 ms | p99 ms | p99.9 ms | vs limit | errors | rounds (msgs/s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for case in cases:
        total = len(case.rows)
        if not case.reports:
            print(f"| {case.id} | (no successful run of {total}) | | | | | | | | | | | | | |")
            continue
        cfg = case.first["config"]
        batch = "pull ≤ 32" if case.kind.startswith("consume") else str(cfg["batch"])
        flush = cfg.get("flush") or "default"
        size = f"{cfg['size_bytes']} B"
        if case.kind.startswith("consume"):
            # A consume run sends nothing: size and flush mode are the fill's.
            fill = load_json_fill(case)
            size = "?" if fill is None else f"{fill['config']['size_bytes']} B"
            flush = "?" if fill is None else f"{fill['config'].get('flush') or 'default'} (fill)"
        rounds = ", ".join(fmt_int(v) for v in case.values(lambda r: case.side(r)["msgs_per_s"]))
        if len(case.reports) < total:
            rounds += f" ({total - len(case.reports)} of {total} failed)"
        print(
            f"| {what_text(case)} | `{short_command(case.first)}` | {size} | {batch} "
            f"| {shape_text(case)} | {flush} | {cfg['header']} | {fmt_int(case.msgs_per_s())} "
            f"| {fmt_mb(case.mb_per_s())} | {fmt_ms(case.latency('p50'))} | {fmt_ms(case.latency('p99'))} "
            f"| {fmt_ms(case.latency('p99_9'))} | {limit_text(case, lim)} | {case.errors()} | {rounds} |"
        )
    print()


FILL_REPORTS = {}


def load_json_fill(case):
    for row in case.rows:
        if "fill_json" in row:
            report = FILL_REPORTS.get(row["fill_json"])
            if report is None:
                report = load_json(os.path.join(OUT_DIR, row["fill_json"]))
                FILL_REPORTS[row["fill_json"]] = report
            if report is not None:
                return report
    return None


def print_targets(by_id, lim):
    print("## Against the targets (issue 4)\n")
    print("| target | figure | met? |\n| --- | --- | --- |")

    def get(case_id):
        c = by_id.get(case_id)
        return c if c is not None and c.reports else None

    def verdict(value, goal, higher_is_better=True):
        if value is None:
            return "not measured"
        if (value >= goal) if higher_is_better else (value < goal):
            return "yes"
        if higher_is_better:
            return f"**no**: {100 * (1 - value / goal):.0f}% short (needs ×{goal / value:.2f})" if value else "**no**"
        return f"**no**: {value / goal:.2f}× the bound"

    for header in ("json", "rocketmq"):
        c = get(f"produce-1024B-b1-async-8x32-{header}")
        v = c.msgs_per_s() if c else None
        print(
            f"| single 1 KiB sends, async, 256 in flight, {header} headers: ≥ {TARGET_SINGLE_ASYNC_MSGS_PER_S:,} msgs/s "
            f"| {fmt_int(v)} msgs/s | {verdict(v, TARGET_SINGLE_ASYNC_MSGS_PER_S)} |"
        )
    c = get("produce-1024B-b32-async-8x32-json")
    v = c.mb_per_s() if c else None
    print(
        f"| batches of 32 × 1 KiB, async, 256 in flight: ≥ {TARGET_BATCH_ASYNC_MB_PER_S:,} MB/s "
        f"(about half of loopback TCP) | {fmt_mb(v)} MB/s = {fmt_pct(share(v, lim.get('iperf3_large')))} "
        f"of iperf3 large | {verdict(v, TARGET_BATCH_ASYNC_MB_PER_S)} |"
    )
    for batch in (1, 32):
        a = get(f"produce-1024B-b{batch}-async-8x32-json")
        s = get(f"produce-1024B-b{batch}-sync-8x32-json")
        ratio = share(s.msgs_per_s(), a.msgs_per_s()) if a and s else None
        print(
            f"| sync flush, 256 in flight, batch {batch}: ≥ {100 * TARGET_SYNC_SHARE_OF_ASYNC:.0f}% of async "
            f"| {fmt_int(s.msgs_per_s() if s else None)} vs {fmt_int(a.msgs_per_s() if a else None)} msgs/s "
            f"= {fmt_pct(ratio)} | {verdict(ratio, TARGET_SYNC_SHARE_OF_ASYNC)} |"
        )
    c = get("e2e-1024B-b1-async-8x32-json")
    p99 = c.latency("p99") if c else None
    p999 = c.latency("p99_9") if c else None
    rate = f" ({what_text(c)})" if c else ""
    print(
        f"| e2e p99 at 50% of peak (1 KiB, async): < {TARGET_E2E_P99_US / 1000:g} ms | {fmt_ms(p99)} ms{rate} "
        f"| {verdict(p99, TARGET_E2E_P99_US, higher_is_better=False)} |"
    )
    print(
        f"| e2e p99.9 at 50% of peak (1 KiB, async): < {TARGET_E2E_P99_9_US / 1000:g} ms | {fmt_ms(p999)} ms "
        f"| {verdict(p999, TARGET_E2E_P99_9_US, higher_is_better=False)} |"
    )
    c = get("consume-cold-1024B")
    v = c.mb_per_s() if c else None
    print(
        f"| cold consume catch-up: ≥ {TARGET_COLD_CONSUME_MB_PER_S:,} MB/s | {fmt_mb(v)} MB/s = "
        f"{fmt_pct(share(v, lim.get('fio_dread')))} of fio O_DIRECT read | {verdict(v, TARGET_COLD_CONSUME_MB_PER_S)} |"
    )
    print()


def print_commands(cases, meta):
    s = meta.get("settings", {})
    print("## Commands\n")
    print("The whole sitting: `tools/bench-suite/run.sh` (settings above; see the script's header).\n")
    print("```sh")
    broker = None
    for case in cases:
        for row in case.rows:
            if "broker" in row and "--hot-window-bytes" not in row["broker"]:
                broker = row["broker"]
                break
        if broker:
            break
    if broker:
        print("# every run: a fresh broker (fresh data directory), stopped with SIGTERM afterwards")
        print(f"rockshard {broker}")
        print("# consume-cold runs add: --hot-window-bytes 0")
    print(f"# then, {s.get('settle_s')} s after it prints `ready:`, one of:")
    for case in cases:
        if not case.reports:
            continue
        if case.kind.startswith("consume"):
            fill = load_json_fill(case)
            if fill is not None:
                print(f"{full_command(fill)}   # {case.id}: fill")
        print(f"{full_command(case.first)}   # {case.id}")
    print("```")
    print()


OUT_DIR = "."


def main():
    global OUT_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="the directory run.sh wrote (holds index.jsonl)")
    args = parser.parse_args()
    OUT_DIR = args.out_dir
    meta = load_json(os.path.join(OUT_DIR, "meta.json")) or {}
    rounds = int(meta.get("settings", {}).get("repeats", 0)) or 50
    lim_runs = read_limits(OUT_DIR, rounds)
    lim = {k: median(v) for k, v in lim_runs.items()}
    cases = read_cases(OUT_DIR)
    by_id = {c.id: c for c in cases}

    print(f"# Whole-system benchmarks: {os.path.basename(os.path.normpath(OUT_DIR))}\n")
    print_sitting(meta)
    print_limits(lim_runs)
    print_table(cases, lim)
    print_targets(by_id, lim)
    print_commands(cases, meta)


if __name__ == "__main__":
    main()
