#!/usr/bin/env bash
# Bulk download through a SOCKS proxy, on the path client → proxy → `sockit serve` (one
# SIZE_MIB file of random bytes): every client through every proxy, in one table.
#
#   clients: sockit get --proxy socks5h://…, curl --socks5-hostname …, ncat --proxy …
#            --proxy-type socks5 --proxy-dns remote (an HTTP/1.0 GET written to it), and
#            socat through dante only: Debian's socat 1.7.4 speaks SOCKS4/4a, not SOCKS5
#            (`socat -h` lists socks4 and socks4a), and dante 1.4 refuses SOCKS4A's host
#            names, so the socat row is `SOCKS4:` to 127.0.0.1 (the name resolved here).
#   proxies: danted, `sockit listen --socks5`, microsocks; and no proxy at all as the
#            baseline of each client.
#
# Server and proxy are pinned to core 0, the client (and the `wc -c` that counts what it
# received) to core 1; loopback only; every download bounded by `timeout`; the proxies and
# the server started here are ended by PID. Interleaved rounds, medians and min–max, ratios
# with the tie verdict, the host's steal time.
# Writes bench/results/proxy.md.
#
#   bench/proxy.sh                         # 7 rounds of a 512 MiB download
#   ROUNDS=1 SIZE_MIB=8 bench/proxy.sh     # a quick smoke run
#   SOCKIT=target/debug/sockit bench/proxy.sh   # use that binary (default: a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-${RUNS:-7}}
SIZE_MIB=${SIZE_MIB:-512}
LIMIT=${LIMIT:-120} # seconds one download may take
OUT=${OUT:-bench/results/proxy.md}

ensure_tools curl=curl ncat=ncat socat=socat microsocks=microsocks danted=dante-server \
  taskset=util-linux python3=python3
SOCKIT=${SOCKIT:-$(cargo_release)}
SOCKIT=$(realpath "$SOCKIT")
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# sockit_port NAME: the port a sockit server started with --port 0 printed first on stderr.
sockit_port() {
  local _ line
  for _ in $(seq 100); do
    line=$(head -1 "$tmp/$1.err" 2>/dev/null || true)
    if [[ $line == *" listening on "* ]]; then echo "${line##*:}"; return 0; fi
    sleep 0.05
  done
  echo "$1 did not start: $(cat "$tmp/$1.err")" >&2
  return 1
}

mkdir -p "$tmp/www"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$tmp/www/big.bin"
SIZE=$((SIZE_MIB << 20))

taskset -c 0 "$SOCKIT" serve "$tmp/www" --port 0 >/dev/null 2>"$tmp/serve.err" &
pids+=($!)
SPORT=$(sockit_port serve)

declare -A pport
taskset -c 0 "$SOCKIT" listen --port 0 --socks5 >/dev/null 2>"$tmp/sockit-socks.err" &
pids+=($!)
pport[sockit]=$(sockit_port sockit-socks)

pport[dante]=$(free_port)
cat >"$tmp/sockd.conf" <<CONF
logoutput: $tmp/danted.log
internal: 127.0.0.1 port = ${pport[dante]}
external: 127.0.0.1
clientmethod: none
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
CONF
taskset -c 0 danted -f "$tmp/sockd.conf" -p "$tmp/sockd.pid" -N 1 >/dev/null 2>&1 &
pids+=($!)

pport[microsocks]=$(free_port)
taskset -c 0 microsocks -i 127.0.0.1 -p "${pport[microsocks]}" >/dev/null 2>&1 &
pids+=($!)
for p in "${pport[dante]}" "${pport[microsocks]}"; do wait_port "$p"; done

REQUEST=$'GET /big.bin HTTP/1.0\r\nHost: localhost\r\n\r\n'

