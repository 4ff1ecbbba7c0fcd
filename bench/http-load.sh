#!/usr/bin/env bash
# Does `sockit bench http` agree with wrk? Both load the same nginx (one worker, core 0)
# from core 1 with one thread and 64 keep-alive connections, runs interleaved.
# Writes bench/results/http-load.md.
#
#   bench/http-load.sh        # RUNS=5 DURATION=10s bench/http-load.sh for more
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
OUT=bench/results/http-load.md

ensure_tools nginx=nginx-light wrk=wrk
ulimit -n 65536 2>/dev/null || true
SOCKIT=$(cargo_release)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

mkdir -p "$tmp/root"
chmod 755 "$tmp" "$tmp/root"   # nginx workers run as nobody
printf 'hello world\n\n' >"$tmp/root/13b.txt"    # 13 bytes
port=$(free_port)
pids+=("$(start_nginx "$tmp/nginx" "$port" "$tmp/root")")
wait_port "$port"
url="http://127.0.0.1:$port/13b.txt"

for i in $(seq "$RUNS"); do
  echo "run $i/$RUNS" >&2
  taskset -c 1 wrk -t 1 -c "$CONNS" -d "$DURATION" "$url" | awk '/Requests\/sec/ {print $2}' >>"$tmp/wrk"
  taskset -c 1 "$SOCKIT" bench http "$url" -t 1 -c "$CONNS" -d "$DURATION" --json >>"$tmp/sockit"
done

mkdir -p bench/results
python3 - "$tmp" "$RUNS" "$DURATION" "$CONNS" >"$OUT" <<'PY'
import json, statistics, sys, os
tmp, runs, duration, conns = sys.argv[1:]
wrk = [float(l) for l in open(f"{tmp}/wrk") if l.strip()]
sk = [json.loads(l) for l in open(f"{tmp}/sockit") if l.strip()]
s_rps = [r["ops_per_sec"] for r in sk]
mw, ms = statistics.median(wrk), statistics.median(s_rps)
print("## Load generators: `sockit bench http` vs wrk, same nginx\n")
print(f"Machine: {os.cpu_count()} cores; nginx (1 worker, sendfile, access_log off) on core 0, the load generator on core 1; "
      f"{conns} keep-alive connections, one thread, {duration} per run, 13-byte file, runs interleaved. Medians of {runs} runs (min–max).\n")
print("Command: `bench/http-load.sh`; the loads: "
      f"`wrk -t 1 -c {conns} -d {duration} URL` and `sockit bench http URL -t 1 -c {conns} -d {duration}`\n")
print("| load generator | requests/s | min–max | p99 ms |\n|---|---|---|---|")
print(f"| wrk | {mw:,.0f} | {min(wrk):,.0f}–{max(wrk):,.0f} | — |")
p99 = statistics.median([r["latency"]["p99_ms"] for r in sk])
print(f"| sockit bench http | {ms:,.0f} | {min(s_rps):,.0f}–{max(s_rps):,.0f} | {p99:.2f} |")
print(f"\nsockit / wrk = **{ms/mw:.2f}** (target: within ±15%, i.e. 0.85–1.15). "
      f"Errors: {sum(dict(r['counters'])['errors'] for r in sk)}, non-2xx: {sum(dict(r['counters'])['non-2xx'] for r in sk)}.")
PY
cat "$OUT"
