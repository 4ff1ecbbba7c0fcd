#!/usr/bin/env bash
# Echo servers side by side: sockit listen --echo vs socat PIPE vs ncat --exec /bin/cat,
# and UDP echo vs a python3 echo loop. Server on core 0, load on core 1, loopback only,
# every run bounded. Interleaved rounds: each round runs every server once per measurement,
# in turn (stream: sockit, socat, ncat; round trips: …; UDP: sockit, python3). Medians,
# min–max, ratios with the tie verdict, the host's steal time. Writes bench/results/echo.md.
#
#   bench/echo.sh            # 7 rounds (ROUNDS=11 bench/echo.sh for more; RUNS= is the old name)
#   SOCKIT=/path/to/sockit ROUNDS=1 STREAM=4MiB CONNS=20 TRIPS=10 DATAGRAMS=2000 \
#     LIMIT=5s OUT=/tmp/echo.md bench/echo.sh   # a smoke run: no release build
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-${RUNS:-7}}
STREAM=${STREAM:-512MiB}
CONNS=${CONNS:-1000}
TRIPS=${TRIPS:-100}
DATAGRAMS=${DATAGRAMS:-300000}
LIMIT=${LIMIT:-} # one run's --limit (default: 20s for the stream, 60s for the others)
OUT=${OUT:-bench/results/echo.md}

