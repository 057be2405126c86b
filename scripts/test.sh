#!/usr/bin/env bash
# The one test command (README): installs what the tests need, then format check, clippy,
# the whole test suite, `levee check` over every config in conf/, and the HTTP caching suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)          # builds libz-ng for pingora
command -v promtool >/dev/null || need+=(prometheus)  # promtool check metrics
command -v chromium >/dev/null || need+=(chromium)    # the status page test
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v node >/dev/null || need+=(nodejs)          # the HTTP caching test suite
command -v npm >/dev/null || need+=(npm)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo build --bins
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --all-targets 2>&1 | tee "$results"
for f in conf/*.toml; do
  ./target/debug/levee check -c "$f"
done
# The alert rules, and their unit tests (issue #7).
promtool check rules conf/prometheus/alerts.yml
(cd conf/prometheus && promtool test rules alerts_test.yml)
python3 -m json.tool conf/grafana/levee.json >/dev/null
# The cache-tests.fyi suite against levee's cache (issue #6): fails below its floor.
tests/cache-tests/run.sh
# Fuzzing (issue #8): each cargo-fuzz target for FUZZ_SECONDS, when a nightly toolchain is
# here (cargo-fuzz itself is installed on first use). A crash fails the run; its input is left
# in fuzz/artifacts/. FUZZ_SECONDS=0 skips.
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
if [ "$FUZZ_SECONDS" -gt 0 ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
  mkdir -p fuzz/corpus/config fuzz/corpus/route fuzz/corpus/query
  for t in config route query; do
    seeds=()
    [ "$t" = config ] && seeds=(conf tests/fixtures/errors)
    echo "fuzz: $t for ${FUZZ_SECONDS}s"
    cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 2>&1 | grep -E '^(Done|stat::number_of_executed_units)|ERROR|panicked' || true
    if [ -n "$(ls fuzz/artifacts/$t 2>/dev/null)" ]; then
      echo "fuzz: $t found a crash: fuzz/artifacts/$t" >&2
      exit 1
    fi
  done
else
  echo "fuzz: skipped (no nightly toolchain, or FUZZ_SECONDS=0)"
fi
# The closing line CI reads: every cargo test binary's results, summed.
awk '/^test result:/ {p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f}' "$results"
