#!/usr/bin/env bash
# Chat across nodes: one `sockit chat serve` vs three joined through Redis
# (`--cluster redis://…`), measured with `sockit bench chat` spreading its clients over the
# nodes; beside it, the ceiling of Redis itself for stream appends (redis-benchmark XADD).
#
# Redis and every node pinned to CPU 0 (`taskset -c 0`), the load generator to CPU 1;
# N clients (default 300) in one room, 10 senders; flat out and paced (100 lines/s per
# sender). Interleaved rounds: each round runs every point with one node, then with three;
# medians, min–max, the ratio 3 nodes / 1 node with the tie verdict (error counters: worst
# run), the host's steal time. Redis runs without persistence
# (`--save '' --appendonly no`) on a free loopback port, in a temporary directory.
# Writes bench/results/chat-cluster.md. Loopback only; every run is bounded.
#
#   bench/chat-cluster.sh                                  # full run, ROUNDS=7 (RUNS= is the old name)
#   ROUNDS=1 N=12 FLAT_MESSAGES=50 PACED_MESSAGES=20 XADD_N=2000 BUILD=debug bench/chat-cluster.sh  # smoke
#   SOCKIT=/path/to/sockit ROUNDS=2 N=12 … bench/chat-cluster.sh   # a built binary: no build
#   MODES=paced SOCKIT=/path/to/sockit OUT=/tmp/paced.md bench/chat-cluster.sh   # one mode only
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-${RUNS:-7}}
N=${N:-300}
SENDERS=10
FLAT_MESSAGES=${FLAT_MESSAGES:-2000}
PACED_RATE=100   # lines/s per sender (bench chat --rate takes the total)
PACED_MESSAGES=${PACED_MESSAGES:-300}
XADD_N=${XADD_N:-200000}
BUILD=${BUILD:-release}
OUT=${OUT:-bench/results/chat-cluster.md}

ensure_tools redis-server=redis-server redis-benchmark=redis-tools taskset=util-linux
if [[ -n ${SOCKIT:-} ]]; then SOCKIT=$(realpath "$SOCKIT"); BUILD=prebuilt
elif [[ $BUILD == release ]]; then SOCKIT=$(cargo_release)
else cargo build --quiet >&2; SOCKIT=$PWD/target/debug/sockit; fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d)
PIDS=()
REDIS_PID=
cleanup() {
  local pid
  for pid in "${PIDS[@]}" $REDIS_PID; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

start_redis() {
  REDIS_PORT=$(free_port)
  mkdir -p "$TMP/redis"
  taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP/redis" >"$TMP/redis.log" 2>&1 &
  REDIS_PID=$!
  wait_port "$REDIS_PORT"
}

stop_redis() { kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=; }

# start_nodes COUNT: COUNT chat nodes on CPU 0 (clustered through Redis when COUNT > 1);
# sets ADDRS.
start_nodes() {
  local count=$1 i port cluster=()
  ADDRS=()
  if ((count > 1)); then start_redis; fi
  for ((i = 0; i < count; i++)); do
    port=$(free_port)
    ((count > 1)) && cluster=(--cluster "redis://127.0.0.1:$REDIS_PORT" --node "node$i")
    taskset -c 0 "$SOCKIT" chat serve --port "$port" --rate 0 --history 0 --max-clients 20000 \
      "${cluster[@]}" 2>"$TMP/node$i.log" &
    PIDS+=($!)
    wait_port "$port"
    ADDRS+=("127.0.0.1:$port")
  done
}

stop_nodes() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
  [[ -n $REDIS_PID ]] && stop_redis
  sleep 0.3
}

# one_run NODES MODE -> a JSON line in $TMP/results
one_run() {
  local nodes=$1 mode=$2 args json
  if [[ $mode == flat ]]; then args="--messages $FLAT_MESSAGES --rate 0"
  else args="--messages $PACED_MESSAGES --rate $((PACED_RATE * SENDERS))"; fi
  if ((nodes > 1)); then start_nodes "$nodes"; else REDIS_PID=; start_nodes 1; fi
  # shellcheck disable=SC2086
  json=$(timeout 180 taskset -c 1 "$SOCKIT" bench chat "${ADDRS[@]}" --clients "$N" --senders $SENDERS $args \
    --limit 150s --json 2>"$TMP/bench.err") || true
  stop_nodes
  json=$(chat_result "$json" "$TMP/bench.err")
  echo "{\"nodes\":$nodes,\"mode\":\"$mode\",\"cmd\":\"sockit bench chat ${ADDRS[*]} --clients $N --senders $SENDERS $args\",\"r\":$json}" >>"$TMP/results"
  echo "  nodes=$nodes $mode: $(chat_summary "$json")" >&2
}

echo "chat cluster benchmark: $ROUNDS interleaved rounds, N=$N" >&2
steal_begin
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for mode in ${MODES:-flat paced}; do
    for nodes in 1 3; do one_run "$nodes" "$mode"; done
  done
  # The ceiling: Redis alone appending to a stream, on the same core, in every round.
  start_redis
  xadd=$(taskset -c 1 redis-benchmark -p "$REDIS_PORT" -n "$XADD_N" -c 50 -q XADD bench '*' f v | tr '\r' '\n' | grep 'requests per second' | tail -1)
  stop_redis
  echo "$xadd" >>"$TMP/xadd"
  echo "  redis-benchmark XADD: $xadd" >&2
