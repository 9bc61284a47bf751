#!/usr/bin/env bash
# The whole-system benchmark suite behind BENCHMARKS.md: in one sitting, the machine's
# limits (iperf3 loopback TCP, fio on the data directory's filesystem) and every broker
# figure issue 4 asks for, each a `rockshard-bench --json` run against a fresh broker,
# repeated SUITE_REPEATS times with the configurations alternating, then a markdown table
# (summarize.py) and a plot (plot.py). Every JSON is kept.
#
# Usage (from anywhere; paths are relative to the repository root):
#   tools/bench-suite/run.sh [OUT_DIR]          default OUT_DIR: target/bench-suite/<UTC timestamp>
#
# Settings (environment):
#   SUITE_DURATION=10s      length of each timed run (rockshard-bench --duration; iperf3, fio)
#   SUITE_REPEATS=3         rounds; each round runs every configuration once
#   SUITE_SHARDS=$(nproc)   broker shards
#   SUITE_PIN_CORES=true    broker --pin-cores
#   SUITE_SEGMENT_BYTES=268435456  broker --segment-size-bytes (256 MiB: a fresh broker's
#                           first segment is cheap to create, and rolls happen during runs)
#   SUITE_SETTLE_S=3        pause after the broker prints `ready:` (and between a consume
#                           run's fill and its reads, so the async flusher has written the data)
#   SUITE_CONSUME_MESSAGES=1000000  backlog a hot consume run reads (written first by a fill
#                           run): 1 KiB bodies make about 0.57 GB of CommitLog per shard on
#                           2 shards, inside the broker's default 1 GiB hot window
#   SUITE_COLD_MESSAGES=2000000     backlog of the cold consume run (2 GB of bodies)
#   SUITE_CONSUMERS=4       consumer clients of a consume run
#   SUITE_FIO_SIZE=2G       size of fio's sequential write and read files
#   SUITE_ONLY=REGEX        run only the configurations whose id matches (e.g. 'b32|e2e')
#   SUITE_NO_BUILD=1        use the binaries already built instead of `cargo build --release`
#   SUITE_PORT=31911, SUITE_NAMESRV_PORT=31876, SUITE_IPERF_PORT=31201  loopback ports
#   SUITE_DATA_DIR=target/bench-suite/data   broker and fio files (deleted after each run)
#
# What one round runs (the list is CASES below): iperf3 and fio; produce for 1 KiB and
# 128 B bodies × single sends and batches of 32 × async and sync flush × 1, 16 and 256
# requests in flight (plus 4 and 64 for single 1 KiB sends, and ROCKETMQ headers for
# single 1 KiB async at 256); consume catch-up hot (1 KiB, 128 B) and cold (1 KiB); then
# e2e (1 KiB single sends, 256 in flight, async and sync) at half the median peak rate
# measured so far for the same shape. About 8.5 minutes per round at the defaults on the
# 2-core development machine (4 minutes at SUITE_DURATION=2s), so a full sitting takes
# about 25 minutes plus the release build. A run writes up to ~15 GB (batches at full
# speed for 10 s) into SUITE_DATA_DIR, deleted before the next.
#
# Only 127.0.0.1 is used. Every process started here (brokers, the iperf3 server, the
# measuring command) is stopped by its pid, also when the script fails or is interrupted
# (trap EXIT), and every run is bounded in time (the tool's own --duration plus `timeout`).
#
# Output layout:
#   meta.json             machine, commit, settings, start/end time
#   index.jsonl           one line per broker run: case id, kind, round, JSON path, exit status, load
#   limits/*.json         iperf3-{large,1k}-rR.json, fio-{seqw64,fsync4k,dread}-rR.json
#   runs/*.json           rockshard-bench reports: <case>-rR.json (and <case>-fill-rR.json)
#   logs/                 tool output, broker stdout/stderr
#   summary.md, throughput-vs-inflight.png
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
SUITE_DIR=tools/bench-suite

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${1:-target/bench-suite/$STAMP}
DURATION=${SUITE_DURATION:-10s}
REPEATS=${SUITE_REPEATS:-3}
SHARDS=${SUITE_SHARDS:-$(nproc)}
PIN_CORES=${SUITE_PIN_CORES:-true}
SEGMENT_BYTES=${SUITE_SEGMENT_BYTES:-268435456}
SETTLE_S=${SUITE_SETTLE_S:-3}
CONSUME_MESSAGES=${SUITE_CONSUME_MESSAGES:-1000000}
COLD_MESSAGES=${SUITE_COLD_MESSAGES:-2000000}
CONSUMERS=${SUITE_CONSUMERS:-4}
FIO_SIZE=${SUITE_FIO_SIZE:-2G}
ONLY=${SUITE_ONLY:-}
PORT=${SUITE_PORT:-31911}
NAMESRV_PORT=${SUITE_NAMESRV_PORT:-31876}
IPERF_PORT=${SUITE_IPERF_PORT:-31201}
# Absolute: the broker cannot open a relative --data-dir (glommio's Directory::open
# passes dirfd -1 to openat, so a relative path fails with EBADF when the store syncs it).
DATA_ROOT=$(realpath -m "${SUITE_DATA_DIR:-target/bench-suite/data}")
NAMESRV=127.0.0.1:$NAMESRV_PORT

