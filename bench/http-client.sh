#!/usr/bin/env bash
# HTTP client benchmark: `sockit get` against curl, both fetching from nginx on loopback.
#   1. a 1 GiB file to /dev/null (throughput, median of RUNS runs)
#   2. a 1 KiB file: whole-process wall time of one small GET (median of SMALL_RUNS runs)
# nginx runs on CPU 0 (taskset -c 0), the clients on CPU 1 (taskset -c 1).
# Writes bench/results/http-client.md. Usage: bench/http-client.sh  (from the repo root)
set -euo pipefail

RUNS=${RUNS:-5}
SMALL_RUNS=${SMALL_RUNS:-50}
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=bench/results/http-client.md

for tool in curl nginx hyperfine jq taskset python3; do
    if ! command -v "$tool" >/dev/null; then
        apt-get install -y "$tool" >/dev/null
    fi
done

cargo build --release --quiet
SOCKIT=$ROOT/target/release/sockit

WORK=$(mktemp -d)
NGINX_PID=
cleanup() {
    if [[ -n $NGINX_PID ]]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/www"
timeout 120 dd if=/dev/urandom of="$WORK/www/big.bin" bs=1M count=1024 status=none
head -c 1024 /dev/urandom >"$WORK/www/small.bin"

# nginx on a free loopback port: bind port 0, release it, start nginx there; retry if taken.
for attempt in 1 2 3 4 5; do
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    cat >"$WORK/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 256; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy; fastcgi_temp_path $WORK/fcgi;
  uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  server { listen 127.0.0.1:$PORT; root $WORK/www; }
}
EOF
    taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" &
    NGINX_PID=$!
    for _ in $(seq 100); do
        if curl -sf -o /dev/null "http://127.0.0.1:$PORT/small.bin"; then break 2; fi
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

# Sanity: both get the exact bytes.
cmp <(curl -s "$BIG") "$WORK/www/big.bin"
cmp <("$SOCKIT" get "$BIG") "$WORK/www/big.bin"

timeout 600 hyperfine -N --style basic --warmup 1 --runs "$RUNS" --export-json "$WORK/big.json" \
    -n curl "$CURL_BIG" -n sockit "$SOCKIT_BIG" >&2
timeout 600 hyperfine -N --style basic --warmup 5 --runs "$SMALL_RUNS" --export-json "$WORK/small.json" \
    -n curl "$CURL_SMALL" -n sockit "$SOCKIT_SMALL" >&2

median() { jq -r ".results[] | select(.command==\"$2\") | .median" "$1"; }
BYTES=$(stat -c %s "$WORK/www/big.bin")
c_big=$(median "$WORK/big.json" curl)
s_big=$(median "$WORK/big.json" sockit)
c_small=$(median "$WORK/small.json" curl)
s_small=$(median "$WORK/small.json" sockit)
read -r c_rate s_rate big_ratio c_ms s_ms small_ratio < <(python3 -c "
b=$BYTES; cb=$c_big; sb=$s_big; cs=$c_small; ss=$s_small
print(f'{b/cb/1e9:.2f} {b/sb/1e9:.2f} {cb/sb:.2f} {cs*1e3:.2f} {ss*1e3:.2f} {ss/cs:.2f}')")

mkdir -p bench/results
cat >"$OUT" <<EOF
# HTTP client: sockit get vs curl (nginx on loopback)

Machine: $(nproc) CPUs, $(uname -sr); nginx $(nginx -v 2>&1 | cut -d/ -f2), $(curl --version | head -1 | cut -d' ' -f1-2), sockit $(git rev-parse --short HEAD).
nginx pinned to CPU 0, clients to CPU 1. Medians.

| test | curl | sockit | ratio |
|---|---|---|---|
| 1 GiB to /dev/null, throughput ($RUNS runs) | $c_rate GB/s | $s_rate GB/s | sockit/curl = ${big_ratio}× (target ≥ 1.1×) |
| 1 KiB GET, whole-process wall time ($SMALL_RUNS runs) | $c_ms ms | $s_ms ms | sockit/curl = ${small_ratio}× (target ≤ 1.0×) |

Commands (hyperfine -N, \$URL on 127.0.0.1:\$PORT served by \`taskset -c 0 nginx\` with sendfile):

\`\`\`sh
$(echo "$CURL_BIG" | sed "s#$BIG#\$URL/big.bin#")
$(echo "$SOCKIT_BIG" | sed "s#$BIG#\$URL/big.bin#; s#$ROOT/##")
$(echo "$CURL_SMALL" | sed "s#$SMALL#\$URL/small.bin#")
$(echo "$SOCKIT_SMALL" | sed "s#$SMALL#\$URL/small.bin#; s#$ROOT/##")
\`\`\`

Reproduce: \`bench/http-client.sh\` (RUNS=$RUNS SMALL_RUNS=$SMALL_RUNS).
EOF
cat "$OUT"
