#!/usr/bin/env bash
# The open-loop generator's cost per request: CPU time (perf task-clock, user + sys) and
# syscalls per answered request of `sockit bench http --rate` and of
# `oha -q RATE --latency-correction`, each pinned to core 1 at the same rate, against one
# nginx worker on core 0 answering `return 200 "ok\n"` (no file I/O: the server is cheap and
# far from saturated, so what differs is the generator). Runs interleaved; medians.
#
#   bench/open-loop-cpu.sh                        # RATE=20000 DURATION=5s RUNS=3
#   SOCKIT=target/release/sockit GENS=sockit RUNS=1 bench/open-loop-cpu.sh
#   SOCKIT_BEFORE=/tmp/sockit-old GENS="before sockit oha" bench/open-loop-cpu.sh   # two builds
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${RUNS:-3}
RATE=${RATE:-20000}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
read -r -a gens <<<"${GENS:-sockit oha}"

ensure_tools nginx=nginx-light perf=linux-perf
[[ " ${gens[*]} " == *" oha "* ]] && ensure_oha
ulimit -n 65536 2>/dev/null || true
SOCKIT=${SOCKIT:-$(cargo_release)}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

mkdir -p "$tmp/root"
chmod 755 "$tmp" "$tmp/root"
port=$(free_port)
pids+=("$(start_nginx "$tmp/nginx" "$port" "$tmp/root")")   # answers /ok from memory
wait_port "$port"
url="http://127.0.0.1:$port/ok"

# load GEN: the command line of one run.
load() {
  case $1 in
    sockit) echo "$SOCKIT bench http $url -c $CONNS -d $DURATION --rate $RATE --json" ;;
    before) echo "$SOCKIT_BEFORE bench http $url -c $CONNS -d $DURATION --rate $RATE --json" ;;
    oha) echo "oha -q $RATE --latency-correction -z $DURATION -c $CONNS --no-tui --output-format json $url" ;;
  esac
}

for i in $(seq "$RUNS"); do
  for gen in "${gens[@]}"; do
    echo "run $i/$RUNS: $gen at $RATE/s" >&2
    # shellcheck disable=SC2046
    perf stat -x, -e task-clock -o "$tmp/perf-$gen-$i" -- taskset -c 1 $(load "$gen") \
      | tr -d '\n' >"$tmp/out-$gen-$i"
  done
done
# Syscalls: one more run each, counted by tracepoint.
for gen in "${gens[@]}"; do
  echo "syscalls: $gen at $RATE/s" >&2
  # shellcheck disable=SC2046
  perf stat -x, -e 'syscalls:sys_enter_*' -o "$tmp/sys-$gen" -- taskset -c 1 $(load "$gen") \
    | tr -d '\n' >"$tmp/sysout-$gen"
done

python3 - "$tmp" "$RUNS" "$RATE" "$DURATION" "$CONNS" "${gens[*]}" <<'PY'
import json, statistics, sys
tmp, runs, rate, duration, conns, gens = sys.argv[1:]
runs = int(runs)

def answered(gen, path):
    r = json.load(open(path))
    if gen in ("sockit", "before"):
        sc = r.get("schedule") or {}
        return r["ops"], sc.get("lag_p50_ms"), sc.get("lag_p99_ms")
    return sum(r["statusCodeDistribution"].values()), None, None

def task_clock_ms(path):
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 2 and f[2] == "task-clock":
            return float(f[0])
    raise ValueError(f"no task-clock in {path}")

print(f"## Open-loop cost per request at {int(rate):,} requests/s\n")
print(f"nginx (1 worker, core 0) answering `return 200`; the generator on core 1, {conns} connections, "
      f"{duration} per run, runs interleaved; CPU = perf task-clock (user + sys) / answered requests. "
      f"Medians of {runs} runs (min–max). Command: `bench/open-loop-cpu.sh`.\n")
print("| generator | CPU µs per request | min–max | answered/s | schedule lag p50 / p99 ms |")
print("|---|---:|---|---:|---|")
secs = float(duration.rstrip("s"))
for gen in gens.split():
    cpu, rps, lag50, lag99 = [], [], [], []
    for i in range(1, runs + 1):
        n, l50, l99 = answered(gen, f"{tmp}/out-{gen}-{i}")
        cpu.append(task_clock_ms(f"{tmp}/perf-{gen}-{i}") * 1000.0 / max(n, 1))
        rps.append(n / secs)
        if l50 is not None:
            lag50.append(l50); lag99.append(l99)
    lag = f"{statistics.median(lag50):.3f} / {statistics.median(lag99):.3f}" if lag50 else "—"
    print(f"| {gen} | {statistics.median(cpu):.2f} | {min(cpu):.2f}–{max(cpu):.2f} | "
          f"{statistics.median(rps):,.0f} | {lag} |")

print("\nSyscalls per answered request (one run each; those above 0.01):\n")
for gen in gens.split():
    n, _, _ = answered(gen, f"{tmp}/sysout-{gen}")
    counts = {}
    for line in open(f"{tmp}/sys-{gen}"):
        f = line.strip().split(",")
        if len(f) > 2 and f[2].startswith("syscalls:sys_enter_"):
            try:
                counts[f[2][len("syscalls:sys_enter_"):]] = float(f[0])
            except ValueError:
                pass
    per = {k: v / max(n, 1) for k, v in counts.items() if v / max(n, 1) > 0.01}
    total = sum(v for v in counts.values()) / max(n, 1)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
    print(f"- {gen}: {total:.2f} in all: {parts}")
PY