done
STEAL=$(steal_pct)

python3 - "$TMP/results" "$OUT" "$ROUNDS" "$N" "$TMP/xadd" "$BUILD" "$STEAL" <<'PY'
import json, statistics, sys, os, platform, subprocess
sys.path.insert(0, "bench")
import stats
path, out, runs, n, xadd_path, build, steal = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
groups = {}
for r in rows:
    groups.setdefault((r["mode"], r["nodes"]), []).append(r)
def summary(rs):
    ok = [r["r"] for r in rs if "failed" not in r["r"]]
    if not ok:
        return None
    c = lambda name: max(dict(r["counters"]).get(name, 0) for r in ok)
    lat = lambda q: statistics.median((r["latency"] or {}).get(q, 0) for r in ok)
    rates = [r["ops_per_sec"] for r in ok]
    p99s = [(r["latency"] or {}).get("p99_ms", 0) for r in ok]
    return dict(rate=statistics.median(rates), rates=rates, p99s=p99s, p50=lat("p50_ms"), p99=lat("p99_ms"),
                lost=c("lost"), dup=c("duplicated"), reord=c("reordered"), disc=c("disconnected"),
                failed=len(rs) - len(ok))
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = ["# Chat across nodes: one node vs three joined through Redis", "",
         f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; sockit {build} build. "
         f"Redis and every node pinned to CPU 0 (`taskset -c 0`), load generator to CPU 1. {stats.steal_line(steal, runs)} "
         "Error counters are the worst run. "
         f"{n} clients in one room, spread over the nodes in turn, 10 senders; every client checks every other sender's lines.", "",
         "Nodes: `sockit chat serve --port P --rate 0 --history 0 --max-clients 20000 [--cluster redis://127.0.0.1:R --node nodeI]`; "
         "Redis: `redis-server --save '' --appendonly no`.", ""]
for mode, title in (("flat", "Flat out"), ("paced", "Paced, 100 lines/s per sender")):
    if not any(m == mode for m, _ in groups):
        continue  # not run (MODES)
    lines += [f"## {title}", "", "| nodes | deliveries/s | vs 1 node | p50 ms | p99 ms | p99 vs 1 node | lost | dup | reordered | dropped clients | failed runs |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    one = summary(groups.get((mode, 1), []))
    for nodes in (1, 3):
        v = summary(groups.get((mode, nodes), []))
        if v is None:
            lines.append(f"| {nodes} | failed | | | | | | | | | |")
            continue
        vs = (lambda key: "baseline") if nodes == 1 else (lambda key: stats.ratio(v[key], one[key]) if one else "—")
        lines.append(f"| {nodes} | {stats.cell(v['rates'], 0)} | {vs('rates')} | {v['p50']:.2f} | {stats.cell(v['p99s'], 2)} | "
                     f"{vs('p99s')} | {v['lost']} | {v['dup']} | {v['reord']} | {v['disc']} | {v['failed']} |")
    lines.append("")
import re
ceilings = [float(m.group(1)) for m in (re.search(r"([\d.]+) requests per second", l) for l in open(xadd_path)) if m]
ceiling = statistics.median(ceilings) if ceilings else None
lines += ["## Redis ceiling", "",
          f"`redis-benchmark -n … -c 50 -q XADD bench '*' f v` (Redis on CPU 0, client on CPU 1), once per round: "
          f"{stats.cell(ceilings, 0)} appends/s.", ""]
flat1, flat3 = summary(groups.get(("flat", 1), [])), summary(groups.get(("flat", 3), []))
paced1, paced3 = summary(groups.get(("paced", 1), [])), summary(groups.get(("paced", 3), []))
mark = lambda ok: "✓" if ok else "✗"
lines += ["## Targets", ""]
if flat3 and ceiling:
    # Every line reaches every other member: deliveries / (N - 1) lines were accepted.
    accepted = flat3["rate"] / (int(n) - 1)
    lines.append(f"- Accepted lines/s flat out across 3 nodes: {accepted:,.0f} (deliveries/s ÷ {int(n) - 1} "
                 f"receivers; {stats.cell([r / (int(n) - 1) for r in flat3['rates']], 0)}), {accepted / ceiling:.0%} of "
                 f"the median XADD ceiling (target ≥ 50% {mark(accepted >= ceiling / 2)}).")
if paced1 and paced3:
    bound = 2 * paced1["p99"] + 1
    lines.append(f"- Paced p99 across 3 nodes {paced3['p99']:.2f} ms against 2 × {paced1['p99']:.2f} + 1 = "
                 f"{bound:.2f} ms {mark(paced3['p99'] <= bound)}.")
lines += ["", "What the figures predict for N machines: here Redis and the three nodes share one core, "
          "so the nodes' fan-out (each line written to every member's socket) and Redis compete for it; "
          "with a core (or a machine) per node the fan-out grows with the nodes, and Redis takes the lines as "
          "pipelined XADDs, one round trip per batch, so at these rates its ceiling is not what limits a cluster.", "",
          "Exact bench commands of the first run of each point:", ""]
seen = set()
for r in rows:
    if (r["mode"], r["nodes"]) in seen:
        continue
    seen.add((r["mode"], r["nodes"]))
    lines.append(f"    {r['cmd']}")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