ensure_tools socat=socat ncat=ncat taskset=util-linux python3=python3
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
SOCKIT=${SOCKIT:-$(cargo_release)}
SOCKIT=$(realpath "$SOCKIT")
LOAD=(taskset -c 1 "$SOCKIT" bench echo --json)
tmp=$(mktemp -d)
pids=()
# Each server runs in a process group of its own, ended whole: ncat forks a child (and a cat)
# per connection, and a child stuck on a stalled stream outlives its parent otherwise.
cleanup() { for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

start_server() { # name cmd...
  setsid taskset -c 0 "${@:2}" >/dev/null 2>"$tmp/$1.err" &
  pids+=($!)
}

# run_load NAME KIND ARGS... → appends one JSON line (or {"failed":…}) to $tmp/NAME.KIND
run_load() {
  local name=$1 kind=$2; shift 2
  if ! "${LOAD[@]}" "$@" >>"$tmp/$name.$kind" 2>"$tmp/$name.$kind.err"; then
    echo "{\"failed\": \"$(tail -1 "$tmp/$name.$kind.err" | tr -d '"')\"}" >>"$tmp/$name.$kind"
  fi
}

declare -A port
port[sockit]=$(free_port); start_server sockit "$SOCKIT" listen "${port[sockit]}" --echo
port[socat]=$(free_port);  start_server socat socat TCP-LISTEN:"${port[socat]}",bind=127.0.0.1,fork,reuseaddr,backlog=4096 PIPE
port[ncat]=$(free_port);   start_server ncat ncat -l -k -m 4000 127.0.0.1 "${port[ncat]}" --exec /bin/cat
for name in sockit socat ncat; do wait_port "${port[$name]}"; done

# UDP: sockit vs a python3 echo loop
port[sockit-udp]=$(free_port); start_server sockit-udp "$SOCKIT" listen "${port[sockit-udp]}" --udp --echo
port[python-udp]=$(free_port)
start_server python-udp python3 -c "
import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',${port[python-udp]}))
while True:
    d,a=s.recvfrom(65536); s.sendto(d,a)"
sleep 0.5

steal_begin
for n in $(seq "$ROUNDS"); do
  for name in sockit socat ncat; do
    echo "round $n/$ROUNDS stream: $name" >&2
    run_load "$name" stream "127.0.0.1:${port[$name]}" --stream "$STREAM" --limit "${LIMIT:-20s}"
  done
  for name in sockit socat ncat; do
    echo "round $n/$ROUNDS round trips: $name" >&2
    run_load "$name" rtt "127.0.0.1:${port[$name]}" -c "$CONNS" -n "$TRIPS" --size 64 --limit "${LIMIT:-60s}"
  done
  for name in sockit-udp python-udp; do
    echo "round $n/$ROUNDS udp: $name" >&2
    run_load "$name" udp "127.0.0.1:${port[$name]}" --udp -n "$DATAGRAMS" --window 32 --size 64 --limit "${LIMIT:-60s}"
  done
done
STEAL=$(steal_pct)

mkdir -p "$(dirname "$OUT")"
python3 - "$tmp" "$ROUNDS" "$STREAM" "$CONNS" "$TRIPS" "$DATAGRAMS" "$STEAL" >"$OUT" <<'PY'
import json, sys, os, subprocess
sys.path.insert(0, "bench")
import stats
tmp, rounds, stream, conns, trips, dgrams, steal = sys.argv[1:]
def load(name, kind):
    rows = [json.loads(l) for l in open(os.path.join(tmp, f"{name}.{kind}")) if l.strip()]
    ok = [r for r in rows if "failed" not in r]
    failed = [r["failed"] for r in rows if "failed" in r]
    return ok, failed
cpu = subprocess.run(["sh","-c","grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],capture_output=True,text=True).stdout.strip()
print("## Echo servers: sockit vs socat vs ncat (TCP), sockit vs python3 (UDP)\n")
print(f"Machine: {os.cpu_count()} cores ({cpu}); server pinned to core 0, load (`sockit bench echo`) to core 1; loopback. "
      f"{stats.steal_line(steal, rounds)}\n")
print("Command: `bench/echo.sh`\n")
print("Servers: `sockit listen PORT --echo` · `socat TCP-LISTEN:PORT,fork,reuseaddr,backlog=4096 PIPE` · `ncat -l -k -m 4000 127.0.0.1 PORT --exec /bin/cat`\n")
print(f"### One connection, {stream} pushed both ways at once (`--stream {stream} --limit 20s`)\n")
print("| server | MB/s (echoed) | vs socat | failures |\n|---|---|---|---|")
res = {}
for n in ["sockit","socat","ncat"]:
    ok, failed = load(n, "stream")
    res[n] = ([r["mb_per_sec"] for r in ok], failed)
for n,(xs,failed) in res.items():
    print(f"| {n} | {stats.cell(xs)} | {stats.ratio(xs, res['socat'][0])} | {len(failed)}/{rounds} {('('+failed[0][:60]+')') if failed else ''} |")
print(f"\n### {conns} connections × {trips} round trips of 64 B (`-c {conns} -n {trips} --size 64`)\n")
print("| server | round trips/s | vs socat | p50 ms | p99 ms | p99 vs socat | failures |\n|---|---|---|---|---|---|---|")
res = {}
for n in ["sockit","socat","ncat"]:
    ok, failed = load(n, "rtt")
    res[n] = ([r["ops_per_sec"] for r in ok], [r["latency"]["p50_ms"] for r in ok], [r["latency"]["p99_ms"] for r in ok], failed)
for n,(xs,p50,p99,failed) in res.items():
    print(f"| {n} | {stats.cell(xs)} | {stats.ratio(xs, res['socat'][0])} | {stats.fmt(stats.median(p50))} | "
          f"{stats.cell(p99)} | {stats.ratio(p99, res['socat'][2])} | {len(failed)}/{rounds} |")
print(f"\n### UDP, {dgrams} datagrams of 64 B, 32 in flight (`--udp -n {dgrams} --window 32`)\n")
print("| server | datagrams/s | vs python3 | p99 ms | lost | wrong size | failures |\n|---|---|---|---|---|---|---|")
res = {}
for n in ["sockit-udp","python-udp"]:
    ok, failed = load(n, "udp")
    c = lambda r,k: dict(r["counters"]).get(k,0)
    res[n] = ([r["ops_per_sec"] for r in ok], [r["latency"]["p99_ms"] for r in ok], sum(c(r,"lost") for r in ok), sum(c(r,"wrong size") for r in ok), failed)
for n,(xs,p99,lost,bad,failed) in res.items():
    print(f"| {n.replace('-udp','')} | {stats.cell(xs)} | {stats.ratio(xs, res['python-udp'][0])} | {stats.cell(p99)} | {lost} | {bad} | {len(failed)}/{rounds} |")
PY
cat "$OUT"
