#!/usr/bin/env bash
# HTTP client benchmark: `sockit get` against curl, both fetching from nginx on loopback.
#   1. a 1 GiB file to /dev/null (throughput, median of RUNS runs)
#   2. a 1 KiB file: whole-process wall time of one small GET (median of SMALL_RUNS runs)
#   3. the 1 GiB file over HTTP/2 and TLS (the same nginx, `listen … ssl http2`, a self-signed
#      certificate): `sockit get --http2 --pin …` against `curl --http2 -k`, RUNS interleaved
#      rounds (the order alternates), medians
# nginx runs on CPU 0 (taskset -c 0), the clients on CPU 1 (taskset -c 1).
# Writes bench/results/http-client.md. Usage: bench/http-client.sh  (from the repo root)
# Knobs: RUNS, SMALL_RUNS, BIG_MIB (size of the big file), SOCKIT_BIN (a built binary instead
# of a release build), OUT (the results file), H2_ONLY=1 (only part 3: no hyperfine needed).
set -euo pipefail

RUNS=${RUNS:-5}
SMALL_RUNS=${SMALL_RUNS:-50}
BIG_MIB=${BIG_MIB:-1024}
H2_ONLY=${H2_ONLY:-0}
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-bench/results/http-client.md}

tools=(curl nginx jq taskset python3 openssl)
if [[ $H2_ONLY != 1 ]]; then tools+=(hyperfine); fi
for tool in "${tools[@]}"; do
    if ! command -v "$tool" >/dev/null; then
        apt-get install -y "$tool" >/dev/null
    fi
done

if [[ -n ${SOCKIT_BIN:-} ]]; then
    SOCKIT=$(realpath "$SOCKIT_BIN")
else
    cargo build --release --quiet
    SOCKIT=$ROOT/target/release/sockit
fi

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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

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

# Part 3 into $WORK/h2.row: a table row. sockit is measured only if it has `get --http2`.
h2_row() {
    if [[ $(curl -sk --http2 -o /dev/null -w '%{http_version}' "$H2_BIG") != 2 ]]; then
        echo "nginx did not answer curl --http2 in HTTP/2" >&2
        exit 1
    fi
    cmp <(curl -sk --http2 "$H2_BIG") "$WORK/www/big.bin"
    local clients=(curl)
    if "$SOCKIT" get --help 2>/dev/null | grep -q -- '--http2'; then
        clients+=(sockit)
        cmp <("$SOCKIT" get --http2 --pin "$PIN" "$H2_BIG") "$WORK/www/big.bin"
    else
        echo "note: this sockit has no 'get --http2' yet: its HTTP/2 row is skipped" >&2
    fi
    local round name cmd t0 t1 order
    : >"$WORK/h2.times"
    for round in $(seq "$RUNS"); do
        order=("${clients[@]}")
        if ((round % 2 == 0)); then order=($(printf '%s\n' "${clients[@]}" | tac)); fi
        for name in "${order[@]}"; do
            cmd=$CURL_H2
            if [[ $name == sockit ]]; then cmd=$SOCKIT_H2; fi
            t0=$(date +%s%N)
            # shellcheck disable=SC2086 # the command is a word list on purpose
            timeout 600 $cmd
            t1=$(date +%s%N)
            echo "$name $((t1 - t0))" >>"$WORK/h2.times"
        done
    done
    python3 - "$WORK/h2.times" "$BYTES" "$RUNS" >"$WORK/h2.row" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    name, ns = line.split()
    times.setdefault(name, []).append(int(ns) / 1e9)
size, runs = int(sys.argv[2]), sys.argv[3]
rate = {n: size / statistics.median(t) / 1e9 for n, t in times.items()}
curl = f"{rate['curl']:.2f} GB/s"
if "sockit" in rate:
    sockit = f"{rate['sockit']:.2f} GB/s"
    ratio = f"sockit/curl = {rate['sockit'] / rate['curl']:.2f}×"
else:
    sockit, ratio = "not measured", "(this sockit has no get --http2)"
print(f"| {size >> 20} MiB over HTTP/2 + TLS to /dev/null, throughput "
      f"({runs} interleaved rounds) | {curl} | {sockit} | {ratio} |")
PY
}

