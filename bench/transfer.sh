#!/usr/bin/env bash
# File transfer over loopback, side by side in one run: a 1 GiB file sent by
#   sockit send/recv (TLS + BLAKE3 verify), sockit send/recv --raw, an nc pipe, curl from nginx.
# Server pinned to CPU 0, receiver to CPU 1; interleaved rounds (each round runs the four
# transfers once, in turn); medians, min–max, ratios against nc with the tie verdict, the
# host's steal time. Writes bench/results/transfer.md. Traffic goes to 127.0.0.1 only; every
# loop is bounded.
#
#   bench/transfer.sh            # SIZE_MIB=1024 ROUNDS=7 by default (RUNS= is the old name)
#   SOCKIT=/path/to/sockit SIZE_MIB=16 ROUNDS=2 OUT=/tmp/transfer.md bench/transfer.sh   # a smoke run
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
ROOT=$PWD
SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-${RUNS:-7}}
RESULTS=${OUT:-$ROOT/bench/results/transfer.md}
mkdir -p "$(dirname "$RESULTS")"

ensure_tools nc=netcat-openbsd nginx=nginx-light curl=curl taskset=util-linux python3=python3
SOCKIT=${SOCKIT:-$(cargo_release)}
SOCKIT=$(realpath "$SOCKIT")

WORK=$(mktemp -d /tmp/sockit-bench-transfer.XXXXXX)
chmod 755 "$WORK" # nginx workers run as an unprivileged user
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

FILE=$WORK/data.bin
echo "creating a ${SIZE_MIB} MiB random file" >&2
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"
chmod 644 "$FILE"
BYTES=$(stat -c %s "$FILE")
# Warm the page cache so every tool reads from memory.
cat "$FILE" >/dev/null

# Waits for "listening on IP:PORT" in a server's stderr file and prints IP:PORT.
listening_addr() {
    local file=$1
    for _ in $(seq 1 300); do
        if grep -q "listening on" "$file" 2>/dev/null; then
            sed -n 's/.* listening on //p' "$file" | head -1
            return
        fi
        sleep 0.05
    done
    echo "server did not start: $(cat "$file")" >&2
    exit 1
}

# timed_receive NAME CMD OUT: runs one receive command (a string for bash -c) on CPU 1,
# checks the output file, appends "NAME seconds" to $WORK/runs.
timed_receive() {
    local name=$1 cmd=$2 out=$3 start end got
    rm -f "$out"
    sync # nothing left to write back from earlier runs (normally a no-op: see below)
    start=$EPOCHREALTIME
    timeout 120 taskset -c 1 bash -c "$cmd" 2>>"$WORK/client.err"
    end=$EPOCHREALTIME
    got=$(stat -c %s "$out")
    [ "$got" = "$BYTES" ] || { echo "short receive ($got of $BYTES): $cmd" >&2; exit 1; }
    # Removed at once, its dirty pages dropped unwritten: left in place, three 1 GiB outputs
    # passed the kernel's background writeback threshold (10% of memory) and the flusher
    # wrote them back during the next runs, on their cores.
    rm -f "$out"
    echo "$name $(echo "$end - $start" | bc -l)" >>"$WORK/runs"
    echo "  $name: $(echo "$end - $start" | bc -l) s" >&2
}

# The servers, all up before the first round.
# 1. sockit send / recv: TLS with a pinned certificate, BLAKE3 on both sides, .part + rename.
taskset -c 0 "$SOCKIT" send "$FILE" --port 0 --bind 127.0.0.1 2>"$WORK/send.err" &
PIDS+=($!)
listening_addr "$WORK/send.err" >/dev/null
for _ in $(seq 1 100); do grep -q "^sockit recv '" "$WORK/send.err" && break; sleep 0.05; done
CODE=$(sed -n "s/^sockit recv '\(.*\)'$/\1/p" "$WORK/send.err")
mkdir -p "$WORK/out"

