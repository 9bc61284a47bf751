#!/usr/bin/env bash
# What a flood of frame prefixes costs the broker (issue 12, item 3): FLOOD_CONNS
# connections that each send only the 8-byte prefix of a frame declaring 16 MiB and then
# hold the connection open, against a shard port (and as many against the NameServer
# port). Measured per round, on a fresh release broker: its resident memory (VmRSS)
# before, while the flood holds its connections, and after the flood closed them; and the
# send rate of a normal `rockshard-bench produce` run without the flood and during it.
#
# Usage: tools/bench-suite/prefix-flood.sh [OUT_DIR]  (default target/bench-suite/flood-<UTC stamp>)
# Settings (environment):
#   FLOOD_CONNS=1000     prefix connections per port attacked (shard 0 and the NameServer)
#   FLOOD_ROUNDS=3       rounds, each on a fresh broker
#   FLOOD_DURATION=8s    each produce run
#   FLOOD_SHARDS=2       broker shards
#   FLOOD_NO_BUILD=1     use target/release binaries as they are
#   FLOOD_PORT=33911, FLOOD_NAMESRV_PORT=33876   loopback ports
#
# Only 127.0.0.1 is used; the broker and the flood are stopped by their pids (trap EXIT);
# every run is bounded by `timeout`.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
OUT=${1:-target/bench-suite/flood-$(date -u +%Y%m%dT%H%M%SZ)}
CONNS=${FLOOD_CONNS:-1000}
ROUNDS=${FLOOD_ROUNDS:-3}
DURATION=${FLOOD_DURATION:-8s}
SHARDS=${FLOOD_SHARDS:-2}
PORT=${FLOOD_PORT:-33911}
NS_PORT=${FLOOD_NAMESRV_PORT:-33876}
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"
[ -n "${FLOOD_NO_BUILD:-}" ] || cargo build --release --workspace
# Each connection needs a descriptor on both sides.
ulimit -n "$(ulimit -Hn)"

broker_pid="" flood_pid=""
cleanup() {
  [ -n "$flood_pid" ] && kill "$flood_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# The flood: opens the connections, sends each prefix, prints `held`, then holds them
# until it is killed or 10 minutes pass.
flood() {
  # exec: the pid the caller kills is python's own.
  exec python3 - "$@" <<'PY'
import socket, struct, sys, time
conns = int(sys.argv[1])
prefix = struct.pack(">II", 16 * 1024 * 1024 - 4, 256)
held = []
for port in sys.argv[2:]:
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", int(port)))
        s.sendall(prefix)
        held.append(s)
print("held", len(held), flush=True)
time.sleep(600)
PY
}

produce() {
  timeout 120 "$BIN/rockshard-bench" produce --namesrv "127.0.0.1:$NS_PORT" --topic flood --size 1024 \
    --duration "$DURATION" --json "$1" > "$1.log" 2>&1
}

printf 'round\trss_before_kib\trss_during_kib\trss_after_kib\trss_second_flood_kib\tmsgs_s_alone\tmsgs_s_during\n' > "$OUT/summary.tsv"
for round in $(seq 1 "$ROUNDS"); do
  data="$OUT/data-$round"
  rm -rf "$data"
  "$BIN/rockshard" broker --data-dir "$data" --shards "$SHARDS" --port "$PORT" \
    --namesrv-listen "127.0.0.1:$NS_PORT" --segment-size-bytes 268435456 > "$OUT/ready-$round" 2> "$OUT/broker-$round.log" &
  broker_pid=$!
  for _ in $(seq 1 300); do grep -q '^ready:' "$OUT/ready-$round" && break; sleep 0.1; done
  grep -q '^ready:' "$OUT/ready-$round" || { echo "broker did not start"; exit 1; }
  produce "$OUT/alone-$round.json"
  before=$(rss_kib "$broker_pid")
  (flood "$CONNS" "$PORT" "$NS_PORT") > "$OUT/flood-$round.out" &
  flood_pid=$!
  for _ in $(seq 1 600); do grep -q '^held' "$OUT/flood-$round.out" && break; sleep 0.1; done
  sleep 1
  during=$(rss_kib "$broker_pid")
  produce "$OUT/during-$round.json"
  kill "$flood_pid"; wait "$flood_pid" 2>/dev/null || true; flood_pid=""
  sleep 2
  after=$(rss_kib "$broker_pid")
  # The same flood again on the same broker: memory freed by the first is reused, so a
  # broker that is flooded again and again does not grow.
  (flood "$CONNS" "$PORT" "$NS_PORT") > "$OUT/flood2-$round.out" &
  flood_pid=$!
  for _ in $(seq 1 600); do grep -q '^held' "$OUT/flood2-$round.out" && break; sleep 0.1; done
  sleep 1
  again=$(rss_kib "$broker_pid")
  kill "$flood_pid"; wait "$flood_pid" 2>/dev/null || true; flood_pid=""
  rate() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["produce"]["msgs_per_s"]))' "$1"; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$before" "$during" "$after" "$again" \
    "$(rate "$OUT/alone-$round.json")" "$(rate "$OUT/during-$round.json")" >> "$OUT/summary.tsv"
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
  rm -rf "$data"
done
column -t "$OUT/summary.tsv"
