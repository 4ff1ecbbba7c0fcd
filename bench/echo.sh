#!/usr/bin/env bash
# Echo servers side by side: sockit listen --echo vs socat PIPE vs ncat --exec /bin/cat,
# and UDP echo vs a python3 echo loop. Server on core 0, load on core 1, loopback only,
# every run bounded. Writes bench/results/echo.md.
#
#   bench/echo.sh            # 3 runs of each measurement (RUNS=5 bench/echo.sh for more)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
STREAM=${STREAM:-512MiB}
CONNS=${CONNS:-1000}
TRIPS=${TRIPS:-100}
DATAGRAMS=${DATAGRAMS:-300000}
OUT=bench/results/echo.md

for pkg in socat ncat; do
  command -v "$pkg" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
SOCKIT=$PWD/target/release/sockit
LOAD=(taskset -c 1 "$SOCKIT" bench echo --json)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

start_server() { # name port cmd... ; sets pid
  taskset -c 0 "${@:3}" >/dev/null 2>"$tmp/$1.err" &
  pids+=($!)
}

# run_load NAME KIND ARGS... → appends one JSON line (or {"failed":…}) per run to $tmp/NAME.KIND
run_load() {
  local name=$1 kind=$2; shift 2
  for _ in $(seq "$RUNS"); do
    if ! "${LOAD[@]}" "$@" >>"$tmp/$name.$kind" 2>"$tmp/$name.$kind.err"; then
      echo "{\"failed\": \"$(tail -1 "$tmp/$name.$kind.err" | tr -d '"')\"}" >>"$tmp/$name.$kind"
    fi
  done
}

declare -A port
port[sockit]=$(free_port); start_server sockit "${port[sockit]}" "$SOCKIT" listen "${port[sockit]}" --echo
port[socat]=$(free_port);  start_server socat "${port[socat]}" socat TCP-LISTEN:"${port[socat]}",bind=127.0.0.1,fork,reuseaddr,backlog=4096 PIPE
port[ncat]=$(free_port);   start_server ncat "${port[ncat]}" ncat -l -k -m 4000 127.0.0.1 "${port[ncat]}" --exec /bin/cat
for name in sockit socat ncat; do wait_port "${port[$name]}"; done

for name in sockit socat ncat; do
  echo "stream: $name" >&2
  run_load "$name" stream "127.0.0.1:${port[$name]}" --stream "$STREAM" --limit 20s
  echo "round trips: $name" >&2
  run_load "$name" rtt "127.0.0.1:${port[$name]}" -c "$CONNS" -n "$TRIPS" --size 64 --limit 60s
done

# UDP: sockit vs a python3 echo loop
uport_s=$(free_port); start_server sockit-udp "$uport_s" "$SOCKIT" listen "$uport_s" --udp --echo
uport_p=$(free_port)
start_server python-udp "$uport_p" python3 -c "
import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',$uport_p))
while True:
    d,a=s.recvfrom(65536); s.sendto(d,a)"
sleep 0.5
for name in sockit-udp python-udp; do
  p=$uport_s; [ "$name" = python-udp ] && p=$uport_p
  echo "udp: $name" >&2
  run_load "$name" udp "127.0.0.1:$p" --udp -n "$DATAGRAMS" --window 32 --size 64 --limit 60s
done

mkdir -p bench/results
python3 - "$tmp" "$RUNS" "$STREAM" "$CONNS" "$TRIPS" "$DATAGRAMS" >"$OUT" <<'PY'
import json, statistics, sys, os, subprocess
tmp, runs, stream, conns, trips, dgrams = sys.argv[1:]
def load(name, kind):
    rows = [json.loads(l) for l in open(os.path.join(tmp, f"{name}.{kind}")) if l.strip()]
    ok = [r for r in rows if "failed" not in r]
    failed = [r["failed"] for r in rows if "failed" in r]
    return ok, failed
def med(xs): return statistics.median(xs) if xs else None
def fmt(x, unit=""): return "—" if x is None else (f"{x:,.0f}{unit}" if x >= 100 else f"{x:.2f}{unit}")
def span(xs): return f"{min(xs):,.0f}–{max(xs):,.0f}" if xs else "—"
cpu = subprocess.run(["sh","-c","grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],capture_output=True,text=True).stdout.strip()
print("## Echo servers: sockit vs socat vs ncat (TCP), sockit vs python3 (UDP)\n")
print(f"Machine: {os.cpu_count()} cores ({cpu}); server pinned to core 0, load (`sockit bench echo`) to core 1; loopback. Medians of {runs} runs (min–max).\n")
print("Command: `bench/echo.sh`\n")
print("Servers: `sockit listen PORT --echo` · `socat TCP-LISTEN:PORT,fork,reuseaddr,backlog=4096 PIPE` · `ncat -l -k -m 4000 127.0.0.1 PORT --exec /bin/cat`\n")
base = {}
print(f"### One connection, {stream} pushed both ways at once (`--stream {stream} --limit 20s`)\n")
print("| server | MB/s (echoed) | min–max | vs socat | failures |\n|---|---|---|---|---|")
res = {}
for n in ["sockit","socat","ncat"]:
    ok, failed = load(n, "stream")
    res[n] = (med([r["mb_per_sec"] for r in ok]), [r["mb_per_sec"] for r in ok], failed)
for n,(m,xs,failed) in res.items():
    ratio = f"{m/res['socat'][0]:.2f}×" if m and res['socat'][0] else "—"
    print(f"| {n} | {fmt(m)} | {span(xs)} | {ratio} | {len(failed)}/{runs} {('('+failed[0][:60]+')') if failed else ''} |")
print(f"\n### {conns} connections × {trips} round trips of 64 B (`-c {conns} -n {trips} --size 64`)\n")
print("| server | round trips/s | min–max | vs socat | p50 ms | p99 ms | failures |\n|---|---|---|---|---|---|---|")
res = {}
for n in ["sockit","socat","ncat"]:
    ok, failed = load(n, "rtt")
    res[n] = (med([r["ops_per_sec"] for r in ok]), [r["ops_per_sec"] for r in ok], med([r["latency"]["p50_ms"] for r in ok]), med([r["latency"]["p99_ms"] for r in ok]), failed)
for n,(m,xs,p50,p99,failed) in res.items():
    ratio = f"{m/res['socat'][0]:.2f}×" if m and res['socat'][0] else "—"
    print(f"| {n} | {fmt(m)} | {span(xs)} | {ratio} | {fmt(p50)} | {fmt(p99)} | {len(failed)}/{runs} |")
print(f"\n### UDP, {dgrams} datagrams of 64 B, 32 in flight (`--udp -n {dgrams} --window 32`)\n")
print("| server | datagrams/s | min–max | vs python3 | p99 ms | lost | wrong size |\n|---|---|---|---|---|---|---|")
res = {}
for n in ["sockit-udp","python-udp"]:
    ok, failed = load(n, "udp")
    c = lambda r,k: dict(r["counters"]).get(k,0)
    res[n] = (med([r["ops_per_sec"] for r in ok]), [r["ops_per_sec"] for r in ok], med([r["latency"]["p99_ms"] for r in ok]), sum(c(r,"lost") for r in ok), sum(c(r,"wrong size") for r in ok))
for n,(m,xs,p99,lost,bad) in res.items():
    ratio = f"{m/res['python-udp'][0]:.2f}×" if m and res['python-udp'][0] else "—"
    print(f"| {n.replace('-udp','')} | {fmt(m)} | {span(xs)} | {ratio} | {fmt(p99)} | {lost} | {bad} |")
PY
cat "$OUT"
