#!/usr/bin/env bash
# Does `sockit bench http` agree with wrk? Both load the same nginx (one worker, core 0)
# from core 1 with one thread and 64 keep-alive connections, runs interleaved.
# Then the open loop: at half of nginx's capacity, `sockit bench http --rate` vs
# `oha -q RATE --latency-correction` vs wrk2 (when it can be built), with and without a 1 s
# pause of nginx's worker (SIGSTOP/SIGCONT), corrected p50/p99/p99.9 from each, one after the
# other and then side by side (all at once, each at its share of the rate, so that they live
# through the same stalls); and the highest rate each holds on one core. Interleaved rounds (each round runs every generator
# once, in turn); medians, min–max, ratios with the tie verdict and the host's steal time.
# Writes bench/results/http-load.md.
#
#   bench/http-load.sh        # ROUNDS=7 (RUNS= is the old name); ROUNDS=9 DURATION=10s OPEN_DURATION=20s for more
#   SOCKIT=target/debug/sockit ROUNDS=1 DURATION=1s OPEN_DURATION=3s bench/http-load.sh   # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-${RUNS:-7}}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
OUT=${OUT:-bench/results/http-load.md}

ensure_tools nginx=nginx-light wrk=wrk
ulimit -n 65536 2>/dev/null || true
OPEN_DURATION=${OPEN_DURATION:-10s}
PAUSE_AT=${PAUSE_AT:-3}          # seconds into an open-loop run when nginx stops for 1 s
SOCKIT=${SOCKIT:-$(cargo_release)}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

mkdir -p "$tmp/root"
chmod 755 "$tmp" "$tmp/root"   # nginx workers run as nobody
printf 'hello world\n\n' >"$tmp/root/13b.txt"    # 13 bytes
port=$(free_port)
pids+=("$(start_nginx "$tmp/nginx" "$port" "$tmp/root")")
wait_port "$port"
url="http://127.0.0.1:$port/13b.txt"

steal_begin
for i in $(seq "$ROUNDS"); do
  echo "round $i/$ROUNDS" >&2
  taskset -c 1 wrk -t 1 -c "$CONNS" -d "$DURATION" "$url" | awk '/Requests\/sec/ {print $2}' >>"$tmp/wrk"
  taskset -c 1 "$SOCKIT" bench http "$url" -t 1 -c "$CONNS" -d "$DURATION" --json >>"$tmp/sockit" || true
done

# ---- Open loop -------------------------------------------------------------------------
read -r -a gens <<<"${GENS:-sockit oha wrk2}"   # GENS="sockit oha" to leave one out
[[ " ${gens[*]} " == *" oha "* ]] && ensure_oha
WRK2=""
if [[ " ${gens[*]} " == *" wrk2 "* ]]; then
  WRK2=$(ensure_wrk2 "$tmp") || WRK2=""
  [[ -n $WRK2 ]] || echo "note: wrk2 is not packaged by Debian and could not be built offline; its rows are skipped" >&2
  [[ -n $WRK2 ]] || read -r -a gens <<<"${gens[*]/wrk2/}"
fi
capacity=$(python3 -c 'import json,statistics,sys; print(int(statistics.median(json.loads(l)["ops_per_sec"] for l in open(sys.argv[1]) if l.strip())))' "$tmp/sockit")
RATE=${RATE:-$((capacity / 2))}
master=${pids[0]}
worker_pid() { pgrep -P "$master" | head -n 1; }

# open_run GENERATOR RATE DURATION OUTFILE [URL]: one open-loop run (of the 13-byte file
# unless URL says otherwise), its raw output appended to OUTFILE.
open_run() {
  local gen=$1 rate=$2 dur=$3 out=$4 url=${5:-$url}
  case $gen in
    sockit) taskset -c 1 "$SOCKIT" bench http "$url" -t 1 -c "$CONNS" -d "$dur" --rate "$rate" --json >>"$out" || true ;;
    oha) taskset -c 1 oha -z "$dur" -c "$CONNS" -q "$rate" --latency-correction --no-tui --output-format json "$url" | tr -d '\n' >>"$out"; echo >>"$out" ;;
    wrk2) { taskset -c 1 "$WRK2" -t 1 -c "$CONNS" -d "$dur" -R "$rate" --latency "$url"; echo "@@"; } >>"$out" ;;
  esac
}

for i in $(seq "$ROUNDS"); do
  for pause in 0 1; do
    for gen in "${gens[@]}"; do
      echo "open loop round $i/$ROUNDS: $gen at $RATE/s, pause $pause" >&2
      if ((pause)); then
        w=$(worker_pid)
        ( sleep "$PAUSE_AT"; kill -STOP "$w"; sleep 1; kill -CONT "$w" ) &
        pauser=$!
      fi
      open_run "$gen" "$RATE" "$OPEN_DURATION" "$tmp/open-$gen-$pause"
      if ((pause)); then wait "$pauser" || true; kill -CONT "$(worker_pid)" 2>/dev/null || true; fi
    done
  done
