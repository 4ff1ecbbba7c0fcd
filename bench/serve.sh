#!/usr/bin/env bash
# Benchmark `sockit serve` against nginx and `python3 -m http.server` on this machine, in one
# run: server pinned to core 0, load pinned to core 1, a 13-byte and a 100 KiB file,
# interleaved rounds (each round runs every server on both files, in turn); medians, min–max,
# ratios to nginx with the tie verdict, the host's steal time. HTTP/1.1 with wrk (64 keep-alive connections), and HTTP/2 with h2load (64
# connections, 10 streams each) against sockit and nginx over TLS (ALPN h2, the same
# self-signed certificate) and over cleartext with prior knowledge, all interleaved in the
# same pass; then the memory of 10 000 idle keep-alive connections. Loopback only; every
# loop is bounded. Writes bench/results/serve.md.
#
#   bench/serve.sh                 # ROUNDS=7 DURATION=5s by default (RUNS= is the old name)
#   ROUNDS=9 DURATION=10s bench/serve.sh
#   MODE=idle bench/serve.sh       # only the idle-connection memory of sockit, no table file
#   SERVE_ARGS="--threads 1" bench/serve.sh   # extra options for `sockit serve`
#   SOCKIT=target/debug/sockit OUT=/tmp/serve.md ROUNDS=1 DURATION=1s IDLE_CONNS=100 bench/serve.sh
#   SERVERS="sockit nginx" FLUSH_TCP_METRICS=0 bench/serve.sh   # two servers; runs share the kernel's TCP metrics
#                                  # smoke test of the script itself: no release build
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-${RUNS:-7}}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
IDLE_CONNS=${IDLE_CONNS:-10000}
MODE=${MODE:-all}
SERVE_ARGS=${SERVE_ARGS:-}
OUT=${OUT:-bench/results/serve.md}
mkdir -p "$(dirname "$OUT")"

ensure_tools wrk=wrk h2load=nghttp2-client openssl=openssl nginx=nginx-light taskset=util-linux \
    python3=python3

# 10 000 client sockets here plus as many in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 512)) ]; then
    IDLE_CONNS=$(($(ulimit -n) - 512))
    echo "open file limit $(ulimit -n): idle check uses $IDLE_CONNS connections" >&2
fi

if [ -z "${SOCKIT:-}" ]; then
    cargo build --release --quiet
    SOCKIT=$PWD/target/release/sockit
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/www" "$WORK/nginx"
chmod 755 "$WORK" "$WORK/www"   # nginx workers run as an unprivileged user
printf 'hello world!\n' >"$WORK/www/small.txt"          # 13 bytes
head -c 102400 /dev/urandom >"$WORK/www/100k.bin"        # 100 KiB
chmod 644 "$WORK/www/"*

wait_port() { # bounded: 10 s
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    return 1
}

# One self-signed certificate for both TLS servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

SOCKIT_PORT=$(free_port)
# shellcheck disable=SC2086 # SERVE_ARGS is a list of options
taskset -c 0 "$SOCKIT" serve "$WORK/www" --port "$SOCKIT_PORT" --quiet \
    --header-timeout 300s --idle-timeout 300s --max-conns 20000 $SERVE_ARGS 2>"$WORK/sockit.err" &
SOCKIT_PID=$!
PIDS+=("$SOCKIT_PID")

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
nginx_worker() { awk '{print $1}' "/proc/$NGINX_PID/task/$NGINX_PID/children"; }

# Opens N keep-alive connections, one request each, then holds them while RSS is read.
idle_check() { # port pid mode(request|silent) -> "rss_before_kib rss_after_kib request_ms"
    local port=$1 pid=$2 mode=$3 before
    before=$(rss_kib "$pid")
    timeout 120 python3 - "$port" "$IDLE_CONNS" "$pid" "$before" "$mode" <<'PY'
import socket, sys, time
port, n, pid, before, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
req = b"GET /small.txt HTTP/1.1\r\nHost: bench\r\n\r\n"
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if mode == "request":
        s.sendall(req)
    socks.append(s)
if mode == "request":
    for s in socks:
        s.recv(4096)
time.sleep(1)
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0]
t = time.monotonic()
c = socket.create_connection(("127.0.0.1", port), timeout=10)
c.sendall(b"GET /small.txt HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
while c.recv(4096):
    pass
ms = (time.monotonic() - t) * 1000
print(before, rss, f"{ms:.1f}")
PY
}

