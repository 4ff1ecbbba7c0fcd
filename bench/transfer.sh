#!/usr/bin/env bash
# File transfer over loopback, side by side in one run: a 1 GiB file sent by
#   sockit send/recv (TLS + BLAKE3 verify), sockit send/recv --raw, an nc pipe, curl from nginx.
# Server pinned to CPU 0, receiver to CPU 1; median of RUNS runs; ratios against nc.
# Writes bench/results/transfer.md. Traffic goes to 127.0.0.1 only; every loop is bounded.
#
#   bench/transfer.sh            (SIZE_MIB=1024 RUNS=3 by default)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
SOCKIT=$ROOT/target/release/sockit
WORK=$(mktemp -d /tmp/sockit-bench-transfer.XXXXXX)
chmod 755 "$WORK" # nginx workers run as an unprivileged user
RESULTS=$ROOT/bench/results/transfer.md
mkdir -p "$(dirname "$RESULTS")"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

need() {
    command -v "$1" >/dev/null && return
    echo "installing $2" >&2
    apt-get install -y "$2" >/dev/null
}
need nc netcat-openbsd
need nginx nginx
need curl curl
need taskset util-linux

cargo build --release --quiet

FILE=$WORK/data.bin
echo "creating a ${SIZE_MIB} MiB random file" >&2
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"
chmod 644 "$FILE"
BYTES=$(stat -c %s "$FILE")
# Warm the page cache so every tool reads from memory.
cat "$FILE" >/dev/null

now() { date +%s.%N; }

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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Times one receive command (a string for bash -c), checks the output file, prints seconds.
timed_receive() {
    local cmd=$1 out=$2
    rm -f "$out"
    local start end
    start=$(now)
    timeout 120 taskset -c 1 bash -c "$cmd" 2>>"$WORK/client.err"
    end=$(now)
    local got
    got=$(stat -c %s "$out")
    [ "$got" = "$BYTES" ] || { echo "short receive ($got of $BYTES): $cmd" >&2; exit 1; }
    echo "$end - $start" | bc -l
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A MEDIAN COMMAND

record() {
    local name=$1 cmd=$2
    shift 2
    MEDIAN[$name]=$(median "$@")
    COMMAND[$name]=$cmd
    echo "$name: runs $* → median ${MEDIAN[$name]} s" >&2
}

# 1. sockit send / recv: TLS with a pinned certificate, BLAKE3 on both sides, .part + rename.
taskset -c 0 "$SOCKIT" send "$FILE" --port 0 --bind 127.0.0.1 2>"$WORK/send.err" &
PIDS+=($!)
listening_addr "$WORK/send.err" >/dev/null
for _ in $(seq 1 100); do grep -q "^sockit recv '" "$WORK/send.err" && break; sleep 0.05; done
CODE=$(sed -n "s/^sockit recv '\(.*\)'$/\1/p" "$WORK/send.err")
mkdir -p "$WORK/out"
times=()
for _ in $(seq 1 "$RUNS"); do
    times+=("$(timed_receive "'$SOCKIT' recv '$CODE' -o '$WORK/out'" "$WORK/out/data.bin")")
done
record "sockit send/recv (TLS + BLAKE3)" "taskset -c 0 sockit send data.bin --bind 127.0.0.1 · taskset -c 1 sockit recv 'sockit://…' -o out" "${times[@]}"

# 2. sockit --raw on both sides.
taskset -c 0 "$SOCKIT" send --raw "$FILE" --port 0 --bind 127.0.0.1 2>"$WORK/raw.err" &
PIDS+=($!)
RAW_ADDR=$(listening_addr "$WORK/raw.err")
times=()
for _ in $(seq 1 "$RUNS"); do
    times+=("$(timed_receive "'$SOCKIT' recv --raw $RAW_ADDR -o '$WORK/raw.bin'" "$WORK/raw.bin")")
done
record "sockit --raw" "taskset -c 0 sockit send --raw data.bin · taskset -c 1 sockit recv --raw 127.0.0.1:P -o raw.bin" "${times[@]}"

# 3. The nc pipe: nc -l < file on one side, nc > file on the other (one-shot per run).
times=()
for _ in $(seq 1 "$RUNS"); do
    port=$(free_port)
    taskset -c 0 nc -N -l 127.0.0.1 "$port" <"$FILE" &
    ncpid=$!
    for _ in $(seq 1 100); do ss -ltn | grep -q ":$port " && break; sleep 0.05; done
    times+=("$(timed_receive "nc -d 127.0.0.1 $port > '$WORK/nc.bin'" "$WORK/nc.bin")")
    wait "$ncpid" || true
done
record "nc pipe" "taskset -c 0 nc -N -l 127.0.0.1 P < data.bin · taskset -c 1 nc -d 127.0.0.1 P > nc.bin" "${times[@]}"

# 4. curl from nginx (sendfile on), one worker.
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs" "$WORK/www"
ln "$FILE" "$WORK/www/data.bin"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; }
}
EOF
taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx.err" &
PIDS+=($!)
for _ in $(seq 1 100); do ss -ltn | grep -q ":$NGINX_PORT " && break; sleep 0.05; done
times=()
for _ in $(seq 1 "$RUNS"); do
    times+=("$(timed_receive "curl -sS -o '$WORK/curl.bin' http://127.0.0.1:$NGINX_PORT/data.bin" "$WORK/curl.bin")")
done
record "curl from nginx" "taskset -c 0 nginx (sendfile on, 1 worker) · taskset -c 1 curl -o curl.bin http://127.0.0.1:P/data.bin" "${times[@]}"

# The table.
NC=${MEDIAN["nc pipe"]}
{
    echo "# File transfer over loopback: ${SIZE_MIB} MiB"
    echo
    echo "Generated by \`bench/transfer.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
    echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)). Sender pinned to CPU 0,"
    echo "receiver to CPU 1; median of $RUNS runs; the receiver writes a file in $(df --output=fstype "$WORK" | tail -1) (page cache)."
    echo "Load average when the table was written: $(cut -d' ' -f1-3 /proc/loadavg) (these runs load both cores; a"
    echo "figure well above $(nproc) means other work shared the machine: ratios measured in the same run hold better)."
    echo "Time is the receiving command's wall time, start to exit (connect, TLS, manifest, verify, rename included)."
    echo
    echo "| transfer | median s | GB/s | vs nc |"
    echo "|---|---:|---:|---:|"
    for name in "sockit send/recv (TLS + BLAKE3)" "sockit --raw" "nc pipe" "curl from nginx"; do
        t=${MEDIAN[$name]}
        printf '| %s | %.3f | %.2f | %.2f× |\n' "$name" "$t" "$(echo "$BYTES / $t / 1000000000" | bc -l)" "$(echo "$NC / $t" | bc -l)"
    done
    echo
    echo "Commands:"
    echo
    for name in "sockit send/recv (TLS + BLAKE3)" "sockit --raw" "nc pipe" "curl from nginx"; do
        echo "- $name: \`${COMMAND[$name]}\`"
    done
} >"$RESULTS"
cat "$RESULTS"
