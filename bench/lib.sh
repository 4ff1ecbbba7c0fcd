# Shared helpers for the bench scripts (sourced, not run). Their tables come from bench/stats.py
# (median, min–max, ratio with the tie verdict, the steal line), imported by their Python.
# shellcheck shell=bash

# ensure_tools PROGRAM=PACKAGE… : apt-get install whatever is missing.
ensure_tools() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago (for peers that need a number).
free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (5 s at most).
wait_port() {
  local _
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# start_nginx DIR PORT ROOT: one worker, sendfile on, access log off, files from ROOT and a
# fixed answer at /ok; prints its PID.
start_nginx() {
  local dir=$1 port=$2 root=$3
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  include /etc/nginx/mime.types;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server {
    listen 127.0.0.1:$port; root $root;
    # The cheapest answer nginx gives: for load generators' own limits.
    location = /ok { return 200 "ok\n"; }
  }
}
CONF
  taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 &
  echo $!
}

# cargo_release: build sockit once, print the binary's path.
cargo_release() {
  cargo build --release --quiet >&2
  echo "$PWD/target/release/sockit"
}

# ensure_oha: oha (an open-loop HTTP load generator with --latency-correction), from crates.io
# when missing.
ensure_oha() {
  command -v oha >/dev/null 2>&1 && return 0
  echo "installing oha (cargo install oha --locked; compiles for a few minutes)" >&2
  cargo install oha --locked >&2
}

# ensure_wrk2 TMPDIR: prints the path of a wrk2 binary: on PATH, or built from a source tree
# in $WRK2_SRC (a git clone of giltene/wrk2) when one is there. Debian has no package, and
# nothing is downloaded here; fails when neither exists.
ensure_wrk2() {
  if command -v wrk2 >/dev/null 2>&1; then command -v wrk2; return 0; fi
  local src=${WRK2_SRC:-}
  [[ -n $src && -f $src/Makefile ]] || return 1
  make -C "$src" -j 2 >"$1/wrk2-build.log" 2>&1 || { echo "wrk2 did not build: $1/wrk2-build.log" >&2; return 1; }
  echo "$src/wrk"
}

# chat_result JSON ERRFILE: the report of one `sockit bench chat --json` run as it is, or
# {"failed": "<the end of its stderr>"} when it printed none.
chat_result() {
  if python3 -c 'import json,sys; json.loads(sys.argv[1])' "$1" 2>/dev/null; then
    echo "$1"
  else
    echo "{\"failed\": $(python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()[-200:]))' <"$2")}"
  fi
}

# chat_summary JSON: one progress line for a chat_result (with the CPU share of each side's
# core when the report has them).
chat_summary() {
  echo "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin); c=r.get("cpu") or {}; pct=lambda x: "—" if x is None else "%.0f%%" % (100 * x)
print(r.get("failed") or "%.0f deliveries/s p99 %.2f ms lost %s cpu server %s generator %s" % (r["ops_per_sec"], (r["latency"] or {}).get("p99_ms", 0), dict(r["counters"])["lost"], pct(c.get("server_share")), pct(c.get("generator_share"))))'
}

# steal_jiffies: "steal total" CPU jiffies of all cores so far (/proc/stat's `cpu` line; total
# is user+nice+system+idle+iowait+irq+softirq+steal, guest time being inside user already).
steal_jiffies() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit}' /proc/stat; }

# steal_begin: marks the start of a pass for steal_pct.
steal_begin() { STEAL_MARK=$(steal_jiffies); }

# steal_pct: the host's steal time since steal_begin, as a percentage of all CPU time of both
# cores (one decimal): CPU the hypervisor gave to other guests while the rounds ran.
steal_pct() {
  local s0 t0 s1 t1
  read -r s0 t0 <<<"${STEAL_MARK:?steal_begin was not called}"
  read -r s1 t1 < <(steal_jiffies)
  awk -v s="$((s1 - s0))" -v t="$((t1 - t0))" 'BEGIN { if (t > 0) printf "%.1f\n", 100 * s / t; else print "0.0" }'
}
