#!/usr/bin/env bash
# Runs the benchmarks (they print figures) inside a loopback-only network namespace, like the tests.
# Built with the dev profile: the figures measure I/O fan-out, not code speed.
#
#   scripts/run-bench.sh [cargo bench arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-world.sh build kubo ipfs-cluster
cargo bench --locked --profile dev --no-run --quiet
eval "$(scripts/test-world.sh env)"
isolate=(unshare --net --pid --fork --mount-proc)
[[ $(id -u) -eq 0 ]] || isolate=(unshare --user --map-root-user --net --pid --fork --mount-proc)
exec "${isolate[@]}" -- bash -c 'ip link set lo up && exec cargo bench --locked --offline --profile dev "$@"' _ "$@"
