#!/usr/bin/env bash
# Flash-sale spike benchmark: no proxy vs levee static vs levee adaptive vs levee adaptive with
# learned cost, same simulated backend, open-loop Poisson load. One command:
#   benches/spike/run.sh            (about 2 minutes; prints markdown tables)
# Options are passed on: --only SETUP (none | static | adaptive | learned).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
cargo build --release --bin levee --example spike >&2
ulimit -n 65536 2>/dev/null || true
exec "$ROOT/target/release/examples/spike" --levee "$ROOT/target/release/levee" "$@"
