#!/usr/bin/env bash
# Replicated against single-node throughput in one sitting (issue 5's benchmark): the
# same rockshard-bench produce run against one broker and against a 3-node group
# (NameServer + three `rockshard broker --group` processes) on this one machine, rounds
# alternating, every configuration a fresh set of processes and data directories; then a
# table of medians and the replicated/single ratio per flush mode. Failover time is
# measured too: kill -9 of a leader, time until another node reports itself leader.
#
# Usage: tools/bench-suite/replication.sh [OUT_DIR]   (default target/bench-suite/repl-<UTC stamp>)
# Settings (environment):
#   REPL_DURATION=8s   each produce run
#   REPL_REPEATS=3     rounds
#   REPL_SHARDS=2      shards per broker process (single and replicated alike)
#   REPL_CONNS=4              producer connections
#   REPL_INFLIGHTS="64 256"   requests in flight per connection, each measured: a group's
#                             commit takes longer than a single node's append, so it needs a
#                             deeper pipeline to reach its peak; the summary compares each
#                             side's peak, and prints every depth
#   REPL_SIZE=1024     message body bytes
#   REPL_NO_BUILD=1    use target/release binaries as they are
#   REPL_PORT_BASE=41000  loopback ports from here (namesrv +876, nodes +1911, +2911, +3911)
#
# Only 127.0.0.1 is used; every process is stopped by its pid (trap EXIT), every run is
# bounded by `timeout`.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
OUT=${1:-target/bench-suite/repl-$(date -u +%Y%m%dT%H%M%SZ)}
DURATION=${REPL_DURATION:-8s}
REPEATS=${REPL_REPEATS:-3}
SHARDS=${REPL_SHARDS:-2}
CONNS=${REPL_CONNS:-4}
INFLIGHTS=${REPL_INFLIGHTS:-64 256}
SIZE=${REPL_SIZE:-1024}
BASE=${REPL_PORT_BASE:-41000}
NS=127.0.0.1:$((BASE + 876))
DATA=$(realpath -m "$OUT/data")
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT/runs" "$OUT/logs"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$DATA"
}
trap cleanup EXIT
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/suite.log" >&2; }

if [[ -z ${REPL_NO_BUILD:-} ]]; then
    cargo build --release -p rockshard -p rockshard-bench --bins >&2
fi

wait_ready() { # FILE PID
    local i
    for ((i = 0; i < 600; i++)); do
        grep -qs '^ready:' "$1" && return 0
        kill -0 "$2" 2>/dev/null || { log "process $2 exited before ready: $1"; return 1; }
        sleep 0.1
    done
    log "not ready after 60 s: $1"
    return 1
}

