#!/usr/bin/env bash
# HTTP client benchmark: `sockit get` against curl, both fetching from nginx on loopback.
#   1. a 1 GiB file to /dev/null (throughput)
#   2. a 1 KiB file: whole-process wall time of one small GET (each round's figure: the
#      median of SMALL_RUNS GETs per client, the two clients taking turns GET by GET)
#   3. the 1 GiB file over HTTP/2 and TLS (the same nginx, `listen … ssl http2`, a self-signed
#      certificate): `sockit get --http2 --pin …` against `curl --http2 -k`
# Interleaved rounds: each round runs 1, 2 and 3 with both clients in turn (the first of them
# alternates from round to round); medians, min–max, ratios with the tie verdict and the
# host's steal time. Every run is timed by the script (bash's clock around the process).
# nginx runs on CPU 0 (taskset -c 0), the clients on CPU 1 (taskset -c 1).
# Writes bench/results/http-client.md. Usage: bench/http-client.sh  (from the repo root)
# Knobs: ROUNDS (7; RUNS is the old name), SMALL_RUNS (GETs per client and round, 10),
# BIG_MIB (size of the big file), SOCKIT_BIN or SOCKIT (a built binary instead of a release
# build), OUT (the results file), H2_ONLY=1 (only part 3).
#   SOCKIT=/path/to/sockit ROUNDS=2 SMALL_RUNS=3 BIG_MIB=16 OUT=/tmp/hc.md bench/http-client.sh   # a smoke run
set -euo pipefail

ROUNDS=${ROUNDS:-${RUNS:-7}}
SMALL_RUNS=${SMALL_RUNS:-10}
BIG_MIB=${BIG_MIB:-1024}
H2_ONLY=${H2_ONLY:-0}
cd "$(dirname "$0")/.."
source bench/lib.sh
ROOT=$PWD
OUT=${OUT:-bench/results/http-client.md}

ensure_tools curl=curl nginx=nginx-light taskset=util-linux python3=python3 openssl=openssl bc=bc

SOCKIT=${SOCKIT_BIN:-${SOCKIT:-}}
SOCKIT=$(realpath "${SOCKIT:-$(cargo_release)}")