if [ "$MODE" = idle ]; then
    wait_port "$SOCKIT_PORT"
    read -r SS_BEFORE SS_AFTER SS_MS < <(idle_check "$SOCKIT_PORT" "$SOCKIT_PID" silent)
    sleep 2
    read -r S_BEFORE S_AFTER S_MS < <(idle_check "$SOCKIT_PORT" "$SOCKIT_PID" request)
    awk -v n="$IDLE_CONNS" -v b="$SS_BEFORE" -v a="$SS_AFTER" -v m="$SS_MS" 'BEGIN { printf "sockit, %d silent connections: RSS %.1f -> %.1f MiB, one more request %s ms\n", n, b/1024, a/1024, m }'
    awk -v n="$IDLE_CONNS" -v b="$S_BEFORE" -v a="$S_AFTER" -v m="$S_MS" 'BEGIN { printf "sockit, %d connections after one request: RSS %.1f -> %.1f MiB, one more request %s ms\n", n, b/1024, a/1024, m }'
    exit 0
fi

SOCKIT_TLS_PORT=$(free_port)
# shellcheck disable=SC2086 # SERVE_ARGS is a list of options
taskset -c 0 "$SOCKIT" serve "$WORK/www" --port "$SOCKIT_TLS_PORT" --quiet \
    --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
    --header-timeout 300s --idle-timeout 300s --max-conns 20000 $SERVE_ARGS 2>"$WORK/sockit-tls.err" &
SOCKIT_TLS_PID=$!
PIDS+=("$SOCKIT_TLS_PID")

NGINX_PORT=$(free_port)
NGINX_H2C_PORT=$(free_port)
NGINX_TLS_PORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 20000; }
http {
    include /etc/nginx/mime.types;
    sendfile on;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    http2_max_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
    }
    server {
        listen 127.0.0.1:$NGINX_H2C_PORT http2;
        root $WORK/www;
    }
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        root $WORK/www;
    }
}
EOF
taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx.err" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

PYTHON_PORT=$(free_port)
taskset -c 0 python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$PYTHON_PORT" \
    >/dev/null 2>&1 &
PYTHON_PID=$!
PIDS+=("$PYTHON_PID")

wait_port "$SOCKIT_PORT"
wait_port "$SOCKIT_TLS_PORT"
wait_port "$NGINX_PORT"
wait_port "$NGINX_H2C_PORT"
wait_port "$NGINX_TLS_PORT"
wait_port "$PYTHON_PORT"

# One wrk run: prints "requests_per_second p99_ms".
run_wrk() {
    local out
    out=$(timeout 60 taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$1")
    local rps p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' <<<"$out")
    echo "${rps:-0} ${p99:-0}"
}

# One h2load run (HTTP/2, CONNS connections of STREAMS streams each): prints
# "requests_per_second p99_ms"; p99 from its per-request log.
run_h2load() {
    local out log="$WORK/h2load.log"
    rm -f "$log"
    out=$(timeout 60 taskset -c 1 h2load -t1 -c"$CONNS" -m"$STREAMS" -D"${DURATION%s}" \
        --log-file="$log" "$1")
    local rps p99
    rps=$(awk '/^finished in/ {for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s/) print $i}' <<<"$out")
    p99=$(awk -F'\t' '{print $3 / 1000}' "$log" 2>/dev/null | sort -g |
        awk '{a[NR] = $1} END {if (NR) print a[int(NR * 0.99 + 0.999)]; else print 0}')
    echo "${rps:-0} ${p99:-0}"
}

# One run against `server` (a row of the table): prints "requests_per_second p99_ms".
run_load() {
    case $1 in
        *-h2*) run_h2load "$2" ;;
        *) run_wrk "$2" ;;
    esac
}

