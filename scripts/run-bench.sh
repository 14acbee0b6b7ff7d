#!/usr/bin/env bash
# Runs the benchmarks (they print figures) inside a loopback-only network namespace, like the tests.
# Built with the dev profile by default: the probe and healing figures measure I/O fan-out, not
# code speed. BENCH_PROFILE=release builds them optimized (what `dashboard_load` compares with
# nginx; the first such build compiles every dependency again).
#
#   scripts/run-bench.sh [cargo bench arguments...]
#   BENCH_PROFILE=release scripts/run-bench.sh --bench dashboard_load
#
# dashboard_load needs Debian's nginx and wrk: `apt-get install nginx wrk`.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_PROFILE:-dev}
scripts/test-world.sh build kubo ipfs-cluster
cargo bench --locked --profile "$profile" --no-run --quiet "$@"
eval "$(scripts/test-world.sh env)"
isolate=(unshare --net --pid --fork --mount-proc)
[[ $(id -u) -eq 0 ]] || isolate=(unshare --user --map-root-user --net --pid --fork --mount-proc)
exec "${isolate[@]}" -- bash -c 'ip link set lo up && exec cargo bench --locked --offline --profile "$@"' _ "$profile" "$@"