WORK=$(mktemp -d)
NGINX_PID=
cleanup() {
    if [[ -n $NGINX_PID ]]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/www"
timeout 120 dd if=/dev/urandom of="$WORK/www/big.bin" bs=1M count="$BIG_MIB" status=none
head -c 1024 /dev/urandom >"$WORK/www/small.bin"

# A self-signed certificate for the HTTP/2 server: sockit pins it, curl takes it with -k.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
PIN=sha256:$(openssl x509 -in "$WORK/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)

# nginx on free loopback ports: bind port 0, release it, start nginx there; retry if taken.
for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    TLS_PORT=$(free_port)
    cat >"$WORK/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 256; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy; fastcgi_temp_path $WORK/fcgi;
  uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  server { listen 127.0.0.1:$PORT; root $WORK/www; }
  server {
    listen 127.0.0.1:$TLS_PORT ssl http2; root $WORK/www;
    ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
  }
}
EOF
    taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" &
    NGINX_PID=$!
    for _ in $(seq 100); do
        if curl -sf -o /dev/null "http://127.0.0.1:$PORT/small.bin" &&
            curl -sfk -o /dev/null "https://127.0.0.1:$TLS_PORT/small.bin"; then break 2; fi
        if ! kill -0 "$NGINX_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
    if [[ $attempt == 5 ]]; then cat "$WORK/error.log"; echo "nginx did not start" >&2; exit 1; fi
done

BIG=http://127.0.0.1:$PORT/big.bin
SMALL=http://127.0.0.1:$PORT/small.bin
CURL_BIG="taskset -c 1 curl -s -o /dev/null $BIG"
SOCKIT_BIG="taskset -c 1 $SOCKIT get $BIG -o /dev/null"
CURL_SMALL="taskset -c 1 curl -s -o /dev/null $SMALL"
SOCKIT_SMALL="taskset -c 1 $SOCKIT get $SMALL -o /dev/null"
H2_BIG=https://127.0.0.1:$TLS_PORT/big.bin
CURL_H2="taskset -c 1 curl -s --http2 -k -o /dev/null $H2_BIG"
SOCKIT_H2="taskset -c 1 $SOCKIT get --http2 --pin $PIN $H2_BIG -o /dev/null"
BYTES=$(stat -c %s "$WORK/www/big.bin")

# check_h2: nginx answers in HTTP/2 and both clients get the exact bytes; sets H2_CLIENTS
# (sockit is measured only if it has `get --http2`).
check_h2() {
    if [[ $(curl -sk --http2 -o /dev/null -w '%{http_version}' "$H2_BIG") != 2 ]]; then
        echo "nginx did not answer curl --http2 in HTTP/2" >&2
        exit 1
    fi
    cmp <(curl -sk --http2 "$H2_BIG") "$WORK/www/big.bin"
    H2_CLIENTS=(curl)
    if "$SOCKIT" get --help 2>/dev/null | grep -q -- '--http2'; then
        H2_CLIENTS+=(sockit)
        cmp <("$SOCKIT" get --http2 --pin "$PIN" "$H2_BIG") "$WORK/www/big.bin"
    else
        echo "note: this sockit has no 'get --http2' yet: its HTTP/2 row is skipped" >&2
    fi
}

# timed TEST NAME ROUND CMD...: runs one client command, appends "TEST NAME ROUND seconds"
# to $WORK/times (bash's own clock: nothing forked around the command).
timed() {
    local test=$1 name=$2 round=$3 t0 t1
    shift 3
    t0=$EPOCHREALTIME
    timeout 600 "$@"
    t1=$EPOCHREALTIME
    echo "$test $name $round $(echo "$t1 - $t0" | bc -l)" >>"$WORK/times"
}

# run_rounds TEST...: ROUNDS interleaved rounds of the given tests (big, small, h2); in each
# round every client runs once per test (small: SMALL_RUNS GETs each, alternating one by one),
# and the order of the clients alternates from round to round.
run_rounds() {
    local round test name order
    : >"$WORK/times"
    steal_begin
    for round in $(seq "$ROUNDS"); do
        echo "round $round/$ROUNDS" >&2
        for test in "$@"; do
            order=(curl sockit)
            if [[ $test == h2 ]]; then order=("${H2_CLIENTS[@]}"); fi
            if ((round % 2 == 0)); then mapfile -t order < <(printf '%s\n' "${order[@]}" | tac); fi
            case $test in
                big) for name in "${order[@]}"; do
                         # shellcheck disable=SC2086 # the command is a word list on purpose
                         if [[ $name == curl ]]; then timed big curl "$round" $CURL_BIG; else timed big sockit "$round" $SOCKIT_BIG; fi
                     done ;;
                small) for _ in $(seq "$SMALL_RUNS"); do
                           for name in "${order[@]}"; do
                               # shellcheck disable=SC2086
                               if [[ $name == curl ]]; then timed small curl "$round" $CURL_SMALL; else timed small sockit "$round" $SOCKIT_SMALL; fi
                           done
                       done ;;
                h2) for name in "${order[@]}"; do
                        # shellcheck disable=SC2086
                        if [[ $name == curl ]]; then timed h2 curl "$round" $CURL_H2; else timed h2 sockit "$round" $SOCKIT_H2; fi
                    done ;;
            esac
        done
    done
    STEAL=$(steal_pct)
}

# table_rows: the table rows of the tests measured (into $WORK/rows) and the sentence on the
# rounds and the steal time (into $WORK/method).
table_rows() {
    python3 - "$WORK/times" "$BYTES" "$BIG_MIB" "$ROUNDS" "$SMALL_RUNS" "$STEAL" "$WORK/method" >"$WORK/rows" <<'PY2'
import statistics, sys
sys.path.insert(0, "bench")
import stats
times, size, big_mib, rounds, small_runs, steal, method = sys.argv[1:]
size = int(size)
runs = {}
for line in open(times):
    test, name, rnd, secs = line.split()
    runs.setdefault((test, name), {}).setdefault(int(rnd), []).append(float(secs))
def samples(test, name, per_round):
    return [per_round(ts) for _, ts in sorted(runs.get((test, name), {}).items())]
rate = lambda ts: size / statistics.median(ts) / 1e9
ms = lambda ts: statistics.median(ts) * 1e3
def row(title, test, per_round, unit, target):
    c, s = samples(test, "curl", per_round), samples(test, "sockit", per_round)
    sockit = stats.cell(s, 2, unit) if s else "not measured"
    ratio = f"sockit/curl = {stats.ratio(s, c)}{target}" if s else "(this sockit has no get --http2)"
    print(f"| {title} | {stats.cell(c, 2, unit)} | {sockit} | {ratio} |")
if ("big", "curl") in runs:
    row(f"{big_mib} MiB to /dev/null, throughput", "big", rate, " GB/s", "; target ≥ 1.5×")
if ("small", "curl") in runs:
    row(f"1 KiB GET, whole-process wall time (median of {small_runs} per round)", "small", ms, " ms",
        "; target ≤ 1.0×")
if ("h2", "curl") in runs:
    row(f"{size >> 20} MiB over HTTP/2 + TLS to /dev/null, throughput", "h2", rate, " GB/s", "")
open(method, "w").write(stats.steal_line(steal, rounds) + "\n")
PY2
}