# CPU time a process has used, in clock ticks (user + system, every thread).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
SECONDS_PER_RUN=${DURATION%s}

# The rows: HTTP/1.1 (wrk), then HTTP/2 with prior knowledge (h2c) and over TLS (h2load).
SERVERS=${SERVERS:-"sockit nginx python sockit-h2c nginx-h2c sockit-h2tls nginx-h2tls"}

pid_of() {
    case $1 in
        sockit | sockit-h2c) echo "$SOCKIT_PID" ;;
        sockit-h2tls) echo "$SOCKIT_TLS_PID" ;;
        nginx*) nginx_worker ;;
        python) echo "$PYTHON_PID" ;;
    esac
}

url_of() { # server file
    case $1 in
        sockit | sockit-h2c) echo "http://127.0.0.1:$SOCKIT_PORT/$2" ;;
        sockit-h2tls) echo "https://127.0.0.1:$SOCKIT_TLS_PORT/$2" ;;
        nginx) echo "http://127.0.0.1:$NGINX_PORT/$2" ;;
        nginx-h2c) echo "http://127.0.0.1:$NGINX_H2C_PORT/$2" ;;
        nginx-h2tls) echo "https://127.0.0.1:$NGINX_TLS_PORT/$2" ;;
        python) echo "http://127.0.0.1:$PYTHON_PORT/$2" ;;
    esac
}

# The nginx row a row compares with: the same protocol.
nginx_of() {
    case $1 in
        *-h2c) echo nginx-h2c ;;
        *-h2tls) echo nginx-h2tls ;;
        *) echo nginx ;;
    esac
}

curl_option() {
    case $1 in
        *-h2c) echo --http2-prior-knowledge ;;
        *-h2tls) echo --http2 ;;
        *) echo --http1.1 ;;
    esac
}

# Runs are interleaved (sockit, nginx, python, sockit, …) so that load from elsewhere on the
# machine falls on every server alike.
# Besides requests/s, each run records the server's CPU time per request: when wrk, not the
# server, is the one at 100% (100 KiB), this shows what each server itself spends.
# Every run also goes to $WORK/runs as "file server rps p99_ms cpu_us" for the table.
declare -A RPS_RUNS P99_RUNS CPU_RUNS
for file in small.txt 100k.bin; do
    for server in $SERVERS; do
        url=$(url_of "$server" $file)
        curl -ksf "$(curl_option "$server")" -o /dev/null "$url" ||
            { echo "$server does not serve $url" >&2; exit 1; }
        RPS_RUNS[$server/$file]="" P99_RUNS[$server/$file]="" CPU_RUNS[$server/$file]=""
    done
done
: >"$WORK/runs"
steal_begin
for run in $(seq "$ROUNDS"); do
    for file in small.txt 100k.bin; do
        for server in $SERVERS; do
            pid=$(pid_of "$server")
            # The kernel keeps TCP metrics (RTT, reordering, ssthresh) per address pair, and
            # every server here is on 127.0.0.1: without this, one server's runs would start
            # from what the one before left. Needs root; without it the runs share them.
            [[ ${FLUSH_TCP_METRICS:-1} == 0 ]] || ip tcp_metrics flush all 2>/dev/null || true
            ticks=$(cpu_ticks "$pid")
            read -r rps p99 < <(run_load "$server" "$(url_of "$server" $file)")
            cpu=$(awk -v t="$(($(cpu_ticks "$pid") - ticks))" -v us="$TICK_US" -v r="$rps" -v s="$SECONDS_PER_RUN" \
                'BEGIN { if (r > 0) printf "%.1f", t * us / (r * s); else print 0 }')
            RPS_RUNS[$server/$file]+="$rps "
            P99_RUNS[$server/$file]+="$p99 "
            CPU_RUNS[$server/$file]+="$cpu "
            echo "$file $server $rps $p99 $cpu" >>"$WORK/runs"
            echo "round $run $server $file: $rps req/s, p99 $p99 ms, server CPU $cpu us/request" >&2
        done
    done
