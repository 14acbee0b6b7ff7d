#!/usr/bin/env bash
# Runs the benchmarks (they print figures) inside a loopback-only network namespace, like the tests.
# Built with the dev profile by default: the probe and healing figures measure I/O fan-out, not
# code speed (controller_scale runs the operator's release binary, which this script builds when
# that benchmark is asked for). BENCH_PROFILE=release builds them optimized (what `dashboard_load` compares with
# nginx; the first such build compiles every dependency again).
#
#   scripts/run-bench.sh [cargo bench arguments...]
#   BENCH_PROFILE=release scripts/run-bench.sh --bench dashboard_load
#   IPFS_KIT_BENCH_SIZES=1000 scripts/run-bench.sh --bench controller_scale
#
# dashboard_load needs Debian's nginx and wrk: `apt-get install nginx wrk`.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_PROFILE:-dev}
scripts/test-world.sh build kubo ipfs-cluster
cargo bench --locked --profile "$profile" --no-run --quiet "$@"
# controller_scale measures the operator's release binary, run as a process of its own.
if [[ $# -eq 0 || " $* " == *" controller_scale "* || " $* " == *"--bench=controller_scale "* ]]; then
  cargo build --locked --release --quiet --bin ipfs-kit-operator
fi
eval "$(scripts/test-world.sh env)"
isolate=(unshare --net --pid --fork --mount-proc)
[[ $(id -u) -eq 0 ]] || isolate=(unshare --user --map-root-user --net --pid --fork --mount-proc)
exec "${isolate[@]}" -- bash -c 'ip link set lo up && exec cargo bench --locked --offline --profile "$@"' _ "$profile" "$@"
