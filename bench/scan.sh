#!/usr/bin/env bash
# Port probe side by side: `nc -z 127.0.0.1 1-65535` (openbsd nc, one port after the other)
# vs `sockit connect -z 127.0.0.1 1-65535` (release build), with ~10 listeners on random
# loopback ports. Interleaved rounds, medians and min–max, the ratio with the tie verdict, the
# host's steal time; checks that both found the same
# open ports (and that those include every listener started here). Loopback only.
# Writes bench/results/scan.md.
#
#   bench/scan.sh             # 7 rounds (ROUNDS=9 bench/scan.sh for more; RUNS= is the old name)
#   SOCKIT=/path/to/sockit ROUNDS=1 OUT=/tmp/scan.md bench/scan.sh   # a smoke run: no release build
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-${RUNS:-7}}
LISTENERS=${LISTENERS:-10}
OUT=${OUT:-bench/results/scan.md}

ensure_tools nc=netcat-openbsd python3=python3
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SOCKIT=${SOCKIT:-$(cargo_release)}
SOCKIT=$(realpath "$SOCKIT")
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# The listeners: one python3 process holding LISTENERS sockets, each on a port picked by the
# kernel; it prints them and stays up for the whole run (at most 30 minutes).
python3 -u -c "
import socket, sys, time
socks = []
for _ in range($LISTENERS):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(64); socks.append(s)
    print(s.getsockname()[1])
sys.stdout.close(); time.sleep(1800)" >"$tmp/listeners" &
pids+=($!)
for _ in $(seq 100); do [ "$(wc -l <"$tmp/listeners")" -ge "$LISTENERS" ] && break; sleep 0.05; done
sort -n "$tmp/listeners" >"$tmp/ours"

# timed NAME CMD... : appends the wall seconds to $tmp/NAME.times, the open ports (sorted,
# one a line) to $tmp/NAME.N.open.
timed() {
  local name=$1 n=$2; shift 2
  local start end
  start=$(date +%s.%N)
  "$@" >"$tmp/$name.$n.out" 2>&1 || true
  end=$(date +%s.%N)
  echo "$end - $start" | bc >>"$tmp/$name.times"
  case $name in
    nc) { grep succeeded "$tmp/$name.$n.out" || true; } | grep -oE '[0-9]+ port' \
          | cut -d' ' -f1 | sort -n -u >"$tmp/$name.$n.open" ;;
    sockit) awk '$2 == "open" {print $1}' "$tmp/$name.$n.out" | sort -n >"$tmp/$name.$n.open" ;;
  esac
}

loads=()
steal_begin
for n in $(seq "$ROUNDS"); do
  echo "round $n/$ROUNDS" >&2
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
  ss -ltnH >"$tmp/ss.$n"
  timed nc "$n" nc -z -v 127.0.0.1 1-65535
  timed sockit "$n" "$SOCKIT" connect -z 127.0.0.1 1-65535
  ss -ltnH >>"$tmp/ss.$n"
done

STEAL=$(steal_pct)

mkdir -p "$(dirname "$OUT")"
python3 - "$tmp" "$ROUNDS" "$LISTENERS" "${loads[*]}" "$STEAL" >"$OUT" <<'PY'
import os, statistics, subprocess, sys
sys.path.insert(0, "bench")
import stats
tmp, rounds, listeners, loads, steal = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(), sys.argv[5]
times = {n: [float(l) for l in open(f"{tmp}/{n}.times")] for n in ("nc", "sockit")}
ours = set(open(f"{tmp}/ours").read().split())
def listening(i):
    # Ports listening on 127.0.0.1 or on every address just before or just after round i.
    ports = set()
    for line in open(f"{tmp}/ss.{i}"):
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        if host in ("127.0.0.1", "0.0.0.0", "*", "[::]", "[::ffff:127.0.0.1]"):
            ports.add(port)
    return ports
agree, missing, extra = 0, 0, {"nc": [], "sockit": []}
for i in range(1, rounds + 1):
    a = open(f"{tmp}/nc.{i}.open").read().split()
    b = open(f"{tmp}/sockit.{i}.open").read().split()
    agree += a == b
    missing += not ours <= set(b)
    truth = listening(i)
    for name, found in (("nc", a), ("sockit", b)):
        extra[name] += [p for p in found if p not in truth]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print("## Port probe: sockit connect -z vs nc -z (1-65535 on 127.0.0.1)\n")
print(f"Machine: {os.cpu_count()} cores ({cpu}); load average at the start of each round: {', '.join(loads)}. "
      f"{listeners} listeners on random loopback ports. {stats.steal_line(steal, rounds)}\n")
print("Commands: `nc -z -v 127.0.0.1 1-65535` (openbsd) · `sockit connect -z 127.0.0.1 1-65535` (release)\n")
print("| tool | wall time | nc's time / this one's |")
print("|---|---|---|")
for n, cmd in (("nc", "nc -z"), ("sockit", "sockit connect -z")):
    t = times[n]
    print(f"| {cmd} | {stats.cell(t, 2, ' s')} | {stats.ratio(times['nc'], t, 1)} |")
print()
print(f"Same open ports found by both: {agree} of {rounds} rounds; rounds where sockit missed one of "
      f"the listeners started here: {missing}. (Other programs on the machine may open and close "
      "listeners during a round, so a round can differ without either tool being wrong.)\n")
for name in ("nc", "sockit"):
    print(f"Ports reported open by {name} that no socket listened on (`ss -ltn` just before and after "
          f"the round): {len(extra[name])} ({', '.join(extra[name]) or 'none'}).\n")
print("Such a port lies in the ephemeral range, and the probe's socket was given that very port as its "
      "source: TCP's simultaneous open connects it to itself. sockit checks for this and counts the port closed.")
PY
cat "$OUT"