machine() {
    echo "Machine: $(nproc) CPUs, $(uname -sr); nginx $(nginx -v 2>&1 | cut -d/ -f2), $(curl --version | head -1 | cut -d' ' -f1-2), sockit $(git rev-parse --short HEAD)."
    echo "nginx pinned to CPU 0, clients to CPU 1. Medians."
}

h2_commands() {
    echo "HTTP/2 row: \$H2 is https://127.0.0.1:\$TLS_PORT on the same nginx (\`listen … ssl http2\`,"
    echo "a self-signed certificate made by openssl), the two clients alternating round by round:"
    echo
    echo '```sh'
    echo "$CURL_H2" | sed "s#$H2_BIG#\$H2/big.bin#"
    echo "$SOCKIT_H2" | sed "s#$H2_BIG#\$H2/big.bin#; s#$ROOT/##; s#$PIN#sha256:…#"
    echo '```'
}

if [[ $H2_ONLY == 1 ]]; then
    h2_row
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
$(cat "$WORK/h2.row")

$(h2_commands)

Reproduce: \`H2_ONLY=1 bench/http-client.sh\` (RUNS=$RUNS BIG_MIB=$BIG_MIB).
EOF
    cat "$OUT"
    exit 0
fi

# Sanity: both get the exact bytes.
cmp <(curl -s "$BIG") "$WORK/www/big.bin"
cmp <("$SOCKIT" get "$BIG") "$WORK/www/big.bin"

timeout 600 hyperfine -N --style basic --warmup 1 --runs "$RUNS" --export-json "$WORK/big.json" \
    -n curl "$CURL_BIG" -n sockit "$SOCKIT_BIG" >&2
timeout 600 hyperfine -N --style basic --warmup 5 --runs "$SMALL_RUNS" --export-json "$WORK/small.json" \
    -n curl "$CURL_SMALL" -n sockit "$SOCKIT_SMALL" >&2
h2_row

median() { jq -r ".results[] | select(.command==\"$2\") | .median" "$1"; }
c_big=$(median "$WORK/big.json" curl)
s_big=$(median "$WORK/big.json" sockit)
c_small=$(median "$WORK/small.json" curl)
s_small=$(median "$WORK/small.json" sockit)
read -r c_rate s_rate big_ratio c_ms s_ms small_ratio < <(python3 -c "
b=$BYTES; cb=$c_big; sb=$s_big; cs=$c_small; ss=$s_small
print(f'{b/cb/1e9:.2f} {b/sb/1e9:.2f} {cb/sb:.2f} {cs*1e3:.2f} {ss*1e3:.2f} {ss/cs:.2f}')")

mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<EOF
# HTTP client: sockit get vs curl (nginx on loopback)

$(machine)

| test | curl | sockit | ratio |
|---|---|---|---|
| $BIG_MIB MiB to /dev/null, throughput ($RUNS runs) | $c_rate GB/s | $s_rate GB/s | sockit/curl = ${big_ratio}× (target ≥ 1.1×) |
| 1 KiB GET, whole-process wall time ($SMALL_RUNS runs) | $c_ms ms | $s_ms ms | sockit/curl = ${small_ratio}× (target ≤ 1.0×) |
$(cat "$WORK/h2.row")

Commands (hyperfine -N, \$URL on 127.0.0.1:\$PORT served by \`taskset -c 0 nginx\` with sendfile):

\`\`\`sh
$(echo "$CURL_BIG" | sed "s#$BIG#\$URL/big.bin#")
$(echo "$SOCKIT_BIG" | sed "s#$BIG#\$URL/big.bin#; s#$ROOT/##")
$(echo "$CURL_SMALL" | sed "s#$SMALL#\$URL/small.bin#")
$(echo "$SOCKIT_SMALL" | sed "s#$SMALL#\$URL/small.bin#; s#$ROOT/##")
\`\`\`

$(h2_commands)

Reproduce: \`bench/http-client.sh\` (RUNS=$RUNS SMALL_RUNS=$SMALL_RUNS BIG_MIB=$BIG_MIB).
EOF
cat "$OUT"