done
STEAL_PCT=$(steal_pct)

# The table: median (min–max) of each figure, ratios to nginx on the same protocol with the
# tie verdict; the sentence on the rounds and steal time into $WORK/method.
# shellcheck disable=SC2086 # one argument per server
python3 - "$WORK/runs" "$ROUNDS" "$STEAL_PCT" "$WORK/method" $SERVERS >"$WORK/table" <<'PY'
import sys
sys.path.insert(0, "bench")
import stats
runs, rounds, steal, method, *servers = sys.argv[1:]
rps, p99, cpu = {}, {}, {}
for line in open(runs):
    file, server, r, p, c = line.split()
    rps.setdefault((file, server), []).append(float(r))
    p99.setdefault((file, server), []).append(float(p))
    cpu.setdefault((file, server), []).append(float(c))
def nginx_of(server):
    return "nginx-h2c" if server.endswith("-h2c") else "nginx-h2tls" if server.endswith("-h2tls") else "nginx"
print("| file | server | requests/s | p99 (ms) | vs nginx (req/s) | vs nginx (p99) | server CPU per request (µs) |")
print("|---|---|---:|---:|---:|---:|---:|")
for file, label in (("small.txt", "13 B"), ("100k.bin", "100 KiB")):
    for server in servers:
        key, base = (file, server), (file, nginx_of(server))
        print(f"| {label} | {server} | {stats.cell(rps.get(key, []), 0)} | {stats.cell(p99.get(key, []), 2)} | "
              f"{stats.ratio(rps.get(key, []), rps.get(base, []))} | {stats.ratio(p99.get(key, []), p99.get(base, []))} | "
              f"{stats.cell(cpu.get(key, []), 1)} |")
open(method, "w").write(stats.steal_line(steal, rounds) + "\n")
PY
# The spread of one server's p99 over the runs, "min to max".
p99_spread() { tr ' ' '\n' <<<"${P99_RUNS[$1]}" | grep . | sort -g | awk 'NR == 1 {a = $1} {b = $1} END {print a " to " b}'; }

# Silent ones first: memory freed by closed connections would otherwise be reused.
read -r SS_BEFORE SS_AFTER SS_MS < <(idle_check "$SOCKIT_PORT" "$SOCKIT_PID" silent)
read -r NS_BEFORE NS_AFTER NS_MS < <(idle_check "$NGINX_PORT" "$(nginx_worker)" silent)
sleep 2 # let both servers see those connections close
read -r S_BEFORE S_AFTER S_MS < <(idle_check "$SOCKIT_PORT" "$SOCKIT_PID" request)
read -r N_BEFORE N_AFTER N_MS < <(idle_check "$NGINX_PORT" "$(nginx_worker)" request)

