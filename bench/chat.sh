#!/usr/bin/env bash
# Chat fan-out, measured with `sockit bench chat`, side by side in one run:
#   - `sockit chat serve` with TCP line clients, against `ncat -k --chat`;
#   - the same sockit server with WebSocket clients (`--ws`, browsers on /ws), against the
#     broadcast example of Node's `ws` package (bench/ws-node/broadcast.js, `--ws-raw`).
#
# Server pinned to CPU 0, load generator to CPU 1; 10 senders; flat out and paced
# (100 lines/s per sender). Interleaved rounds: each round runs every point (mode, N) with
# every server measured there, in turn (sockit TCP, ncat, sockit WebSocket, Node); medians,
# min–max, ratios with the tie verdict (error counters: worst run), the host's steal time.
# Each run also gives the CPU time of the server process (`--server-pid`, /proc/PID/stat) and
# of the generator over the measured part, so the table says which side was the limit.
# Then the memory per idle client (bench/chat-idle.sh) unless IDLE=0.
# Writes bench/results/chat.md (or $OUT). Loopback only; every run is bounded (--limit, timeout).
#
#   bench/chat.sh                                  # full run, ROUNDS=7 (many minutes; RUNS= is the old name)
#   ROUNDS=1 NS="10 100" WS_NS=100 IDLE=0 bench/chat.sh   # quick look
#   SOCKIT=/path/to/sockit ROUNDS=2 NS=10 NCAT_NS=10 WS_NS=10 FLAT_DELIVERIES=20000 \
#     PACED_MESSAGES=20 IDLE=0 OUT=/tmp/chat.md bench/chat.sh   # a smoke run: no release build
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-${RUNS:-7}}
NS=${NS:-"10 100 500 1000 5000"}
NCAT_NS=${NCAT_NS:-"10 100 500"}
WS_NS=${WS_NS-"100 500 1000"}   # WS_NS= (empty): no WebSocket rows
SENDERS=10
PACED_RATE=100   # lines/s per sender (bench chat --rate takes the total)
PACED_MESSAGES=${PACED_MESSAGES:-300}
FLAT_DELIVERIES=${FLAT_DELIVERIES:-10000000}
LIMIT=${LIMIT:-60s}
IDLE=${IDLE:-1}
OUT=${OUT:-bench/results/chat.md}
SOCKIT_PORT=17771
NCAT_PORT=17772
NODE_PORT=17773

ensure_tools ncat=ncat node=nodejs npm=npm
[[ -f bench/ws-node/node_modules/ws/package.json ]] ||
    npm ci --prefix bench/ws-node --no-audit --no-fund >&2
SOCKIT=${SOCKIT:-$(cargo_release)}
SOCKIT=$(realpath "$SOCKIT")
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Lines per sender for a flat-out run: about FLAT_DELIVERIES deliveries whatever N is.
flat_messages() { local n=$1; local m=$((FLAT_DELIVERIES / (SENDERS * (n - 1)))); ((m > 20000)) && m=20000; ((m < 100)) && m=100; echo $m; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() { [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# SERVER_PID is the server's own process (exec: no shell left between), whose CPU time the
# generator reads (--server-pid) and which stop_server stops.
start_server() { # kind
    case $1 in
    sockit | sockit-ws) (exec taskset -c 0 "$SOCKIT" chat serve --port $SOCKIT_PORT --rate 0 --history 0 --max-clients 20000 2>"$TMP/server.log") &
        SERVER_PID=$!; PORT=$SOCKIT_PORT ;;
    ncat) (exec taskset -c 0 ncat -k --chat -m 10000 -l 127.0.0.1 $NCAT_PORT </dev/null >/dev/null 2>"$TMP/server.log") &
        SERVER_PID=$!; PORT=$NCAT_PORT ;;
    node-ws) (exec taskset -c 0 node bench/ws-node/broadcast.js $NODE_PORT 2>"$TMP/server.log") &
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
    json=$(timeout 120 taskset -c 1 "$SOCKIT" bench chat "127.0.0.1:$PORT" --clients "$n" --senders $SENDERS $args --limit "$LIMIT" --server-pid "$SERVER_PID" --json 2>"$TMP/bench.err") || true
    # Exit 1 with a report means the server lost, duplicated or reordered lines: the report
    # is the result (ncat's losses are counted, not hidden). No report: the run failed.
    stop_server
    json=$(chat_result "$json" "$TMP/bench.err")
    echo "{\"kind\":\"$kind\",\"n\":$n,\"mode\":\"$mode\",\"cmd\":\"sockit bench chat 127.0.0.1:$PORT --clients $n --senders $SENDERS ${args% } --server-pid PID\",\"r\":$json}" >>"$TMP/results"
    echo "  $kind N=$n $mode: $(chat_summary "$json")" >&2
}

