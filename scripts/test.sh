#!/usr/bin/env bash
# Runs every test sockit has: unit, integration (real sockets, real peers) and doc tests.
# The peers the tests talk to are installed when missing (apt-get, pip), never assumed.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"

# program -> Debian package
declare -A peers=(
  [nc]=netcat-openbsd
  [ncat]=ncat
  [socat]=socat
  [curl]=curl
  [nghttp]=nghttp2-client
  [h2load]=nghttp2-client
  [python3]=python3
  [nginx]=nginx-light
  [tmux]=tmux
  [microsocks]=microsocks
  [danted]=dante-server
  [tinyproxy]=tinyproxy
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [unzip]=unzip
)
missing=()
for program in "${!peers[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${peers[$program]}")
done
if ((${#missing[@]})); then
  echo "installing test peers: ${missing[*]}" >&2
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The README's picture of the chat page shows Chinese text and emoji: fonts for them.
fonts=()
fc-list 2>/dev/null | grep -qi "Noto Color Emoji" || fonts+=(fonts-noto-color-emoji)
fc-list 2>/dev/null | grep -qi "MicroHei" || fonts+=(fonts-wqy-microhei)
if ((${#fonts[@]})); then
  echo "installing fonts: ${fonts[*]}" >&2
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${fonts[@]}" >/dev/null
fi

# program -> PyPI packages (httpbin runs on gunicorn; redbot lints HTTP answers)
declare -A py_peers=(
  [gunicorn]="gunicorn httpbin"
  [redbot]=redbot
)
py_missing=()
for program in "${!py_peers[@]}"; do
  command -v "$program" >/dev/null 2>&1 || py_missing+=(${py_peers[$program]})
done
python3 -c 'import httpbin' 2>/dev/null || py_missing+=(httpbin)
python3 -c 'import websockets' 2>/dev/null || py_missing+=(websockets)
if ((${#py_missing[@]})); then
  echo "installing python test peers: ${py_missing[*]}" >&2
  python3 -m pip install -q "${py_missing[@]}"
fi

cargo test --all-targets
cargo test --doc
