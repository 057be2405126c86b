#!/usr/bin/env bash
# Soak: a fixed mixed load through `levee demo` for a while (default 10 minutes; not in CI),
# recording levee's RSS, open file descriptors and the load's p99 latency every 10 s.
# Memory and descriptors must be flat once warm.
#
#   DURATION=600 benches/soak/run.sh          # seconds; prints a markdown table
#
# Needs wrk (Debian package `wrk`). Uses the demo's fixed ports 8080 and 9901.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-600}
STEP=10
CONNS=${CONNS:-32}
cd "$ROOT"
cargo build --release --bin levee >&2
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

LEVEE_LOG=error ./target/release/levee demo >/tmp/levee-soak.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:9901/readyz >/dev/null && break; sleep 0.1; done

echo "| t (s) | RSS (MiB) | open fds | requests in step | p99 (ms) | non-2xx in step |"
echo "|---:|---:|---:|---:|---:|---:|"
t=0
while [ "$t" -lt "$DURATION" ]; do
  out=$(wrk -t2 -c"$CONNS" -d"${STEP}s" --latency -s "$ROOT/benches/soak/mix.lua" http://127.0.0.1:8080 2>&1)
  t=$((t + STEP))
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$PID/status)
  fds=$(ls /proc/$PID/fd | wc -l)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; printf "%.2f", v}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "| $t | $rss | $fds | $reqs | $p99 | ${non2xx:-0} |"
done
