#!/usr/bin/env bash
# Memory per idle chat client: a release `sockit chat serve` holding N idle clients that
# send nothing, TCP line clients and WebSocket clients (browsers on /ws), one room each run.
# The clients are `sockit bench chat --idle`: they connect one after the other (each
# WebSocket handshake done before the next connect) and stay silent; the server's RSS is
# read once all N are established and have settled.
# Writes bench/results/chat-idle.md (or $OUT). Loopback only; every wait is bounded.
#
#   bench/chat-idle.sh                 # 10 000 clients of each kind
#   CLIENTS=2000 bench/chat-idle.sh    # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

CLIENTS=${CLIENTS:-10000}
OUT=${OUT:-bench/results/chat-idle.md}
SOCKIT=target/release/sockit
PORT=${PORT:-17774}
SETTLE=2   # seconds after the last client is in, before RSS is read

cargo build --release --quiet
# Each side holds CLIENTS sockets (and the server a few more files).
ulimit -n $((CLIENTS * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > CLIENTS + 64)) || { echo "ulimit -n $(ulimit -n) is too low for $CLIENTS clients" >&2; exit 1; }

TMP=$(mktemp -d)
SERVER_PID=
BENCH_PID=
cleanup() {
    [[ -n $BENCH_PID ]] && kill "$BENCH_PID" 2>/dev/null
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
established() { ss -Htn state established "( sport = :$PORT )" | wc -l; }

# One kind: tcp | ws -> "kind rss_before_kib rss_after_kib clients_in" on stdout
measure() {
    local kind=$1 flag=""
    [[ $kind == ws ]] && flag="--ws"
    taskset -c 0 "$SOCKIT" chat serve --port "$PORT" --history 0 --max-clients $((CLIENTS + 100)) 2>"$TMP/server.log" &
    SERVER_PID=$!
    wait_port "$PORT"
    sleep 0.5
    local before after hold=10
    before=$(rss_kib)
    # shellcheck disable=SC2086
    taskset -c 1 "$SOCKIT" bench chat "127.0.0.1:$PORT" $flag --clients "$CLIENTS" --idle "${hold}s" \
        --limit 180s --json >"$TMP/bench.json" 2>"$TMP/bench.err" &
    BENCH_PID=$!
    # wait_port's own probe counts as one connection for a moment; all in means CLIENTS.
    local waited=0
    while (($(established) < CLIENTS)) && ((waited < 1200)); do
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.1; waited=$((waited + 1))
    done
    local in=$(established)
    sleep "$SETTLE"
    after=$(rss_kib)
    wait "$BENCH_PID" || true
    BENCH_PID=
    local kept
    kept=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); c=dict(r["counters"]); print(c["clients"]-c["disconnected"])' "$TMP/bench.json" 2>/dev/null || echo "?")
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    echo "$kind $before $after $in $kept"
    if [[ $kept != "$CLIENTS" ]]; then
        echo "  $kind: only $kept of $CLIENTS clients stayed: $(tail -c 300 "$TMP/bench.err")" >&2
    fi
    sleep 0.5
}

measure tcp >"$TMP/rows"
measure ws >>"$TMP/rows"

python3 - "$TMP/rows" "$OUT" "$CLIENTS" <<'PY'
import sys, os, platform, subprocess
rows_path, out, clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
targets = {"tcp": 5, "ws": 30}
names = {"tcp": "TCP line clients", "ws": "WebSocket clients (`/ws`)"}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = ["# Chat: memory per idle client", "",
         f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}. "
         f"`sockit chat serve` (release, pinned to CPU 0) with {clients} idle clients in one room, "
         "connected one after the other by `sockit bench chat --idle` (CPU 1); RSS read from /proc "
         "before the first client and 2 s after the last one is established.", "",
         "    taskset -c 0 target/release/sockit chat serve --port 17774 --history 0 --max-clients N",
         "    taskset -c 1 target/release/sockit bench chat 127.0.0.1:17774 [--ws] --clients N --idle 10s", "",
         "| clients | established | stayed | RSS before | RSS after | per idle client | target |",
         "|---|---:|---:|---:|---:|---:|---:|"]
for row in open(rows_path):
    kind, before, after, established, kept = row.split()
    per = (int(after) - int(before)) / clients
    mark = "✓" if per <= targets[kind] else "✗"
    lines.append(f"| {names[kind]} | {established} | {kept} | {int(before)/1024:.1f} MiB | {int(after)/1024:.1f} MiB | "
                 f"**{per:.1f} KiB** | ≤ {targets[kind]} KiB {mark} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