# Bounds of the runs that end by a count rather than a duration (the fill of a consume
# run, and the consume itself): a broker that stalls must not hang the suite.
FILL_MAX=${SUITE_FILL_MAX:-120s}
CONSUME_MAX=${SUITE_CONSUME_MAX:-120s}
# The broker's default --hot-window-bytes, and a generous stored-record overhead beyond
# the body (fixed fields, topic, properties), to warn when a hot backlog would not fit.
HOT_WINDOW_DEFAULT_BYTES=$((1 << 30))
RECORD_OVERHEAD_BYTES=300
# Slack `timeout` gives a tool run beyond its own limits (setup, drain, report).
TIMEOUT_SLACK_S=60
# How long a broker may take to print `ready:`, and to stop after SIGTERM.
BROKER_READY_MAX_S=60
BROKER_STOP_MAX_S=30

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# "10s", "500ms", "2m", "1h", "7" -> seconds (may be fractional).
seconds_of() {
    local text=$1 number unit
    [[ $text =~ ^([0-9]+(\.[0-9]+)?)(ms|s|m|h)?$ ]] || die "not a duration: '$text' (use e.g. 10s, 500ms, 2m)"
    number=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[3]:-s}
    awk -v n="$number" -v u="$unit" 'BEGIN { m = (u == "ms") ? 0.001 : (u == "m") ? 60 : (u == "h") ? 3600 : 1; printf "%g", n * m }'
}
# Whole seconds, rounded up, at least 1 (iperf3 -t and fio --runtime take integers).
whole_seconds_of() { awk -v s="$(seconds_of "$1")" 'BEGIN { w = int(s); if (w < s) w++; if (w < 1) w = 1; print w }'; }

seconds_of "$DURATION" >/dev/null # refuses a malformed SUITE_DURATION here, not mid-sitting
LIMIT_S=$(whole_seconds_of "$DURATION")
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "SUITE_REPEATS must be a positive integer"
[[ $PIN_CORES == true || $PIN_CORES == false ]] || die "SUITE_PIN_CORES must be true or false"