stop_all() {
    local p i
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for ((i = 0; i < 300; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
    rm -rf "$DATA"
}

PEERS="n1=127.0.0.1:$((BASE + 1911)),n2=127.0.0.1:$((BASE + 2911)),n3=127.0.0.1:$((BASE + 3911))"
start_group() { # NAME
    "$BIN/rockshard" namesrv --listen "$NS" >"$OUT/logs/$1.ns.log" 2>&1 &
    PIDS+=($!)
    local n
    for n in 1 2 3; do
        "$BIN/rockshard" broker --data-dir "$DATA/n$n" --port $((BASE + n * 1000 + 911)) --shards "$SHARDS" \
            --embedded-namesrv false --namesrv-addr "$NS" --group g1 --node "n$n" --peers "$PEERS" \
            --segment-size-bytes 268435456 >"$OUT/logs/$1.n$n.out" 2>"$OUT/logs/$1.n$n.err" &
        PIDS+=($!)
    done
    for n in 1 2 3; do wait_ready "$OUT/logs/$1.n$n.out" "${PIDS[$n]}"; done
    # Every shard group has a leader before the load starts.
    local i
    for ((i = 0; i < 100; i++)); do
        local leaders
        leaders=$("$BIN/rockshard" admin --namesrv "$NS" cluster status 2>/dev/null | awk '$5 == "leader"' | wc -l)
        ((leaders >= SHARDS)) && return 0
        sleep 0.2
    done
    log "no leader for every shard group after 20 s"
    return 1
}

start_single() { # NAME
    "$BIN/rockshard" broker --data-dir "$DATA/single" --port $((BASE + 1911)) --shards "$SHARDS" \
        --namesrv-listen "$NS" --segment-size-bytes 268435456 >"$OUT/logs/$1.out" 2>"$OUT/logs/$1.err" &
    PIDS+=($!)
    wait_ready "$OUT/logs/$1.out" "${PIDS[0]}"
}

produce() { # NAME FLUSH INFLIGHT
    timeout -k 10 120 "$BIN/rockshard-bench" produce --namesrv "$NS" --topic "bench-$2" --size "$SIZE" \
        --connections "$CONNS" --inflight "$3" --flush "$2" --duration "$DURATION" \
        --json "$OUT/runs/$1.json" >"$OUT/logs/$1.bench.log" 2>&1 || log "bench $1 failed (exit $?)"
    log "  $1: $(grep -E '^produce:' "$OUT/logs/$1.bench.log" || echo 'no result')"
}

# Failover: kill -9 the leader of shard group 0, poll until another node leads it.
failover() { # NAME
    local line addr pid victim t0 t1 i
    line=$("$BIN/rockshard" admin --namesrv "$NS" cluster status | awk '$1 == "g1-s0" && $5 == "leader"')
    addr=$(awk '{print $3}' <<<"$line")
    victim=""
    for i in 1 2 3; do
        [[ $addr == "127.0.0.1:$((BASE + i * 1000 + 911))" ]] && victim=$i
    done
    [[ -n $victim ]] || { log "  $1: no leader found"; return 0; }
    pid=${PIDS[$victim]}
    t0=$(date +%s.%N)
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        if "$BIN/rockshard" admin --namesrv "$NS" cluster status 2>/dev/null |
            awk -v a="$addr" '$1 == "g1-s0" && $5 == "leader" && $3 != a' | grep -q .; then
            t1=$(date +%s.%N)
            local secs
            secs=$(printf '%.3f' "$(echo "$t1 - $t0" | bc)")
            log "  $1: new leader of g1-s0 $secs s after kill -9 of n$victim"
            echo "{\"case\":\"failover\",\"seconds\":$secs}" >"$OUT/runs/$1.json"
            return 0
        fi
        sleep 0.05
    done
    log "  $1: no new leader within 10 s"
}

{
    echo "{\"commit\":\"$(git rev-parse --short HEAD)\",\"nproc\":$(nproc),\"duration\":\"$DURATION\","
    echo "\"shards\":$SHARDS,\"connections\":$CONNS,\"inflights\":\"$INFLIGHTS\",\"size\":$SIZE,"
    echo "\"start\":\"$(date -u +%FT%TZ)\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
} >"$OUT/meta.json"

for ((r = 1; r <= REPEATS; r++)); do
    log "round $r (load $(cut -d' ' -f1-3 /proc/loadavg))"
    for flush in async sync; do
        for depth in $INFLIGHTS; do
            start_single "single-$flush-d$depth-r$r"
            sleep 2
            produce "single-$flush-d$depth-r$r" "$flush" "$depth"
            stop_all
            start_group "group-$flush-d$depth-r$r"
            sleep 2
            produce "group-$flush-d$depth-r$r" "$flush" "$depth"
            if [[ $flush == sync && $depth == "${INFLIGHTS%% *}" ]]; then failover "failover-r$r"; fi
            stop_all
        done
    done
done

CONNS=$CONNS python3 - "$OUT" <<'EOF'
import json, sys, glob, os, statistics
out = sys.argv[1]
CONNS = os.environ.get("CONNS", "?")
def rate(path):
    try:
        j = json.load(open(path))
    except Exception:
        return None
    p = j.get("produce") or j
    for k in ("msgs_per_s",):
        if k in p:
            return float(p[k])
    return None
def p99(path):
    try:
        j = json.load(open(path))
    except Exception:
        return None
    p = j.get("produce") or j
    lat = p.get("latency_us") or {}
    return lat.get("p99")
rows = []
peak = {}
depths = sorted({int(os.path.basename(f).split("-d")[1].split("-")[0]) for f in glob.glob(f"{out}/runs/*-d*-r*.json")})
for flush in ("async", "sync"):
    for side in ("single", "group"):
        for d in depths:
            files = sorted(glob.glob(f"{out}/runs/{side}-{flush}-d{d}-r*.json"))
            rates = [x for x in (rate(f) for f in files) if x]
            p99s = [x for x in (p99(f) for f in files) if x]
            if not rates:
                continue
            m = statistics.median(rates)
            rows.append(f"| {flush} | {side} | {CONNS}×{d} | {m:,.0f} | {', '.join(f'{x:,.0f}' for x in rates)} | {statistics.median(p99s)/1000:.1f} ms |")
            if m > peak.get((flush, side), (0, 0))[0]:
                peak[(flush, side)] = (m, d)
fo = []
for f in sorted(glob.glob(f"{out}/runs/failover-r*.json")):
    fo.append(json.load(open(f))["seconds"])
with open(f"{out}/summary.md", "w") as fh:
    fh.write("| flush | side | connections × in flight | msg/s (median) | runs | p99 (median) |\n|---|---|---|---|---|---|\n")
    fh.write("\n".join(rows) + "\n\n")
    for flush in ("async", "sync"):
        if (flush, "single") in peak and (flush, "group") in peak:
            (s, sd), (g, gd) = peak[(flush, "single")], peak[(flush, "group")]
            fh.write(f"- {flush}: peak single {s:,.0f} msg/s (×{sd}), peak 3-node group {g:,.0f} msg/s (×{gd}): replicated = {100*g/s:.1f}% of single\n")
    if fo:
        fh.write(f"\nfailover (kill -9 of g1-s0's leader → another node leads): {', '.join(f'{x:.2f}' for x in fo)} s; median {statistics.median(fo):.2f} s\n")
print(open(f"{out}/summary.md").read())
EOF