# kinds_at N: the servers measured with N clients.
kinds_at() {
    local n=$1 kinds=()
    [[ " $NS " == *" $n "* ]] && kinds+=(sockit)
    [[ " $NCAT_NS " == *" $n "* ]] && kinds+=(ncat)
    [[ " $WS_NS " == *" $n "* ]] && kinds+=(sockit-ws node-ws)
    echo "${kinds[*]}"
}
# shellcheck disable=SC2086 # lists of numbers, split on purpose
ALL_NS=$(printf '%s\n' $NS $NCAT_NS $WS_NS | sort -n -u)

echo "chat benchmark: $ROUNDS interleaved rounds" >&2
steal_begin
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for mode in flat paced; do
        for n in $ALL_NS; do
            for kind in $(kinds_at "$n"); do one_run "$kind" "$n" $mode; done
        done
    done
done
STEAL=$(steal_pct)

python3 - "$TMP/results" "$OUT" "$ROUNDS" "$STEAL" "$(node --version)" "$(node -p 'require("./bench/ws-node/node_modules/ws/package.json").version')" "$FLAT_DELIVERIES" "$PACED_MESSAGES" <<'PY'
import json, statistics, sys, os, platform, subprocess
sys.path.insert(0, "bench")
import stats
path, out, runs, steal, node_version, ws_version, flat_deliveries, paced_messages = sys.argv[1:]
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
    p99s = [(r["latency"] or {}).get("p99_ms", 0) for r in ok]
    cpu = [r.get("cpu") or {} for r in ok]
    # Server CPU per million deliveries in ms (= ns per delivery); shares of one core.
    server_ms = [c["server_seconds"] * 1e9 / r["ops"] if c.get("server_seconds") is not None and r["ops"] else None
                 for c, r in zip(cpu, ok)]
    server_share = [c.get("server_share") for c in cpu]
    gen_share = [c.get("generator_share") for c in cpu]
    return dict(rate=statistics.median(rates), rates=rates, p99s=p99s, p50=lat("p50_ms"), p99=lat("p99_ms"),
                server_ms=server_ms, server_share=stats.median(server_share), gen_share=stats.median(gen_share),
                lost=c("lost"), dup=c("duplicated"), reord=c("reordered"), mal=c("malformed"),
                disc=c("disconnected"), expected=c("expected"), failed=len(rs) - len(ok), cmd=rs[0]["cmd"])
NAMES = {"sockit": "sockit, TCP", "ncat": "ncat, TCP", "sockit-ws": "sockit, WebSocket", "node-ws": "node ws, WebSocket"}
def ratio(mode, n, kind, v):
    """The comparisons the targets are about, with ✓ when met."""
    get = lambda k: summary(groups[(mode, n, k)]) if (mode, n, k) in groups else None
    parts = []
    if kind == "sockit" and (nc := get("ncat")):
        x = v["rate"] / nc["rate"] if nc["rate"] else 0
        parts.append(f"{stats.ratio(v['rates'], nc['rates'])} ncat's rate {'✓' if x >= 1.5 else '✗'}" if mode == "flat"
                     else f"p99 {stats.ratio(v['p99s'], nc['p99s'])} ncat's" if nc["p99"] else "")
    if kind == "sockit-ws":
        node, tcp = get("node-ws"), get("sockit")
        if mode == "flat":
            if node and node["rate"]:
                x = v["rate"] / node["rate"]
                parts.append(f"{stats.ratio(v['rates'], node['rates'])} node {'✓' if x >= 2 else '✗'}")
            if tcp and tcp["rate"]:
                x = v["rate"] / tcp["rate"]
                parts.append(f"{stats.ratio(v['rates'], tcp['rates'])} tcp {'✓' if x >= 0.6 else '✗'}")
        else:
            if node and node["p99"]:
                x = v["p99"] / node["p99"]
                parts.append(f"p99 {stats.ratio(v['p99s'], node['p99s'])} node's {'✓' if x <= 0.5 else '✗'}")
            if tcp and tcp["p99"]:
                parts.append(f"p99 {stats.ratio(v['p99s'], tcp['p99s'])} tcp's")
    return ", ".join(p for p in parts if p)
