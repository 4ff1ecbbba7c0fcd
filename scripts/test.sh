#!/usr/bin/env bash
# Runs every test sockit has: unit, integration (real sockets, real peers) and doc tests.
# The peers the tests talk to are installed with apt-get when missing, never assumed.
set -euo pipefail
cd "$(dirname "$0")/.."

# program -> Debian package
declare -A peers=(
  [nc]=netcat-openbsd
  [curl]=curl
  [python3]=python3
  [nginx]=nginx-light
)
missing=()
for program in "${!peers[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${peers[$program]}")
done
if ((${#missing[@]})); then
  echo "installing test peers: ${missing[*]}" >&2
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --all-targets
cargo test --doc
