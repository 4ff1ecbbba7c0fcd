#!/usr/bin/env bash
# Chat fan-out, measured with `sockit bench chat`, side by side in one run:
#   - `sockit chat serve` with TCP line clients, against `ncat -k --chat`;
#   - the same sockit server with WebSocket clients (`--ws`, browsers on /ws), against the
#     broadcast example of Node's `ws` package (bench/ws-node/broadcast.js, `--ws-raw`).
#
# Server pinned to CPU 0, load generator to CPU 1; 10 senders; flat out and paced
# (100 lines/s per sender); medians of RUNS runs (error counters: worst run). Then the
# memory per idle client (bench/chat-idle.sh) unless IDLE=0.
# Writes bench/results/chat.md (or $OUT). Loopback only; every run is bounded (--limit, timeout).
#
#   bench/chat.sh                                  # full run (many minutes)
#   RUNS=1 NS="10 100" WS_NS=100 IDLE=0 bench/chat.sh   # quick look
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

RUNS=${RUNS:-3}
NS=${NS:-"10 100 500 1000 5000"}
NCAT_NS=${NCAT_NS:-"10 100 500"}
WS_NS=${WS_NS:-"100 500 1000"}
SENDERS=10
PACED_RATE=100   # lines/s per sender (bench chat --rate takes the total)
PACED_MESSAGES=${PACED_MESSAGES:-300}
FLAT_DELIVERIES=${FLAT_DELIVERIES:-10000000}
LIMIT=${LIMIT:-60s}
IDLE=${IDLE:-1}
OUT=${OUT:-bench/results/chat.md}
SOCKIT=target/release/sockit
SOCKIT_PORT=17771
NCAT_PORT=17772
NODE_PORT=17773

ensure_tools ncat=ncat node=nodejs npm=npm
[[ -f bench/ws-node/node_modules/ws/package.json ]] ||
    npm ci --prefix bench/ws-node --no-audit --no-fund >&2
cargo build --release --quiet
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Lines per sender for a flat-out run: about FLAT_DELIVERIES deliveries whatever N is.
flat_messages() { local n=$1; local m=$((FLAT_DELIVERIES / (SENDERS * (n - 1)))); ((m > 20000)) && m=20000; ((m < 100)) && m=100; echo $m; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() { [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

start_server() { # kind
    case $1 in
    sockit | sockit-ws) taskset -c 0 "$SOCKIT" chat serve --port $SOCKIT_PORT --rate 0 --history 0 --max-clients 20000 2>"$TMP/server.log" &
        SERVER_PID=$!; PORT=$SOCKIT_PORT ;;
    ncat) taskset -c 0 ncat -k --chat -m 10000 -l 127.0.0.1 $NCAT_PORT </dev/null >/dev/null 2>"$TMP/server.log" &
        SERVER_PID=$!; PORT=$NCAT_PORT ;;
    node-ws) taskset -c 0 node bench/ws-node/broadcast.js $NODE_PORT 2>"$TMP/server.log" &
        SERVER_PID=$!; PORT=$NODE_PORT ;;
    esac
    wait_port "$PORT"
}

stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; sleep 0.3; }

# How each kind's clients talk: TCP lines, sockit's WebSocket, or raw WebSocket frames.
transport() { case $1 in sockit-ws) echo "--ws" ;; node-ws) echo "--ws-raw" ;; *) echo "" ;; esac; }

# One measured run: kind n mode -> a JSON line in $TMP/results
one_run() {
    local kind=$1 n=$2 mode=$3 args
    if [[ $mode == flat ]]; then args="--messages $(flat_messages "$n") --rate 0"
    else args="--messages $PACED_MESSAGES --rate $((PACED_RATE * SENDERS))"; fi
    args="$args $(transport "$kind")"
    start_server "$kind"
    local json
    # shellcheck disable=SC2086
    json=$(timeout 120 taskset -c 1 "$SOCKIT" bench chat "127.0.0.1:$PORT" --clients "$n" --senders $SENDERS $args --limit "$LIMIT" --json 2>"$TMP/bench.err") || true
    # Exit 1 with a report means the server lost, duplicated or reordered lines: the report
    # is the result (ncat's losses are counted, not hidden). No report: the run failed.
    stop_server
    json=$(chat_result "$json" "$TMP/bench.err")
    echo "{\"kind\":\"$kind\",\"n\":$n,\"mode\":\"$mode\",\"cmd\":\"sockit bench chat 127.0.0.1:$PORT --clients $n --senders $SENDERS ${args% }\",\"r\":$json}" >>"$TMP/results"
    echo "  $kind N=$n $mode: $(chat_summary "$json")" >&2
}

echo "chat benchmark: $RUNS runs per point" >&2
for mode in flat paced; do
    for n in $NS; do
        for _ in $(seq "$RUNS"); do one_run sockit "$n" $mode; done
    done
    for n in $NCAT_NS; do
        for _ in $(seq "$RUNS"); do one_run ncat "$n" $mode; done
    done
    # WebSocket: sockit and Node interleaved, run by run, so both see the same machine.
    for n in $WS_NS; do
        for _ in $(seq "$RUNS"); do one_run sockit-ws "$n" $mode; one_run node-ws "$n" $mode; done
    done
done

python3 - "$TMP/results" "$OUT" "$RUNS" "$(node --version)" "$(node -p 'require("./bench/ws-node/node_modules/ws/package.json").version')" "$FLAT_DELIVERIES" "$PACED_MESSAGES" <<'PY'
import json, statistics, sys, os, platform, subprocess
path, out, runs, node_version, ws_version, flat_deliveries, paced_messages = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
groups = {}
for r in rows:
    groups.setdefault((r["mode"], r["n"], r["kind"]), []).append(r)
