#!/usr/bin/env bash
# Chat fan-out: `sockit chat serve` vs `ncat -k --chat`, measured with `sockit bench chat`.
#
# Server pinned to CPU 0, load generator to CPU 1; 10 senders; flat out and paced
# (100 lines/s per sender); medians of RUNS runs (error counters: worst run). Also the
# resident memory of sockit per idle client at 10 000 clients.
# Writes bench/results/chat.md. Loopback only; every run is bounded (--limit, timeout).
#
#   bench/chat.sh                 # full run (a few minutes)
#   RUNS=1 NS="10 100" bench/chat.sh   # quick look
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
NS=${NS:-"10 100 500 1000 5000"}
NCAT_NS=${NCAT_NS:-"10 100 500"}
SENDERS=10
PACED_RATE=100   # lines/s per sender (bench chat --rate takes the total)
PACED_MESSAGES=300
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
OUT=bench/results/chat.md
SOCKIT=target/release/sockit
SOCKIT_PORT=17771
NCAT_PORT=17772

command -v ncat >/dev/null || sudo apt-get install -y ncat || apt-get install -y ncat
cargo build --release --quiet
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Lines per sender for a flat-out run: about 10 M deliveries whatever N is.
flat_messages() { local n=$1; local m=$((10000000 / (SENDERS * (n - 1)))); ((m > 20000)) && m=20000; ((m < 100)) && m=100; echo $m; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() { [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

start_server() { # kind
    case $1 in
    sockit) taskset -c 0 "$SOCKIT" chat serve --port $SOCKIT_PORT --rate 0 --history 0 --max-clients 20000 2>"$TMP/server.log" &
        SERVER_PID=$!; PORT=$SOCKIT_PORT ;;
    ncat) taskset -c 0 ncat -k --chat -m 10000 -l 127.0.0.1 $NCAT_PORT </dev/null >/dev/null 2>"$TMP/server.log" &
        SERVER_PID=$!; PORT=$NCAT_PORT ;;
    esac
    wait_port "$PORT"
}

stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; sleep 0.3; }

# One measured run: kind n mode -> a JSON line in $TMP/results
one_run() {
    local kind=$1 n=$2 mode=$3 args
    if [[ $mode == flat ]]; then args="--messages $(flat_messages "$n") --rate 0"
    else args="--messages $PACED_MESSAGES --rate $((PACED_RATE * SENDERS))"; fi
    start_server "$kind"
    local json
    json=$(timeout 120 taskset -c 1 "$SOCKIT" bench chat "127.0.0.1:$PORT" --clients "$n" --senders $SENDERS $args --limit 60s --json 2>"$TMP/bench.err") || true
    # Exit 1 with a report means the server lost, duplicated or reordered lines: the report
    # is the result (ncat's losses are counted, not hidden). No report: the run failed.
    python3 -c 'import json,sys; json.loads(sys.argv[1])' "$json" 2>/dev/null || json=""
    stop_server
    if [[ -z $json ]]; then json="{\"failed\": $(python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()[-200:]))' <"$TMP/bench.err")}"; fi
    echo "{\"kind\":\"$kind\",\"n\":$n,\"mode\":\"$mode\",\"cmd\":\"sockit bench chat 127.0.0.1:$PORT --clients $n --senders $SENDERS $args\",\"r\":$json}" >>"$TMP/results"
    echo "  $kind N=$n $mode: $(echo "$json" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get("failed") or "%.0f deliveries/s p99 %.2f ms lost %s" % (r["ops_per_sec"], (r["latency"] or {}).get("p99_ms", 0), dict(r["counters"])["lost"]))')" >&2
}

echo "chat benchmark: $RUNS runs per point" >&2
for mode in flat paced; do
    for n in $NS; do
        for _ in $(seq "$RUNS"); do one_run sockit "$n" $mode; done
    done
    for n in $NCAT_NS; do
        for _ in $(seq "$RUNS"); do one_run ncat "$n" $mode; done
    done
done

# Idle memory: RSS of the sockit server with IDLE_CLIENTS connected clients that send nothing.
start_server sockit
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
sleep 0.5
RSS_BEFORE=$(rss_kib)
timeout 120 taskset -c 1 python3 - "$SOCKIT_PORT" "$IDLE_CLIENTS" "$SERVER_PID" >"$TMP/idle" <<'PY'
import socket, sys, time
port, count, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for i in range(count):
    conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
time.sleep(2)  # let the server settle every session
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]
alive = sum(1 for c in conns if c.fileno() >= 0)
print(rss, alive)
PY
read -r RSS_AFTER ALIVE <"$TMP/idle"
stop_server

python3 - "$TMP/results" "$OUT" "$RUNS" "$RSS_BEFORE" "$RSS_AFTER" "$IDLE_CLIENTS" <<'PY'
import json, statistics, sys, os, platform, subprocess
path, out, runs, rss0, rss1, idle = sys.argv[1:]
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
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = ["# Chat fan-out: sockit chat serve vs ncat --chat", "",
         f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}. "
         f"Server pinned to CPU 0 (`taskset -c 0`), load generator to CPU 1; {runs} runs per point, "
         "medians (deliveries/s min–max in brackets); error counters are the worst run. "
         "10 senders in one room of N clients; every client checks every other sender's lines.", "",
         "Servers:", "", "    taskset -c 0 target/release/sockit chat serve --port 17771 --rate 0 --history 0 --max-clients 20000",
         "    taskset -c 0 ncat -k --chat -m 10000 -l 127.0.0.1 17772", "",
         "Load: `taskset -c 1 target/release/sockit bench chat 127.0.0.1:PORT --clients N --senders 10 …` "
         "(flat out: `--rate 0 --messages M`, M chosen for about 10 M deliveries; paced: `--rate 100 --messages 300`).", ""]
for mode, title in (("flat", "Flat out"), ("paced", "Paced, 100 lines/s per sender")):
    lines += [f"## {title}", "", "| N | server | deliveries/s | p50 ms | p99 ms | lost | dup | reordered | malformed | dropped clients | vs ncat |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ns = sorted({k[1] for k in groups if k[0] == mode})
    for n in ns:
        s = summary(groups.get((mode, n, "sockit"), [])) if (mode, n, "sockit") in groups else None
        nc = summary(groups.get((mode, n, "ncat"), [])) if (mode, n, "ncat") in groups else None
        for kind, v in (("sockit", s), ("ncat", nc)):
            if (mode, n, kind) not in groups:
                continue
            if v is None:
                lines.append(f"| {n} | {kind} | failed | | | | | | | | |")
                continue
            ratio = ""
            if kind == "sockit" and nc:
                ratio = f"{v['rate'] / nc['rate']:.2f}× rate" if mode == "flat" else f"{v['p99'] / nc['p99']:.2f}× p99" if nc['p99'] else ""
            lines.append(f"| {n} | {kind} | {v['rate']:,.0f} ({v['lo']:,.0f}–{v['hi']:,.0f}) | {v['p50']:.2f} | {v['p99']:.2f} | "
                         f"{v['lost']} | {v['dup']} | {v['reord']} | {v['mal']} | {v['disc']} | {ratio} |")
    lines.append("")
per_client = (int(rss1) - int(rss0)) / int(idle)
lines += ["## Idle clients", "",
          f"sockit chat serve with {idle} connected idle clients (one room): RSS {int(rss0)/1024:.1f} MiB before, "
          f"{int(rss1)/1024:.1f} MiB after: **{per_client:.1f} KiB per idle client** (target ≤ 20 KiB). "
          "ncat --chat is select()-based and cannot hold more than about 1 000 clients.", "",
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