{
    echo "# sockit serve: benchmark"
    echo
    echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))."
    echo "Server pinned to core 0, load to core 1; $CONNS keep-alive connections (HTTP/1.1: wrk; HTTP/2: h2load with $STREAMS streams per connection); runs of $DURATION."
    echo "Rows: \`sockit\`, \`nginx\`, \`python\` speak HTTP/1.1; \`-h2c\` is HTTP/2 with prior knowledge on cleartext, \`-h2tls\` HTTP/2 over TLS (ALPN h2, the same self-signed P-256 certificate)."
    echo "Load average when the run ended: $(cut -d' ' -f1-3 /proc/loadavg) ($IDLE_CONNS idle connections were just opened and closed; absolute figures move between machines, so compare within the table)."
    cat "$WORK/method"
    echo
    echo "Every run (requests/s):"
    echo
    for file in small.txt 100k.bin; do
        for server in $SERVERS; do
            echo "- $server $file: ${RPS_RUNS[$server/$file]}"
        done
    done
    echo
    echo "Every run (p99 ms), and in how many rounds sockit's p99 was at most nginx's (the two run"
    echo "back to back in each round):"
    echo
    for file in small.txt 100k.bin; do
        for ours in sockit sockit-h2c sockit-h2tls; do
            theirs=$(nginx_of $ours)
            [[ " $SERVERS " == *" $ours "* && " $SERVERS " == *" $theirs "* ]] || continue
            echo "- $ours $file: ${P99_RUNS[$ours/$file]}"
            echo "- $theirs $file: ${P99_RUNS[$theirs/$file]}"
            wins=$(paste <(tr ' ' '\n' <<<"${P99_RUNS[$ours/$file]}" | grep .) \
                <(tr ' ' '\n' <<<"${P99_RUNS[$theirs/$file]}" | grep .) | awk '$1 <= $2 {n++} END {print n+0}')
            echo "- $file: $ours's p99 at most $theirs's in $wins of $ROUNDS rounds"
        done
    done
    echo
    cat "$WORK/table"
    echo
    echo "$IDLE_CONNS idle connections: keep-alive ones after one request each, and silent ones that never sent a byte:"
    echo
    echo "| server | connections | RSS before (MiB) | RSS with them open (MiB) | one more request (ms) |"
    echo "|---|---|---:|---:|---:|"
    awk -v b="$S_BEFORE" -v a="$S_AFTER" -v m="$S_MS" 'BEGIN { printf "| sockit | after one request | %.1f | %.1f | %s |\n", b/1024, a/1024, m }'
    awk -v b="$N_BEFORE" -v a="$N_AFTER" -v m="$N_MS" 'BEGIN { printf "| nginx (worker) | after one request | %.1f | %.1f | %s |\n", b/1024, a/1024, m }'
    awk -v b="$SS_BEFORE" -v a="$SS_AFTER" -v m="$SS_MS" 'BEGIN { printf "| sockit | silent | %.1f | %.1f | %s |\n", b/1024, a/1024, m }'
    awk -v b="$NS_BEFORE" -v a="$NS_AFTER" -v m="$NS_MS" 'BEGIN { printf "| nginx (worker) | silent | %.1f | %.1f | %s |\n", b/1024, a/1024, m }'
    echo
    echo "Notes:"
    echo
    echo "- 100 KiB: both servers hand the file to the kernel with sendfile (no copy into the"
    echo "  socket). sockit sends the response head with MSG_MORE so head and body share a"
    echo "  segment; nginx (tcp_nopush off) sends the head in a segment of its own. Here wrk, not"
    echo "  the server, is at 100% of its core, so the server CPU column is the steadier figure,"
    echo "  and p99 moves with wrk's own batching and the host's steal time (sockit $(p99_spread sockit/100k.bin) ms,"
    echo "  nginx $(p99_spread nginx/100k.bin) ms from run to run): the round-by-round count above"
    echo "  says more than one median."
    echo "- Idle connections: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer per"
    echo "  connection while it serves it; a connection is handed to hyper only when a request"
    echo "  starts and handed back once it has been quiet for 50 ms (at once while more than"
    echo "  1,024 connections hold a session), so idle ones cost far less."
    echo
    echo "Commands:"
    echo
    echo '```sh'
    echo "taskset -c 0 target/release/sockit serve WWW --port P --quiet --header-timeout 300s --idle-timeout 300s --max-conns 20000"
    echo "taskset -c 0 nginx -c nginx.conf   # worker_processes 1; sendfile on; access_log off; keepalive_requests 1000000"
    echo "taskset -c 0 python3 -m http.server --bind 127.0.0.1 --directory WWW P"
    echo "taskset -c 1 wrk -t1 -c$CONNS -d$DURATION --latency http://127.0.0.1:P/small.txt   # and /100k.bin"
    echo "taskset -c 0 target/release/sockit serve WWW --port P2 --cert cert.pem --key key.pem ...   # HTTP/2 over TLS"
    echo "# nginx: listen P3 http2; (prior knowledge) and listen P4 ssl http2; with the same certificate"
    echo "taskset -c 1 h2load -t1 -c$CONNS -m$STREAMS -D${DURATION%s} --log-file=LOG http://127.0.0.1:P/small.txt   # and https://…:P2/, nginx alike"
    echo '```'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