machine() {
    echo "Machine: $(nproc) CPUs, $(uname -sr); nginx $(nginx -v 2>&1 | cut -d/ -f2), $(curl --version | head -1 | cut -d' ' -f1-2), sockit $(git rev-parse --short HEAD)."
    echo "nginx pinned to CPU 0, clients to CPU 1. $(cat "$WORK/method")"
}

h2_commands() {
    echo "HTTP/2 row: \$H2 is https://127.0.0.1:\$TLS_PORT on the same nginx (\`listen … ssl http2\`,"
    echo "a self-signed certificate made by openssl), the two clients alternating round by round:"
    echo
    echo '```sh'
    echo "${CURL_H2//"$H2_BIG"/"\$H2/big.bin"}"
    echo "$SOCKIT_H2" | sed "s#$H2_BIG#\$H2/big.bin#; s#$ROOT/##; s#$PIN#sha256:…#"
    echo '```'
}

check_h2
if [[ $H2_ONLY == 1 ]]; then
    run_rounds h2
    table_rows
    mkdir -p "$(dirname "$OUT")"
    # The HTTP/1.1 part of an existing results file stays; the HTTP/2 section is replaced.
    KEPT=""
    if [[ -f $OUT ]]; then
        KEPT=$(sed '/^## HTTP client over HTTP\/2/,$d' "$OUT")
    fi
    cat >"$OUT" <<EOF
${KEPT:+$KEPT

}## HTTP client over HTTP/2: sockit get --http2 vs curl --http2 (nginx on loopback, TLS)

$(machine)

| test | curl | sockit | ratio |
|---|---|---|---|
$(cat "$WORK/rows")

$(h2_commands)

Reproduce: \`H2_ONLY=1 bench/http-client.sh\` (ROUNDS=$ROUNDS BIG_MIB=$BIG_MIB).
EOF
    cat "$OUT"
    exit 0
fi

# Sanity: both get the exact bytes (this also warms the page cache and both binaries).
cmp <(curl -s "$BIG") "$WORK/www/big.bin"
cmp <("$SOCKIT" get "$BIG") "$WORK/www/big.bin"
for _ in 1 2 3; do curl -s -o /dev/null "$SMALL"; "$SOCKIT" get "$SMALL" -o /dev/null; done

run_rounds big small h2
table_rows

mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<EOF
# HTTP client: sockit get vs curl (nginx on loopback)

$(machine)

| test | curl | sockit | ratio |
|---|---|---|---|
$(cat "$WORK/rows")

Commands (each run timed by the script around the process, \$URL on 127.0.0.1:\$PORT served by
\`taskset -c 0 nginx\` with sendfile; in each round curl and sockit take turns, the first of
them alternating from round to round):

\`\`\`sh
${CURL_BIG//"$BIG"/"\$URL/big.bin"}
$(echo "$SOCKIT_BIG" | sed "s#$BIG#\$URL/big.bin#; s#$ROOT/##")
${CURL_SMALL//"$SMALL"/"\$URL/small.bin"}
$(echo "$SOCKIT_SMALL" | sed "s#$SMALL#\$URL/small.bin#; s#$ROOT/##")
\`\`\`

$(h2_commands)

Reproduce: \`bench/http-client.sh\` (ROUNDS=$ROUNDS SMALL_RUNS=$SMALL_RUNS BIG_MIB=$BIG_MIB).
EOF
cat "$OUT"