# 2. sockit --raw on both sides.
taskset -c 0 "$SOCKIT" send --raw "$FILE" --port 0 --bind 127.0.0.1 2>"$WORK/raw.err" &
PIDS+=($!)
RAW_ADDR=$(listening_addr "$WORK/raw.err")

# 3. The nc pipe is one-shot: its listener is started in each round.
# 4. curl from nginx (sendfile on), one worker.
NGINX_PORT=$(free_port)
mkdir -p "$WORK/www"
ln "$FILE" "$WORK/www/data.bin"
PIDS+=("$(start_nginx "$WORK/nginx" "$NGINX_PORT" "$WORK/www")")
wait_port "$NGINX_PORT"

NAMES=("sockit send/recv (TLS + BLAKE3)" "sockit --raw" "nc pipe" "curl from nginx")
steal_begin
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    timed_receive "${NAMES[0]}" "'$SOCKIT' recv '$CODE' -o '$WORK/out'" "$WORK/out/data.bin"
    timed_receive "${NAMES[1]}" "'$SOCKIT' recv --raw $RAW_ADDR -o '$WORK/raw.bin'" "$WORK/raw.bin"
    port=$(free_port)
    taskset -c 0 nc -N -l 127.0.0.1 "$port" <"$FILE" &
    ncpid=$!
    for _ in $(seq 1 100); do ss -ltn | grep -q ":$port " && break; sleep 0.05; done
    timed_receive "${NAMES[2]}" "nc -d 127.0.0.1 $port > '$WORK/nc.bin'" "$WORK/nc.bin"
    wait "$ncpid" || true
    timed_receive "${NAMES[3]}" "curl -sS -o '$WORK/curl.bin' http://127.0.0.1:$NGINX_PORT/data.bin" "$WORK/curl.bin"
done
STEAL=$(steal_pct)

FSTYPE=$(df --output=fstype "$WORK" | tail -1)
python3 - "$WORK/runs" "$BYTES" "$SIZE_MIB" "$ROUNDS" "$STEAL" "$FSTYPE" "${NAMES[@]}" >"$RESULTS" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, "bench")
import stats
runs, size, size_mib, rounds, steal, fstype, *names = sys.argv[1:]
size = int(size)
secs = {}
for line in open(runs):
    name, t = line.rsplit(" ", 1)
    secs.setdefault(name, []).append(float(t))
rate = {n: [size / t / 1e9 for t in ts] for n, ts in secs.items()}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
commands = {
    names[0]: "taskset -c 0 sockit send data.bin --bind 127.0.0.1 · taskset -c 1 sockit recv 'sockit://…' -o out",
    names[1]: "taskset -c 0 sockit send --raw data.bin · taskset -c 1 sockit recv --raw 127.0.0.1:P -o raw.bin",
    names[2]: "taskset -c 0 nc -N -l 127.0.0.1 P < data.bin · taskset -c 1 nc -d 127.0.0.1 P > nc.bin",
    names[3]: "taskset -c 0 nginx (sendfile on, 1 worker) · taskset -c 1 curl -o curl.bin http://127.0.0.1:P/data.bin",
}
print(f"# File transfer over loopback: {size_mib} MiB\n")
print(f"Generated by `bench/transfer.sh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
      f"{os.cpu_count()} CPUs ({cpu}). Sender pinned to CPU 0, receiver to CPU 1; the receiver writes "
      f"a file in {fstype} (page cache). {stats.steal_line(steal, rounds)}")
print("Time is the receiving command's wall time, start to exit (connect, TLS, manifest, verify, rename included).\n")
print("| transfer | seconds | GB/s | vs nc (GB/s) |")
print("|---|---:|---:|---:|")
for n in names:
    print(f"| {n} | {stats.cell(secs.get(n, []), 3)} | {stats.cell(rate.get(n, []), 2)} | "
          f"{stats.ratio(rate.get(n, []), rate.get(names[2], []))} |")
print("\nCommands:\n")
for n in names:
    print(f"- {n}: `{commands[n]}`")
PY
cat "$RESULTS"
