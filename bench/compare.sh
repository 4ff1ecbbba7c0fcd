#!/usr/bin/env bash
# Every side-by-side comparison in one go: installs the missing peers (nginx, wrk, ncat,
# socat), runs each bench script, and assembles bench/RESULTS.md from their tables.
#
#   bench/compare.sh                 # all of them
#   bench/compare.sh echo http-load  # only these (names of bench/*.sh)
#   bench/compare.sh none            # run none: only rebuild bench/RESULTS.md from bench/results/
# bench/results/chat-tcp.md, when there, is a TCP-only chat pass (sockit and ncat at more
# rounds than the whole chat.sh takes): OUT=bench/results/chat-tcp.md WS_NS= IDLE=0 bench/chat.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ensure_tools nginx=nginx-light wrk=wrk ncat=ncat socat=socat nc=netcat-openbsd curl=curl

all=(echo http-load serve http-client chat chat-tcp chat-idle chat-cluster transfer scan proxy before-after)
wanted=("$@")
((${#wanted[@]})) || wanted=("${all[@]}")
for name in "${wanted[@]}"; do
  if [ -x "bench/$name.sh" ]; then
    echo "== bench/$name.sh" >&2
    "bench/$name.sh" >/dev/null || echo "bench/$name.sh failed; its old results (if any) are kept" >&2
  fi
done

{
  echo "# Benchmark results"
  echo
  echo "Made by \`bench/compare.sh\` (or the single scripts it runs) on $(nproc) cores,"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)."
  echo "Servers are pinned to core 0 and load generators to core 1; all traffic is on loopback."
  echo "Each section names the exact commands; ratios compare tools measured in the same run."
  echo "The scripts run the contenders in interleaved rounds (round 1: A, B, C; round 2: A, B, C; …;"
  echo "7 rounds by default) and give medians with min–max and the host's steal time over the pass;"
  echo "a ratio marked (tie) is one whose two min–max ranges overlap. A section says how many rounds"
  echo "or runs its figures are."
  for name in "${all[@]}"; do
    if [ -f "bench/results/$name.md" ]; then
      echo
      cat "bench/results/$name.md"
    fi
  done
} >bench/RESULTS.md
echo "wrote bench/RESULTS.md" >&2
