#!/usr/bin/env bash
# Makes sure the system tools the project needs are present. As root on Debian it installs
# what is missing with apt-get; otherwise it prints the exact command and fails.
# Usage: scripts/ensure-system-deps.sh [tests|demo|bench]
set -euo pipefail
purpose=${1:-tests}
pairs=(rsync:rsync chattr:e2fsprogs lsattr:e2fsprogs openssl:openssl flock:util-linux)
case "$purpose" in
  tests) pairs+=(ip:iproute2 chromium:chromium) ;;
  bench) pairs+=(nginx:nginx) ;;
esac
missing=()
for pair in "${pairs[@]}"; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "clavitor: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "clavitor: missing system packages; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