# ---------------------------------------------------------------------------------------
# Processes this script started; cleanup stops exactly these.
BROKER_PID=""
IPERF_PID=""
CHILD_PID=""
BROKER_ARGS=()
cleanup() {
    local rc=$?
    # The measuring command first (rockshard-bench prints its report on SIGTERM).
    if [[ -n $CHILD_PID ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$CHILD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CHILD_PID" 2>/dev/null || true
    fi
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    if [[ -n $IPERF_PID ]] && kill -0 "$IPERF_PID" 2>/dev/null; then
        kill -KILL "$IPERF_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA_ROOT/broker" "$DATA_ROOT/fio"
    [[ $rc -eq 0 ]] || log "stopped with status $rc; what was measured so far is in $OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs one bounded measuring command in the background and waits for it: bash runs a trap
# only between foreground commands, so this is what lets SIGTERM or Ctrl-C stop the
# sitting at once (cleanup then stops the command by its pid). Status in CHILD_RC.
run_child() {
    CHILD_RC=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || CHILD_RC=$?
    CHILD_PID=""
}

# ---------------------------------------------------------------------------------------
# Tools: iperf3 and fio from Debian's packages, matplotlib in a venv under target/.
install_tools() {
    local missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v fio >/dev/null || missing+=(fio)
    if ((${#missing[@]})); then
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        log "installing ${missing[*]}"
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if python3 -c 'import matplotlib' 2>/dev/null; then
        PLOT_PYTHON=python3
    else
        local venv=target/bench-suite/venv
        [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
        if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
            log "installing matplotlib into $venv"
            "$venv/bin/pip" install -q matplotlib
        fi
        PLOT_PYTHON=$venv/bin/python
    fi
}

build() {
    if [[ ${SUITE_NO_BUILD:-0} != 1 ]]; then
        log "building release binaries"
        cargo build --release -p rockshard -p rockshard-bench
    fi
    local target=${CARGO_TARGET_DIR:-$REPO/target}
    [[ -x $target/release/rockshard && -x $target/release/rockshard-bench ]] ||
        die "no release binaries in $target/release (build them, or unset SUITE_NO_BUILD)"
    # Copies, so that another build in this tree during the sitting cannot change the code
    # under test between rounds.
    mkdir -p "$OUT/bin"
    cp "$target/release/rockshard" "$target/release/rockshard-bench" "$OUT/bin/"
    BROKER_BIN=$OUT/bin/rockshard
    BENCH_BIN=$OUT/bin/rockshard-bench
    "$BROKER_BIN" broker --help | grep -q -- '--hot-window-bytes' || die "the broker has no --hot-window-bytes"
    "$BROKER_BIN" broker --help | grep -q -- '--segment-size-bytes' || die "the broker has no --segment-size-bytes"
}

write_meta() {
    local phase=$1
    OUT="$OUT" PHASE="$phase" DATA_ROOT="$DATA_ROOT" DURATION="$DURATION" REPEATS="$REPEATS" \
        SHARDS="$SHARDS" PIN_CORES="$PIN_CORES" SEGMENT_BYTES="$SEGMENT_BYTES" SETTLE_S="$SETTLE_S" \
        CONSUME_MESSAGES="$CONSUME_MESSAGES" COLD_MESSAGES="$COLD_MESSAGES" CONSUMERS="$CONSUMERS" FIO_SIZE="$FIO_SIZE" ONLY="$ONLY" \
        python3 - <<'EOF'
import json, os, platform, subprocess, time

def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:  # a missing tool is recorded, not fatal
        return f"unavailable: {e}"

out = os.environ["OUT"]
path = os.path.join(out, "meta.json")
meta = json.load(open(path)) if os.path.exists(path) else {}
now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
load = open("/proc/loadavg").read().split()[:3]
if os.environ["PHASE"] == "start":
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    mem_kib = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    data = os.environ["DATA_ROOT"]
    meta.update({
        "started_at": now,
        "load_at_start": load,
        "machine": {
            "cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kib / 1048576, 1),
            "kernel": platform.release(),
            "filesystem": sh("df", "--output=source,fstype,target", data).splitlines()[-1:],
            "mount_options": sh("findmnt", "-no", "OPTIONS", "-T", data),
        },
        "versions": {
            "rustc": sh("rustc", "--version"), "iperf3": sh("iperf3", "--version").splitlines()[:1],
            "fio": sh("fio", "--version"),
        },
        "git": {
            "commit": sh("git", "rev-parse", "HEAD"),
            "subject": sh("git", "log", "-1", "--format=%s"),
            "dirty_paths": sh("git", "status", "--porcelain", "--untracked-files=no").splitlines(),
        },
        "settings": {
            "duration": os.environ["DURATION"], "repeats": int(os.environ["REPEATS"]),
            "shards": int(os.environ["SHARDS"]), "pin_cores": os.environ["PIN_CORES"] == "true",
            "segment_size_bytes": int(os.environ["SEGMENT_BYTES"]), "settle_s": float(os.environ["SETTLE_S"]),
            "consume_messages": int(os.environ["CONSUME_MESSAGES"]),
            "cold_messages": int(os.environ["COLD_MESSAGES"]), "consumers": int(os.environ["CONSUMERS"]),
            "fio_size": os.environ["FIO_SIZE"], "only": os.environ["ONLY"], "data_dir": os.path.abspath(data),
            "binaries": "as found (SUITE_NO_BUILD=1)" if os.environ.get("SUITE_NO_BUILD") == "1"
            else "built by this run from the tree above",
        },
    })
else:
    meta.update({"ended_at": now, "load_at_end": load})
json.dump(meta, open(path, "w"), indent=2)
EOF
}

# Appends one line to index.jsonl. Values are plain words, paths and numbers (no quotes or
# backslashes), so printf makes valid JSON. "broker" is the last broker's arguments.
index_line() {
    local case_id=$1 kind=$2 round=$3 json=$4 rc=$5 extra=$6
    printf '{"case": "%s", "kind": "%s", "round": %s, "json": "%s", "exit": %s, "load": "%s", "broker": "%s"%s}\n' \
        "$case_id" "$kind" "$round" "$json" "$rc" "$(cut -d' ' -f1-3 /proc/loadavg)" "${BROKER_ARGS[*]}" "$extra" \
        >>"$OUT/index.jsonl"
}

port_listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

wait_listening() {
    local port=$1
    for _ in $(seq 1 100); do
        port_listening "$port" && return 0
        sleep 0.05
    done
    die "nothing listens on 127.0.0.1:$port after 5 s"
}

# ---------------------------------------------------------------------------------------
# Machine limits, measured once per round so they come from the same sitting.
iperf_run() {
    local name=$1 round=$2; shift 2
    port_listening "$IPERF_PORT" && die "port $IPERF_PORT is taken (set SUITE_IPERF_PORT)"
    iperf3 -s -1 -B 127.0.0.1 -p "$IPERF_PORT" -J >"$OUT/logs/iperf3-server-$name-r$round.json" 2>&1 &
    IPERF_PID=$!
    wait_listening "$IPERF_PORT"
    run_child timeout -k 5 $((LIMIT_S + TIMEOUT_SLACK_S)) \
        iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$LIMIT_S" -J "$@" >"$OUT/limits/iperf3-$name-r$round.json"
    ((CHILD_RC == 0)) || log "  iperf3 $name exited with $CHILD_RC; its figure is missing from the limits"
    # The one-off server ends after its one test; it is killed if it has not after 10 s.
    run_child timeout -k 1 10 tail --pid="$IPERF_PID" -f /dev/null
    ((CHILD_RC == 0)) || kill -KILL "$IPERF_PID" 2>/dev/null || true
    wait "$IPERF_PID" 2>/dev/null || true
    IPERF_PID=""
}

# fio_job NAME ARGS...: one fio job (bounded by timeout); a failure leaves its figure out.
fio_job() {
    local name=$1; shift
    run_child timeout -k 5 "$FIO_TIMEOUT_S" fio "$@" >/dev/null
    ((CHILD_RC == 0)) || log "  fio $name exited with $CHILD_RC; its figure is missing from the limits"
}

limits_round() {
    local round=$1 dir=$DATA_ROOT/fio
    mkdir -p "$dir"
    log "round $round: iperf3 loopback, large writes (128 KiB) and 1 KiB writes"
    iperf_run large "$round"
    iperf_run 1k "$round" -l 1K
    # fio jobs as benches/fio.sh runs them (see BENCHMARKS.md for why seqw64 is the write
    # limit): buffered sequential write with an fdatasync every 64 MiB and the final fsync
    # timed; 4 KiB write + fdatasync on a fresh file; O_DIRECT sequential read.
    log "round $round: fio on $(df --output=target "$dir" | tail -1) (seqw64, fsync4k, dread)"
    FIO_TIMEOUT_S=$((LIMIT_S * 4 + TIMEOUT_SLACK_S * 2))
    fio_job seqw64 --name=seqw64 --directory="$dir" --rw=write --bs=1M --size="$FIO_SIZE" \
        --ioengine=psync --fdatasync=64 --end_fsync=1 --unlink=1 --output-format=json \
        --output="$OUT/limits/fio-seqw64-r$round.json" >/dev/null
    fio_job fsync4k --name=fsync4k --directory="$dir" --rw=write --bs=4k --size=1G \
        --runtime="$LIMIT_S" --ioengine=psync --fdatasync=1 --unlink=1 --output-format=json \
        --output="$OUT/limits/fio-fsync4k-r$round.json" >/dev/null
    # The read file is laid out in the first round and kept for the others.
    fio_job dread --name=dread --directory="$dir" --filename=dread.dat --rw=read --bs=1M \
        --size="$FIO_SIZE" --direct=1 --iodepth=8 --ioengine=io_uring --output-format=json \
        --output="$OUT/limits/fio-dread-r$round.json" >/dev/null
}

# ---------------------------------------------------------------------------------------
# Brokers: a fresh one (fresh data directory) for every run.
start_broker() {
    local name=$1; shift
    local dir=$DATA_ROOT/broker p
    for ((p = PORT; p < PORT + SHARDS; p++)); do
        port_listening "$p" && die "port $p is taken (set SUITE_PORT)"
    done
    port_listening "$NAMESRV_PORT" && die "port $NAMESRV_PORT is taken (set SUITE_NAMESRV_PORT)"
    rm -rf "$dir"
    mkdir -p "$dir"
    BROKER_ARGS=(broker --data-dir "$dir" --listen-ip 127.0.0.1 --port "$PORT"
        --namesrv-listen "$NAMESRV" --shards "$SHARDS" --pin-cores "$PIN_CORES"
        --segment-size-bytes "$SEGMENT_BYTES" "$@")
    "$BROKER_BIN" "${BROKER_ARGS[@]}" >"$OUT/logs/$name.broker.out" 2>"$OUT/logs/$name.broker.err" &
    BROKER_PID=$!
    local waited=0
    until grep -qs '^ready:' "$OUT/logs/$name.broker.out"; do
        kill -0 "$BROKER_PID" 2>/dev/null || die "broker exited before ready: see $OUT/logs/$name.broker.err"
        ((waited++ < BROKER_READY_MAX_S * 10)) || die "broker not ready after ${BROKER_READY_MAX_S}s"
        sleep 0.1
    done
    sleep "$SETTLE_S"
}

stop_broker() {
    [[ -n $BROKER_PID ]] || return 0
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    local waited=0
    while kill -0 "$BROKER_PID" 2>/dev/null; do
        if ((waited++ >= BROKER_STOP_MAX_S * 10)); then
            log "broker $BROKER_PID did not stop in ${BROKER_STOP_MAX_S}s after SIGTERM; killing it"
            kill -KILL "$BROKER_PID" 2>/dev/null || true
        fi
        sleep 0.1
    done
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
    rm -rf "$DATA_ROOT/broker"
}

# bench NAME LIMIT_S ARGS...: one rockshard-bench run; its exit status in BENCH_RC.
bench() {
    local name=$1 limit=$2; shift 2
    run_child timeout -k 10 "$limit" "$BENCH_BIN" "$@" --namesrv "$NAMESRV" --json "$OUT/runs/$name.json" \
        >"$OUT/logs/$name.log" 2>&1
    BENCH_RC=$CHILD_RC
    if ((BENCH_RC != 0)); then
        log "  $name: rockshard-bench exited with $BENCH_RC (see $OUT/logs/$name.log)"
    fi
}

# A JSON number out of a report: json_field FILE EXPR (EXPR in Python over `r`).
json_field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }

# ---------------------------------------------------------------------------------------
# The configurations. Fields: id kind size batch connections inflight flush header.
# In flight = connections × inflight: 1×1 = 1, 1×4 = 4, 1×16 = 16, 2×32 = 64, 8×32 = 256.
CASES=()
for size in 1024 128; do
    for batch in 1 32; do
        for flush in async sync; do
            for shape in 1x1 1x16 8x32; do
                CASES+=("produce-${size}B-b$batch-$flush-$shape-json produce $size $batch ${shape%x*} ${shape#*x} $flush json")
            done
        done
    done
done
CASES+=("produce-1024B-b1-async-8x32-rocketmq produce 1024 1 8 32 async rocketmq")
# Extra points for the plot (4 and 64 in flight), single 1 KiB sends.
for flush in async sync; do
    for shape in 1x4 2x32; do
        CASES+=("produce-1024B-b1-$flush-$shape-json produce 1024 1 ${shape%x*} ${shape#*x} $flush json")
    done
done
# Consume catch-up: a fill run (batches of 32, async) writes the backlog, then consumers
# read it from the earliest offset. Hot: the default hot window (page cache); cold: the
# broker started with --hot-window-bytes 0, so every CommitLog read is O_DIRECT.
CASES+=("consume-hot-1024B consume-hot 1024 32 4 8 async json")
CASES+=("consume-hot-128B consume-hot 128 32 4 8 async json")
CASES+=("consume-cold-1024B consume-cold 1024 32 4 8 async json")
# e2e at 50% of the peak produce rate measured for the same shape in this sitting.
E2E_CASES=(
    "e2e-1024B-b1-async-8x32-json e2e 1024 1 8 32 async json"
    "e2e-1024B-b1-sync-8x32-json e2e 1024 1 8 32 sync json"
)

# Half of the median msgs/s of the successful runs of case $1 so far (0 if none).
peak_half_rate() {
    OUT="$OUT" python3 - "$1" <<'EOF'
import json, os, statistics, sys
rates = []
for line in open(os.path.join(os.environ["OUT"], "index.jsonl")):
    row = json.loads(line)
    if row["case"] == sys.argv[1] and row["exit"] == 0:
        report = json.load(open(os.path.join(os.environ["OUT"], row["json"])))
        if report["produce"]["msgs_per_s"] > 0:
            rates.append(report["produce"]["msgs_per_s"])
print(int(statistics.median(rates) * 0.5) if rates else 0)
EOF
}

selected() { [[ -z $ONLY || $1 =~ $ONLY ]]; }

run_case() {
    local round=$1 id kind size batch conns inflight flush header
    read -r id kind size batch conns inflight flush header <<<"$2"
    local name=$id-r$round topic=bench-$id
    topic=${topic//[^A-Za-z0-9_-]/_}
    case $kind in
    produce)
        log "  $name"
        start_broker "$name"
        bench "$name" $((LIMIT_S + TIMEOUT_SLACK_S)) produce --topic "$topic" --size "$size" --batch "$batch" \
            --connections "$conns" --inflight "$inflight" --flush "$flush" --header "$header" --duration "$DURATION"
        stop_broker
        index_line "$id" "$kind" "$round" "runs/$name.json" "$BENCH_RC" ""
        ;;
    consume-hot | consume-cold)
        local broker_extra=() backlog=$CONSUME_MESSAGES
        if [[ $kind == consume-cold ]]; then
            broker_extra=(--hot-window-bytes 0)
            backlog=$COLD_MESSAGES
        elif ((backlog * (size + RECORD_OVERHEAD_BYTES) / SHARDS > HOT_WINDOW_DEFAULT_BYTES)); then
            log "  warning: $backlog messages of $size B are more CommitLog per shard than the default hot window;" \
                "the first part of $name reads cold"
        fi
        log "  $name (fill $backlog messages, then consume)"
        start_broker "$name" "${broker_extra[@]}"
        bench "$id-fill-r$round" $(($(whole_seconds_of "$FILL_MAX") + TIMEOUT_SLACK_S)) produce --topic "$topic" \
            --size "$size" --batch "$batch" --connections "$conns" --inflight "$inflight" --flush "$flush" \
            --header "$header" --count "$backlog" --duration "$FILL_MAX"
        local fill_rc=$BENCH_RC produced=0
        if ((fill_rc == 0)); then
            produced=$(json_field "$OUT/runs/$id-fill-r$round.json" 'r["produce"]["messages"]')
        fi
        if ((produced > 0)); then
            sleep "$SETTLE_S"
            bench "$name" $(($(whole_seconds_of "$CONSUME_MAX") + TIMEOUT_SLACK_S)) consume --topic "$topic" \
                --no-create --from earliest --consumers "$CONSUMERS" --header "$header" --count "$produced" \
                --duration "$CONSUME_MAX"
        else
            log "  $name: the fill produced nothing; no consume run"
            BENCH_RC=1
        fi
        stop_broker
        index_line "$id" "$kind" "$round" "runs/$name.json" "$BENCH_RC" \
            ", \"fill_json\": \"runs/$id-fill-r$round.json\", \"fill_exit\": $fill_rc, \"backlog\": $produced"
        ;;
    e2e)
        local peak_id=produce-${size}B-b$batch-$flush-${conns}x$inflight-$header rate
        rate=$(peak_half_rate "$peak_id")
        if ((rate <= 0)); then
            log "  $name: no successful $peak_id run to take the peak from; skipped"
            return 0
        fi
        log "  $name at $rate msgs/s (50% of the median $peak_id so far)"
        start_broker "$name"
        bench "$name" $((LIMIT_S + TIMEOUT_SLACK_S + 10)) e2e --topic "$topic" --size "$size" --batch "$batch" \
            --connections "$conns" --inflight "$inflight" --flush "$flush" --header "$header" --rate "$rate" \
            --duration "$DURATION"
        stop_broker
        index_line "$id" "$kind" "$round" "runs/$name.json" "$BENCH_RC" \
            ", \"peak_case\": \"$peak_id\", \"rate\": $rate"
        ;;
    *) die "unknown kind $kind" ;;
    esac
}

# ---------------------------------------------------------------------------------------
[[ -e $OUT/index.jsonl ]] && die "$OUT already holds a run; give another directory"
mkdir -p "$OUT/limits" "$OUT/runs" "$OUT/logs" "$DATA_ROOT"
install_tools
# Before the build: the commit and the uncommitted paths recorded are what gets compiled.
write_meta start
build
log "suite: $REPEATS round(s), $DURATION per run, $SHARDS shard(s), pin-cores $PIN_CORES, output $OUT"

selected_cases=()
for c in "${CASES[@]}"; do selected "${c%% *}" && selected_cases+=("$c"); done
selected_e2e=()
for c in "${E2E_CASES[@]}"; do selected "${c%% *}" && selected_e2e+=("$c"); done

for ((round = 1; round <= REPEATS; round++)); do
    limits_round "$round"
    # Alternate the order between rounds, so a slow drift of the shared machine does not
    # always land on the same configurations.
    order=("${selected_cases[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#selected_cases[@]} - 1; i >= 0; i--)); do order+=("${selected_cases[i]}"); done
    fi
    log "round $round: ${#order[@]} broker configurations, then ${#selected_e2e[@]} e2e"
    for c in "${order[@]}"; do run_case "$round" "$c"; done
    # e2e last in each round: its rate is half of the peak measured so far.
    for c in "${selected_e2e[@]}"; do run_case "$round" "$c"; done
done
rm -rf "$DATA_ROOT/fio"
write_meta end

python3 "$SUITE_DIR/summarize.py" "$OUT" >"$OUT/summary.md"
"$PLOT_PYTHON" "$SUITE_DIR/plot.py" "$OUT" --out "$OUT/throughput-vs-inflight.png" ||
    log "no plot (see the message above); the JSONs and summary.md are complete"
rm -rf "${OUT:?}/bin"
log "done: $OUT/summary.md and $OUT/throughput-vs-inflight.png"