done

# The same runs with every generator at once, each at RATE/N over CONNS/N connections of the
# same nginx in the same seconds: a stall of the host or of nginx then lands in every
# generator's figures alike, so their calm p99s can be compared round by round (in the runs
# above, one after the other, each round's stalls differ and the calm p99 moves 2-10x).
read -r -a paired <<<"${gens[*]/wrk2/}"
if ((${#paired[@]} > 1)); then
  share_rate=$((RATE / ${#paired[@]})) share_conns=$((CONNS / ${#paired[@]}))
  for i in $(seq "$ROUNDS"); do
    for pause in 0 1; do
      echo "side by side round $i/$ROUNDS: ${paired[*]} at $share_rate/s each, pause $pause" >&2
      if ((pause)); then
        w=$(worker_pid)
        ( sleep "$PAUSE_AT"; kill -STOP "$w"; sleep 1; kill -CONT "$w" ) &
        pauser=$!
      fi
      together=()
      for gen in "${paired[@]}"; do
        CONNS=$share_conns open_run "$gen" "$share_rate" "$OPEN_DURATION" "$tmp/pair-$gen-$pause" &
        together+=($!)
      done
      wait "${together[@]}" || true
      if ((pause)); then wait "$pauser" || true; kill -CONT "$(worker_pid)" 2>/dev/null || true; fi
    done
  done
fi

# The highest rate each generator holds on one core. nginx's fixed answer at /ok costs it
# less than a file, so that the generators, not nginx, are the limit: a ladder of rates up
# to nginx's closed-loop capacity for /ok (wrk), each rung run by every generator in turn,
# HOLD_ROUNDS times.
HOLD_DURATION=${HOLD_DURATION:-5s}
HOLD_ROUNDS=${HOLD_ROUNDS:-3}
ok_url="http://127.0.0.1:$port/ok"
ok_capacity=$(taskset -c 1 wrk -t 1 -c "$CONNS" -d "$DURATION" "$ok_url" | awk '/Requests\/sec/ {print int($2)}')
echo "nginx's capacity for /ok: $ok_capacity/s" >&2
for i in $(seq "$HOLD_ROUNDS"); do
  for frac in ${HOLD_FRACTIONS:-0.4 0.5 0.6 0.7 0.8 0.9 1.0}; do
    r=$(python3 -c "print(int($ok_capacity * $frac))")
    for gen in "${gens[@]}"; do
      echo "hold round $i/$HOLD_ROUNDS: $gen at $r/s" >&2
      printf '##rate %s\n' "$r" >>"$tmp/hold-$gen-$i"
      open_run "$gen" "$r" "$HOLD_DURATION" "$tmp/hold-$gen-$i" "$ok_url"
    done
  done
done

STEAL=$(steal_pct)

mkdir -p "$(dirname "$OUT")"
python3 - "$tmp" "$ROUNDS" "$DURATION" "$CONNS" "$STEAL" >"$OUT" <<'PY'
import json, sys, os
sys.path.insert(0, "bench")
import stats
tmp, rounds, duration, conns, steal = sys.argv[1:]
wrk = [float(l) for l in open(f"{tmp}/wrk") if l.strip()]
sk = [json.loads(l) for l in open(f"{tmp}/sockit") if l.strip()]
s_rps = [r["ops_per_sec"] for r in sk]
ms, mw = stats.median(s_rps), stats.median(wrk)
print("## Load generators: `sockit bench http` vs wrk, same nginx\n")
print(f"Machine: {os.cpu_count()} cores; nginx (1 worker, sendfile, access_log off) on core 0, the load generator on core 1; "
      f"{conns} keep-alive connections, one thread, {duration} per run, 13-byte file. "
      f"{stats.steal_line(steal, rounds)} The steal time covers every part of this page.\n")
print("Command: `bench/http-load.sh`; the loads: "
      f"`wrk -t 1 -c {conns} -d {duration} URL` and `sockit bench http URL -t 1 -c {conns} -d {duration}`\n")
print("| load generator | requests/s | vs wrk | p99 ms |\n|---|---|---|---|")
print(f"| wrk | {stats.cell(wrk)} | baseline | — |")
p99 = [r["latency"]["p99_ms"] for r in sk]
print(f"| sockit bench http | {stats.cell(s_rps)} | {stats.ratio(s_rps, wrk)} | {stats.cell(p99, 2)} |")
within = "—" if not (ms and mw) else ("within" if abs(ms / mw - 1) <= 0.15 else "outside")
print(f"\nsockit / wrk = **{stats.ratio(s_rps, wrk)}** (target: within ±15%, i.e. 0.85–1.15: {within}). "
      f"Errors: {sum(dict(r['counters'])['errors'] for r in sk)}, non-2xx: {sum(dict(r['counters'])['non-2xx'] for r in sk)}.")
PY
python3 - "$tmp" "$ROUNDS" "$OPEN_DURATION" "$CONNS" "$RATE" "$PAUSE_AT" "$HOLD_DURATION" "${gens[*]}" "$HOLD_ROUNDS" "$ok_capacity" "${HOLD_FRACTIONS:-0.4 0.5 0.6 0.7 0.8 0.9 1.0}" >>"$OUT" <<'PY'
import json, os, re, sys
sys.path.insert(0, "bench")
import stats
tmp, runs, duration, conns, rate, pause_at, hold_duration, gens, hold_rounds, ok_capacity, fractions = sys.argv[1:]
gens = gens.split()
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}

def sockit(text):
    r = json.loads(text)
    l, sc = r["latency"] or {}, r.get("schedule") or {}
    return dict(p50=l.get("p50_ms"), p99=l.get("p99_ms"), p999=l.get("p999_ms"),
                rps=sc.get("achieved_per_sec"), lag=sc.get("lag_p99_ms"))

def oha(text):
    r = json.loads(text)
    p = r.get("latencyPercentiles", {})
    ms = lambda k: p[k] * 1000.0 if p.get(k) is not None else None
    return dict(p50=ms("p50"), p99=ms("p99"), p999=ms("p99.9"),
                rps=r.get("summary", {}).get("requestsPerSec"), lag=None)

def wrk2(text):
    def pct(q):
        m = re.search(rf"^\s*{q}%\s+([\d.]+)(us|ms|s|m)\b", text, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    return dict(p50=pct("50.000"), p99=pct("99.000"), p999=pct("99.900"),
                rps=float(m.group(1)) if m else None, lag=None)

PARSE = dict(sockit=sockit, oha=oha, wrk2=wrk2)

def runs_of(gen, text):
    chunks = text.split("@@") if gen == "wrk2" else text.splitlines()
    out = []
    for chunk in chunks:
        if chunk.strip():
            try:
                out.append(PARSE[gen](chunk))
            except (ValueError, KeyError, TypeError):
                pass
    return out

def med(rows, key):
    return stats.median([r.get(key) for r in rows])

def vals(rows, key):
    return [r.get(key) for r in rows if r.get(key) is not None]

def fmt(v, d=2):
    return "—" if v is None else f"{v:,.{d}f}"

print(f"\n## Open loop at {int(rate):,} requests/s (half of nginx's capacity above)\n")
print(f"{conns} connections, one thread on core 1, {duration} per run; nginx's worker stopped for 1 s "
      f"(SIGSTOP/SIGCONT) {pause_at} s into the paused runs. Latency timed from when each request was due "
      f"(sockit `--rate`, oha `--latency-correction`, wrk2 always). Medians of {runs} interleaved rounds, "
      f"min–max in brackets.\n")
print("| load generator | nginx pause | p50 ms | p99 ms | p99.9 ms | requests/s sent |\n|---|---|---|---|---|---|")
for gen in gens:
    for pause in ("0", "1"):
        path = f"{tmp}/open-{gen}-{pause}"
        rows = runs_of(gen, open(path).read()) if os.path.exists(path) else []
        print(f"| {gen} | {'1 s' if pause == '1' else 'none'} | {fmt(med(rows, 'p50'))} | {stats.cell(vals(rows, 'p99'), 2)} | "
              f"{stats.cell(vals(rows, 'p999'), 2)} | {fmt(med(rows, 'rps'), 0)} |")
print("\nEvery round's p99 (ms), in run order, and the calm p99 of each generator against sockit's "
      "(one after the other, each round with its own stalls; the 15% target is judged side by side, below):\n")
calm = {}
for gen in gens:
    for pause in ("0", "1"):
        path = f"{tmp}/open-{gen}-{pause}"
        rows = runs_of(gen, open(path).read()) if os.path.exists(path) else []
        print(f"- {gen}, {'1 s pause' if pause == '1' else 'calm'}: " + " ".join(fmt(r.get("p99")) for r in rows))
        if pause == "0":
            calm[gen] = vals(rows, "p99")
for gen in gens:
    if gen != "sockit" and calm.get(gen) and calm.get("sockit"):
        ratio = stats.median(calm["sockit"]) / stats.median(calm[gen])
        print(f"- calm p99, sockit / {gen}: {stats.ratio(calm['sockit'], calm[gen])} "
              f"({'within' if abs(ratio - 1) <= 0.15 else 'outside'} 15%)")
paired = [g for g in gens if g != "wrk2"]
if len(paired) > 1 and os.path.exists(f"{tmp}/pair-sockit-0"):
    share = int(rate) // len(paired)
    print(f"\n### Side by side: {' and '.join(paired)} at the same time\n")
    print(f"Every generator at once against the same nginx, each at {share:,} requests/s over "
          f"{int(conns) // len(paired)} connections (together the {int(rate):,}/s above), all on core 1, "
          f"{duration} per run, {runs} rounds. A stall of the host or of nginx lands in every generator's "
          "figures in the same round, so the round-by-round ratio of their p99s measures the generators, "
          "not the round (one after the other, the calm p99 above moves by several times between rounds).\n")
    print("| load generator | nginx pause | p50 ms | p99 ms | p99.9 ms | requests/s sent |\n|---|---|---|---|---|---|")
    pair = {}
    for gen in paired:
        for pause in ("0", "1"):
            path = f"{tmp}/pair-{gen}-{pause}"
            rows = runs_of(gen, open(path).read()) if os.path.exists(path) else []
            pair[gen, pause] = rows
            print(f"| {gen} | {'1 s' if pause == '1' else 'none'} | {fmt(med(rows, 'p50'))} | {stats.cell(vals(rows, 'p99'), 2)} | "
                  f"{stats.cell(vals(rows, 'p999'), 2)} | {fmt(med(rows, 'rps'), 0)} |")
    print()
    for gen in paired:
        if gen == "sockit":
            continue
        for pause in ("0", "1"):
            ratios = [a["p99"] / b["p99"] for a, b in zip(pair["sockit", pause], pair[gen, pause])
                      if a.get("p99") and b.get("p99")]
            if not ratios:
                continue
            m = stats.median(ratios)
            near = sum(abs(r - 1) <= 0.15 for r in ratios)
            print(f"- {'calm' if pause == '0' else '1 s pause'}, p99 sockit / {gen} in each round: "
                  + " ".join(f"{r:.2f}" for r in ratios)
                  + f"; median **{m:.2f}×** ({'within' if abs(m - 1) <= 0.15 else 'outside'} 15%; "
                  f"{near} of {len(ratios)} rounds within 15%)")
if "wrk2" not in gens:
    print("\nwrk2: not packaged by Debian and not buildable offline here (set WRK2_SRC to a clone of giltene/wrk2); skipped.")

print(f"\n### Highest rate held on one core ({hold_duration} runs, {hold_rounds} rounds)\n")
print(f"Against nginx's fixed answer `location = /ok {{ return 200 \"ok\\n\"; }}` (its closed-loop capacity with wrk: "
      f"{int(ok_capacity):,} requests/s), so that the generator on its one core is the limit; a ladder of rates at "
      f"{', '.join(f'{float(f):.0%}' for f in fractions.split())} of that capacity, every rung run by each generator in turn. "
      "Held: sent at least 99% of the rate asked for; for sockit also its own schedule lag p99 under 1 ms "
      "(oha and wrk2 do not report their lag). The figure is the median over the rounds of the highest rung held.\n")
print("| load generator | highest rate held (min–max) | vs oha | at that rate: p99 ms |\n|---|---|---|---|")
held_by, p99_at = {}, {}
for gen in gens:
    bests = []
    for i in range(1, int(hold_rounds) + 1):
        path = f"{tmp}/hold-{gen}-{i}"
        best = None
        if os.path.exists(path):
            parts = re.split(r"##rate (\d+)\n", open(path).read())
            for asked, body in zip(parts[1::2], parts[2::2]):
                rows = runs_of(gen, body)
                if not rows or rows[0]["rps"] is None:
                    continue
                r = rows[0]
                held = r["rps"] >= 0.99 * int(asked) and (r["lag"] is None or r["lag"] < 1.0)
                if held and (best is None or int(asked) > best[0]):
                    best = (int(asked), r["p99"])
        bests.append(best or (0, None))
    held_by[gen] = [b[0] or None for b in bests]  # None: no rung held
    p99_at[gen] = [b[1] for b in bests if b[1] is not None]
for gen in gens:  # every generator's figures first, then the ratios to oha's
    vs = "baseline" if gen == "oha" else (stats.ratio(held_by[gen], held_by["oha"]) if "oha" in held_by else "—")
    held = stats.cell(held_by[gen], 0)
    print(f"| {gen} | {held}{'/s' if held != '—' else ' (no rung held)'} | {vs} | {fmt(stats.median(p99_at[gen])) if p99_at[gen] else '—'} |")
if "sockit" in held_by and "oha" in held_by:
    print(f"\nsockit / oha = **{stats.ratio(held_by['sockit'], held_by['oha'])}** (target ≥ 1.2×).")
PY
cat "$OUT"