def share(x):
    return "—" if x is None else f"{x * 100:.0f}%"
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
has_ws = any(k[2] in ("sockit-ws", "node-ws") for k in groups)
title = ("# Chat fan-out: sockit chat serve (TCP and WebSocket) vs ncat --chat and Node's ws" if has_ws
         else "# Chat fan-out over TCP: sockit chat serve vs ncat --chat")
lines = [title, "",
         f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}. "
         f"Server pinned to CPU 0 (`taskset -c 0`), load generator to CPU 1. {stats.steal_line(steal, runs)} "
         "Error counters are the worst run. "
         "10 senders in one room of N clients; every client checks every other sender's lines.", "",
         "Servers:", "", "    taskset -c 0 target/release/sockit chat serve --port 17771 --rate 0 --history 0 --max-clients 20000",
         "    taskset -c 0 ncat -k --chat -m 10000 -l 127.0.0.1 17772",
         f"    taskset -c 0 node bench/ws-node/broadcast.js 17773    # node {node_version}, ws {ws_version}: the broadcast example of ws's README", "",
         "Load: `taskset -c 1 target/release/sockit bench chat 127.0.0.1:PORT --clients N --senders 10 …` "
         f"(flat out: `--rate 0 --messages M`, M chosen for about {int(flat_deliveries):,} deliveries; "
         f"paced: `--rate 1000 --messages {paced_messages}`, 100 lines/s per sender); "
         "WebSocket clients of sockit with `--ws` (JSON `say` out, `message` events in), of Node with `--ws-raw` "
         "(each line one text frame).", "",
         "CPU: the server process's CPU time over the measured part (`--server-pid`, from /proc/PID/stat in "
         "10 ms ticks), per million deliveries (ms per million = ns per delivery), median (min–max); and the "
         "share of its core each side used over that part, server / generator, medians. A side near 100% was "
         "the limit: a generator at about 100% measured itself, not the server, and then the server's CPU per "
         "delivery, not its rate, is the figure to compare (the line under each table).", "",
         "Targets: sockit's TCP side flat out ≥ 1.5× ncat's deliveries/s; its WebSocket side flat out ≥ 2× Node's "
         "deliveries/s and ≥ 0.6× sockit's own TCP figure, paced p99 ≤ 0.5× Node's (✓ met, ✗ not).", ""]
for mode, title in (("flat", "Flat out"), ("paced", "Paced, 100 lines/s per sender")):
    lines += [f"## {title}", "", "| N | server, clients | deliveries/s | p50 ms | p99 ms | lost | dup | reordered | malformed | dropped clients | server CPU ms / M deliveries | CPU share server / generator | compared |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    ns = sorted({k[1] for k in groups if k[0] == mode})
    for n in ns:
        for kind in ("sockit", "ncat", "sockit-ws", "node-ws"):
            if (mode, n, kind) not in groups:
                continue
            v = summary(groups[(mode, n, kind)])
            if v is None:
                lines.append(f"| {n} | {NAMES[kind]} | failed | | | | | | | | | | |")
                continue
            lines.append(f"| {n} | {NAMES[kind]} | {stats.cell(v['rates'], 0)} | {v['p50']:.2f} | {stats.cell(v['p99s'], 2)} | "
                         f"{v['lost']} | {v['dup']} | {v['reord']} | {v['mal']} | {v['disc']} | {stats.cell(v['server_ms'], 1)} | "
                         f"{share(v['server_share'])} / {share(v['gen_share'])} | {ratio(mode, n, kind, v)} |")
    lines.append("")
    cpu_ratios = []
    for n in ns:
        for kind, peer in (("sockit", "ncat"), ("sockit-ws", "node-ws")):
            a, b = (summary(groups[(mode, n, k)]) if (mode, n, k) in groups else None for k in (kind, peer))
            if a and b:
                cpu_ratios.append(f"N = {n}, {NAMES[kind]} / {NAMES[peer]}: {stats.ratio(a['server_ms'], b['server_ms'])}")
    if cpu_ratios:
        lines += ["Server CPU per delivery (lower is better): " + "; ".join(cpu_ratios) + ".", ""]
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