# fetch CLIENT PROXY: the download on stdout (raw clients: with the response head).
fetch() {
  local client=$1 proxy=$2 url="http://localhost:$SPORT/big.bin"
  local p=${pport[$proxy]:-}
  case $client/$proxy in
    sockit/direct) timeout "$LIMIT" "$SOCKIT" get "$url" ;;
    sockit/*) timeout "$LIMIT" "$SOCKIT" get --proxy "socks5h://127.0.0.1:$p" "$url" ;;
    curl/direct) timeout "$LIMIT" curl -sS --fail "$url" ;;
    curl/*) timeout "$LIMIT" curl -sS --fail --socks5-hostname "127.0.0.1:$p" "$url" ;;
    # --no-shutdown: microsocks ends the whole tunnel at the client's first EOF.
    ncat/direct) printf '%s' "$REQUEST" | timeout "$LIMIT" ncat --no-shutdown localhost "$SPORT" ;;
    ncat/*) printf '%s' "$REQUEST" | timeout "$LIMIT" ncat --no-shutdown --proxy "127.0.0.1:$p" \
              --proxy-type socks5 --proxy-dns remote localhost "$SPORT" ;;
    # -t: after stdin's EOF socat would otherwise quit 0.5 s later, mid-download.
    socat/direct) printf '%s' "$REQUEST" | timeout "$LIMIT" socat -t "$LIMIT" - "TCP:127.0.0.1:$SPORT" ;;
    socat/dante) printf '%s' "$REQUEST" | timeout "$LIMIT" socat -t "$LIMIT" - \
                   "SOCKS4:127.0.0.1:127.0.0.1:$SPORT,socksport=$p" ;;
    *) return 3 ;; # no SOCKS4 in that proxy
  esac
}

# measure CLIENT PROXY: one download on core 1; appends "client proxy seconds bytes" (or
# "client proxy failed -") to $tmp/runs.
measure() {
  local client=$1 proxy=$2 start end bytes
  start=$(date +%s.%N)
  bytes=$(taskset -p -c 1 "$BASHPID" >/dev/null; fetch "$client" "$proxy" | wc -c) || bytes=-1
  end=$(date +%s.%N)
  # A raw client's count includes the response head; the body must be whole.
  if ((bytes >= SIZE && bytes <= SIZE + 4096)); then
    echo "$client $proxy $(echo "$end - $start" | bc) $bytes" >>"$tmp/runs"
  else
    echo "$client $proxy failed $bytes" >>"$tmp/runs"
  fi
}

clients=(sockit curl ncat socat)
proxies=(direct dante sockit microsocks)
loads=()
steal_begin
for n in $(seq "$ROUNDS"); do
  echo "round $n/$ROUNDS" >&2
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
  for proxy in "${proxies[@]}"; do
    for client in "${clients[@]}"; do
      [[ $client == socat && $proxy != direct && $proxy != dante ]] && continue
      measure "$client" "$proxy"
    done
  done
done

STEAL=$(steal_pct)

mkdir -p "$(dirname "$OUT")"
python3 - "$tmp/runs" "$ROUNDS" "$SIZE_MIB" "${loads[*]}" "$STEAL" >"$OUT" <<'PY'
import os, statistics, subprocess, sys
sys.path.insert(0, "bench")
import stats
runs, rounds, size_mib, loads, steal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), sys.argv[5]
size = size_mib << 20
rates, failed = {}, {}
for line in open(runs):
    client, proxy, secs, _ = line.split()
    if secs == "failed":
        failed[(client, proxy)] = failed.get((client, proxy), 0) + 1
    else:
        rates.setdefault((client, proxy), []).append(size / float(secs) / 1e6)
clients = ["sockit", "curl", "ncat", "socat"]
proxies = ["direct", "dante", "sockit", "microsocks"]
names = {"sockit": "sockit get", "curl": "curl", "ncat": "ncat + GET", "socat": "socat + GET (SOCKS4)"}
heads = {"direct": "no proxy", "dante": "danted", "sockit": "sockit listen --socks5", "microsocks": "microsocks"}
med = {k: statistics.median(v) for k, v in rates.items()}
def cell(key):
    if key not in rates and key not in failed:
        return "—"
    text = "failed" if key not in rates else stats.cell(rates[key], 0)
    if failed.get(key):
        text += f", {failed[key]}/{rounds} failed"
    return text
def ratio(a, b):
    return stats.ratio(rates[a], rates[b]) if a in med and b in med else "—"
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
print("## Bulk download through a SOCKS proxy: sockit, curl, ncat, socat × dante, sockit, microsocks\n")
print(f"Machine: {os.cpu_count()} cores ({cpu}); load average at the start of each round: "
      f"{', '.join(loads)}. `sockit serve` and the proxy on core 0, the client (and the `wc -c` "
      f"counting what it received) on core 1; loopback. A {size_mib} MiB file of random bytes; "
      f"figures in MB/s of the body. {stats.steal_line(steal, rounds)}\n")
print("Command: `bench/proxy.sh` · server `sockit serve DIR` · proxies `danted` (SOCKS5, and SOCKS4 for "
      "socat), `sockit listen --socks5`, `microsocks` · clients `sockit get --proxy socks5h://…`, "
      "`curl --socks5-hostname …`, `ncat --no-shutdown --proxy … --proxy-type socks5 --proxy-dns remote` "
      "and `socat -t … - SOCKS4:…` with an HTTP/1.0 GET on stdin.\n")
print("| client | " + " | ".join(heads[p] for p in proxies) + " |")
print("|---" * (len(proxies) + 1) + "|")
for c in clients:
    print(f"| {names[c]} | " + " | ".join(cell((c, p)) for p in proxies) + " |")
print("\nRatios of medians: each client through each proxy against the same client through danted, "
      "and each client against curl through the same proxy.\n")
print("| client | sockit / danted | microsocks / danted | danted / no proxy | vs curl (danted) | vs curl (sockit) |")
print("|---|---|---|---|---|---|")
for c in clients:
    print(f"| {names[c]} | {ratio((c, 'sockit'), (c, 'dante'))} | {ratio((c, 'microsocks'), (c, 'dante'))} "
          f"| {ratio((c, 'dante'), (c, 'direct'))} | {ratio((c, 'dante'), ('curl', 'dante'))} "
          f"| {ratio((c, 'sockit'), ('curl', 'sockit'))} |")
print("\nsocat has no SOCKS5 (Debian's 1.7.4: SOCKS4 and SOCKS4A only) and dante refuses SOCKS4A host "
      "names, so its row goes through dante with SOCKS4 to 127.0.0.1; sockit and microsocks speak SOCKS5 only (—).")
PY
cat "$OUT"