def summary(rs):
    ok = [r["r"] for r in rs if "failed" not in r["r"]]
    if not ok:
        return None
    c = lambda name: max(dict(r["counters"]).get(name, 0) for r in ok)
    lat = lambda q: statistics.median((r["latency"] or {}).get(q, 0) for r in ok)
    rates = [r["ops_per_sec"] for r in ok]
    return dict(rate=statistics.median(rates), lo=min(rates), hi=max(rates), p50=lat("p50_ms"), p99=lat("p99_ms"),
                lost=c("lost"), dup=c("duplicated"), reord=c("reordered"), mal=c("malformed"),
                disc=c("disconnected"), expected=c("expected"), failed=len(rs) - len(ok), cmd=rs[0]["cmd"])
NAMES = {"sockit": "sockit, TCP", "ncat": "ncat, TCP", "sockit-ws": "sockit, WebSocket", "node-ws": "node ws, WebSocket"}
def ratio(mode, n, kind, v):
    """The comparisons the targets are about, with ✓ when met."""
    get = lambda k: summary(groups[(mode, n, k)]) if (mode, n, k) in groups else None
    parts = []
    if kind == "sockit" and (nc := get("ncat")):
        parts.append(f"{v['rate'] / nc['rate']:.2f}× ncat's rate" if mode == "flat"
                     else f"p99 {v['p99'] / nc['p99']:.2f}× ncat's" if nc["p99"] else "")
    if kind == "sockit-ws":
        node, tcp = get("node-ws"), get("sockit")
        if mode == "flat":
            if node and node["rate"]:
                x = v["rate"] / node["rate"]
                parts.append(f"{x:.2f}× node {'✓' if x >= 2 else '✗'}")
            if tcp and tcp["rate"]:
                x = v["rate"] / tcp["rate"]
                parts.append(f"{x:.2f}× tcp {'✓' if x >= 0.6 else '✗'}")
        else:
            if node and node["p99"]:
                x = v["p99"] / node["p99"]
                parts.append(f"p99 {x:.2f}× node's {'✓' if x <= 0.5 else '✗'}")
            if tcp and tcp["p99"]:
                parts.append(f"p99 {v['p99'] / tcp['p99']:.2f}× tcp's")
    return ", ".join(p for p in parts if p)
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = ["# Chat fan-out: sockit chat serve (TCP and WebSocket) vs ncat --chat and Node's ws", "",
         f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}. "
         f"Server pinned to CPU 0 (`taskset -c 0`), load generator to CPU 1; {runs} runs per point, "
         "medians (deliveries/s min–max in brackets); error counters are the worst run. "
         "10 senders in one room of N clients; every client checks every other sender's lines.", "",
         "Servers:", "", "    taskset -c 0 target/release/sockit chat serve --port 17771 --rate 0 --history 0 --max-clients 20000",
         "    taskset -c 0 ncat -k --chat -m 10000 -l 127.0.0.1 17772",
         f"    taskset -c 0 node bench/ws-node/broadcast.js 17773    # node {node_version}, ws {ws_version}: the broadcast example of ws's README", "",
         "Load: `taskset -c 1 target/release/sockit bench chat 127.0.0.1:PORT --clients N --senders 10 …` "
         f"(flat out: `--rate 0 --messages M`, M chosen for about {int(flat_deliveries):,} deliveries; "
         f"paced: `--rate 1000 --messages {paced_messages}`, 100 lines/s per sender); "
         "WebSocket clients of sockit with `--ws` (JSON `say` out, `message` events in), of Node with `--ws-raw` "
         "(each line one text frame). sockit's WebSocket and Node's runs alternate.", "",
         "Targets for sockit's WebSocket side: flat out ≥ 2× Node's deliveries/s and ≥ 0.6× sockit's own TCP figure; "
         "paced p99 ≤ 0.5× Node's (✓ met, ✗ not).", ""]
for mode, title in (("flat", "Flat out"), ("paced", "Paced, 100 lines/s per sender")):
    lines += [f"## {title}", "", "| N | server, clients | deliveries/s | p50 ms | p99 ms | lost | dup | reordered | malformed | dropped clients | compared |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    ns = sorted({k[1] for k in groups if k[0] == mode})
    for n in ns:
        for kind in ("sockit", "ncat", "sockit-ws", "node-ws"):
            if (mode, n, kind) not in groups:
                continue
            v = summary(groups[(mode, n, kind)])
            if v is None:
                lines.append(f"| {n} | {NAMES[kind]} | failed | | | | | | | | |")
                continue
            lines.append(f"| {n} | {NAMES[kind]} | {v['rate']:,.0f} ({v['lo']:,.0f}–{v['hi']:,.0f}) | {v['p50']:.2f} | {v['p99']:.2f} | "
                         f"{v['lost']} | {v['dup']} | {v['reord']} | {v['mal']} | {v['disc']} | {ratio(mode, n, kind, v)} |")
    lines.append("")
lines += ["Memory per idle client (TCP and WebSocket): `bench/chat-idle.sh`, in `bench/results/chat-idle.md`.", "",
          "Exact bench commands of the first run of each point:", ""]
seen = set()
for r in rows:
    if (r["mode"], r["n"], r["kind"]) in seen:
        continue
    seen.add((r["mode"], r["n"], r["kind"]))
    lines.append(f"    {r['cmd']}    # {r['kind']}")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

if [[ $IDLE != 0 ]]; then bench/chat-idle.sh; fi
